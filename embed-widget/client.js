// Protocol client: one room's socket speaking the v1 wire protocol (docs/PROTOCOL.md). It says
// hello and resumes with lastSeq, passes each message on once (de-duplicated by seq), keeps sends
// pending until acked and resends them with the same clientId after a reconnect, backs off, obeys
// the server's `reconnect` frame and reports `retryAfterMs`, and keeps the room's state (locked,
// pinned message). No DOM: it tells the view what
// happened through callbacks, so it runs in Node with a fake WebSocket (tests/unit/).

const OPEN = 1;  // WebSocket.OPEN

// A v4 UUID (clientIds, and the reader's anonymousId).
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; plain http on a LAN host still deserves a v4 UUID.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((n) => n.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s ... capped at 30 s.
export const backoff = (attempt, random = Math.random) => Math.min(30000, 500 * 2 ** Math.min(attempt, 10) * (0.5 + random()));

/**
 * `url`: the room's socket. `hello()`: `{ anonymousId, nickname, avatar }` at the time of each
 * connection. `on`: the view's callbacks, all optional:
 *   welcome(frame, messages)  after every welcome; `messages`: the history not seen before, in
 *                             order (when `frame.resumed` is false, the view starts over with them)
 *   message(m)                a message not seen before
 *   ack(clientId, seq, content)  a pending send is stored (once per send)
 *   deleted(seq)              deleted, or hidden after readers' reports
 *   restored(m)               a hidden message the owner kept, back in its place
 *   error(frame, { clientId, retryAfterMs })  `clientId`: the pending send it refused, now failed
 *                             (kept until retry or discard); `retryAfterMs`: > 0 for `rate_limited`
 *   close(next)               "retry" (backing off), "planned" (after `reconnect`), "banned", "held"
 *   room({ locked, pinned, slowMode })  the room's state: after every welcome, and when a `room`
 *                             or `pinned` frame (or `room_locked`, or the pinned message's deletion)
 *                             changes it; `pinned`: a Message or null; `slowMode`: seconds between
 *                             one reader's messages, 0 when off
 *   frame(f)                  everything else (presence, typing, types added later)
 * `WebSocket`, `setTimeout`, `clearTimeout`, `now` and `random` default to the browser's.
 */
export function createClient({ url, hello, on = {}, ...env }) {
  const WS = env.WebSocket ?? globalThis.WebSocket;
  const later = env.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
  const cancel = env.clearTimeout ?? ((t) => clearTimeout(t));
  const now = env.now ?? Date.now;
  const random = env.random ?? Math.random;
  const emit = (name, ...args) => on[name]?.(...args);

  let ws = null;
  let you = null;             // welcome.you
  let welcomed = false;       // the current socket has had its welcome
  let everWelcomed = false;   // a later hello carries `lastSeq` (resume)
  let maxSeq = 0;             // highest seq received as a message (never from an ack: see onAck)
  let attempt = 0, retryTimer = 0, drainAt = 0;
  let banned = false, held = false;
  let locked = false, pinned = null, slowMode = 0;  // the room's state, from welcome, `room` and `pinned`
  const seen = new Set();     // seqs passed on since the last fresh welcome
  const gone = new Set();     // deleted seqs, so a late frame cannot bring one back
  const pending = new Map();  // clientId -> { content, replyTo, failed }
  // A send frame; `replyTo` only when the message answers one.
  const sendFrame = (clientId, p) => ({ type: "send", clientId, content: p.content, ...(p.replyTo ? { replyTo: p.replyTo } : {}) });

  function send(frame) {
    if (!ws || ws.readyState !== OPEN || !welcomed) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    cancel(retryTimer);
    retryTimer = 0;
    if (banned || held) return;
    let sock;
    try { sock = new WS(url); } catch { scheduleReconnect(); return; }
    ws = sock;
    welcomed = false;
    sock.onopen = () => {
      const frame = { type: "hello", ...hello() };
      if (everWelcomed) frame.lastSeq = maxSeq;
      sock.send(JSON.stringify(frame));
    };
    sock.onmessage = (e) => {
      if (sock !== ws) return;
      let f;
      try { f = JSON.parse(e.data); } catch { return; }
      if (f && typeof f.type === "string") onFrame(f);
    };
    sock.onclose = () => { if (sock === ws) onClose(); };
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome": onWelcome(f); break;
      case "message": if (isNew(f.message)) emit("message", f.message); break;
      case "ack": onAck(f); break;
      case "deleted": onDeleted(f.seq); break;
      // Hidden after readers' reports: gone unless the owner keeps it.
      case "hidden": onDeleted(f.seq); break;
      case "restored": onRestored(f.message); break;
      case "room": setRoom(f.locked === true, pinned, false, slowOf(f)); break;
      case "pinned": setRoom(locked, f.message); break;
      case "error": onError(f); break;
      case "reconnect": onDrain(f.afterMs); break;
      default: emit("frame", f);  // the engine may add frame types
    }
  }

  // True the first time a seq arrives (and it is not deleted). An own message settles its send:
  // the ack may have been lost with the connection that carried it.
  function isNew(m) {
    if (!m || typeof m.seq !== "number" || gone.has(m.seq) || seen.has(m.seq)) return false;
    seen.add(m.seq);
    if (m.seq > maxSeq) maxSeq = m.seq;
    if (you && m.authorId === you.authorId && m.clientId) pending.delete(m.clientId);
    return true;
  }

  // Slow mode in whole seconds; anything else (absent, a bad value) means off.
  const slowOf = (f) => (Number.isInteger(f.slowMode) && f.slowMode > 0 ? f.slowMode : 0);

  // A pin is a whole message; anything else (null, a bad frame) means no pin.
  function setRoom(isLocked, pin, always = false, slow = slowMode) {
    const next = pin && typeof pin === "object" && typeof pin.seq === "number" && !gone.has(pin.seq) ? pin : null;
    if (!always && isLocked === locked && next === pinned && slow === slowMode) return;
    locked = isLocked;
    pinned = next;
    slowMode = slow;
    emit("room", { locked, pinned, slowMode });
  }

  // The engine unpins a deleted message with its own `pinned` frame; this covers either order.
  function onDeleted(seq) {
    gone.add(seq);
    emit("deleted", seq);
    if (pinned && pinned.seq === seq) setRoom(locked, null);
  }

  function onRestored(m) {
    if (!m || typeof m.seq !== "number") return;
    // Hidden here before: it may come again. Never seen (hidden before we joined): simply new.
    if (gone.delete(m.seq)) seen.delete(m.seq);
    if (isNew(m)) emit("restored", m);
  }

  function onWelcome(f) {
    you = f.you || you;
    welcomed = true;
    attempt = 0;
    // Not resumed: a fresh page of the latest messages, with a possible gap before it; start over.
    if (!f.resumed) { seen.clear(); maxSeq = 0; }
    const history = Array.isArray(f.history) ? f.history : [];
    emit("welcome", f, history.filter(isNew));
    setRoom(f.locked === true, f.pinned, true, slowOf(f));
    // Sends that were in flight when the socket dropped: same clientId, so the server stores them once.
    for (const [clientId, p] of pending) if (!p.failed) send(sendFrame(clientId, p));
    everWelcomed = true;
  }

  // maxSeq is left alone: resuming from an ack's seq could skip others' messages still in flight before it.
  function onAck(f) {
    const p = pending.get(f.clientId);
    if (!p || typeof f.seq !== "number") return;
    pending.delete(f.clientId);
    emit("ack", f.clientId, f.seq, p.content);
  }

  function onError(f) {
    if (f.code === "banned") banned = true;  // the server closes after it: no reconnect
    if (f.code === "room_locked") setRoom(true, pinned);  // the `room` frame may still be on its way
    const p = f.clientId ? pending.get(f.clientId) : undefined;
    if (p) p.failed = true;  // not resent by itself: the reader retries or discards it
    else if (f.code === "invalid_nickname" && !welcomed) {
      // Rejected in hello: wait for a valid name (release()) rather than retrying the same one forever.
      held = true;
      ws?.close(1000);
    }
    const retryAfterMs = f.code === "rate_limited" && Number(f.retryAfterMs) > 0 ? Number(f.retryAfterMs) : 0;
    emit("error", f, { clientId: p ? f.clientId : undefined, retryAfterMs });
  }

  // The pod is draining: keep reading until afterMs, then reconnect with lastSeq.
  function onDrain(afterMs) {
    const wait = Math.min(Math.max(Number(afterMs) || 0, 0), 60000);
    drainAt = now() + wait;
    const sock = ws;
    later(() => { if (ws === sock) sock?.close(1000); }, wait);
  }

  function onClose() {
    ws = null;
    welcomed = false;
    if (banned) { emit("close", "banned"); return; }
    if (held) { emit("close", "held"); return; }
    if (drainAt) {
      const wait = Math.max(0, drainAt - now());
      drainAt = 0;
      retryTimer = later(connect, wait);
      emit("close", "planned");
      return;
    }
    emit("close", "retry");
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const delay = backoff(attempt, random);
    attempt++;
    cancel(retryTimer);
    retryTimer = later(connect, delay);
  }

  return {
    connect,
    /** Sends a frame on a welcomed socket; false (and nothing sent) otherwise. */
    send,
    /** A new message (`replyTo`: the seq it answers): pending until acked, sent now or after the
     *  next welcome. Returns its clientId. */
    submit(content, replyTo) {
      const clientId = uuid();
      const p = { content, replyTo, failed: false };
      pending.set(clientId, p);
      send(sendFrame(clientId, p));
      return clientId;
    },
    /** Sends a failed message again with the same clientId (or after the next welcome when offline). */
    retry(clientId) {
      const p = pending.get(clientId);
      if (!p) return;
      p.failed = false;
      send(sendFrame(clientId, p));
    },
    discard(clientId) { pending.delete(clientId); },
    /** After `invalid_nickname` in hello: connect again (with the new name). */
    release() { held = false; connect(); },
    /** The network is back: skip the rest of the backoff. */
    wake() { if (retryTimer) connect(); },
    get you() { return you; },
    get banned() { return banned; },
    get held() { return held; },
    get maxSeq() { return maxSeq; },
    get locked() { return locked; },
    get pinned() { return pinned; },
    get attempt() { return attempt; },
    get pending() { return pending; },
  };
}
