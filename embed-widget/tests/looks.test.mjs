// How the widget looks and keeps its place: the newest message stays in view when the composer or
// the nickname form changes height, presence while reconnecting, emoji avatars, message actions,
// the empty room, grouping, day dividers, relative times, and the transparent theme.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ANIMALS } from "../strings.js";
import { bot, connected, launchBrowser, openRoom, reader, startEngine, tapSockets } from "./helpers.mjs";

let engine, browser;
before(async () => {
  const args = ["--send-burst", "100", "--send-rate", "50", "--spam-link-messages", "0"];
  [engine, browser] = await Promise.all([startEngine({ args }), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await engine?.kill();
});

// How far the newest message's bubble reaches below the list's visible bottom (<= 0: fully in view),
// measured once layout has settled (two frames after the last change).
async function hiddenBelow(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return page.evaluate(() => {
    const list = document.getElementById("list");
    const last = [...list.querySelectorAll(".msg")].at(-1).querySelector(".bubble");
    return Math.round(last.getBoundingClientRect().bottom - list.getBoundingClientRect().bottom);
  });
}

describe("the newest message stays in view", () => {
  test("after a four-line message typed with Shift+Enter", async () => {
    const seeder = await bot(browser, engine, "pinned-lines", "Other");
    await seeder.send(Array.from({ length: 12 }, (_, i) => `earlier message ${i + 1}`));
    const page = await reader(browser, { identity: { nickname: "Writer" } });
    await openRoom(page, engine, "pinned-lines", "lang=en");
    const input = page.locator("#input");
    await input.click();
    for (const line of ["first line", "second line", "third line"]) {
      await input.pressSequentially(line);
      await input.press("Shift+Enter");
    }
    await input.pressSequentially("fourth line");
    const growing = await hiddenBelow(page);
    assert.ok(growing <= 0, `${growing}px below the fold while the composer grows`);
    await input.press("Enter");
    await page.locator("#list .msg[data-seq]", { hasText: "fourth line" }).waitFor();
    const hidden = await hiddenBelow(page);
    assert.ok(hidden <= 0, `the sent message is ${hidden}px below the fold`);
    await seeder.close();
    await page.context().close();
  });

  test("on a 360 px phone, after the nickname form closes and after a two-line message", async () => {
    const seeder = await bot(browser, engine, "pinned-phone", "Other");
    await seeder.send(Array.from({ length: 12 }, (_, i) => `earlier message ${i + 1}`));
    const page = await reader(browser, { viewport: { width: 360, height: 640 }, isMobile: true, hasTouch: true });
    await page.goto(`${engine.origin}/room/pinned-phone?lang=en`);
    await page.locator("#list .msg[data-seq]", { hasText: "earlier message 12" }).waitFor();
    await page.locator("#nick-save").click();
    await page.locator("#composer").waitFor();
    let hidden = await hiddenBelow(page);
    assert.ok(hidden <= 0, `after the nickname form: ${hidden}px below the fold`);
    const input = page.locator("#input");
    await input.pressSequentially("two lines");
    await input.press("Shift+Enter");
    await input.pressSequentially("on a phone");
    await input.press("Enter");
    await page.locator("#list .msg[data-seq]", { hasText: "on a phone" }).waitFor();
    hidden = await hiddenBelow(page);
    assert.ok(hidden <= 0, `after a two-line message: ${hidden}px below the fold`);
    await seeder.close();
    await page.context().close();
  });
});

test("while reconnecting the online count is shown as unknown, not as the last number", async () => {
  const other = await bot(browser, engine, "stale-presence", "Other");
  const page = await reader(browser, { identity: { nickname: "Roamer" } });
  const tap = await tapSockets(page);
  await openRoom(page, engine, "stale-presence", "lang=en");
  const online = page.locator("#online");
  await online.filter({ hasText: "2 online" }).waitFor();
  const dot = () => online.evaluate((el) => getComputedStyle(el, "::before").color);
  const green = await dot();

  tap.blocked = true;
  tap.drop();
  await page.locator("#banner", { hasText: "Reconnecting…" }).waitFor();
  assert.equal(await online.textContent(), "— online");
  assert.notEqual(await dot(), green, "the dot is no longer the connected green");

  tap.blocked = false;
  await connected(page);
  await online.filter({ hasText: "2 online" }).waitFor({ timeout: 15000 });
  assert.equal(await dot(), green);
  await other.close();
  await page.context().close();
});

// A colour emoji ignores the CSS color; a monochrome outline glyph is drawn in it.
async function drawnInColour(locator) {
  const shot = async (color) => {
    await locator.evaluate((el, c) => { el.style.color = c; }, color);
    return locator.screenshot({ animations: "disabled" });
  };
  const [red, blue] = [await shot("rgb(255, 0, 0)"), await shot("rgb(0, 0, 255)")];
  await locator.evaluate((el) => { el.style.color = ""; });
  return red.equals(blue);
}

test("every avatar animal is drawn as a colour emoji, in messages and on the reader's own button", async () => {
  const room = "emoji-avatars";
  const seeder = await bot(browser, engine, room, "Animal");
  for (const avatar of Object.keys(ANIMALS)) {
    await seeder.page.evaluate((avatar) => window.bot.ws.send(JSON.stringify({ type: "rename", nickname: "Animal", avatar })), avatar);
    await seeder.send([`I am the ${avatar}`]);
  }
  const page = await reader(browser, { identity: { nickname: "Cat person", avatar: "cat" } });
  await openRoom(page, engine, room, "lang=en");
  const mono = [];
  for (const avatar of Object.keys(ANIMALS)) {
    const msg = page.locator("#list .msg[data-seq]", { hasText: `I am the ${avatar}` });
    assert.equal(await msg.locator(".avatar").textContent(), ANIMALS[avatar]);
    if (!await drawnInColour(msg.locator(".avatar"))) mono.push(avatar);
  }
  assert.deepEqual(mono, [], "drawn as monochrome outlines");
  assert.ok(await drawnInColour(page.locator("#me .emoji")), "the cat on the reader's own button");
  await seeder.close();
  await page.context().close();
});
