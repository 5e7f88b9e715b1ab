// How the widget looks and keeps its place: the newest message stays in view when the composer or
// the nickname form changes height, presence while reconnecting, emoji avatars, message actions,
// the empty room, grouping, day dividers, relative times, and the transparent theme.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ANIMALS } from "../strings.js";
import { bot, connected, contrast, launchBrowser, openRoom, reader, say, startEngine, startHost, tapSockets } from "./helpers.mjs";

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

describe("looks", () => {
  test("own messages: a Delete icon button shown on hover or focus (always on touch screens), no repeated name", async () => {
    const page = await reader(browser, { identity: { nickname: "Icon User" } });
    await openRoom(page, engine, "actions", "lang=en");
    const other = await bot(browser, engine, "actions", "Other");
    await other.send(["from someone else"]);
    await say(page, "mine");
    const mine = page.locator("#list .msg[data-seq]", { hasText: "mine" });
    await mine.waitFor();
    const del = mine.getByRole("button", { name: "Delete" });
    assert.equal((await del.textContent()).trim(), "", "an icon, not the word");
    assert.equal(await del.getAttribute("title"), "Delete", "the name is also the tooltip");
    assert.equal(await del.evaluate((el) => getComputedStyle(el).textDecorationLine), "none");
    const shown = () => mine.locator(".tools").evaluate((el) => getComputedStyle(el).opacity);
    await page.mouse.move(1, 1);
    assert.equal(await shown(), "0", "hidden until pointed at");
    await mine.hover();
    assert.equal(await shown(), "1", "shown on hover");
    await page.mouse.move(1, 1);
    await del.focus();
    assert.equal(await shown(), "1", "shown while focused");

    // The own name is not repeated on the own bubble (screen readers still get it); others' names show.
    const width = (l) => l.locator(".name").evaluate((el) => el.getBoundingClientRect().width);
    assert.ok(await width(mine) <= 1, "own name not shown");
    assert.equal(await mine.locator(".name").textContent(), "Icon User");
    assert.ok(await width(page.locator("#list .msg", { hasText: "from someone else" })) > 10, "the other's name shows");

    const touch = await reader(browser, { identity: { nickname: "Thumb" }, hasTouch: true, isMobile: true, viewport: { width: 360, height: 640 } });
    await openRoom(touch, engine, "actions", "lang=en");
    await say(touch, "from a phone");
    const onPhone = touch.locator("#list .msg[data-seq]", { hasText: "from a phone" });
    await onPhone.waitFor();
    assert.equal(await onPhone.locator(".tools").evaluate((el) => getComputedStyle(el).opacity), "1", "always shown on touch");
    await other.close();
    await touch.context().close();
    await page.context().close();
  });

  test("an empty room invites the first message, in English and Korean", async () => {
    const page = await reader(browser, { identity: { nickname: "First" } });
    await openRoom(page, engine, "empty-room", "lang=en");
    const prompt = page.getByText("No messages yet — say hello!");
    await prompt.waitFor({ timeout: 5000 });
    await say(page, "hello");
    await prompt.waitFor({ state: "hidden", timeout: 5000 });
    const ko = await reader(browser, { identity: { nickname: "처음" } });
    await openRoom(ko, engine, "empty-room-ko", "lang=ko");
    await ko.getByText("아직 메시지가 없어요 — 먼저 인사해 보세요!").waitFor({ timeout: 5000 });
    await page.context().close();
    await ko.context().close();
  });

  test("a rounded container with a border; no empty strip above the composer, typing moves nothing", async () => {
    const page = await reader(browser, { identity: { nickname: "Looker" } });
    await openRoom(page, engine, "container", "lang=en");
    const style = await page.locator("#app").evaluate((el) => {
      const s = getComputedStyle(el);
      return { radius: parseFloat(s.borderTopLeftRadius), border: s.borderTopWidth, color: s.borderTopColor, page: getComputedStyle(document.body).backgroundColor };
    });
    assert.ok(style.radius >= 8, `rounded (${style.radius}px)`);
    assert.equal(style.border, "1px");
    assert.notEqual(style.color, "rgba(0, 0, 0, 0)");
    assert.equal(style.page, "rgba(0, 0, 0, 0)", "outside the corners the host shows through");

    const gap = () => page.evaluate(() => document.getElementById("composer").getBoundingClientRect().top
      - document.querySelector(".body").getBoundingClientRect().bottom);
    assert.equal(await gap(), 0, "the composer sits right under the messages");
    const composerTop = () => page.locator("#composer").evaluate((el) => el.getBoundingClientRect().top);
    const before = await composerTop();
    const other = await bot(browser, engine, "container", "Typist");
    await other.page.evaluate(() => window.bot.ws.send(JSON.stringify({ type: "typing" })));
    await page.locator("#typing", { hasText: "Typist" }).waitFor();
    assert.ok(await page.locator("#typing").isVisible());
    assert.equal(await composerTop(), before, "the typing line moves nothing");
    await other.close();
    await page.context().close();
  });

  for (const theme of ["light", "dark"]) {
    test(`the disabled Send button is plainly disabled and still readable (${theme})`, async () => {
      const page = await reader(browser, { identity: { nickname: "Sender" } });
      await openRoom(page, engine, "send-button", `lang=en&theme=${theme}`);
      const send = page.getByRole("button", { name: "Send", exact: true });
      const look = () => send.evaluate((el) => {
        const s = getComputedStyle(el);
        return { opacity: s.opacity, fg: s.color, bg: s.backgroundColor };
      });
      assert.ok(await send.isDisabled());
      const off = await look();
      await page.locator("#input").fill("something");
      const on = await look();
      assert.equal(off.opacity, "1", "not faded out");
      assert.notEqual(off.bg, on.bg, "not the enabled button's colour");
      const ratio = contrast(off.fg, off.bg);
      assert.ok(ratio >= 4.5, `label contrast ${ratio.toFixed(2)}`);
      await page.context().close();
    });
  }
});

describe("the timeline", () => {
  test("one author's consecutive messages share one header", async () => {
    const ann = await bot(browser, engine, "grouping", "Ann", "fox");
    const bob = await bot(browser, engine, "grouping", "Bob", "owl");
    await ann.send(["ann 1", "ann 2", "ann 3"]);
    await bob.send(["bob 1"]);
    await ann.send(["ann 4"]);
    const page = await reader(browser, { identity: { nickname: "Reader" } });
    await openRoom(page, engine, "grouping", "lang=en");
    const header = (text) => page.locator("#list .msg", { hasText: text }).evaluate((li) => {
      const shown = (el) => el.getBoundingClientRect().width > 1 && getComputedStyle(el).visibility !== "hidden";
      return [shown(li.querySelector(".avatar")), shown(li.querySelector(".name"))];
    });
    const headers = [];
    for (const text of ["ann 1", "ann 2", "ann 3", "bob 1", "ann 4"]) headers.push(await header(text));
    assert.deepEqual(headers, [[true, true], [false, false], [false, false], [true, true], [true, true]]);
    // Deleting a group's first message hands its header to the next one.
    const first = await page.locator("#list .msg", { hasText: "ann 1" }).getAttribute("data-seq");
    await ann.page.evaluate((seq) => window.bot.ws.send(JSON.stringify({ type: "delete", seq })), Number(first));
    await page.locator("#list .msg", { hasText: "ann 1" }).waitFor({ state: "detached" });
    assert.deepEqual(await header("ann 2"), [true, true]);
    await ann.close();
    await bob.close();
    await page.context().close();
  });

  // The engine stamps messages with the current time; the test moves the welcome's history back
  // by whole days on its way to the page, as a room written over several days would arrive.
  async function openAged(page, room, query, daysBack) {
    await page.routeWebSocket(/\/ws\//, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        const f = JSON.parse(m);
        if (f.type === "welcome") {
          f.history.forEach((msg, i) => { msg.createdAt = new Date(Date.parse(msg.createdAt) - daysBack[i] * 864e5).toISOString(); });
        }
        ws.send(JSON.stringify(f));
      });
    });
    await openRoom(page, engine, room, query);
  }

  for (const [lang, today, yesterday] of [["en", "Today", "Yesterday"], ["ko", "오늘", "어제"]]) {
    test(`day dividers between days, in the reader's language (${lang})`, async () => {
      const room = `days-${lang}`;
      const seeder = await bot(browser, engine, room, "Writer");
      await seeder.send(["long ago", "also long ago", "yesterday's", "today's"]);
      const page = await reader(browser, { identity: { nickname: "Reader" } });
      await openAged(page, room, `lang=${lang}`, [3, 3, 1, 0]);
      const dividers = page.getByRole("separator");
      assert.equal(await dividers.count(), 3);
      const names = await dividers.evaluateAll((els) => els.map((el) => el.getAttribute("aria-label")));
      assert.deepEqual(names.slice(1), [yesterday, today]);
      assert.match(names[0], /\d/, "an older day by its date");
      assert.ok(!names[0].includes(today) && !names[0].includes(yesterday));
      await page.getByRole("separator", { name: yesterday }).waitFor();
      // Each divider sits right above its day's first message.
      const firstOfDay = await page.locator("#list .msg").evaluateAll((els) => els.filter((el) => el.querySelector(".day")).map((el) => el.querySelector(".text").textContent));
      assert.deepEqual(firstOfDay, ["long ago", "yesterday's", "today's"]);
      // An older message shows its clock time (the divider gives the day); the full date is in the title.
      const old = page.locator("#list .msg", { hasText: "yesterday's" }).locator("time");
      assert.match(await old.textContent(), /\d{1,2}:\d{2}/);
      assert.match(await old.getAttribute("title"), /\d{4}/);
      assert.ok(await old.getAttribute("datetime"));
      // A new day's first message starts a new header even from the same author.
      assert.ok(await page.locator("#list .msg", { hasText: "yesterday's" }).locator(".avatar").isVisible());
      await seeder.close();
      await page.context().close();
    });
  }

  test("relative times count up in place, without drawing the list again", async () => {
    const page = await reader(browser, { identity: { nickname: "Clock" } });
    await page.clock.install();
    await openRoom(page, engine, "ticking", "lang=en");
    await say(page, "tick");
    const msg = page.locator("#list .msg[data-seq]", { hasText: "tick" });
    const time = msg.locator("time");
    await time.filter({ hasText: "just now" }).waitFor();
    await msg.evaluate((el) => { el.marked = true; });
    await page.clock.runFor(2 * 60 * 1000);
    assert.equal(await time.textContent(), "2 minutes ago");
    assert.ok(await msg.evaluate((el) => el.marked === true), "the same element, updated in place");
    assert.match(await time.getAttribute("title"), /\d{4}/);
    await page.context().close();
  });
});

describe("theme=transparent", () => {
  // The colour of one pixel of the page as drawn (a screenshot decoded in the page itself).
  async function pixel(page, x, y) {
    const png = await page.screenshot({ clip: { x, y, width: 1, height: 1 } });
    return page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = new OffscreenCanvas(1, 1), g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const [r, gr, b] = g.getImageData(0, 0, 1, 1).data;
      return `rgb(${r}, ${gr}, ${b})`;
    }, png.toString("base64"));
  }

  test("embed.js data-chat-theme=transparent: the blog's own background behind the widget, light text on a dark blog", async () => {
    const host = await startHost();
    try {
      const HOST_BG = "rgb(17, 24, 39)";
      const url = host.page("/dark-blog.html", `<!doctype html><html class="dark"><head><meta charset="utf-8"><title>Blog</title></head>
<body style="margin:0;background:${HOST_BG};color:#eee;color-scheme:dark"><h1>A dark post</h1>
<div data-chat-room="transparent-room" data-chat-theme="transparent" data-lang="en"></div>
<script src="${engine.origin}/embed.js" async></script></body></html>`);
      const page = await reader(browser, { identity: { nickname: "Night reader" } });
      await page.goto(url);
      const frame = await (await page.locator("[data-chat-room] iframe").elementHandle()).contentFrame();
      await connected(frame);
      const q = new URL(frame.url()).searchParams;
      assert.deepEqual([q.get("theme"), q.get("scheme")], ["transparent", "dark"]);
      assert.equal(await frame.locator("#app").evaluate((el) => getComputedStyle(el).backgroundColor), "rgba(0, 0, 0, 0)");
      // Inside the frame, in the empty list: the blog's background, not a box of the widget's own.
      await frame.locator("#empty").waitFor();
      const box = await page.locator("[data-chat-room] iframe").boundingBox();
      const list = await frame.locator("#list").boundingBox();
      assert.equal(await pixel(page, Math.round(box.x + 4), Math.round(box.y + list.y + 4)), HOST_BG);
      // Text follows the host's dark theme: readable on the blog's background.
      const fg = await frame.locator("#title").evaluate((el) => getComputedStyle(el).color);
      assert.ok(contrast(fg, HOST_BG) >= 4.5, `title ${fg} on ${HOST_BG}`);
      const muted = await frame.locator("#empty").evaluate((el) => getComputedStyle(el).color);
      assert.ok(contrast(muted, HOST_BG) >= 4.5, `empty-room prompt ${muted} on ${HOST_BG}`);
      await page.context().close();
    } finally {
      await host.close();
    }
  });

  test("/room/{id}?theme=transparent: no container; scheme= picks the colours; otherwise the rounded container", async () => {
    const page = await reader(browser, { identity: { nickname: "Direct" } });
    await openRoom(page, engine, "transparent-direct", "lang=en&theme=transparent&scheme=light");
    const look = () => page.locator("#app").evaluate((el) => {
      const s = getComputedStyle(el);
      return { bg: s.backgroundColor, border: s.borderTopWidth, fg: getComputedStyle(document.getElementById("title")).color };
    });
    assert.deepEqual(await look(), { bg: "rgba(0, 0, 0, 0)", border: "0px", fg: "rgb(27, 31, 36)" });
    await openRoom(page, engine, "transparent-direct", "lang=en&theme=transparent&scheme=dark");
    assert.deepEqual(await look(), { bg: "rgba(0, 0, 0, 0)", border: "0px", fg: "rgb(230, 232, 235)" });
    await openRoom(page, engine, "transparent-direct", "lang=en&theme=dark");
    const boxed = await look();
    assert.equal(boxed.bg, "rgb(22, 24, 28)");
    assert.equal(boxed.border, "1px");
    await page.context().close();
  });
});
