// The page as a whole: bytes on the wire and caching of the assets, WCAG AA contrast in both themes,
// 280 px wide frames, keyboard use, labels, reduced motion; and the screenshots for the README.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { HERE, artifactsDir, bot, contrast, launchBrowser, openRoom, reader, say, startEngine, startHost, textContrasts } from "./helpers.mjs";

let engine, browser;
before(async () => {
  // Seeders post links straight away, as readers who have been around would: the rule for new
  // readers' links is off here (spam.test.mjs covers it).
  const args = ["--send-burst", "100", "--send-rate", "50", "--spam-link-messages", "0"];
  [engine, browser] = await Promise.all([startEngine({ args }), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await engine?.kill();
});

// Every file the widget page loads from the engine (the page, its style, every script module), as
// Chromium requests them; the socket and the JSON API aside.
let loaded;
async function pageFiles() {
  if (loaded) return loaded;
  const page = await reader(browser, { identity: { nickname: "Sizer" } });
  const files = new Set();
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.origin === engine.origin && !/^\/(ws|api)\//.test(url.pathname)) files.add(url.pathname);
  });
  await openRoom(page, engine, "size");
  assert.deepEqual(page.csp, [], "no CSP violations");
  await page.context().close();
  loaded = [...files];
  for (const p of ["/room/size", "/assets/widget.css", "/assets/widget.js", "/assets/client.js"].map(hashed)) {
    assert.ok(loaded.some((l) => l.match(p)), `${p} in ${loaded}`);
  }
  return loaded;
}

// `/assets/widget.js` -> a pattern for its content-hashed name, `/assets/widget.3f9a1c2e.js`.
function hashed(p) {
  const m = p.match(/^\/assets\/(.+)\.(js|css)$/);
  return m ? new RegExp(`^/assets/${m[1]}\\.[0-9a-f]{8}\\.${m[2]}$`) : new RegExp(`^${p}$`);
}

// The file on disk a served one comes from: the build step only left out comments, indentation
// and blank lines, and renamed the imports. Each served line is a line on disk (or its start, a
// trailing comment dropped), in the same order.
function fromDisk(served, file) {
  const plain = (s) => s.replace(/([\w-]+)\.[0-9a-f]{8}\.(js|css)/g, "$1.$2");
  const disk = readFileSync(path.join(HERE, "..", plain(file))).toString().split("\n").map((l) => l.trim());
  const lines = plain(served.toString()).split("\n").filter(Boolean);
  let at = 0;
  for (const line of lines) {
    while (at < disk.length && !(disk[at] === line || (disk[at].startsWith(line) && /^\s+\/[/*]/.test(disk[at].slice(line.length))))) at++;
    assert.ok(at < disk.length, `${file}: "${line}" is not from the file on disk`);
    at++;
  }
  assert.ok(lines.length > 10, file);
}

/**
 * What Chromium fetched over the network while `load` ran, as its DevTools protocol reports it:
 * per request the path, status, whether a cache answered, the Content-Encoding and the bytes on
 * the wire (headers included); and whether the request started before the first WebSocket.
 */
async function onTheWire(page, load) {
  const cdp = await page.context().newCDPSession(page);
  const requests = new Map();
  let socketOpen = false;
  cdp.on("Network.requestWillBeSent", (e) => requests.set(e.requestId, { url: new URL(e.request.url), beforeSocket: !socketOpen, bytes: 0 }));
  cdp.on("Network.webSocketCreated", () => { socketOpen = true; });
  cdp.on("Network.requestServedFromCache", (e) => { requests.get(e.requestId).cache = "memory"; });
  cdp.on("Network.responseReceived", (e) => Object.assign(requests.get(e.requestId) ?? {}, {
    status: e.response.status,
    encoding: e.response.headers["content-encoding"] ?? e.response.headers["Content-Encoding"],
    ...(e.response.fromDiskCache ? { cache: "disk" } : {}),
  }));
  // The status as it came over the network: a revalidated page is 304 here, 200 (from the cache) above.
  cdp.on("Network.responseReceivedExtraInfo", (e) => { const r = requests.get(e.requestId); if (r) r.wireStatus = e.statusCode; });
  cdp.on("Network.loadingFinished", (e) => { const r = requests.get(e.requestId); if (r) r.bytes = e.encodedDataLength; });
  await cdp.send("Network.enable", { maxTotalBufferSize: 0 });
  await load();
  await cdp.detach();
  return [...requests.values()].filter((r) => r.url.origin === engine.origin && r.url.protocol === "http:" && !/^\/api\//.test(r.url.pathname));
}

describe("assets", () => {
  test("on the wire: a cold load of the frame <= 20 KB before the socket opens; a second visit only revalidates the page", async (t) => {
    const page = await reader(browser, { identity: { nickname: "Wire" } });
    const cold = await onTheWire(page, () => openRoom(page, engine, "wire", "lang=en"));
    const before = cold.filter((r) => r.beforeSocket);
    const total = before.reduce((sum, r) => sum + r.bytes, 0);
    const after = cold.filter((r) => !r.beforeSocket);
    const later = after.reduce((sum, r) => sum + r.bytes, 0);
    t.diagnostic(`cold: ${JSON.stringify(before.map((r) => [r.url.pathname, r.encoding, r.bytes]))}; total ${total} B`);
    t.diagnostic(`while the socket opens: ${JSON.stringify(after.map((r) => [r.url.pathname, r.encoding, r.bytes]))}; ${later} B`);
    const plain = (r) => r.url.pathname.replace(/\.[0-9a-f]{8}(\.\w+)$/, "$1");
    assert.deepEqual(before.map(plain).sort(), ["/assets/client.js", "/assets/storage.js", "/assets/strings.js", "/assets/widget.css", "/assets/widget.js", "/room/wire"],
      "the page, its style and the modules that open the socket");
    // The modules that draw reactions, replies and the moderator's tools come while it opens.
    assert.deepEqual(after.map(plain).sort(), ["/assets/moderator.js", "/assets/reactions.js", "/assets/reply.js"]);
    for (const r of cold) {
      assert.equal(r.status, 200, r.url.pathname);
      assert.equal(r.cache, undefined, `${r.url.pathname}: a cold cache`);
      assert.match(r.encoding ?? "", /^(br|gzip)$/, `${r.url.pathname} compressed`);
    }
    assert.ok(total <= 20 * 1024, `cold load ${total} B on the wire before the socket`);

    // Back to the same post later, in another tab: the hashed files come from the cache without a
    // request to the engine; only the page is asked again, and answers 304.
    const tab = await page.context().newPage();
    const again = await onTheWire(tab, () => openRoom(tab, engine, "wire", "lang=en"));
    const fetched = again.filter((r) => !r.cache);
    const bytes = fetched.reduce((sum, r) => sum + r.bytes, 0);
    t.diagnostic(`second visit: ${JSON.stringify(again.map((r) => [r.url.pathname, r.wireStatus, r.cache ?? "network", r.bytes]))}; ${bytes} B`);
    assert.deepEqual(fetched.map((r) => [r.url.pathname, r.wireStatus]), [["/room/wire", 304]], "only the page, revalidated");
    for (const r of cold.filter((r) => r.url.pathname.startsWith("/assets/"))) {
      assert.ok(again.some((a) => a.url.pathname === r.url.pathname && a.cache), `${r.url.pathname} from the cache`);
    }
    assert.deepEqual(page.csp, [], "no CSP violations");
    await page.context().close();
  });

  test("on the wire: embed.js on a host page <= 3 KB", async (t) => {
    const host = await startHost();
    const page = await reader(browser);
    const url = host.page("/post.html", `<!doctype html><title>Post</title><script src="${engine.origin}/embed.js"></script>`);
    const wire = await onTheWire(page, () => page.goto(url));
    const embed = wire.find((r) => r.url.pathname === "/embed.js");
    t.diagnostic(`embed.js: ${embed.encoding} ${embed.bytes} B on the wire`);
    assert.equal(embed.encoding, "br");
    assert.ok(embed.bytes <= 3 * 1024, `embed.js ${embed.bytes} B on the wire`);
    await page.context().close();
    await host.close();
  });

  test("during a rollout: hashed files the answering pod lacks fall back to their plain names", async () => {
    const page = await reader(browser, { identity: { nickname: "Rollout" } });
    const refused = [];
    // Every hashed name answered as a pod of another release would: 404.
    await page.route(/\/assets\/[\w-]+\.[0-9a-f]{8}\.(js|css)$/, (route) => {
      refused.push(new URL(route.request().url()).pathname);
      return route.fulfill({ status: 404, contentType: "application/json", body: '{"error":{"code":"not_found","message":"no such asset"}}' });
    });
    await openRoom(page, engine, "rollout", "lang=en");
    assert.ok(refused.some((p) => p.startsWith("/assets/widget.")), `the page asked for hashed names first: ${refused}`);
    assert.equal(await page.locator("#app").evaluate((el) => getComputedStyle(el).display), "flex", "styled, by the plain name");
    assert.deepEqual(page.csp, [], "no CSP violations");
    assert.deepEqual(page.errors ?? [], []);
    await page.context().close();
  });

  test("the served files are the repository's, stripped and renamed; gzip -9: the page's <= 30 KB, embed.js <= 3 KB", async (t) => {
    const sizes = {};
    for (const p of await pageFiles()) {
      const body = Buffer.from(await (await fetch(engine.origin + p)).arrayBuffer());
      fromDisk(body, p === "/room/size" ? "index.html" : path.basename(p));
      sizes[p] = { raw: body.length, gzip: gzipSync(body, { level: 9 }).length };
    }
    const widget = Object.values(sizes).reduce((sum, s) => sum + s.gzip, 0);
    const embed = Buffer.from(await (await fetch(`${engine.origin}/embed.js`)).arrayBuffer());
    fromDisk(embed, "embed.js");
    const embedGzip = gzipSync(embed, { level: 9 }).length;
    t.diagnostic(`gzip -9 sizes: ${JSON.stringify(sizes)}; widget total ${widget} B; embed.js ${embedGzip} B`);
    assert.ok(widget <= 30 * 1024, `widget ${widget} B gzip`);
    assert.ok(embedGzip <= 3 * 1024, `embed.js ${embedGzip} B gzip`);
  });

  test("admin page gzip size budget: page + css + js <= 20 KB, every file revalidates", async (t) => {
    const page = await reader(browser);
    const files = new Set();
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.origin === engine.origin && !/^\/(ws|api|admin)\//.test(url.pathname)) files.add(url.pathname);
    });
    await page.goto(`${engine.origin}/admin?lang=en`);
    await page.locator("#sign-in-btn:not(:empty)").waitFor();
    assert.deepEqual(page.csp, [], "no CSP violations");
    await page.context().close();
    for (const p of ["/admin", "/assets/admin.css", "/assets/admin.js", "/assets/admin-room.js"].map(hashed)) {
      assert.ok([...files].some((f) => f.match(p)), `${p} in ${[...files]}`);
    }
    const sizes = {};
    for (const p of files) {
      const res = await fetch(engine.origin + p);
      const body = Buffer.from(await res.arrayBuffer());
      fromDisk(body, p === "/admin" ? "admin.html" : path.basename(p));
      sizes[p] = { raw: body.length, gzip: gzipSync(body, { level: 9 }).length };
      assert.equal((await fetch(engine.origin + p, { headers: { "if-none-match": res.headers.get("etag") } })).status, 304, p);
    }
    const total = Object.values(sizes).reduce((sum, s) => sum + s.gzip, 0);
    t.diagnostic(`admin gzip -9 sizes: ${JSON.stringify(sizes)}; total ${total} B`);
    assert.ok(total <= 20 * 1024, `admin ${total} B gzip`);
  });

  test("assets carry ETag and Cache-Control and revalidate with 304", async () => {
    for (const p of [...await pageFiles(), "/room/cache", "/embed.js"]) {
      const res = await fetch(engine.origin + p);
      const etag = res.headers.get("etag");
      assert.ok(etag, `${p} has an ETag`);
      assert.ok(res.headers.get("cache-control"), `${p} has Cache-Control`);
      const again = await fetch(engine.origin + p, { headers: { "if-none-match": etag } });
      assert.equal(again.status, 304, p);
    }
  });
});

describe("looks and access", () => {
  for (const theme of ["light", "dark"]) {
    test(`WCAG AA contrast of every text in the ${theme} theme`, async () => {
      const seeder = await bot(browser, engine, `contrast-${theme}`, "Other");
      await seeder.send(Array.from({ length: 25 }, (_, i) => `earlier ${i} https://example.com/${i}`));
      const page = await reader(browser, { identity: { nickname: "Checker" } });
      await openRoom(page, engine, `contrast-${theme}`, `theme=${theme}&lang=en`);
      await say(page, "my own message with https://example.com/own");
      await page.locator("#list .own[data-seq]").waitFor();
      await page.locator("#online").click();
      await page.locator("#list").evaluate((el) => { el.scrollTop = el.scrollHeight - el.clientHeight - 400; });
      await seeder.send(["new one"]);
      await page.locator("#pill").waitFor();
      await page.locator("#input").fill("x".repeat(1990));
      await page.locator("#count").waitFor();
      const failures = (await textContrasts(page))
        .map((c) => ({ ...c, ratio: contrast(c.fg, c.bg) }))
        .filter((c) => c.ratio < (c.min ?? 4.5));
      assert.deepEqual(failures, []);

      // The banner and the nickname error: another page whose socket never opens.
      const offline = await reader(browser);
      await offline.routeWebSocket(/\/ws\//, () => {});
      await offline.goto(`${engine.origin}/room/contrast-${theme}?theme=${theme}&lang=en`);
      await offline.locator("#nick-input").fill("x");
      await offline.locator("#nick-save").click();
      await offline.locator("#nick-err:not(:empty)").waitFor();
      await offline.locator("#banner").waitFor();
      const more = (await textContrasts(offline)).map((c) => ({ ...c, ratio: contrast(c.fg, c.bg) })).filter((c) => c.ratio < (c.min ?? 4.5));
      assert.deepEqual(more, []);
      await seeder.close();
      await page.context().close();
      await offline.context().close();
    });
  }

  test("280 px wide: nothing cut off or scrolling sideways", async () => {
    const page = await reader(browser, { viewport: { width: 280, height: 520 } });
    await page.goto(`${engine.origin}/room/narrow?lang=ko&title=${encodeURIComponent("아주 긴 게시글 제목이 들어가는 자리입니다")}`);
    const inView = async (sel) => {
      const box = await page.locator(sel).boundingBox();
      return box && box.x >= 0 && box.x + box.width <= 280;
    };
    for (const sel of ["#nick-input", "#nick-save", "#nick-avatar", "#title"]) assert.ok(await inView(sel), sel);
    await page.locator("#nick-save").click();
    await page.locator("#composer").waitFor();
    await say(page, "좁은 화면에서도 보이는 메시지 https://example.com/a/very/long/path/that/does/not/fit");
    await page.locator("#list [data-seq]").waitFor();
    for (const sel of ["#input", "#send", "#online", "#me", "#list .bubble"]) assert.ok(await inView(sel), sel);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 280), "no sideways scroll");
    await page.context().close();
  });

  test("keyboard only: every control labelled, visible focus, Enter/Escape work", async () => {
    const page = await reader(browser, { identity: { nickname: "Keyboard" } });
    await openRoom(page, engine, "keyboard", "lang=en");
    await say(page, "a message to delete");
    await page.locator("#list [data-seq]").waitFor();

    // Labels: every visible button and field has an accessible name.
    for (const el of await page.locator("button:visible, textarea:visible, input:visible").all()) {
      const name = await el.evaluate((e) => e.getAttribute("aria-label") || e.labels?.[0]?.textContent || e.textContent);
      assert.ok(name.trim(), await el.evaluate((e) => e.outerHTML));
    }

    // Tab through the page from the top: focus is visible on every stop and reaches each control.
    await page.locator("body").click({ position: { x: 1, y: 1 } });
    const stops = [];
    // A message's own actions: Reply, Edit, Delete, Add a reaction.
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press("Tab");
      stops.push(await page.evaluate(() => {
        const el = document.activeElement;
        return { id: el.id || el.getAttribute("aria-label") || el.textContent, tag: el.tagName, outline: getComputedStyle(el).outlineStyle };
      }));
    }
    // (The disabled Send button is skipped; after the last control focus leaves the document.)
    stops.splice(stops.findIndex((s) => s.tag === "BODY"));
    const ids = stops.map((s) => s.id);
    for (const id of ["online", "me", "list", "input"]) assert.ok(ids.includes(id), `Tab reaches #${id}: ${ids}`);
    assert.ok(ids.includes("Delete"), "Tab reaches the delete button");
    assert.ok(stops.every((s) => s.outline !== "none"), JSON.stringify(stops));

    await page.locator("#online").focus();
    await page.keyboard.press("Enter");
    await page.locator("#people-box").waitFor();
    await page.keyboard.press("Escape");
    assert.ok(await page.locator("#people-box").isHidden());
    await page.locator("#me").focus();
    await page.keyboard.press("Enter");
    assert.ok(await page.locator("#nick-input").evaluate((el) => el === document.activeElement));
    await page.keyboard.press("Escape");
    assert.ok(await page.locator("#me").evaluate((el) => el === document.activeElement), "focus returns");
    await page.context().close();
  });

  test("reduced motion: the pill jumps instead of scrolling smoothly", async () => {
    const seeder = await bot(browser, engine, "motion", "Other");
    await seeder.send(Array.from({ length: 30 }, (_, i) => `m ${i}`));
    const page = await reader(browser, { identity: { nickname: "Still" }, reducedMotion: "reduce" });
    await openRoom(page, engine, "motion", "lang=en");
    await page.locator("#list").evaluate((el) => { el.scrollTop = el.scrollHeight - el.clientHeight - 500; });
    await seeder.send(["new"]);
    await page.locator("#pill").click();
    assert.ok(await page.locator("#list").evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2));
    await seeder.close();
    await page.context().close();
  });
});

describe("content security policy", () => {
  test("the widget works under its own policy, with no violation", async () => {
    const csp = (await fetch(`${engine.origin}/room/csp`)).headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/);
    const a = await reader(browser, { identity: { nickname: "Ann" } });
    const b = await reader(browser, { identity: { nickname: "\u05d3\u05d5\u05d1 Bob" } });
    await openRoom(a, engine, "csp", "lang=en&theme=dark");
    await openRoom(b, engine, "csp", "lang=en");
    // The inline theme script ran: it is allowed by its hash.
    assert.ok(await a.evaluate(() => document.documentElement.classList.contains("theme-dark")));
    await say(b, "under the policy");
    await a.locator("#list .msg[data-seq]").filter({ hasText: "under the policy" }).waitFor();
    await a.locator("#online").click();
    await a.locator("#people .person").nth(1).waitFor();
    // A right-to-left name is isolated: it cannot pull the text after it into its direction.
    assert.equal(await a.locator("#list .name").first().evaluate((el) => getComputedStyle(el).unicodeBidi), "isolate");
    for (const page of [a, b]) {
      assert.deepEqual(page.csp, []);
      assert.deepEqual(page.errors ?? [], []);
      await page.context().close();
    }
  });
});

describe("screenshots", () => {
  // With UPDATE_SCREENSHOTS=1 they replace the README's, in embed-widget/screenshots/.
  test("light and dark, desktop and 360 px, Korean; reactions, a reply and an edit", async () => {
    const dir = process.env.UPDATE_SCREENSHOTS ? path.join(HERE, "..", "screenshots") : artifactsDir("screenshots");
    const seeder = await bot(browser, engine, "screens", "익명의 수달", "otter");
    const [first] = await seeder.send([
      "Great post! The part about backpressure finally made it click for me.",
      "Same here. Has anyone tried it behind a CDN? https://example.com/notes",
    ]);
    const other = await reader(browser, { identity: { nickname: "Anonymous Fox", avatar: "fox" } });
    await openRoom(other, engine, "screens", "lang=en");
    await say(other, "Yes, works fine with WebSockets enabled.");
    const me = await reader(browser, { identity: { nickname: "Anonymous Owl", avatar: "owl" } });
    await openRoom(me, engine, "screens", "lang=en&title=Backpressure%20in%20practice");
    await say(me, "Thanks all, trying it tonight 🙂");
    await me.locator("#list .own[data-seq]").waitFor();
    // Others react to the first message and reply to it, live.
    await seeder.page.evaluate((seq) => {
      window.bot.ws.send(JSON.stringify({ type: "react", seq, emoji: "❤️", on: true }));
      window.bot.ws.send(JSON.stringify({ type: "send", clientId: crypto.randomUUID(), content: "Glad it helped! The next post covers slow consumers.", replyTo: seq }));
    }, first);
    await other.locator(`#list [data-seq="${first}"] .reacts button[data-emoji="❤️"]`).click();
    await me.locator(`#list [data-seq="${first}"] .reacts button[data-emoji="❤️"]`, { hasText: "2" }).waitFor();
    await me.locator("#list .quote").waitFor();
    await seeder.page.evaluate(() => window.bot.ws.send(JSON.stringify({ type: "typing" })));
    await me.locator("#typing:not(:empty)").waitFor();
    for (const theme of ["light", "dark"]) {
      await me.evaluate((t) => { document.documentElement.className = `theme-${t}`; }, theme);
      for (const [label, width] of [["desktop", 720], ["360", 360]]) {
        await me.setViewportSize({ width, height: 600 });
        await me.screenshot({ path: path.join(dir, `widget-${theme}-${label}.png`) });
      }
    }
    const ko = await reader(browser, { identity: { nickname: "밤손님", avatar: "cat" } });
    await openRoom(ko, engine, "screens", "lang=ko&theme=dark&title=%EB%B0%B1%ED%94%84%EB%A0%88%EC%85%94");
    await say(ko, "좋은 글 감사합니다! 저도 오늘 해볼게요 👍");
    await ko.locator("#list .own[data-seq]").waitFor();
    await ko.setViewportSize({ width: 360, height: 600 });
    await ko.screenshot({ path: path.join(dir, "widget-ko-dark-360.png") });
    await seeder.close();
    await other.context().close();
    await me.context().close();
    await ko.context().close();
  });
});
