// The blog page keeps still while the widget loads: Cumulative Layout Shift on the host page, from
// the browser's own `layout-shift` entries, for a post whose room is empty and one with 50
// messages, on a reader's first visit (no name yet: the nickname prompt) and on a return visit.
// The host page embeds the widget as the README says, with the frame's height reserved.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { bot, connected, launchBrowser, reader, startEngine, startHost, until } from "./helpers.mjs";

let engine, browser, host;
before(async () => {
  [engine, browser, host] = await Promise.all([
    startEngine({ args: ["--send-burst", "100", "--send-rate", "50"] }),
    launchBrowser(),
    startHost(),
  ]);
});
after(async () => {
  await browser?.close();
  await host?.close();
  await engine?.kill();
});

// A post: a heading, a paragraph, the chat high on the page and text below it that a reader sees
// from the start. Every layout shift is recorded from the page's first moment.
function post(room) {
  return host.page(`/${room}.html`, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A post</title>
<script>
  window.shifts = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) shifts.push({ value: e.value, input: e.hadRecentInput, at: Math.round(e.startTime) });
  }).observe({ type: "layout-shift", buffered: true });
</script></head>
<body style="margin:0 auto;max-width:760px;font:17px/1.6 serif">
<h1>A post about backpressure</h1>
<p>The first paragraph of the post, long enough to wrap onto a second line in the reader's window.</p>
<script src="${engine.origin}/embed.js" async></script>
<div data-chat-room="${room}" data-title="A post about backpressure" style="min-height:480px"></div>
${"<p>Text below the chat: more of the blog, related posts, the footer. It must not move.</p>".repeat(10)}
</body></html>`);
}

// Opens the post and waits until the widget has settled (welcomed, its history shown, its last
// height report applied, one more frame painted); returns the page's layout shifts and sizes.
async function visit(page, room, messages) {
  await page.goto(post(room));
  const frame = await until(() => page.frames().find((f) => f.url().startsWith(`${engine.origin}/room/`)), { message: "the widget frame" });
  await connected(frame);
  if (messages) await frame.locator(`#list [data-seq="${messages}"]`).waitFor();
  const iframe = page.locator(`[data-chat-room="${room}"] iframe`);
  const asked = () => frame.evaluate(() => Number(document.getElementById("app").dataset.height));
  const applied = () => iframe.evaluate((el) => [el.style.height, el.style.minHeight].map(parseFloat));
  await until(async () => (await applied()).includes(await asked()), { message: "the last height report applied" });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const shifts = await page.evaluate(() => shifts.filter((s) => !s.input));
  return {
    frame,
    shifts,
    cls: shifts.reduce((sum, s) => sum + s.value, 0),
    frameHeight: await iframe.evaluate((el) => el.getBoundingClientRect().height),
  };
}

for (const messages of [0, 50]) {
  test(`CLS < 0.05 on the host page, room with ${messages} messages, first and return visit`, async (t) => {
    const room = `shift-${messages}`;
    if (messages) {
      const seeder = await bot(browser, engine, room);
      await seeder.send(Array.from({ length: messages }, (_, i) => `message ${i + 1}, a line of the discussion`));
      await seeder.close();
    }
    const page = await reader(browser, { viewport: { width: 800, height: 900 } });

    const first = await visit(page, room, messages);
    t.diagnostic(`first visit: CLS ${first.cls.toFixed(4)} ${JSON.stringify(first.shifts)}; frame ${first.frameHeight} px`);
    assert.ok(await first.frame.locator("#nick").isVisible(), "a first visit asks for a name");
    assert.ok(first.cls < 0.05, `first visit: CLS ${first.cls}`);
    // The frame fills the space the page reserved for it: no gap opens under it either.
    assert.equal(first.frameHeight, 480, "the frame keeps the page's height");

    await first.frame.locator("#nick-input").fill("Returning");
    await first.frame.locator("#nick-save").click();
    await first.frame.locator("#composer").waitFor();

    const again = await visit(page, room, messages);
    t.diagnostic(`return visit: CLS ${again.cls.toFixed(4)} ${JSON.stringify(again.shifts)}; frame ${again.frameHeight} px`);
    assert.ok(await again.frame.locator("#composer").isVisible(), "the name is remembered");
    assert.ok(again.cls < 0.05, `return visit: CLS ${again.cls}`);
    assert.equal(again.frameHeight, 480, "the frame keeps the page's height");
    await page.context().close();
  });
}
