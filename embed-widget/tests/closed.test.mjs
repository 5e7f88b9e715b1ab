// A closed (locked) room and the pinned message, as readers see them: the owner locks, reopens, pins
// and unpins through the admin API while widgets are open, and the widgets follow live.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  api, artifactsDir, bot, connected, contrast, launchBrowser, openRoom, reader, say, startEngine, tapSockets,
  textContrasts, until,
} from "./helpers.mjs";

let engine, browser;
before(async () => {
  // Seeders post links straight away, as readers who have been around would: the rule for new
  // readers' links is off here (spam.test.mjs covers it).
  const args = ["--admin-token", "T", "--spam-link-messages", "0"];
  [engine, browser] = await Promise.all([startEngine({ args }), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await engine?.kill();
});

/** An admin API call with the bearer token; fails the test unless it succeeds. */
async function admin(method, p, body) {
  const res = await api(engine, p, {
    method,
    headers: { authorization: "Bearer T", ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  assert.equal(res.status, 200, `${method} ${p}: ${JSON.stringify(res.body)}`);
  return res.body;
}
const lock = (room) => admin("PUT", `/api/rooms/${room}/lock`);
const unlock = (room) => admin("DELETE", `/api/rooms/${room}/lock`);
const pin = (room, seq) => admin("PUT", `/api/rooms/${room}/pin`, { seq });
const unpin = (room) => admin("DELETE", `/api/rooms/${room}/pin`);

/** Opens a room that may be locked (then #me never shows, so openRoom's wait does not apply). */
async function open(page, room, query = "lang=en") {
  await page.goto(`${engine.origin}/room/${room}?${query}`);
  await connected(page);
  return page;
}

/** The widget shows a closed room: the line saying so, no composer, no nickname prompt. */
async function seesClosed(page, text = "This discussion is closed.") {
  await page.locator("#composer").waitFor({ state: "hidden" });
  await page.locator("#closed").waitFor();
  assert.equal(await page.locator("#closed").textContent(), text);
  assert.equal(await page.locator("#closed").getAttribute("role"), "status");
  assert.ok(await page.locator("#nick").isHidden(), "no nickname prompt");
  assert.ok(await page.locator("#me").isHidden(), "no nickname button");
}

describe("closed rooms", () => {
  test("lock and reopen reach open widgets without a reload; the reopened composer works", async () => {
    const a = await reader(browser, { identity: { nickname: "Ann" } });
    const b = await reader(browser, { identity: { nickname: "유나" }, locale: "ko-KR" });
    await openRoom(a, engine, "lock-live", "lang=en");
    await openRoom(b, engine, "lock-live", "lang=ko");
    await a.locator("#input").focus();
    for (const p of [a, b]) await p.evaluate(() => { window.sameDocument = true; });

    await lock("lock-live");
    await seesClosed(a);
    await seesClosed(b, "토론이 닫혔습니다.");
    assert.ok(await a.locator("#list").evaluate((el) => el === document.activeElement), "focus moves to the list");

    await unlock("lock-live");
    for (const p of [a, b]) {
      await p.locator("#composer").waitFor();
      await p.locator("#closed").waitFor({ state: "hidden" });
      assert.ok(await p.locator("#me").isVisible());
      assert.equal(await p.evaluate(() => window.sameDocument), true, "no reload");
    }
    await say(a, "open again");
    await b.locator("#list .msg[data-seq]").filter({ hasText: "open again" }).waitFor();
    for (const p of [a, b]) {
      assert.deepEqual(p.errors ?? [], []);
      await p.context().close();
    }
  });

  test("a send that reaches a locked room fails with the closed text and is not retried", async () => {
    const page = await reader(browser, { identity: { nickname: "Late" } });
    const tap = await tapSockets(page);
    await openRoom(page, engine, "lock-send", "lang=en");
    // The `room` frame is held back: the reader still has a composer when the lock lands.
    tap.hold((f) => f.type === "room");
    await lock("lock-send");
    await until(() => tap.held.length === 1, { message: "the room frame" });
    await say(page, "too late");
    const failed = page.locator("#list .msg.failed");
    await failed.waitFor();
    assert.equal(await failed.locator(".status").textContent(), "This discussion is closed.");
    assert.equal(await failed.locator(".text").textContent(), "too late", "what was typed is kept");
    assert.deepEqual(tap.in("error").map((f) => f.code), ["room_locked"]);
    await seesClosed(page);  // the error alone says the room is closed
    tap.release();

    // A new connection does not send it again either.
    tap.drop();
    await until(() => tap.in("welcome").length === 2, { message: "the second welcome" });
    await connected(page);
    await seesClosed(page);
    assert.equal(tap.out("send").length, 1, "sent once");
    assert.equal(await page.locator("#list .msg.failed").count(), 1);
    await page.context().close();
  });

  test("a first-time reader in a locked room gets no nickname prompt", async () => {
    await lock("lock-first");
    const page = await reader(browser, { locale: "en-US" });
    await open(page, "lock-first");
    await seesClosed(page);
    await page.context().close();
  });
});

describe("pinned message", () => {
  test("pin, replace and unpin reach an open widget live: at the top, labelled, reachable", async () => {
    const seeder = await bot(browser, engine, "pin-live", "\u05d3\u05d5\u05d1 Dov", "fox");
    const long = Array.from({ length: 40 }, (_, i) => `line ${i} of a long pinned note`).join(" ");
    const [first, second] = await seeder.send(["Welcome! Please read https://example.com/rules first.", long]);
    const page = await reader(browser, { identity: { nickname: "Reader" } });
    await openRoom(page, engine, "pin-live", "lang=en");
    const box = page.locator("#pin");
    assert.ok(await box.isHidden(), "no pin yet");

    await pin("pin-live", first);
    await box.waitFor();
    await page.locator("#pin .text", { hasText: "Please read" }).waitFor();
    const region = page.getByRole("region", { name: "Pinned" });
    assert.equal(await region.count(), 1, "a region named by its label");
    assert.equal(await box.getAttribute("data-seq"), String(first));
    assert.equal(await box.locator(".name").textContent(), "\u05d3\u05d5\u05d1 Dov");
    assert.equal(await box.locator(".name").evaluate((el) => getComputedStyle(el).unicodeBidi), "isolate");
    assert.equal(await box.locator("a").getAttribute("href"), "https://example.com/rules");
    const [pinBox, listBox] = [await box.boundingBox(), await page.locator("#list").boundingBox()];
    assert.ok(pinBox.y + pinBox.height <= listBox.y + 1, "above the list");

    // Keyboard: Tab from the top reaches the pinned message.
    await page.locator("body").click({ position: { x: 1, y: 1 } });
    const stops = [];
    for (let i = 0; i < 5 && stops.at(-1) !== "pin"; i++) {
      await page.keyboard.press("Tab");
      stops.push(await page.evaluate(() => document.activeElement.id));
    }
    assert.equal(stops.at(-1), "pin", `Tab stops: ${stops}`);

    // Another pin replaces it; a long text is clamped to three lines.
    await page.locator("#input").focus();
    await pin("pin-live", second);
    await page.locator("#pin .text", { hasText: "line 39" }).waitFor({ state: "attached" });
    const clamp = await page.locator("#pin .text").evaluate((el) => ({
      shown: el.clientHeight, full: el.scrollHeight, line: parseFloat(getComputedStyle(el).lineHeight),
    }));
    assert.ok(clamp.full > clamp.shown, `clamped: ${JSON.stringify(clamp)}`);
    assert.ok(clamp.shown <= clamp.line * 3 + 1, `three lines at most: ${JSON.stringify(clamp)}`);

    await unpin("pin-live");
    await box.waitFor({ state: "hidden" });
    assert.equal(await page.locator("#pin .text").count(), 0);
    assert.deepEqual(page.errors ?? [], []);
    await seeder.close();
    await page.context().close();
  });

  test("deleting the pinned message removes the pin", async () => {
    const seeder = await bot(browser, engine, "pin-delete", "Dora");
    const [seq] = await seeder.send(["about to go"]);
    await pin("pin-delete", seq);
    const page = await reader(browser, { identity: { nickname: "Reader" } });
    await openRoom(page, engine, "pin-delete", "lang=en");
    await page.locator("#pin").waitFor();
    await seeder.page.evaluate((seq) => window.bot.ws.send(JSON.stringify({ type: "delete", seq })), seq);
    await page.locator("#pin").waitFor({ state: "hidden" });
    await seeder.close();
    await page.context().close();
  });
});

describe("locked room with a pin", () => {
  test("a reader joining sees both at once, in both themes, at 320 px, with AA contrast", async () => {
    const dir = artifactsDir("screenshots");
    const seeder = await bot(browser, engine, "closed-pinned", "Blog owner", "owl");
    const [seq] = await seeder.send([
      "Thanks for all the comments! Summary of the answers: https://example.com/faq — this thread is now closed, " +
        "questions go to the new post. Long notes like this one are clamped to three lines in the pinned box.",
      "Great post, thanks.",
    ]);
    await pin("closed-pinned", seq);
    await lock("closed-pinned");

    // Taps the frames: the first welcome alone brings both, no later frame is needed.
    const page = await reader(browser, { identity: { nickname: "Anonymous Fox", avatar: "fox" }, viewport: { width: 320, height: 560 } });
    const tap = await tapSockets(page);
    await open(page, "closed-pinned", "lang=en&title=Backpressure%20in%20practice");
    await seesClosed(page);
    await page.locator("#pin").waitFor();
    assert.deepEqual(tap.in("room").concat(tap.in("pinned")), []);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 320), "no sideways scroll at 320 px");

    for (const theme of ["light", "dark"]) {
      await page.evaluate((t) => { document.documentElement.className = `theme-${t}`; }, theme);
      const failures = (await textContrasts(page))
        .map((c) => ({ ...c, ratio: contrast(c.fg, c.bg) }))
        .filter((c) => c.ratio < (c.min ?? 4.5));
      assert.deepEqual(failures, [], theme);
      for (const [label, width] of [["desktop", 720], ["320", 320]]) {
        await page.setViewportSize({ width, height: 560 });
        await page.screenshot({ path: path.join(dir, `widget-closed-${theme}-${label}.png`) });
      }
    }
    assert.deepEqual(page.errors ?? [], []);
    assert.deepEqual(page.csp, []);
    await seeder.close();
    await page.context().close();
  });
});
