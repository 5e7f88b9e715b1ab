// The widget's protocol client (client.js) without a browser: a fake WebSocket the test drives
// frame by frame, and a fake clock, so reconnect delays are exact and the tests take no time.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { backoff, createClient } from "../../client.js";

const ME = { authorId: "a1b2c3d4e5f60718", nickname: "Tester", avatar: "otter" };
const OTHER = "0f0f0f0f0f0f0f0f";

/** Timers that run only when the test moves time on. `now()` is a wall clock (as Date.now());
 * `elapsed()` the milliseconds since the test began. */
function fakeClock() {
  const start = Date.UTC(2026, 0, 1);
  let now = start, ids = 0;
  const timers = [];
  return {
    now: () => now,
    elapsed: () => now - start,
    setTimeout: (fn, ms) => { timers.push({ at: now + ms, fn, id: ++ids }); return ids; },
    clearTimeout: (id) => { const i = timers.findIndex((t) => t.id === id); if (i >= 0) timers.splice(i, 1); },
    /** Runs every timer due within `ms`, in order (timers they set included), and moves to the end. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at || a.id - b.id);
        if (!timers.length || timers[0].at > end) break;
        const t = timers.shift();
        now = t.at;
        t.fn();
      }
      now = end;
    },
  };
}

/** A client on a fake socket and clock; `events` records every callback in order. */
function setup({ random = () => 0.5 } = {}) {
  const clock = fakeClock();
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.created = clock.elapsed();
      sockets.push(this);
    }
    send(data) { assert.equal(this.readyState, 1, "sends only on an open socket"); this.sent.push(JSON.parse(data)); }
    close(code) {
      if (this.readyState === 3) return;
      this.closedWith = code;
      this.drop();
    }
    // The server's side.
    open() { this.readyState = 1; this.onopen?.(); }
    receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: this.closedWith ?? 1006 }); }
    frames(type) { return this.sent.filter((f) => f.type === type); }
  }
  const events = [];
  const names = ["welcome", "message", "ack", "deleted", "restored", "error", "close", "frame", "room"];
  const on = Object.fromEntries(names.map((n) => [n, (...args) => events.push([n, ...args])]));
  const client = createClient({
    url: "ws://chat.test/ws/post-1",
    hello: () => ({ anonymousId: "6f1c3a52-8d0e-4b7a-9c2d-3e4f5a6b7c8d", nickname: ME.nickname, avatar: ME.avatar }),
    on,
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random,
  });
  const of = (name) => events.filter((e) => e[0] === name).map((e) => e.slice(1));
  return { client, clock, sockets, events, of, sock: () => sockets.at(-1) };
}

const msg = (seq, extra = {}) => ({ seq, roomId: "post-1", authorId: OTHER, nickname: "Other", avatar: "fox",
  content: `m${seq}`, createdAt: "2026-01-01T00:00:00.000Z", clientId: `c-${seq}`, ...extra });
const seqs = (list) => list.map((m) => m.seq);

/** Opens the newest socket and answers its hello with a welcome. */
function welcome(t, { history = [], resumed = false, locked = false, pinned = null, slowMode = 0 } = {}) {
  const sock = t.sock();
  sock.open();
  sock.receive({ type: "welcome", you: ME, history, resumed, online: 1, locked, pinned, slowMode });
  return sock;
}

/** The connection drops; the client backs off (random 0.5: exactly 500 ms, then 1 s, ...) and opens a new socket. */
function dropAndReconnect(t) {
  const before = t.sockets.length;
  t.sock().drop();
  t.clock.advance(30000);
  assert.equal(t.sockets.length, before + 1, "one new socket");
}

describe("resume", () => {
  test("the first hello has no lastSeq; after a drop the hello resumes from the last message seen", () => {
    const t = setup();
    t.client.connect();
    const first = welcome(t, { history: [msg(1), msg(2), msg(3)] });
    assert.deepEqual(first.frames("hello"), [{ type: "hello", anonymousId: "6f1c3a52-8d0e-4b7a-9c2d-3e4f5a6b7c8d", nickname: "Tester", avatar: "otter" }]);
    first.receive({ type: "message", message: msg(4) });
    assert.equal(t.client.maxSeq, 4);

    dropAndReconnect(t);
    assert.deepEqual(t.of("close"), [["retry"]]);
    const second = welcome(t, { history: [msg(5), msg(6)], resumed: true });
    assert.equal(second.frames("hello")[0].lastSeq, 4);
    const [frame, fresh] = t.of("welcome")[1];
    assert.equal(frame.resumed, true);
    assert.deepEqual(seqs(fresh), [5, 6]);

    // And again from where the resume left off.
    dropAndReconnect(t);
    t.sock().open();
    assert.equal(t.sock().frames("hello")[0].lastSeq, 6);
  });

  test("a welcome that could not resume starts over from its history", () => {
    const t = setup();
    t.client.connect();
    welcome(t, { history: [msg(1), msg(2)] });
    dropAndReconnect(t);
    welcome(t, { history: [msg(300), msg(301)], resumed: false });
    assert.deepEqual(seqs(t.of("welcome")[1][1]), [300, 301]);
    assert.equal(t.client.maxSeq, 301);
  });
});

describe("de-duplication", () => {
  test("a seq is passed on once, whether it comes live, again live, or again in a resume", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t, { history: [msg(1), msg(2), msg(2)] });
    assert.deepEqual(seqs(t.of("welcome")[0][1]), [1, 2]);
    sock.receive({ type: "message", message: msg(2) });
    sock.receive({ type: "message", message: msg(3) });
    sock.receive({ type: "message", message: msg(3) });
    assert.deepEqual(t.of("message").map(([m]) => m.seq), [3]);

    dropAndReconnect(t);
    welcome(t, { history: [msg(2), msg(3), msg(4)], resumed: true });
    assert.deepEqual(seqs(t.of("welcome")[1][1]), [4]);
    t.sock().receive({ type: "message", message: msg(4) });
    t.sock().receive({ type: "message", message: msg(5) });
    assert.deepEqual(t.of("message").map(([m]) => m.seq), [3, 5]);
  });

  test("a deleted seq never comes back, and frames without a numeric seq are ignored", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t, { history: [msg(1)] });
    sock.receive({ type: "deleted", seq: 2 });
    sock.receive({ type: "message", message: msg(2) });
    sock.receive({ type: "message", message: { ...msg(3), seq: "3" } });
    sock.receive({ type: "message" });
    assert.deepEqual(t.of("deleted"), [[2]]);
    assert.deepEqual(t.of("message"), []);
    assert.equal(t.client.maxSeq, 1);
  });

  test("a message hidden after reports goes like a deleted one, and comes back once when the owner keeps it", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t, { history: [msg(1), msg(2)], pinned: msg(2) });
    sock.receive({ type: "hidden", seq: 2 });
    assert.deepEqual(t.of("deleted"), [[2]]);
    assert.equal(t.client.pinned, null, "a hidden pin is no pin");
    sock.receive({ type: "message", message: msg(2) });
    assert.deepEqual(t.of("message"), [], "a late copy does not bring it back");
    sock.receive({ type: "restored", message: msg(2) });
    sock.receive({ type: "restored", message: msg(2) });
    sock.receive({ type: "restored", message: { seq: "2" } });
    assert.deepEqual(t.of("restored").map(([m]) => m.seq), [2]);
    sock.receive({ type: "reported", seq: 1 });
    assert.deepEqual(t.of("frame").map(([f]) => f.type), ["reported"], "the view hears of its report");
  });
});

describe("pending sends", () => {
  test("a send cut off by a drop is resent once with the same clientId after the welcome, and acked once", () => {
    const t = setup();
    t.client.connect();
    const first = welcome(t, { history: [msg(1), msg(2)] });
    const clientId = t.client.submit("hello there");
    assert.deepEqual(first.frames("send"), [{ type: "send", clientId, content: "hello there" }]);

    t.sock().drop();
    t.clock.advance(30000);
    const second = t.sock();
    second.open();
    assert.deepEqual(second.frames("send"), [], "nothing before the welcome");
    second.receive({ type: "welcome", you: ME, history: [], resumed: true, online: 1 });
    assert.deepEqual(second.frames("send"), [{ type: "send", clientId, content: "hello there" }]);

    second.receive({ type: "ack", clientId, seq: 3 });
    second.receive({ type: "ack", clientId, seq: 3 });
    assert.deepEqual(t.of("ack"), [[clientId, 3, "hello there"]]);
    assert.equal(t.client.pending.size, 0);

    // Later connections resend nothing; an ack's seq is not a resume point (others' messages before
    // it may still be on their way), the message frame is.
    dropAndReconnect(t);
    const third = welcome(t, { resumed: true });
    assert.equal(third.frames("hello")[0].lastSeq, 2);
    assert.deepEqual(third.frames("send"), []);
  });

  test("a send made while offline goes out once after the next welcome", () => {
    const t = setup();
    t.client.connect();
    const clientId = t.client.submit("written offline");
    const sock = welcome(t);
    assert.deepEqual(sock.frames("send"), [{ type: "send", clientId, content: "written offline" }]);
  });

  test("an own message in the resumed history settles its send without a resend (the ack was lost)", () => {
    const t = setup();
    t.client.connect();
    welcome(t, { history: [msg(1)] });
    const clientId = t.client.submit("stored before the drop");
    dropAndReconnect(t);
    const sock = welcome(t, { history: [msg(2, { authorId: ME.authorId, clientId, content: "stored before the drop" })], resumed: true });
    assert.deepEqual(sock.frames("send"), []);
    assert.equal(t.client.pending.size, 0);
    assert.deepEqual(seqs(t.of("welcome")[1][1]), [2]);
  });

  test("a discarded send is never resent", () => {
    const t = setup();
    t.client.connect();
    welcome(t);
    t.client.discard(t.client.submit("never mind"));
    dropAndReconnect(t);
    assert.deepEqual(welcome(t, { resumed: true }).frames("send"), []);
  });
});

describe("backoff", () => {
  test("the delay doubles from about 0.5 s with ±50 % jitter and is capped at 30 s", () => {
    assert.equal(backoff(0, () => 0.5), 500);
    assert.equal(backoff(1, () => 0.5), 1000);
    assert.equal(backoff(2, () => 0.5), 2000);
    assert.equal(backoff(0, () => 0), 250);
    assert.equal(backoff(0, () => 0.999), 749.5);
    for (const attempt of [6, 10, 11, 50, 1000]) {
      for (const r of [0.5, 0.999]) assert.ok(backoff(attempt, () => r) <= 30000, `attempt ${attempt}`);
    }
    assert.equal(backoff(6, () => 0.5), 30000);
    assert.equal(backoff(1000, () => 0), 30000);
  });

  test("failed attempts wait longer and longer, up to 30 s; a welcome starts over", () => {
    const t = setup();
    t.client.connect();
    const delays = [];
    for (let i = 0; i < 9; i++) {
      const before = t.sockets.length;
      const at = t.clock.elapsed();
      t.sock().drop();  // the attempt fails before it opens
      t.clock.advance(60000);
      assert.equal(t.sockets.length, before + 1);
      delays.push(t.sock().created - at);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(t.of("close").length, 9);

    welcome(t);
    const at = t.clock.elapsed();
    const count = t.sockets.length;
    t.sock().drop();
    t.clock.advance(499);
    assert.equal(t.sockets.length, count, "no socket before the delay");
    t.clock.advance(1);
    assert.equal(t.sockets.length, count + 1);
    assert.equal(t.sock().created - at, 500);
  });

  test("the network coming back skips the rest of the wait", () => {
    const t = setup();
    t.client.connect();
    welcome(t);
    t.sock().drop();
    const count = t.sockets.length;
    t.client.wake();
    assert.equal(t.sockets.length, count + 1);
    t.clock.advance(60000);
    assert.equal(t.sockets.length, count + 1, "the cancelled timer does not connect again");
  });
});

describe("the server's reconnect frame", () => {
  test("keeps reading until afterMs, then closes and reconnects at once with lastSeq, without a failure", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t, { history: [msg(1)] });
    sock.receive({ type: "reconnect", afterMs: 750 });
    t.clock.advance(749);
    assert.equal(sock.readyState, 1, "still open");
    sock.receive({ type: "message", message: msg(2) });
    assert.deepEqual(t.of("message").map(([m]) => m.seq), [2]);
    t.clock.advance(1);
    assert.equal(sock.closedWith, 1000);
    assert.deepEqual(t.of("close"), [["planned"]]);
    assert.equal(t.sockets.length, 2);
    assert.equal(t.sock().created, 750);
    t.sock().open();
    assert.equal(t.sock().frames("hello")[0].lastSeq, 2);
  });

  test("when the server closes first, the next attempt still waits for afterMs", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    sock.receive({ type: "reconnect", afterMs: 2000 });
    t.clock.advance(300);
    sock.drop();  // 1001 going away
    assert.deepEqual(t.of("close"), [["planned"]]);
    t.clock.advance(1699);
    assert.equal(t.sockets.length, 1);
    t.clock.advance(1);
    assert.equal(t.sockets.length, 2);
    assert.equal(t.sock().created, 2000);
  });

  test("afterMs is clamped to 0..60 s", () => {
    for (const [afterMs, wait] of [[-5, 0], ["soon", 0], [undefined, 0], [3_600_000, 60000]]) {
      const t = setup();
      t.client.connect();
      welcome(t).receive({ type: "reconnect", afterMs });
      t.clock.advance(wait);
      assert.equal(t.sockets.length, 2, `afterMs ${afterMs}`);
      assert.equal(t.sock().created, wait);
    }
  });
});

describe("errors", () => {
  test("rate_limited: the send fails with retryAfterMs, is not resent by itself, and a retry keeps its clientId", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    const clientId = t.client.submit("too fast");
    sock.receive({ type: "error", code: "rate_limited", message: "slow down", clientId, retryAfterMs: 1200 });
    const [[frame, detail]] = t.of("error");
    assert.equal(frame.code, "rate_limited");
    assert.deepEqual(detail, { clientId, retryAfterMs: 1200 });
    assert.equal(t.client.pending.get(clientId).failed, true);

    dropAndReconnect(t);
    const again = welcome(t, { resumed: true });
    assert.deepEqual(again.frames("send"), [], "a refused send waits for the reader");

    t.client.retry(clientId);
    assert.deepEqual(again.frames("send"), [{ type: "send", clientId, content: "too fast" }]);
    again.receive({ type: "ack", clientId, seq: 1 });
    assert.deepEqual(t.of("ack"), [[clientId, 1, "too fast"]]);
  });

  test("retryAfterMs is reported only for rate_limited, and only when positive", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    sock.receive({ type: "error", code: "rate_limited", retryAfterMs: "nope" });
    sock.receive({ type: "error", code: "rate_limited", retryAfterMs: -1 });
    sock.receive({ type: "error", code: "invalid_content", retryAfterMs: 500 });
    sock.receive({ type: "error", code: "rate_limited", clientId: "not-pending", retryAfterMs: 250 });
    assert.deepEqual(t.of("error").map(([, d]) => d), [
      { clientId: undefined, retryAfterMs: 0 },
      { clientId: undefined, retryAfterMs: 0 },
      { clientId: undefined, retryAfterMs: 0 },
      { clientId: undefined, retryAfterMs: 250 },
    ]);
  });

  test("banned: no reconnect, and nothing more is sent", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    sock.receive({ type: "error", code: "banned", message: "banned" });
    sock.drop();
    t.clock.advance(60000);
    assert.deepEqual(t.of("close"), [["banned"]]);
    assert.equal(t.sockets.length, 1);
    assert.equal(t.client.banned, true);
  });

  test("invalid_nickname in hello holds the connection until release(), which says hello again", () => {
    const t = setup();
    t.client.connect();
    const sock = t.sock();
    sock.open();
    sock.receive({ type: "error", code: "invalid_nickname", message: "bad" });
    assert.equal(sock.closedWith, 1000);
    t.clock.advance(60000);
    assert.equal(t.sockets.length, 1, "no retry with the same name");
    assert.equal(t.client.held, true);
    t.client.release();
    assert.equal(t.sockets.length, 2);
    t.sock().open();
    assert.equal(t.sock().frames("hello").length, 1);
  });
});

describe("closed rooms and the pin", () => {
  test("the welcome tells the view whether the room is locked and what is pinned, every time", () => {
    const t = setup();
    t.client.connect();
    welcome(t, { locked: true, pinned: msg(3) });
    assert.deepEqual(t.of("room"), [[{ locked: true, pinned: msg(3), slowMode: 0 }]]);
    assert.equal(t.client.locked, true);
    assert.equal(t.client.pinned.seq, 3);
    // Reopened and unpinned while this reader was away: the next welcome says so.
    dropAndReconnect(t);
    welcome(t, { resumed: true });
    assert.deepEqual(t.of("room")[1], [{ locked: false, pinned: null, slowMode: 0 }]);
    assert.equal(t.client.locked, false);
    assert.equal(t.client.pinned, null);
  });

  test("room and pinned frames change the state live; repeats and bad pins are not news", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    sock.receive({ type: "room", locked: true });
    sock.receive({ type: "room", locked: true });
    sock.receive({ type: "pinned", message: msg(7) });
    sock.receive({ type: "pinned", message: null });
    sock.receive({ type: "pinned", message: { content: "no seq" } });
    sock.receive({ type: "room", locked: false });
    assert.deepEqual(t.of("room").slice(1), [
      [{ locked: true, pinned: null, slowMode: 0 }],
      [{ locked: true, pinned: msg(7), slowMode: 0 }],
      [{ locked: true, pinned: null, slowMode: 0 }],
      [{ locked: false, pinned: null, slowMode: 0 }],
    ]);
    assert.deepEqual(t.of("frame"), [], "room and pinned are not passed on as unknown frames");
  });

  test("slow mode comes with the welcome and the room frame; bad values mean off", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t, { slowMode: 30 });
    assert.deepEqual(t.of("room").at(-1), [{ locked: false, pinned: null, slowMode: 30 }]);
    sock.receive({ type: "room", locked: false, slowMode: 30 });
    assert.equal(t.of("room").length, 1, "the same slow mode is no news");
    sock.receive({ type: "room", locked: false, slowMode: 0 });
    sock.receive({ type: "room", locked: false, slowMode: "5" });
    assert.deepEqual(t.of("room").slice(1), [[{ locked: false, pinned: null, slowMode: 0 }]]);
  });

  test("spam: the refused send fails with its reason and is not resent", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    const clientId = t.client.submit("https://example.com");
    sock.receive({ type: "error", code: "spam", reason: "links", message: "no links yet", clientId });
    assert.deepEqual(t.of("error").map(([f, d]) => [f.reason, d]), [["links", { clientId, retryAfterMs: 0 }]]);
    assert.equal(t.client.pending.get(clientId).failed, true);
    dropAndReconnect(t);
    assert.deepEqual(welcome(t, { resumed: true }).frames("send"), [], "not resent after a reconnect");
  });

  test("deleting the pinned message removes the pin, whichever frame comes first", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t, { pinned: msg(5) });
    sock.receive({ type: "deleted", seq: 4 });
    assert.equal(t.client.pinned.seq, 5);
    sock.receive({ type: "deleted", seq: 5 });
    assert.equal(t.client.pinned, null);
    sock.receive({ type: "pinned", message: null });
    sock.receive({ type: "pinned", message: msg(5) });  // late: that message is gone
    assert.deepEqual(t.of("room").map(([r]) => r.pinned?.seq ?? null), [5, null]);
  });

  test("room_locked: the send fails once, is not resent, and the room counts as locked", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    const clientId = t.client.submit("too late");
    sock.receive({ type: "error", code: "room_locked", message: "locked", clientId });
    assert.deepEqual(t.of("error").map(([f, d]) => [f.code, d]), [["room_locked", { clientId, retryAfterMs: 0 }]]);
    assert.equal(t.client.pending.get(clientId).failed, true);
    assert.equal(t.client.locked, true);
    assert.deepEqual(t.of("room").at(-1), [{ locked: true, pinned: null, slowMode: 0 }]);
    sock.receive({ type: "room", locked: true });
    assert.equal(t.of("room").length, 2, "the room frame after it is no news");

    dropAndReconnect(t);
    const again = welcome(t, { resumed: true, locked: true });
    t.clock.advance(120000);
    assert.deepEqual(again.frames("send"), [], "no retry by itself, after a reconnect or ever");
    assert.equal(t.sockets.length, 2);
  });
});

describe("other frames", () => {
  test("presence, typing and unknown frame types go to the view as they are; bad JSON is ignored", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    sock.onmessage({ data: "not json" });
    sock.receive({ type: "presence", online: 2, members: [] });
    sock.receive({ type: "typing", authorId: OTHER, nickname: "Other" });
    sock.receive({ type: "something-new" });
    assert.deepEqual(t.of("frame").map(([f]) => f.type), ["presence", "typing", "something-new"]);
  });

  test("frames from a socket that is no longer current are ignored", () => {
    const t = setup();
    t.client.connect();
    const old = welcome(t);
    dropAndReconnect(t);
    old.receive({ type: "message", message: msg(9) });
    assert.deepEqual(t.of("message"), []);
  });

  test("send() refuses before the welcome and after a drop", () => {
    const t = setup();
    t.client.connect();
    assert.equal(t.client.send({ type: "typing" }), false);
    t.sock().open();
    assert.equal(t.client.send({ type: "typing" }), false);
    t.sock().receive({ type: "welcome", you: ME, history: [], resumed: false });
    assert.equal(t.client.send({ type: "typing" }), true);
    t.sock().drop();
    assert.equal(t.client.send({ type: "typing" }), false);
  });
});

describe("replies, reactions and edits", () => {
  test("a reply carries replyTo, also when it is resent after a reconnect; a plain send has none", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    const reply = t.client.submit("agreed", 41);
    const plain = t.client.submit("hello");
    assert.deepEqual(sock.frames("send"), [
      { type: "send", clientId: reply, content: "agreed", replyTo: 41 },
      { type: "send", clientId: plain, content: "hello" },
    ]);
    dropAndReconnect(t);
    const again = welcome(t);
    assert.deepEqual(again.frames("send").find((f) => f.clientId === reply), { type: "send", clientId: reply, content: "agreed", replyTo: 41 });
  });

  test("reactions and edited frames reach the view as they are", () => {
    const t = setup();
    t.client.connect();
    const sock = welcome(t);
    const reactions = { type: "reactions", seq: 3, reactions: { "👍": 2 }, authorId: OTHER, emoji: "👍", on: true };
    const edited = { type: "edited", message: msg(3, { content: "fixed", editedAt: "2026-01-01T00:01:00.000Z" }) };
    sock.receive(reactions);
    sock.receive(edited);
    assert.deepEqual(t.of("frame"), [[reactions], [edited]]);
  });
});
