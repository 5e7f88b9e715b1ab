// embed.js on a host page served from another origin: the iframe it makes, height sync, theme
// forwarding (div attribute, host <html> class / data-theme, prefers-color-scheme), messages queued
// until `ready`, several widgets per page, SPA changes, the unread count, and foreign messages.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, bot, connected, launchBrowser, reader, startEngine, startHost, until } from "./helpers.mjs";

let engine, browser, host, evil;
before(async () => {
  [engine, browser, host, evil] = await Promise.all([
    startEngine({ args: ["--send-burst", "100", "--send-rate", "50"] }),
    launchBrowser(),
    startHost(),
    startHost(),  // a third origin, for messages that must be ignored
  ]);
});
after(async () => {
  await browser?.close();
  await engine?.kill();
  await host?.close();
  await evil?.close();
});

const DARK_BG = "rgb(22, 24, 28)";
const LIGHT_BG = "rgb(255, 255, 255)";

// A blog page: records the helper's DOM events so the tests can wait on them.
function hostPage(name, body, { htmlAttrs = "", scripts = 1 } = {}) {
  const script = `<script src="${engine.origin}/embed.js" async></script>`.repeat(scripts);
  return host.page(`/${name}.html`, `<!doctype html>
<html ${htmlAttrs}><head><meta charset="utf-8"><title>Blog</title>
<script>
  window.events = [];
  for (const type of ["chat:ready", "chat:unread"])
    document.addEventListener(type, (e) => events.push({ type, room: e.target.dataset.chatRoom, detail: e.detail }));
</script></head>
<body style="margin:0;font-family:sans-serif"><h1>A post</h1>${body}${script}</body></html>`);
}

async function blogReader(options = {}) {
  const page = await reader(browser, { identity: { nickname: "Blog reader" }, ...options });
  return page;
}

const readyCount = (page, room) => page.evaluate((room) => events.filter((e) => e.type === "chat:ready" && e.room === room).length, room);
async function waitReady(page, room, n = 1) {
  await page.waitForFunction(([room, n]) => events.filter((e) => e.type === "chat:ready" && e.room === room).length >= n, [room, n]);
}
async function widget(page, room) {
  const handle = await page.locator(`[data-chat-room="${room}"] iframe`).elementHandle();
  return handle.contentFrame();
}
const theme = (frame) => frame.evaluate(() => [...document.documentElement.classList].find((c) => c.startsWith("theme-")));
// The widget's own background is its container's (the page around it is transparent).
const background = (frame) => frame.evaluate(() => getComputedStyle(document.getElementById("app")).backgroundColor);
const frameHeight = (page, room) => page.locator(`[data-chat-room="${room}"] iframe`).evaluate((el) => el.getBoundingClientRect().height);

test("the div becomes a lazy, titled iframe that announces ready and follows the content's height", async () => {
  const page = await blogReader();
  await page.goto(hostPage("basic", `<div data-chat-room="post-1" data-title="My first post"></div>`));
  const iframe = page.locator('[data-chat-room="post-1"] iframe');
  await iframe.waitFor();
  assert.equal(await iframe.getAttribute("loading"), "lazy");
  assert.equal(await iframe.getAttribute("title"), "My first post");
  const src = new URL(await iframe.getAttribute("src"));
  assert.equal(src.origin, engine.origin);
  assert.equal(src.pathname, "/room/post-1");
  assert.equal(src.searchParams.get("parentOrigin"), host.origin);
  assert.equal(src.searchParams.get("title"), "My first post");

  await waitReady(page, "post-1");
  assert.deepEqual(await page.evaluate(() => events.find((e) => e.type === "chat:ready").detail), { roomId: "post-1" });
  assert.equal(await iframe.evaluate((el) => el.style.opacity), "", "visible once ready");
  const frame = await widget(page, "post-1");
  await frame.locator("#online", { hasText: "1 online" }).waitFor();
  assert.equal(await frame.locator("#title").textContent(), "My first post");

  // Empty room: a compact frame. Messages make it grow; the participant list too, and closing it
  // shrinks it back (the height follows the content, it does not only grow).
  const listFits = () => frame.locator("#list").evaluate((el) => el.scrollHeight <= el.clientHeight + 1);
  await until(async () => (await frameHeight(page, "post-1")) < 400, { message: "a compact empty frame" });
  const empty = await frameHeight(page, "post-1");
  const seeder = await bot(browser, engine, "post-1");
  await seeder.send(["one", "two", "three", "four"]);
  await frame.locator("#list [data-seq='4']").waitFor();
  await until(async () => (await frameHeight(page, "post-1")) > empty, { message: "the frame to grow" });
  await until(listFits, { message: "all four messages visible without scrolling inside" });
  const four = await frameHeight(page, "post-1");
  await frame.locator("#online").click();
  await until(async () => (await frameHeight(page, "post-1")) > four, { message: "room for the participant list" });
  await frame.locator("#online").click();
  await until(async () => (await frameHeight(page, "post-1")) === four, { message: "back to the previous height" });

  // Past a cap the frame stops growing and the list scrolls inside instead.
  await seeder.send(Array.from({ length: 30 }, (_, i) => `more ${i}`));
  await frame.locator("#list [data-seq='34']").waitFor();
  await until(async () => !(await listFits()), { message: "the list to scroll inside" });
  const capped = await frameHeight(page, "post-1");
  assert.ok(capped > four && capped < 700, `capped height ${capped}`);
  await seeder.close();
  await page.context().close();
});

test("theme: data-theme on the div, the host's <html> class and data-theme, prefers-color-scheme", async () => {
  const page = await blogReader();
  await page.emulateMedia({ colorScheme: "light" });
  await page.goto(hostPage("themes", `<div data-chat-room="themed" data-theme="dark"></div><div data-chat-room="follows"></div>`));
  await waitReady(page, "themed");
  await waitReady(page, "follows");
  const themed = await widget(page, "themed");
  const follows = await widget(page, "follows");
  assert.equal(await theme(themed), "theme-dark");
  assert.equal(await background(themed), DARK_BG);
  assert.equal(await theme(follows), "theme-light");
  assert.equal(await background(follows), LIGHT_BG);
  assert.equal(await page.locator('[data-chat-room="themed"] iframe').evaluate((el) => el.style.colorScheme), "dark");

  // Switched live by postMessage: the same document, no reload.
  await follows.evaluate(() => { window.sameDocument = true; });
  await page.evaluate(() => document.documentElement.classList.add("dark"));
  await follows.waitForFunction(() => document.documentElement.classList.contains("theme-dark"));
  assert.equal(await background(follows), DARK_BG);
  await page.evaluate(() => document.documentElement.classList.remove("dark"));
  await follows.waitForFunction(() => document.documentElement.classList.contains("theme-light"));
  await page.evaluate(() => { document.documentElement.dataset.theme = "dark"; });
  await follows.waitForFunction(() => document.documentElement.classList.contains("theme-dark"));
  await page.evaluate(() => { delete document.documentElement.dataset.theme; });
  await follows.waitForFunction(() => document.documentElement.classList.contains("theme-light"));
  await page.emulateMedia({ colorScheme: "dark" });
  await follows.waitForFunction(() => document.documentElement.classList.contains("theme-dark"));
  assert.equal(await background(follows), DARK_BG);
  await page.emulateMedia({ colorScheme: "light" });
  await follows.waitForFunction(() => document.documentElement.classList.contains("theme-light"));
  assert.equal(await follows.evaluate(() => window.sameDocument), true);
  // The div's own data-theme wins over the host's.
  assert.equal(await theme(themed), "theme-dark");
  await page.evaluate(() => { document.querySelector('[data-chat-room="themed"]').dataset.theme = "light"; });
  await themed.waitForFunction(() => document.documentElement.classList.contains("theme-light"));
  await page.context().close();
});

test("theme=auto in a bare iframe follows prefers-color-scheme live", async () => {
  const page = await blogReader();
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(host.page("/bare.html", `<!doctype html><iframe id="bare" style="width:100%;height:480px;border:0" title="Chat" src="${engine.origin}/room/bare?theme=auto"></iframe>`));
  const frame = await page.locator("#bare").elementHandle().then((h) => h.contentFrame());
  await frame.locator("#me").waitFor();
  assert.equal(await background(frame), DARK_BG);
  await page.emulateMedia({ colorScheme: "light" });
  await frame.waitForFunction((bg) => getComputedStyle(document.getElementById("app")).backgroundColor === bg, LIGHT_BG);
  await page.context().close();
});

test("a theme change made before the widget is ready is queued and applied on ready", async () => {
  const page = await blogReader();
  await page.emulateMedia({ colorScheme: "light" });
  // Hold the widget's script, so the frame cannot be ready while the host changes its theme.
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  let requested;
  const asked = new Promise((resolve) => { requested = resolve; });
  await page.context().route("**/assets/widget.js", async (route) => { requested(); await held; await route.continue(); });
  // Not "load": the page's load event waits for the frame, whose script is held.
  await page.goto(hostPage("queued", `<div data-chat-room="queued"></div>`), { waitUntil: "domcontentloaded" });
  await asked;
  const iframe = page.locator('[data-chat-room="queued"] iframe');
  assert.equal(new URL(await iframe.getAttribute("src")).searchParams.get("theme"), "light");
  assert.equal(await readyCount(page, "queued"), 0);
  await page.evaluate(() => document.documentElement.classList.add("dark"));
  assert.equal(await iframe.evaluate((el) => el.style.opacity), "0", "kept invisible until ready");
  release();
  await waitReady(page, "queued");
  const frame = await widget(page, "queued");
  await frame.waitForFunction(() => document.documentElement.classList.contains("theme-dark"));
  assert.equal(new URL(await iframe.getAttribute("src")).searchParams.get("theme"), "light", "not by reloading");
  await page.context().close();
});

test("two widgets on one page are independent", async () => {
  const page = await blogReader();
  await page.goto(hostPage("two", `<div data-chat-room="multi-a" data-theme="dark"></div><div data-chat-room="multi-b"></div>`));
  await waitReady(page, "multi-a");
  await waitReady(page, "multi-b");
  const a = await widget(page, "multi-a");
  const b = await widget(page, "multi-b");
  await a.locator("#online", { hasText: "1 online" }).waitFor();
  await b.locator("#online", { hasText: "1 online" }).waitFor();
  const heightB = await frameHeight(page, "multi-b");
  await a.locator("#input").fill("only in A");
  await a.locator("#input").press("Enter");
  await a.locator("#list [data-seq]", { hasText: "only in A" }).waitFor();
  await a.locator("#input").fill("again in A");
  await a.locator("#input").press("Enter");
  await until(async () => (await frameHeight(page, "multi-a")) > heightB, { message: "A to grow" });
  assert.equal(await frameHeight(page, "multi-b"), heightB, "B keeps its height");
  assert.equal(await b.locator("#list .msg").count(), 0);
  assert.equal(await theme(a), "theme-dark");
  assert.equal(await theme(b), "theme-light");
  assert.equal(await page.locator("iframe").count(), 2);
  await page.context().close();
});

test("messages from a foreign origin and malformed ones are ignored on both sides", async () => {
  const page = await blogReader();
  await page.emulateMedia({ colorScheme: "light" });
  const evilUrl = evil.page("/evil.html", "<!doctype html><p>ad</p>");
  await page.goto(hostPage("attacked", `<div data-chat-room="attacked"></div><iframe id="evil" src="${evilUrl}"></iframe>`));
  await waitReady(page, "attacked");
  const frame = await widget(page, "attacked");
  await connected(frame);
  // The frame follows the widget's own reports; wait until it has the last one (a report may still
  // be on its way right after connecting), and watch every height the frame takes from here on.
  const reported = () => frame.evaluate(() => Number(document.getElementById("app").dataset.height));
  await until(async () => (await frameHeight(page, "attacked")) === await reported(), { message: "the frame at the reported height" });
  await page.evaluate(() => {
    window.heights = [];
    new ResizeObserver(([entry]) => heights.push(entry.contentRect.height))
      .observe(document.querySelector('[data-chat-room="attacked"] iframe'));
  });
  await frame.evaluate(() => {
    window.themes = [];
    window.origins = [];
    addEventListener("message", (e) => origins.push(e.origin));
    new MutationObserver(() => themes.push(document.documentElement.className)).observe(document.documentElement, { attributes: true });
  });

  // Another origin's frame on the same page tries to restyle the widget and resize/announce to the host.
  const evilFrame = await page.locator("#evil").elementHandle().then((h) => h.contentFrame());
  await evilFrame.evaluate(() => {
    for (let i = 0; i < parent.frames.length; i++) parent.frames[i].postMessage({ chat: { setTheme: "dark" } }, "*");
    parent.postMessage({ chat: { resize: { height: 33 }, ready: { roomId: "attacked" }, unread: { count: 9 } } }, "*");
  });
  // The host itself sends junk, then one valid message; once that one is applied, everything
  // before it has been handled.
  await page.evaluate((origin) => {
    const w = document.querySelector('[data-chat-room="attacked"] iframe').contentWindow;
    for (const junk of ["junk", null, 42, { chat: null }, { chat: "x" }, { chat: { setTheme: "purple" } }, { chat: { setTheme: { x: 1 } } }])
      w.postMessage(junk, origin);
    w.postMessage({ chat: { setTheme: "auto" } }, origin);
  }, engine.origin);
  await frame.waitForFunction(() => document.documentElement.classList.contains("theme-auto"));
  assert.ok((await frame.evaluate(() => origins)).includes(evil.origin), "the foreign message did arrive");
  assert.ok((await frame.evaluate(() => themes)).every((c) => !c.includes("theme-dark")), "never dark");
  assert.equal(await readyCount(page, "attacked"), 1);
  assert.equal(await page.evaluate(() => events.filter((e) => e.type === "chat:unread").length), 0);
  assert.ok((await page.evaluate(() => heights)).every((h) => h !== 33), "the foreign resize was never applied");
  await until(async () => (await frameHeight(page, "attacked")) === await reported(), { message: "the frame at the reported height" });
  assert.deepEqual(page.errors ?? [], []);
  assert.deepEqual(page.csp, []);
  await page.context().close();
});

test("SPA: frames follow added, changed and removed divs; init/update/destroy; included twice", async () => {
  const page = await blogReader();
  await page.goto(hostPage("spa", `<main id="main"></main>`, { scripts: 2 }));
  await page.waitForFunction(() => window.ChatEmbed);
  await page.evaluate(() => { document.getElementById("main").innerHTML = '<div id="slot" data-chat-room="spa-1"></div>'; });
  await waitReady(page, "spa-1");
  assert.equal(await page.locator("iframe").count(), 1, "one frame even with the script twice");
  const iframe = await page.locator("#slot iframe").elementHandle();

  // Navigation in the SPA re-points the same frame to the new room.
  await page.evaluate(() => { document.getElementById("slot").dataset.chatRoom = "spa-2"; });
  await waitReady(page, "spa-2");
  assert.equal(await page.locator("iframe").count(), 1);
  assert.equal(await iframe.evaluate((el) => el.isConnected && new URL(el.src).pathname), "/room/spa-2");

  await page.evaluate(() => ChatEmbed.destroy(document.getElementById("slot")));
  assert.equal(await page.locator("iframe").count(), 0);
  await page.evaluate(() => ChatEmbed.update(document.getElementById("slot")));
  await page.locator("#slot iframe").waitFor();
  await page.evaluate(() => document.getElementById("slot").remove());
  await page.waitForFunction(() => !document.querySelector("iframe"));
  await page.evaluate(() => { document.getElementById("main").innerHTML = '<div data-chat-room="spa-3"></div>'; ChatEmbed.init(); });
  await waitReady(page, "spa-3");
  assert.equal(await page.locator("iframe").count(), 1);
  await page.context().close();
});

test("unread count reaches the host while its page is scrolled away from the chat", async () => {
  const page = await blogReader({ viewport: { width: 800, height: 600 } });
  await page.goto(hostPage("unread", `<div id="spacer" style="height:3000px"></div><div data-chat-room="unread" data-loading="eager"></div>`));
  await waitReady(page, "unread");
  const frame = await widget(page, "unread");
  await frame.locator("#online", { hasText: "1 online" }).waitFor();
  const other = await bot(browser, engine, "unread", "Other");
  await other.send(["you missed this", "and this"]);
  await page.waitForFunction(() => events.some((e) => e.type === "chat:unread" && e.detail.count === 2));
  await page.locator('[data-chat-room="unread"]').scrollIntoViewIfNeeded();
  await page.waitForFunction(() => events.at(-1).type === "chat:unread" && events.at(-1).detail.count === 0);
  await other.close();
  await page.context().close();
});

test("the host's <html lang> picks the widget's language and the frame's title", async () => {
  const page = await blogReader();
  await page.goto(hostPage("korean", `<div data-chat-room="ko-post"></div>`, { htmlAttrs: 'lang="ko-KR"' }));
  await waitReady(page, "ko-post");
  assert.equal(await page.locator("iframe").getAttribute("title"), "댓글 채팅");
  const frame = await widget(page, "ko-post");
  assert.equal(await frame.locator("#title").textContent(), "게시글 토론");
  const info = await api(engine, "/api/rooms/ko-post");
  assert.equal(info.status, 200);
  await page.context().close();
});
