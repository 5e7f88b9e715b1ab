// Spam defences as readers see them: a link from a reader new to the room is refused with a
// localized message on the failed bubble (Korean and English), and the owner's slow mode shows
// as a line by the composer, live, and goes when it is turned off.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { api, launchBrowser, openRoom, reader, say, startEngine } from "./helpers.mjs";

let engine, browser;
before(async () => {
  [engine, browser] = await Promise.all([startEngine({ args: ["--admin-token", "T"] }), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await engine?.kill();
});

async function slowMode(room, seconds) {
  const res = await api(engine, `/api/rooms/${room}/slow-mode`, {
    method: "PUT",
    headers: { authorization: "Bearer T", "content-type": "application/json" },
    body: JSON.stringify({ seconds }),
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

describe("spam", () => {
  for (const [lang, locale, text] of [
    ["en", "en-US", "New here? You can post links after a few messages or a few minutes."],
    ["ko", "ko-KR", "처음 오셨나요? 메시지를 몇 개 보내거나 몇 분 지나면 링크를 올릴 수 있어요."],
  ]) {
    test(`a new reader's link is refused with the ${lang} message and the text is kept`, async () => {
      const page = await reader(browser, { identity: { nickname: "Newbie" }, locale });
      await openRoom(page, engine, `spam-links-${lang}`, `lang=${lang}`);
      await say(page, "great deals at https://example.com/offer");
      const failed = page.locator("#list .msg.failed", { hasText: "https://example.com/offer" });
      await failed.locator(".status", { hasText: text }).waitFor();
      assert.equal(await failed.locator("button").count(), 2, "Retry and Discard stay");
      await page.context().close();
    });
  }

  test("the slow-mode line appears and goes live, in English and Korean", async () => {
    const room = "spam-slow";
    const en = await reader(browser, { identity: { nickname: "Ann" } });
    const ko = await reader(browser, { identity: { nickname: "유나" }, locale: "ko-KR" });
    await openRoom(en, engine, room, "lang=en");
    await openRoom(ko, engine, room, "lang=ko");
    assert.ok(await en.locator("#slow").isHidden(), "no line while slow mode is off");
    await slowMode(room, 30);
    await en.locator("#slow", { hasText: "Slow mode: one message every 30 s" }).waitFor();
    await ko.locator("#slow", { hasText: "슬로 모드: 30초에 한 번만 보낼 수 있어요" }).waitFor();
    // A reader who opens the room now learns it from the welcome.
    const late = await reader(browser, { identity: { nickname: "Late" } });
    await openRoom(late, engine, room, "lang=en");
    await late.locator("#slow", { hasText: "every 30 s" }).waitFor();
    // The second message within the window fails with when to try again.
    await say(en, "first one");
    await en.locator("#list .msg:not(.pending):not(.failed)", { hasText: "first one" }).waitFor();
    await say(en, "second one");
    await en.locator("#list .msg.failed", { hasText: "second one" }).locator(".status", { hasText: /^Slow down — try again in \d+ s$/ }).waitFor();
    await slowMode(room, 0);
    await en.locator("#slow").waitFor({ state: "hidden" });
    await ko.locator("#slow").waitFor({ state: "hidden" });
    for (const p of [en, ko, late]) await p.context().close();
  });
});
