// Reactions, replies and edits as readers use them, two browsers on the real engine: each sees the
// other's reactions, replies and edits live; a reply's quote jumps to an original that is not on
// the loaded page; Edit leaves an own message when the engine's edit window (short here) ends.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bot, launchBrowser, openRoom, reader, say, shownSeqs, startEngine } from "./helpers.mjs";

let engine, browser;
before(async () => {
  [engine, browser] = await Promise.all([
    startEngine({ args: ["--edit-window", "4", "--send-burst", "200", "--send-rate", "100", "--room-send-burst", "1000", "--room-send-rate", "1000"] }),
    launchBrowser(),
  ]);
});
after(async () => {
  await browser?.close();
  await engine?.kill();
});

const msg = (page, text) => page.locator("#list [data-seq]", { has: page.locator(".text", { hasText: text }) });

async function two(room, lang = "en") {
  // The same anonymousId on every load of the page (a reload is the same reader).
  const a = await reader(browser, { identity: { nickname: "Alice", anonymousId: crypto.randomUUID() } });
  const b = await reader(browser, { identity: { nickname: "Bob", avatar: "fox" } });
  await openRoom(a, engine, room, `lang=${lang}`);
  await openRoom(b, engine, room, `lang=${lang}`);
  return [a, b];
}

test("a reaction shows for both readers with counts, the reader's own pressed, and goes when taken back", async () => {
  const [a, b] = await two("react-live");
  await say(a, "react to this");
  await msg(b, "react to this").waitFor();

  // Bob opens the six emoji from the keyboard and picks the heart.
  await msg(b, "react to this").hover();
  await msg(b, "react to this").getByRole("button", { name: "Add a reaction" }).focus();
  await b.keyboard.press("Enter");
  const picker = b.getByRole("group", { name: "Reactions" });
  assert.equal(await picker.getByRole("button").count(), 6);
  assert.equal(await picker.getByRole("button", { name: "Thumbs up" }).evaluate((el) => el === document.activeElement), true, "focus moves into the picker");
  await b.keyboard.press("Escape");
  assert.equal(await picker.count(), 0, "Escape closes it");
  await msg(b, "react to this").getByRole("button", { name: "Add a reaction" }).click();
  await picker.getByRole("button", { name: "Heart" }).click();

  const bobsHeart = msg(b, "react to this").getByRole("button", { name: "Heart: 1" });
  const alicesHeart = msg(a, "react to this").getByRole("button", { name: "Heart: 1" });
  await bobsHeart.waitFor();
  await alicesHeart.waitFor();
  assert.equal(await bobsHeart.getAttribute("aria-pressed"), "true", "Bob's own reaction is marked");
  assert.equal(await alicesHeart.getAttribute("aria-pressed"), "false");
  assert.equal(await alicesHeart.textContent(), "❤️ 1");

  // Alice adds hers by pressing the count; Bob sees 2. Bob takes his back; both see 1.
  await alicesHeart.click();
  await msg(b, "react to this").getByRole("button", { name: "Heart: 2" }).waitFor();
  await msg(b, "react to this").getByRole("button", { name: "Heart: 2" }).click();
  await msg(a, "react to this").getByRole("button", { name: "Heart: 1" }).waitFor();
  assert.equal(await msg(a, "react to this").getByRole("button", { name: "Heart: 1" }).getAttribute("aria-pressed"), "true");

  // A reload remembers which reactions are Alice's own (welcome.myReactions).
  await a.reload();
  await msg(a, "react to this").getByRole("button", { name: "Heart: 1" }).waitFor();
  assert.equal(await msg(a, "react to this").getByRole("button", { name: "Heart: 1" }).getAttribute("aria-pressed"), "true");
  await a.context().close();
  await b.context().close();
});

test("a reply quotes its original for both readers; the quote follows an edit and a deletion (Korean)", async () => {
  const [a, b] = await two("reply-live", "ko");
  await say(a, "질문 있어요");
  await msg(b, "질문 있어요").hover();
  await msg(b, "질문 있어요").getByRole("button", { name: "답장" }).click();
  await b.locator("#context", { hasText: /Alice.님에게 답장: 질문 있어요/ }).waitFor();  // the name is bidi-isolated
  assert.ok(await b.locator("#input").evaluate((el) => el === document.activeElement), "the composer takes focus");
  await say(b, "여기 답이에요");
  assert.ok(await b.locator("#context").isHidden(), "back to a plain message after sending");
  for (const page of [a, b]) {
    const quote = msg(page, "여기 답이에요").locator(".quote");
    await quote.waitFor();
    assert.equal(await quote.textContent(), "Alice 질문 있어요");
  }

  // Alice edits the original: her bubble says (수정됨), and Bob's quote shows the new text.
  await msg(a, "질문 있어요").hover();
  await msg(a, "질문 있어요").getByRole("button", { name: "수정" }).click();
  await a.locator("#context", { hasText: "내 메시지 수정 중" }).waitFor();
  await a.locator("#input").fill("질문 하나 있어요");
  await a.locator("#input").press("Enter");
  await msg(b, "질문 하나 있어요").locator(".edited", { hasText: "(수정됨)" }).waitFor();
  await msg(b, "여기 답이에요").locator(".quote", { hasText: "질문 하나 있어요" }).waitFor();
  assert.deepEqual(await shownSeqs(b), [1, 2], "edited in place, nothing added");

  // Deleted: the quote keeps nothing of its text.
  await msg(a, "질문 하나 있어요").hover();
  const del = msg(a, "질문 하나 있어요").getByRole("button", { name: "삭제" });
  await del.click();
  await msg(a, "질문 하나 있어요").getByRole("button", { name: "삭제할까요?" }).click();
  await msg(b, "여기 답이에요").locator(".quote.gone", { hasText: "원래 메시지가 삭제되었어요." }).waitFor();
  assert.equal(await msg(b, "여기 답이에요").locator(".quote").textContent(), "원래 메시지가 삭제되었어요.");
  await a.context().close();
  await b.context().close();
});

test("Escape leaves an edit with the draft back; a reply can be cancelled", async () => {
  const [a, b] = await two("edit-cancel");
  await say(a, "first words");
  await msg(a, "first words").waitFor();
  await a.locator("#input").fill("a draft");
  await msg(a, "first words").hover();
  await msg(a, "first words").getByRole("button", { name: "Edit" }).click();
  assert.equal(await a.locator("#input").inputValue(), "first words");
  await a.locator("#input").press("Escape");
  assert.equal(await a.locator("#input").inputValue(), "a draft", "the draft comes back");
  assert.ok(await a.locator("#context").isHidden());
  await msg(a, "first words").hover();
  await msg(a, "first words").getByRole("button", { name: "Reply" }).click();
  await a.locator("#context").getByRole("button", { name: "Cancel" }).click();
  assert.ok(await a.locator("#context").isHidden());
  await a.context().close();
  await b.context().close();
});

test("pressing a quote whose original is pages above loads older history and highlights it", async () => {
  const room = "reply-jump";
  const seeder = await bot(browser, engine, room, "Seeder");
  const [original] = await seeder.send(["the very first question"]);
  // Two pages above the latest 50 (and under the engine's outbound queue: a frame per send and ack).
  await seeder.send(Array.from({ length: 110 }, (_, i) => `filler ${i + 1}`));
  // A reply to message 1, sent over the wire like any client would.
  await seeder.page.evaluate((seq) => window.bot.ws.send(JSON.stringify({ type: "send", clientId: crypto.randomUUID(), content: "answering the first", replyTo: seq })), original);
  const page = await reader(browser, { identity: { nickname: "Jumper" } });
  await openRoom(page, engine, room, "lang=en");
  const reply = msg(page, "answering the first");
  await reply.waitFor();
  assert.ok(!(await shownSeqs(page)).includes(original), "the original is not on the loaded page");
  await reply.getByRole("button", { name: /^Reply to .Seeder.: the very first question/ }).click();
  const target = page.locator(`#list [data-seq="${original}"]`);
  await target.waitFor();
  await page.waitForFunction((seq) => document.querySelector(`#list [data-seq="${seq}"]`)?.classList.contains("flash"), original);
  const inView = await target.evaluate((el) => {
    const list = document.getElementById("list").getBoundingClientRect(), box = el.getBoundingClientRect();
    return box.top >= list.top && box.bottom <= list.bottom;
  });
  assert.ok(inView, "scrolled to the original");
  await seeder.close();
  await page.context().close();
});

test("Edit is offered on the reader's own messages only, and goes when the edit window ends", async () => {
  const [a, b] = await two("edit-window");
  await say(a, "fresh message");
  await msg(b, "fresh message").waitFor();
  await msg(a, "fresh message").hover();
  const edit = msg(a, "fresh message").getByRole("button", { name: "Edit" });
  await edit.waitFor();
  assert.equal(await msg(b, "fresh message").getByRole("button", { name: "Edit" }).count(), 0, "not on others' messages");
  // The engine runs with --edit-window 4: the button leaves on its own after that.
  await edit.waitFor({ state: "detached", timeout: 8000 });
  assert.equal(await msg(a, "fresh message").getByRole("button", { name: "Edit" }).count(), 0);
  await a.context().close();
  await b.context().close();
});
