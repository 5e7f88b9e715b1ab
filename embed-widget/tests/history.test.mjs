// Scrolling: the latest 50 on join, older pages on scroll-up without moving what the reader looks
// at, following new messages at the bottom, and the "N new messages" pill when scrolled up.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bot, launchBrowser, openRoom, reader, say, shownSeqs, startEngine } from "./helpers.mjs";

let engine, browser, seeder;
before(async () => {
  [engine, browser] = await Promise.all([
    // Seeding sends a few hundred messages at once: lift the reader's and the room's send limits.
    startEngine({ args: ["--send-burst", "200", "--send-rate", "100", "--room-send-burst", "1000", "--room-send-rate", "1000"] }),
    launchBrowser(),
  ]);
  seeder = await bot(browser, engine, "long", "Seeder");
  await seeder.send(Array.from({ length: 120 }, (_, i) => `old message ${i + 1}`));
});
after(async () => {
  await browser?.close();
  await engine?.kill();
});

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("50 latest on join, older ones on scroll-up without the viewport jumping", async () => {
  const page = await reader(browser, { identity: { nickname: "Scroller" } });
  await openRoom(page, engine, "long", "lang=en");
  assert.deepEqual(await shownSeqs(page), range(71, 120));
  const list = page.locator("#list");
  assert.ok(await list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2), "starts at the newest");

  // Scroll to the top: the next 50 load above; the message that was on top stays where it was.
  const anchor = page.locator('#list [data-seq="71"]');
  await list.evaluate((el) => { el.scrollTop = 0; });
  const before = (await anchor.boundingBox()).y;
  await page.locator('#list [data-seq="21"]').waitFor({ state: "attached" });
  await page.waitForFunction(() => !document.getElementById("list").hasAttribute("aria-busy"));
  assert.ok(Math.abs((await anchor.boundingBox()).y - before) <= 1, "the viewport kept its place");
  assert.deepEqual(await shownSeqs(page), range(21, 120));

  // The last page is short: everything down to seq 1, and no further requests after that.
  const requests = [];
  page.on("request", (r) => { if (r.url().includes("/messages?")) requests.push(r.url()); });
  await list.evaluate((el) => { el.scrollTop = 0; });
  await page.locator('#list [data-seq="1"]').waitFor({ state: "attached" });
  await page.waitForFunction(() => !document.getElementById("list").hasAttribute("aria-busy"));
  assert.deepEqual(await shownSeqs(page), range(1, 120));
  await list.evaluate((el) => { el.scrollTop = 1; el.scrollTop = 0; });
  await page.evaluate(() => new Promise(requestAnimationFrame));
  assert.equal(requests.length, 1, "no request once the start of the room is reached");
  await page.context().close();
});

test("follows new messages at the bottom; scrolled up shows the pill, which jumps down", async () => {
  const page = await reader(browser, { identity: { nickname: "Follower" } });
  await openRoom(page, engine, "long", "lang=en");
  const list = page.locator("#list");
  const atBottom = () => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2);

  await seeder.send(["live one"]);
  await page.locator("#list [data-seq]", { hasText: "live one" }).waitFor();
  await page.waitForFunction(() => { const el = document.getElementById("list"); return el.scrollHeight - el.scrollTop - el.clientHeight < 2; });
  assert.ok(await page.locator("#pill").isHidden());

  // The reader scrolls up a little (not to the top, which would load older history).
  await list.evaluate((el) => { el.scrollTop = el.scrollHeight - el.clientHeight - 300; });
  const top = await list.evaluate((el) => el.scrollTop);
  await seeder.send(["while away 1", "while away 2"]);
  const pill = page.getByRole("button", { name: "2 new messages ↓" });
  await pill.waitFor();
  assert.equal(await list.evaluate((el) => el.scrollTop), top, "the reader's place is kept");
  await pill.click();
  await page.waitForFunction(() => { const el = document.getElementById("list"); return el.scrollHeight - el.scrollTop - el.clientHeight < 2; });
  assert.ok(await page.locator("#pill").isHidden());
  assert.ok(await page.locator("#input").evaluate((el) => el === document.activeElement), "focus goes to the input");

  // Scrolled up, the reader's own message brings them down.
  await list.evaluate((el) => { el.scrollTop = el.scrollHeight - el.clientHeight - 300; });
  await say(page, "my own");
  await page.locator("#list [data-seq]", { hasText: "my own" }).waitFor();
  assert.ok(await atBottom());
  await page.context().close();
});
