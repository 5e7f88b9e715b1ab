// Live state across failures: a dropped network (banner, backoff with jitter, resume with lastSeq)
// and an engine restart (the server's `reconnect` frame obeyed, sends made while it was down
// delivered once). The check every time: the list has no gap and no duplicate.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { bot, connected, launchBrowser, openRoom, reader, say, shownSeqs, startEngine, tapSockets, until } from "./helpers.mjs";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("a dropped connection shows the banner, backs off with jitter and resumes with lastSeq", async () => {
  const engine = await startEngine();
  try {
    const page = await reader(browser, { identity: { nickname: "Roamer" } });
    const tap = await tapSockets(page);
    const other = await bot(browser, engine, "drop", "Other");
    await other.send(["one", "two", "three"]);
    await openRoom(page, engine, "drop", "lang=en");
    assert.deepEqual(await shownSeqs(page), [1, 2, 3]);

    tap.blocked = true;
    const droppedAt = Date.now();
    tap.drop();
    await page.locator("#banner", { hasText: "Reconnecting…" }).waitFor();
    await other.send(["four", "five", "six"]);  // missed while away
    await until(() => tap.attempts.length >= 4, { timeout: 15000, message: "three failed attempts" });

    // Delays ~0.5 s, 1 s, 2 s, each jittered by ±50 %: never a tight loop, never a long stall.
    const times = [droppedAt, ...tap.attempts.slice(1, 4)];
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    [[250, 750], [500, 1500], [1000, 3000]].forEach(([lo, hi], i) => {
      assert.ok(gaps[i] >= lo - 100 && gaps[i] <= hi + 400, `retry ${i + 1} after ${gaps[i]} ms (expected ${lo}-${hi})`);
    });

    tap.blocked = false;
    await connected(page);
    const hello = tap.out("hello").at(-1);
    assert.equal(hello.lastSeq, 3);
    assert.equal(tap.in("welcome").at(-1).resumed, true);
    assert.deepEqual(await shownSeqs(page), range(1, 6));
    await other.send(["seven"]);
    await page.locator("#list [data-seq='7']").waitFor();
    assert.deepEqual(await shownSeqs(page), range(1, 7));
    await page.context().close();
  } finally {
    await engine.kill();
  }
});

test("engine restart: the reconnect frame is obeyed, nothing lost or duplicated", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "chat-widget-restart-"));
  let engine = await startEngine({ dir, args: ["--shutdown-grace", "3"] });
  try {
    const a = await reader(browser, { identity: { nickname: "Alice" } });
    const b = await reader(browser, { identity: { nickname: "Bert" } });
    const tap = await tapSockets(a);
    await openRoom(a, engine, "restart", "lang=en");
    await openRoom(b, engine, "restart", "lang=en");
    // One after the other: sent together, either could take seq 1, and `a` would show its own
    // seq 2 from the ack while the message frame that moves its resume point is still on the way.
    await say(a, "before 1");
    await a.locator("#list [data-seq='1']:not(.pending)", { hasText: "before 1" }).waitFor();
    await say(b, "before 2");
    await a.locator("#list [data-seq='2']", { hasText: "before 2" }).waitFor();

    const { port } = engine;
    engine.stop();  // SIGTERM: every reader gets `reconnect`, the process exits once they left
    await until(() => tap.in("reconnect").length === 1, { message: "the reconnect frame" });
    const frame = tap.frames.find((x) => x.f.type === "reconnect");
    assert.ok(frame.f.afterMs >= 0);
    await engine.exited;
    // No attempt came before the time the server asked for.
    const next = tap.attempts.find((t) => t > frame.at);
    if (next !== undefined) assert.ok(next - frame.at >= frame.f.afterMs - 25, `reconnected after ${next - frame.at} ms < ${frame.f.afterMs}`);

    // The engine is down: the reader sees it, and a message written now waits as pending.
    await a.locator("#banner", { hasText: "Reconnecting…" }).waitFor();
    await say(a, "written while down");
    await a.locator("#list .msg.pending", { hasText: "written while down" }).waitFor();

    engine = await startEngine({ dir, port, args: ["--shutdown-grace", "3"] });
    await connected(a);
    await connected(b);
    assert.equal(tap.out("hello").at(-1).lastSeq, 2);
    await b.locator("#list [data-seq='3']", { hasText: "written while down" }).waitFor();
    await say(b, "after");
    await a.locator("#list [data-seq='4']", { hasText: "after" }).waitFor();
    assert.deepEqual(await shownSeqs(a), [1, 2, 3, 4]);
    assert.deepEqual(await shownSeqs(b), [1, 2, 3, 4]);
    assert.equal(await a.locator("#list .msg").count(), 4, "nothing left pending or doubled");
    const sends = tap.out("send").filter((f) => f.content === "written while down");
    assert.ok(sends.length >= 1 && sends.every((f) => f.clientId === sends[0].clientId));
    await a.context().close();
    await b.context().close();
  } finally {
    await engine.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
