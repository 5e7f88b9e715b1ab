// Counts for post lists: embed.js on a blog page of another origin fills every
// <span data-chat-count> with "N messages · M online" (Korean or English), asking the engine once
// for all the spans on the page (in chunks of 50 rooms), and fills spans added later too.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bot, launchBrowser, reader, startEngine, startHost } from "./helpers.mjs";

let engine, browser, host;
const bots = [];
before(async () => {
  [engine, browser, host] = await Promise.all([
    startEngine({ args: ["--send-burst", "100", "--send-rate", "50"] }),
    launchBrowser(),
    startHost(),
  ]);
  // post-a: 12 messages and three readers online; post-b: 1 message, one reader; post-c: nothing.
  const [a1, a2, a3, b1] = await Promise.all([
    bot(browser, engine, "post-a", "Ann"),
    bot(browser, engine, "post-a", "Bo"),
    bot(browser, engine, "post-a", "Cy"),
    bot(browser, engine, "post-b", "Di"),
  ]);
  bots.push(a1, a2, a3, b1);
  await a1.send(Array.from({ length: 12 }, (_, i) => `message ${i + 1}`));
  await b1.send(["only one"]);
});
after(async () => {
  await Promise.all(bots.map((b) => b.close()));
  await browser?.close();
  await engine?.kill();
  await host?.close();
});

function listPage(name, lang, spans) {
  return host.page(`/${name}.html`, `<!doctype html>
<html lang="${lang}"><head><meta charset="utf-8"><title>Posts</title></head>
<body><ul>${spans}</ul><script src="${engine.origin}/embed.js" async></script></body></html>`);
}

/** A reader's page that records every counts request the page makes. */
async function countingPage() {
  const page = await reader(browser);
  page.countRequests = [];
  page.on("request", (req) => {
    if (new URL(req.url()).pathname === "/api/rooms") page.countRequests.push(new URL(req.url()).searchParams.get("ids"));
  });
  return page;
}

const texts = (page) => page.$$eval("[data-chat-count]", (els) => els.map((el) => el.textContent));
const allFilled = (page) => page.waitForFunction(() => [...document.querySelectorAll("[data-chat-count]")].every((el) => el.textContent));

test("an English list page: every span filled with the right numbers, one request for all", async () => {
  const page = await countingPage();
  await page.goto(listPage("en", "en", `
    <li>A <span data-chat-count="post-a"></span></li>
    <li>B <span data-chat-count="post-b"></span></li>
    <li>C <span data-chat-count="post-c"></span></li>
    <li>A again <span data-chat-count="post-a"></span></li>
    <li>A in Korean <span data-chat-count="post-a" data-lang="ko"></span></li>`));
  await allFilled(page);
  assert.deepEqual(await texts(page), [
    "12 messages · 3 online",
    "1 message · 1 online",
    "0 messages · 0 online",
    "12 messages · 3 online",
    "메시지 12개 · 3명 접속 중",
  ]);
  assert.deepEqual(page.countRequests, ["post-a,post-b,post-c"], "one request, each room once");
  assert.deepEqual(page.errors ?? [], []);
  await page.context().close();
});

test("a Korean list page, and a span added later (SPA) is filled too", async () => {
  const page = await countingPage();
  await page.goto(listPage("ko", "ko", `
    <li><span data-chat-count="post-a"></span></li>
    <li><span data-chat-count="post-c"></span></li>`));
  await allFilled(page);
  assert.deepEqual(await texts(page), ["메시지 12개 · 3명 접속 중", "메시지 0개 · 0명 접속 중"]);
  assert.equal(page.countRequests.length, 1);

  await page.evaluate(() => {
    const li = document.createElement("li");
    li.innerHTML = '<span data-chat-count="post-b" data-lang="en"></span>';
    document.querySelector("ul").append(li);
  });
  await allFilled(page);
  assert.equal((await texts(page))[2], "1 message · 1 online");
  assert.deepEqual(page.countRequests, ["post-a,post-c", "post-b"], "only the new span's room is asked about");
  await page.context().close();
});

test("sixty posts on one page: two requests of at most 50 rooms", async () => {
  const page = await countingPage();
  const spans = Array.from({ length: 60 }, (_, i) => `<li><span data-chat-count="list-${i}"></span></li>`).join("");
  await page.goto(listPage("sixty", "en", spans));
  await allFilled(page);
  assert.ok((await texts(page)).every((t) => t === "0 messages · 0 online"));
  assert.deepEqual(page.countRequests.map((ids) => ids.split(",").length), [50, 10]);
  await page.context().close();
});
