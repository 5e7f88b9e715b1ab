// Reader features of the widget page itself (opened directly, as a bare iframe would show it):
// identity, chatting live, own messages, pending/ack/retry, delete, text-only rendering, composer.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  api, bot, connected, launchBrowser, openRoom, reader, say, shownTexts, startEngine, tapSockets, until,
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

describe("first visit and identity", () => {
  test("the frame is drawn before the socket opens", async () => {
    const page = await reader(browser, { identity: { nickname: "Early" } });
    // The socket never reaches the engine: the reader still sees a complete, labelled widget.
    await page.routeWebSocket(/\/ws\//, () => {});
    await page.goto(`${engine.origin}/room/frame-first?lang=en&title=Hello%20post`);
    await page.getByRole("heading", { name: "Hello post" }).waitFor();
    assert.ok(await page.getByRole("textbox", { name: "Message" }).isVisible());
    assert.ok(await page.getByRole("button", { name: "Send" }).isVisible());
    assert.equal(await page.locator("#banner").textContent(), "Connecting…");
    await page.context().close();
  });

  test("nickname prompt: suggestion, 2-15 rule inline, saved and reused after reload", async () => {
    const page = await reader(browser, { locale: "en-US" });
    await page.goto(`${engine.origin}/room/first-visit`);
    const name = page.getByRole("textbox", { name: "Choose a nickname" });
    await name.waitFor();
    assert.match(await name.inputValue(), /^Anonymous \S+$/);
    assert.match(await page.locator("#nick-avatar").textContent(), /\p{Extended_Pictographic}/u);
    assert.ok(await page.locator("#composer").isHidden(), "composer waits for the first nickname");

    const rule = "Nickname must be 2–15 characters, without control characters.";
    for (const bad of ["x", " y ", "a".repeat(16)]) {
      await name.fill(bad);
      await page.getByRole("button", { name: "Save" }).click();
      await page.locator("#nick-err", { hasText: rule }).waitFor();
      assert.equal(await name.getAttribute("aria-invalid"), "true");
    }
    await name.fill("수달러버");  // 4 characters; Unicode counts as the server counts
    assert.equal(await page.locator("#nick-err").textContent(), "", "the message clears once the name is valid");
    assert.equal(await page.locator("#nick-err").getAttribute("role"), "alert");
    await name.press("Enter");
    await page.locator("#composer").waitFor();
    await connected(page);
    await say(page, "first words");
    const mine = page.locator("#list .msg.own[data-seq]");
    await mine.filter({ hasText: "first words" }).waitFor();
    assert.equal(await mine.locator(".name").textContent(), "수달러버");

    await page.reload();
    await connected(page);
    assert.ok(await page.locator("#nick").isHidden(), "no prompt on the next visit");
    assert.equal(await page.locator("#me").textContent().then((t) => t.includes("수달러버")), true);
    // Same anonymousId: the engine still knows the old message as ours.
    await page.locator("#list .msg.own[data-seq]").filter({ hasText: "first words" }).waitFor();
    await page.context().close();
  });

  test("Korean: strings, suggestion and time from lang=ko", async () => {
    const page = await reader(browser);
    await page.goto(`${engine.origin}/room/korean?lang=ko`);
    await page.getByRole("heading", { name: "게시글 토론" }).waitFor();
    assert.match(await page.locator("#nick-input").inputValue(), /^익명의 \S+$/);
    assert.equal(await page.locator("html").getAttribute("lang"), "ko");
    await page.locator("#nick-save").click();
    await connected(page);
    assert.match(await page.locator("#online").textContent(), /^1명 접속 중$/);
    assert.equal(await page.locator("#input").getAttribute("placeholder"), "메시지를 입력하세요…");
    await page.context().close();
  });

  test("the browser's language picks Korean when there is no lang param", async () => {
    const page = await reader(browser, { locale: "ko-KR", identity: { nickname: "물범" } });
    await openRoom(page, engine, "korean-auto");
    assert.equal(await page.locator("#title").textContent(), "게시글 토론");
    await page.context().close();
  });

  test("blocked storage: a per-tab identity, said discreetly, and a working widget", async () => {
    const page = await reader(browser);
    await page.addInitScript(() => {
      const deny = { get() { throw new DOMException("denied", "SecurityError"); } };
      Object.defineProperty(window, "localStorage", deny);
    });
    await page.goto(`${engine.origin}/room/no-storage?lang=en`);
    await page.locator("#nick-save").click();
    await connected(page);
    assert.match(await page.locator("#hint").textContent(), /this tab only/);
    await say(page, "still works");
    await page.locator("#list .msg.own[data-seq]").filter({ hasText: "still works" }).waitFor();
    assert.deepEqual(page.errors ?? [], []);
    assert.deepEqual(page.csp, []);
    await page.context().close();
  });
});

describe("chatting", () => {
  test("two readers see each other live; own messages marked; presence and typing", async () => {
    const a = await reader(browser, { identity: { nickname: "Ann", avatar: "fox" } });
    const b = await reader(browser, { identity: { nickname: "Bob", avatar: "owl" } });
    await openRoom(a, engine, "two-readers", "lang=en");
    await openRoom(b, engine, "two-readers", "lang=en");
    await a.locator("#online", { hasText: "2 online" }).waitFor();

    // The participant list: avatars and nicknames, opened from the online count.
    await a.locator("#online").click();
    assert.equal(await a.locator("#online").getAttribute("aria-expanded"), "true");
    await a.locator("#people li", { hasText: "Bob" }).waitFor();
    assert.deepEqual(await a.locator("#people .name").allTextContents().then((n) => n.sort()), ["Ann", "Bob"]);
    await a.keyboard.press("Escape");
    assert.ok(await a.locator("#people-box").isHidden());

    await b.locator("#input").pressSequentially("hel");
    // Names in running text are isolated (FSI…PDI) so a right-to-left name cannot reorder it.
    await a.locator("#typing", { hasText: "\u2068Bob\u2069 is typing…" }).waitFor();

    await b.locator("#input").fill("hello Ann");
    await b.locator("#input").press("Enter");
    await a.locator("#list .msg[data-seq]", { hasText: "hello Ann" }).waitFor();
    assert.equal(await a.locator("#typing").textContent(), "", "a message ends its author's typing");
    await say(a, "hi Bob");
    await b.locator("#list .msg[data-seq]", { hasText: "hi Bob" }).waitFor();

    // Own message: marked, right-aligned, another background; the other's: plain, left.
    const other = a.locator("#list .msg", { hasText: "hello Ann" });
    await a.locator("#list .msg.own[data-seq]", { hasText: "hi Bob" }).waitFor();
    assert.doesNotMatch(await other.getAttribute("class"), /\bown\b/);
    // Measured in one step inside the page: the ack and then the server's copy of an own message
    // each draw its bubble again, and a bubble measured across that is already detached.
    const looks = await a.locator("#list").evaluate((list) => {
      const bubble = (text) => {
        const el = [...list.querySelectorAll(".msg")].find((m) => m.textContent.includes(text)).querySelector(".bubble");
        const r = el.getBoundingClientRect();
        return { left: r.left, right: r.right, bg: getComputedStyle(el).backgroundColor };
      };
      const box = list.getBoundingClientRect();
      return { mid: box.left + box.width / 2, own: bubble("hi Bob"), other: bubble("hello Ann") };
    });
    assert.ok(looks.own.left > looks.mid, "own bubble sits at the right");
    assert.ok(looks.other.right < looks.mid, "other bubble sits at the left");
    assert.notEqual(looks.own.bg, looks.other.bg);
    // Avatar, nickname and a relative time with the absolute one in its title.
    assert.equal(await other.locator(".name").textContent(), "Bob");
    assert.equal(await other.locator(".avatar").textContent(), "🦉");
    assert.equal(await other.locator("time").textContent(), "just now");
    assert.match(await other.locator("time").getAttribute("title"), /\d{4}/);

    // Screen readers hear the other reader's message.
    await a.locator("#live", { hasText: "\u2068Bob\u2069: hello Ann" }).waitFor({ state: "attached" });

    await b.context().close();
    await a.locator("#online", { hasText: "1 online" }).waitFor();
    await a.context().close();
  });

  test("Enter sends, Shift+Enter adds a line, the counter shows near 2000", async () => {
    const page = await reader(browser, { identity: { nickname: "Keys" } });
    await openRoom(page, engine, "composer", "lang=en");
    const input = page.locator("#input");
    await input.pressSequentially("line one");
    await input.press("Shift+Enter");
    await input.pressSequentially("line two");
    assert.equal(await input.inputValue(), "line one\nline two");
    assert.equal(await page.locator("#list .msg").count(), 0);
    await input.press("Enter");
    const sent = page.locator("#list .msg[data-seq] .text");
    await sent.waitFor();
    assert.equal(await sent.textContent(), "line one\nline two");
    assert.equal(await input.inputValue(), "");

    assert.ok(await page.locator("#count").isHidden());
    await input.fill("x".repeat(1900));
    assert.equal(await page.locator("#count").textContent(), "1900/2000");
    await input.fill("x".repeat(2001));
    assert.match(await page.locator("#count").getAttribute("class"), /over/);
    assert.ok(await page.locator("#send").isDisabled());
    await input.press("Enter");
    assert.equal(await page.locator("#list .msg").count(), 1, "an over-long message is not sent");
    await page.context().close();
  });

  test("a message shows as pending with its clientId until the ack confirms it", async () => {
    const page = await reader(browser, { identity: { nickname: "Patient" } });
    const tap = await tapSockets(page);
    await openRoom(page, engine, "pending", "lang=en");
    tap.hold((f) => f.type === "ack" || f.type === "message");
    await say(page, "wait for it");
    const li = page.locator("#list .msg", { hasText: "wait for it" });
    await li.locator(".status", { hasText: "Sending…" }).waitFor();
    assert.match(await li.getAttribute("class"), /pending/);
    const clientId = await li.getAttribute("data-client-id");
    await until(() => tap.out("send").length === 1);
    assert.equal(tap.out("send")[0].clientId, clientId);
    tap.release();
    await page.locator("#list .msg[data-seq]", { hasText: "wait for it" }).waitFor();
    assert.doesNotMatch(await li.getAttribute("class"), /pending/);
    assert.equal(await page.locator("#list .msg").count(), 1);
    await page.context().close();
  });

  test("a refused send shows why and its retry reuses the clientId (no duplicate)", async () => {
    // One send per second: the second of two quick sends is refused by the real rate limit.
    const slow = await startEngine({ args: ["--send-rate", "1", "--send-burst", "1"] });
    try {
      const page = await reader(browser, { identity: { nickname: "Hasty" } });
      const tap = await tapSockets(page);
      await openRoom(page, slow, "retry", "lang=en");
      await say(page, "one");
      await say(page, "two");
      const failed = page.locator("#list .msg.failed", { hasText: "two" });
      // The engine says when a token is back (about a second at 1/s): the reader is told, in seconds.
      await failed.locator(".status", { hasText: /^Slow down — try again in [12] s$/ }).waitFor();
      assert.ok(tap.in("error")[0].retryAfterMs > 0, "the refusal carries retryAfterMs");
      const clientId = await failed.getAttribute("data-client-id");
      assert.equal(tap.in("error")[0].clientId, clientId);
      // Retry until the bucket has refilled; every attempt carries the same clientId.
      const stored = page.locator("#list .msg[data-seq]", { hasText: "two" });
      await until(async () => {
        if (await stored.count()) return true;
        const retry = page.locator(`#list [data-client-id="${clientId}"] button`, { hasText: "Retry" });
        if (await retry.count()) await retry.click();
        return false;
      }, { interval: 250, message: "the retried message to be stored" });
      assert.ok(tap.out("send").filter((f) => f.content === "two").every((f) => f.clientId === clientId));
      const { body } = await api(slow, "/api/rooms/retry/messages");
      assert.deepEqual(body.messages.map((m) => [m.content, m.clientId === clientId]), [["one", false], ["two", true]]);
      await page.context().close();
    } finally {
      await slow.kill();
    }
  });

  test("own messages can be deleted; moderated ones vanish for everyone", async () => {
    const a = await reader(browser, { identity: { nickname: "Author" } });
    const b = await reader(browser, { identity: { nickname: "Watcher" } });
    await openRoom(a, engine, "deleting", "lang=en");
    await openRoom(b, engine, "deleting", "lang=en");
    await say(a, "oops");
    await say(a, "keep me");
    await b.locator("#list .msg[data-seq]", { hasText: "keep me" }).waitFor();
    assert.equal(await b.locator("#list").getByRole("button", { name: "Delete" }).count(), 0, "no delete on others' messages");

    const oops = a.locator("#list .msg", { hasText: "oops" });
    await oops.getByRole("button", { name: "Delete" }).click();
    await oops.getByRole("button", { name: "Delete?" }).click();  // second step confirms
    await oops.waitFor({ state: "detached" });
    await b.locator("#list .msg", { hasText: "oops" }).waitFor({ state: "detached" });

    const seq = await b.locator("#list .msg", { hasText: "keep me" }).getAttribute("data-seq");
    const res = await api(engine, `/api/rooms/deleting/messages/${seq}`, { method: "DELETE", headers: { authorization: "Bearer T" } });
    assert.equal(res.status, 200);
    await a.locator("#list .msg", { hasText: "keep me" }).waitFor({ state: "detached" });
    await b.locator("#list .msg", { hasText: "keep me" }).waitFor({ state: "detached" });
    await a.context().close();
    await b.context().close();
  });

  test("the reader changes nickname and avatar later; others see the new name", async () => {
    const a = await reader(browser, { identity: { nickname: "Before", avatar: "otter" } });
    const b = await reader(browser, { identity: { nickname: "Other" } });
    await openRoom(a, engine, "rename", "lang=en");
    await openRoom(b, engine, "rename", "lang=en");
    await a.getByRole("button", { name: /Change nickname/ }).click();
    const name = a.getByRole("textbox", { name: "Choose a nickname" });
    assert.equal(await name.inputValue(), "Before");
    await name.fill("After");
    await a.locator("#nick-avatar").click();  // next animal
    await name.press("Enter");
    assert.match(await a.locator("#me").textContent(), /After/);
    assert.doesNotMatch(await a.locator("#me").textContent(), /🦦/);
    await b.locator("#online").click();
    await b.locator("#people .name", { hasText: "After" }).waitFor();
    await say(a, "renamed");
    await b.locator("#list .msg[data-seq]", { hasText: "renamed" }).locator(".name", { hasText: "After" }).waitFor();
    // Escape cancels a later change without saving it.
    await a.locator("#me").click();
    await a.locator("#nick-input").fill("Discarded");
    await a.keyboard.press("Escape");
    assert.ok(await a.locator("#nick").isHidden());
    assert.match(await a.locator("#me").textContent(), /After/);
    await a.context().close();
    await b.context().close();
  });
});

describe("content is text", () => {
  test("HTML in nicknames and messages renders as text; URLs become safe links; long words wrap", async () => {
    const evil = await bot(browser, engine, "xss", "<img src=x>");
    const page = await reader(browser, { identity: { nickname: "<b>me</b>" } });
    await openRoom(page, engine, "xss", "lang=en");
    const payloads = [
      `<img src=x onerror="window.__xss=1">`,
      `<script>window.__xss=2</script>`,
      `"><svg onload=window.__xss=3>`,
      "see https://example.com/a?b=1&c=<2>, and javascript:alert(1)",
      "w".repeat(400),
    ];
    await evil.send(payloads);
    await say(page, `<i onmouseover=window.__xss=4>hover</i>`);
    await page.locator("#list .msg[data-seq]").nth(5).waitFor();
    assert.deepEqual(await shownTexts(page), [...payloads, `<i onmouseover=window.__xss=4>hover</i>`]);
    assert.equal(await page.locator("#list img, #list svg:not(.icon > svg), #list script, #list i, #list b").count(), 0);
    assert.deepEqual(await page.locator("#list .name").allTextContents(), [...payloads.map(() => "<img src=x>"), "<b>me</b>"]);
    assert.equal(await page.evaluate(() => window.__xss), undefined);

    const links = page.locator("#list a");
    assert.equal(await links.count(), 1, "only the http(s) URL is a link");
    assert.equal(await links.textContent(), "https://example.com/a?b=1&c=");
    assert.equal(await links.getAttribute("rel"), "nofollow ugc noopener");
    assert.equal(await links.getAttribute("target"), "_blank");

    const overflow = await page.locator("#list").evaluate((el) => el.scrollWidth - el.clientWidth);
    assert.ok(overflow <= 0, `the long word wraps (overflow ${overflow}px)`);
    await evil.close();
    await page.context().close();
  });
});
