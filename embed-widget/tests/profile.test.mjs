// The reader's profile (anonymous id, nickname, avatar) across reloads, widgets and tabs, in real
// Chromium against the real engine. Where the browser gives the embedded frame no storage (a blog
// on another site, `localhost` vs the engine's `127.0.0.1`, with third-party storage partitioning
// off), embed.js keeps the profile in the blog's own storage and hands it over by postMessage;
// elsewhere the frame keeps it and the blog never sees it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connected, launchBrowser, reader, startEngine, startHost, until } from "./helpers.mjs";

let engine, host, evil, browsers;
before(async () => {
  [engine, host, evil, ...browsers] = await Promise.all([
    startEngine(),
    startHost(),
    startHost(),  // a third origin, whose messages must change nothing
    launchBrowser(),
    launchBrowser({ partitioned: true }),
  ]);
});
after(async () => {
  await Promise.all((browsers || []).map((b) => b?.close()));
  await host?.close();
  await evil?.close();
  await engine?.kill();
});

/** A blog post embedding `rooms` with the README's snippet; `crossSite` serves it from `localhost`. */
function blog(name, rooms, { crossSite = true, extra = "" } = {}) {
  const url = host.page(`/${name}.html`, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Post</title></head><body>
<h1>A post</h1>
<script src="${engine.origin}/embed.js" async></script>
${rooms.map((room) => `<div data-chat-room="${room}" style="min-height:480px"></div>`).join("\n")}
${extra}
</body></html>`);
  return crossSite ? url.replace("127.0.0.1", "localhost") : url;
}

/** The widget frame showing `room` on `page`, once it is connected. */
async function widget(page, room) {
  const frame = await until(() => page.frames().find((f) => f.url().startsWith(`${engine.origin}/room/${room}?`)), { message: `the ${room} frame` });
  await connected(frame);
  return frame;
}

const frameStorage = (frame) => frame.evaluate(() => { try { localStorage.setItem("x", "1"); return true; } catch { return false; } });
const hostProfile = (page) => page.evaluate(() => localStorage.getItem("chat.profile"));
const own = (frame, text) => frame.locator("#list .msg.own[data-seq]", { has: frame.locator(".text", { hasText: text }) });

async function nameMyself(frame, nickname) {
  await frame.locator("#nick-input").fill(nickname);
  await frame.locator("#nick-save").click();
  await frame.locator("#composer").waitFor();
}

describe("where the embedded frame has no storage (another site, partitioning off)", () => {
  test("the blog page keeps the profile: a reload keeps the name, the avatar and the reader's own messages", async () => {
    const page = await reader(browsers[0]);
    const url = blog("keeps", ["keeps"]);
    await page.goto(url);
    let frame = await widget(page, "keeps");
    assert.equal(await frameStorage(frame), false, "this browser gives the frame no storage");
    await frame.locator("#nick").waitFor();
    await frame.locator("#nick-avatar").click();  // another animal than the one suggested
    const avatar = await frame.locator("#nick-avatar").textContent();
    await nameMyself(frame, "Keeper");
    assert.ok(await frame.locator("#hint").isHidden(), "nothing to warn about: the identity outlives the tab");
    await frame.locator("#input").fill("my words");
    await frame.locator("#input").press("Enter");
    await own(frame, "my words").getByRole("button", { name: "Delete" }).waitFor({ state: "attached" });

    // The blog page holds it, readable by its own scripts (the README says so).
    const kept = JSON.parse(await hostProfile(page));
    assert.equal(kept.nickname, "Keeper");
    assert.match(kept.anonymousId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    await page.reload();
    frame = await widget(page, "keeps");
    assert.ok(await frame.locator("#nick").isHidden(), "no nickname prompt after the reload");
    assert.equal(await frame.locator("#me").textContent(), `${avatar} \u2068Keeper\u2069`);
    await own(frame, "my words").getByRole("button", { name: "Delete" }).waitFor({ state: "attached" });
    assert.deepEqual(page.errors ?? [], []);
    await page.context().close();
  });

  test("only the engine's frame and the blog page talk: other windows get nothing and change nothing", async () => {
    const page = await reader(browsers[0]);
    const evilUrl = evil.page("/ad.html", "<!doctype html><p>ad</p>");
    await page.goto(blog("guarded", ["guarded"], { extra: `<iframe id="ad" src="${evilUrl}"></iframe>` }));
    const frame = await widget(page, "guarded");
    await nameMyself(frame, "Guarded");
    const before = await hostProfile(page);

    // An ad frame on the same page asks the blog page for the profile, offers it a new one, and
    // tries to rename the widget; the blog page itself sends the widget junk.
    const ad = await page.locator("#ad").elementHandle().then((h) => h.contentFrame());
    await ad.evaluate(() => {
      window.heard = [];
      addEventListener("message", (e) => { if (e.source !== window) heard.push(e.data); });
      parent.postMessage({ chat: { getProfile: {} } }, "*");
      parent.postMessage({ chat: { profile: { anonymousId: crypto.randomUUID(), nickname: "Hijacked", avatar: "fox" } } }, "*");
      for (let i = 0; i < parent.frames.length; i++) {
        parent.frames[i].postMessage({ chat: { profile: { anonymousId: "x", nickname: "Hijacked", avatar: "fox" } } }, "*");
      }
    });
    await page.evaluate((origin) => {
      const w = document.querySelector("[data-chat-room] iframe").contentWindow;
      for (const junk of [{ chat: { profile: null } }, { chat: { profile: { nickname: 5 } } }, { chat: { profile: "Hijacked" } }]) w.postMessage(junk, origin);
      // A valid message last: once it is applied, everything before it has been handled.
      w.postMessage({ chat: { setTheme: "dark" } }, origin);
    }, engine.origin);
    await frame.waitForFunction(() => document.documentElement.classList.contains("theme-dark"));
    assert.equal(await hostProfile(page), before, "the blog page kept its profile");
    assert.deepEqual(await ad.evaluate(() => heard), [], "the ad frame heard nothing back");
    assert.match(await frame.locator("#me").textContent(), /Guarded/);
    await page.context().close();
  });
});

describe("profiles stay in sync", () => {
  test("two widgets on one page: naming yourself in one names you in the other, and in its room", async () => {
    for (const crossSite of [false, true]) {
      const page = await reader(browsers[0]);
      const rooms = [`sync-a-${crossSite}`, `sync-b-${crossSite}`];
      await page.goto(blog(`sync-${crossSite}`, rooms, { crossSite }));
      const [a, b] = [await widget(page, rooms[0]), await widget(page, rooms[1])];
      assert.equal(await frameStorage(a), !crossSite);
      await a.locator("#nick").waitFor();
      await b.locator("#nick").waitFor();
      await nameMyself(a, "Twice");
      // The other widget drops its prompt and takes the name, also for the people in its room.
      await b.locator("#composer").waitFor();
      await b.locator("#me", { hasText: "Twice" }).waitFor();
      assert.equal(await b.locator("#me").textContent(), await a.locator("#me").textContent(), "the same avatar too");
      await b.locator("#online").click();
      await b.locator("#people .person.own", { hasText: "Twice" }).waitFor();
      await page.context().close();
    }
  });

  test("another tab of the blog takes a new name at once, with and without the frame's own storage", async () => {
    for (const crossSite of [false, true]) {
      const first = await reader(browsers[0]);
      const url = blog(`tabs-${crossSite}`, [`tabs-${crossSite}`], { crossSite });
      await first.goto(url);
      const a = await widget(first, `tabs-${crossSite}`);
      await nameMyself(a, "Before");
      const second = await first.context().newPage();
      await second.goto(url);
      const b = await widget(second, `tabs-${crossSite}`);
      await b.locator("#me", { hasText: "Before" }).waitFor();
      await a.locator("#me").click();
      await nameMyself(a, "After");
      await b.locator("#me", { hasText: "After" }).waitFor();
      await first.context().close();
    }
  });
});

describe("where the frame has storage of its own (partitioning on)", () => {
  test("the frame keeps the profile itself: it survives a reload and the blog page never sees it", async () => {
    const page = await reader(browsers[1]);
    await page.goto(blog("partitioned", ["partitioned"]));
    let frame = await widget(page, "partitioned");
    assert.equal(await frameStorage(frame), true, "partitioned storage");
    await nameMyself(frame, "Private");
    await page.reload();
    frame = await widget(page, "partitioned");
    assert.match(await frame.locator("#me").textContent(), /Private/);
    assert.equal(await hostProfile(page), null, "the blog page holds no profile");
    await page.context().close();
  });
});
