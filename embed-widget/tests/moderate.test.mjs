// The owner's seat inside the widget embedded on the blog, and readers' reports, in real Chromium
// against the real engine. The blog is another site (localhost vs the engine's 127.0.0.1), so the
// owner's session cookie never reaches the frame: the grant comes from the admin page's popup.
// Run with third-party storage partitioning off (playwright's default) and on (readers' browsers).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import path from "node:path";
import { api, artifactsDir, bot, connected, launchBrowser, openRoom, reader, startEngine, startHost, until } from "./helpers.mjs";

const TOKEN = "owner-token";
let engine, host, browsers;
before(async () => {
  [engine, host, ...browsers] = await Promise.all([
    startEngine({ args: ["--admin-token", TOKEN, "--auto-hide-reports", "2"] }),
    startHost(),
    launchBrowser(),
    launchBrowser({ partitioned: true }),
  ]);
});
after(async () => {
  await Promise.all((browsers || []).map((b) => b?.close()));
  await host?.close();
  await engine?.kill();
});

/** The blog's post page on another site, with the embed.js one-liner, and what it hears. */
async function blogPost(page, room) {
  const url = host.page(`/${room}.html`, `<!doctype html><html lang="en"><body>
<h1>A post</h1>
<script src="${engine.origin}/embed.js" async></script>
<div data-chat-room="${room}" data-loading="eager"></div>
<script>window.heard = []; addEventListener("message", (e) => window.heard.push(JSON.stringify(e.data)));</script>
</body></html>`).replace("127.0.0.1", "localhost");
  await page.goto(url);
  const frame = await until(() => page.frames().find((f) => f.url().startsWith(`${engine.origin}/room/`)), { message: "the widget frame" });
  await frame.locator("#mod").waitFor();
  await connected(frame);
  return frame;
}

/** Resolves once the popup has closed itself (it may have done so already). */
const closed = (popup) => (popup.isClosed() ? Promise.resolve() : popup.waitForEvent("close"));

/** A message's element in a widget, by its text. */
const bubble = (frame, text) => frame.locator("#list .msg", { has: frame.locator(".text", { hasText: text }) });

for (const [mode, index] of [["partitioning off", 0], ["partitioning on", 1]]) {
  describe(`moderator mode in the embedded widget (${mode})`, () => {
    test("the owner signs in through the popup and deletes, pins, closes and bans from the blog itself", async () => {
      const browser = browsers[index];
      const room = `mod-${index}`;
      const readerPage = await reader(browser, { identity: { nickname: "Visitor" } });
      await openRoom(readerPage, engine, room, "lang=en");
      const seeder = await bot(browser, engine, room, "Spammer");
      await seeder.send(["buy cheap followers", "a fine question"]);

      const owner = await reader(browser, { identity: { nickname: "Owner" } });
      if (index === 1) {
        // Signed in on the admin page earlier: the popup hands the grant over at once.
        await owner.goto(`${engine.origin}/admin?lang=en`);
        await owner.locator("#token").fill(TOKEN);
        await owner.locator("#sign-in-btn").click();
        await owner.locator("#sign-out").waitFor();
      }
      const frame = await blogPost(owner, room);
      await bubble(frame, "a fine question").waitFor();
      assert.equal(await bubble(frame, "a fine question").getByRole("button", { name: "Delete" }).count(), 0, "a reader's view first");
      assert.equal(await frame.locator("#mod").textContent(), "Moderate");

      const [popup] = await Promise.all([owner.waitForEvent("popup"), frame.locator("#mod").click()]);
      if (index === 0) {
        await popup.locator("#token").fill(TOKEN);
        await popup.locator("#sign-in-btn").click();
      }
      await closed(popup);
      await frame.locator("#app.moderating").waitFor();
      assert.equal(await frame.locator("#mod").textContent(), "Stop moderating");
      assert.equal(await frame.locator("#mod").getAttribute("aria-pressed"), "true");
      await owner.screenshot({ path: path.join(artifactsDir("moderate"), `owner-widget-${index}.png`) });
      const heard = await owner.evaluate(() => window.heard.join("\n"));
      assert.doesNotMatch(heard, /moderatorGrant/, "the blog's page never sees the grant");

      // Delete (two steps), as every reader sees.
      const spam = bubble(frame, "buy cheap followers");
      await spam.getByRole("button", { name: "Delete" }).click();
      await spam.getByRole("button", { name: "Delete?" }).click();
      await bubble(readerPage, "buy cheap followers").waitFor({ state: "detached" });
      await spam.waitFor({ state: "detached" });

      // Pin, then the pinned banner offers Unpin in the owner's widget.
      await bubble(frame, "a fine question").getByRole("button", { name: "Pin" }).click();
      await readerPage.locator("#pin", { hasText: "a fine question" }).waitFor();
      await bubble(frame, "a fine question").getByRole("button", { name: "Unpin" }).waitFor();
      await frame.locator("#pin").getByRole("button", { name: "Unpin" }).click();
      await readerPage.locator("#pin").waitFor({ state: "hidden" });

      // Close and reopen the discussion.
      await frame.locator("#lock", { hasText: "Close discussion" }).click();
      await readerPage.locator("#closed").waitFor();
      await frame.locator("#lock", { hasText: "Reopen discussion" }).click();
      await readerPage.locator("#composer").waitFor();

      // Ban the reader for a day: it is told at once.
      await readerPage.locator("#input").fill("still here");
      await readerPage.locator("#input").press("Enter");
      const visitor = bubble(frame, "still here");
      await visitor.getByRole("button", { name: "Ban" }).click();
      await visitor.getByRole("group", { name: /Ban .*Visitor.* for/ }).getByRole("button", { name: "1 day" }).click();
      await frame.locator("#banner", { hasText: /Visitor.* is banned for 1 day/ }).waitFor();
      await readerPage.locator("#banner", { hasText: "You can't take part in this chat." }).waitFor();
      const bans = await api(engine, "/api/admin/bans", { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.ok(bans.body.bans.some((b) => b.room === room), JSON.stringify(bans.body));

      // The mode lasts for the tab (a reload keeps it) until the owner stops it.
      await owner.reload();
      const again = await until(() => owner.frames().find((f) => f.url().startsWith(`${engine.origin}/room/`)));
      if (index === 1) {
        // The frame's (partitioned) storage keeps the grant for the tab.
        await again.locator("#app.moderating").waitFor();
      } else {
        // This browser gives the embedded frame no storage at all: the grant lived in memory, so
        // the owner asks again, and the popup, signed in now, hands it over without a question.
        await connected(again);
        assert.equal(await again.locator("#app.moderating").count(), 0);
        const [popup2] = await Promise.all([owner.waitForEvent("popup"), again.locator("#mod").click()]);
        await closed(popup2);
        await again.locator("#app.moderating").waitFor();
      }
      await again.locator("#mod").click();
      await again.locator("#app:not(.moderating)").waitFor();
      assert.equal(await bubble(again, "a fine question").getByRole("button", { name: "Pin" }).count(), 0);

      await seeder.close();
      await Promise.all([owner.context().close(), readerPage.context().close()]);
    });
  });
}

describe("readers' reports in the widget", () => {
  test("two readers' reports hide a message from everyone; the owner keeping it brings it back in place", async () => {
    const browser = browsers[1];
    const room = "reports-widget";
    const seeder = await bot(browser, engine, room, "Writer");
    await seeder.send(["first", "something rude", "last"]);
    const [a, b, c] = await Promise.all(["Reader A", "Reader B", "Reader C"].map(async (nickname) => {
      const page = await reader(browser, { identity: { nickname } });
      return openRoom(page, engine, room, "lang=en");
    }));
    await a.locator("#input").fill("my own words");
    await a.locator("#input").press("Enter");
    await a.locator("#list .msg.own[data-seq]", { hasText: "my own words" }).waitFor();
    assert.equal(await bubble(a, "my own words").getByRole("button", { name: "Report" }).count(), 0, "no Report on one's own message");

    await a.screenshot({ path: path.join(artifactsDir("moderate"), "reader-report.png") });
    for (const page of [a, b]) {
      const rude = bubble(page, "something rude");
      await rude.getByRole("button", { name: "Report" }).click();
      await rude.getByRole("button", { name: "Report?" }).click();
      if (page === a) {
        await rude.getByRole("button", { name: "Reported" }).waitFor();
        assert.ok(await rude.getByRole("button", { name: "Reported" }).isDisabled());
        await page.locator("#banner", { hasText: "Thanks — the blog owner will take a look." }).waitFor();
      }
    }
    // The second distinct reader's report hides it for every reader.
    for (const page of [a, b, c]) await bubble(page, "something rude").waitFor({ state: "detached" });
    const queue = await api(engine, "/api/admin/reports", { headers: { authorization: `Bearer ${TOKEN}` } });
    const entry = queue.body.reports.find((r) => r.room === room);
    assert.equal(entry.reports, 2);
    assert.equal(entry.hidden, true);

    // The owner keeps it: back between its neighbours, for everyone, without a reload.
    const kept = await api(engine, `/api/rooms/${room}/reports/${entry.seq}`, { method: "DELETE", headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(kept.status, 200);
    for (const page of [a, b, c]) {
      await bubble(page, "something rude").waitFor();
      const texts = await page.locator("#list .msg .text").allTextContents();
      assert.deepEqual(texts.slice(0, 3), ["first", "something rude", "last"]);
    }
    await seeder.close();
    await Promise.all([a, b, c].map((p) => p.context().close()));
  });
});
