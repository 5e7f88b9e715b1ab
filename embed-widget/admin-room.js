// One room in the admin page: its messages (newest last, older pages through the history API),
// and per message delete, ban and pin; lock and reopen for the room. Live through a watch-mode
// socket when the engine offers it; otherwise the message list is refreshed with each 5 s tick.

import * as api from "./admin-api.js";
import { askBan, confirmDelete } from "./admin-ban.js";
import { $, button, h, messageItem, when } from "./admin-dom.js";

const PAGE = 50;
let T, say, changed;
// The open room: its id, messages by seq, what the engine told us of lock and pin (null: unknown).
let id = null, byId = new Map(), locked = null, pinned = null, oldest = null;
let ws = null, live = false, watchRefused = false, shown = "";

export function initRoom(strings, status, onChange) {
  T = strings; say = status; changed = onChange;
  $("room-close").onclick = () => close();
  $("room-older").onclick = older;
  $("room-lock").onclick = () => setLock(!locked);
  $("room-unpin").onclick = () => setPin(null);
}

export const openId = () => id;

/** Shows room `roomId`; `known` carries what a list said of it ({ locked }). */
export async function open(roomId, known = {}) {
  if (id !== roomId) {
    close(false);
    id = roomId;
    $("room-title").textContent = T.room(roomId);
    $("room-widget").href = `/room/${encodeURIComponent(roomId)}`;
    $("room-list").replaceChildren();
    $("room-older").hidden = true;
    shown = "";
  }
  locked = known.locked ?? locked;
  $("room").hidden = false;
  renderHead();
  $("room-title").focus();
  await refresh();
  watch();
}

export function close(focus = true) {
  stopWatch();
  id = null; byId = new Map(); locked = pinned = oldest = null;
  $("room").hidden = true;
  if (focus) $("active-h").focus();
}

function renderHead() {
  $("room-lock").textContent = locked ? T.unlock : T.lock;
  $("room-locked").hidden = !locked;
  $("room-unpin").hidden = !pinned;
  $("room-mode").textContent = live ? T.live : T.polling;
  $("room-mode").classList.toggle("ok", live);
}

/** The latest page again (the poll fallback): what vanished from it was deleted or hidden. */
export async function refresh() {
  if (!id || live) return;
  const room = id;
  try {
    const { messages } = await api.history(room, null, PAGE);
    if (room === id && !live) merge(messages, true);
  } catch (e) {
    say(T.failed(e.message));
  }
}

/** Puts `messages` (oldest first) in view; `latest`: they are the newest page, so anything shown
 *  from its first seq on that is not among them is gone. */
function merge(messages, latest) {
  if (latest) {
    const from = messages.length ? messages[0].seq : 0;
    for (const seq of [...byId.keys()]) if (seq >= from && !messages.some((m) => m.seq === seq)) byId.delete(seq);
    if (oldest === null) $("room-older").hidden = messages.length < PAGE;
  }
  for (const m of messages) byId.set(m.seq, m);
  if (messages.length && (oldest === null || messages[0].seq < oldest)) oldest = messages[0].seq;
  render();
}

function render() {
  const list = $("room-list");
  const focused = document.activeElement?.closest?.("#room-list [data-seq]");
  const focusSeq = focused ? Number(focused.dataset.seq) : null;
  const focusIndex = focused ? [...focused.querySelectorAll("button")].indexOf(document.activeElement) : -1;
  const seqs = [...byId.keys()].sort((a, b) => a - b);
  // Unchanged lists are left alone, so a refresh does not disturb a screen reader's place.
  const sig = `${seqs}|${pinned}`;
  if (sig === shown) return;
  shown = sig;
  const items = seqs.map((seq) => item(byId.get(seq)));
  list.replaceChildren(...(items.length ? items : [h("li", { className: "none" }, T.empty)]));
  // Keep a keyboard user where they were across a refresh; if their message went, the heading.
  if (focused) {
    const again = list.querySelector(`[data-seq="${focusSeq}"]`);
    (again?.querySelectorAll("button")[focusIndex] ?? $("room-title")).focus();
  }
}

function item(m) {
  const name = `#${m.seq} ${m.nickname}`;
  const isPinned = pinned === m.seq;
  const el = messageItem(m, [
    button(T.del, () => remove(m), { label: `${T.del}: ${name}` }),
    button(T.ban, () => banAuthor(m), { label: `${T.ban}: ${name}` }),
    button(isPinned ? T.unpin : T.pin, () => setPin(isPinned ? null : m.seq), { label: `${isPinned ? T.unpin : T.pin}: ${name}` }),
  ], isPinned ? h("span", { className: "badge ok" }, T.pinned) : null);
  if (isPinned) el.classList.add("pinned");
  return el;
}

async function older() {
  if (!id || oldest === null) return;
  const room = id;
  try {
    const { messages } = await api.history(room, oldest, PAGE);
    if (room !== id) return;
    if (messages.length < PAGE) {
      $("room-older").hidden = true;
      say(T.noOlder);
      $("room-title").focus();
    }
    merge(messages, false);
  } catch (e) {
    say(T.failed(e.message));
  }
}

/** Delete after confirming; shared with the reports queue. */
export async function remove(m) {
  if (!(await confirmDelete(m))) return;
  try {
    await api.del(m.roomId, m.seq);
    if (m.roomId === id) { byId.delete(m.seq); if (pinned === m.seq) pinned = null; render(); renderHead(); }
    say(T.deleted);
    changed();
  } catch (e) {
    say(T.failed(e.message));
  }
}

/** Ban `m`'s author in its room for a chosen time; shared with the reports queue. */
export async function banAuthor(m) {
  const minutes = await askBan(m);
  if (!minutes) return;
  try {
    const { until } = await api.ban(m.roomId, m.authorId, minutes);
    say(T.banned(m.nickname, when(until)));
    changed();
  } catch (e) {
    say(T.failed(e.message));
  }
}

async function setLock(to) {
  const room = id;
  try {
    await api.lock(room, to);
    if (room === id) { locked = to; renderHead(); }
    say(to ? T.lockedNow(room) : T.openNow(room));
    changed();
  } catch (e) {
    say(T.failed(e.message));
  }
}

async function setPin(seq) {
  const room = id;
  try {
    await api.pin(room, seq);
    if (room === id) { pinned = seq; render(); renderHead(); }
    say(seq ? T.pinnedNow : T.unpinnedNow);
  } catch (e) {
    say(T.failed(e.message));
  }
}

// ---- live view: a watch-mode socket (it is not counted as a reader and cannot send) ------------

const uuid = () => crypto.randomUUID?.() ??
  "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) => (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));

function watch() {
  if (watchRefused || ws || !id) return;
  const room = id;
  const sock = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/${encodeURIComponent(room)}`);
  ws = sock;
  sock.onopen = () => sock.send(JSON.stringify({
    type: "hello", anonymousId: uuid(), nickname: "Admin", avatar: "owl", watch: true, grant: api.grant()?.moderatorGrant,
  }));
  sock.onmessage = (e) => {
    if (sock !== ws) return;
    const f = JSON.parse(e.data);
    if (f.type === "welcome") {
      // An engine without watch mode would have joined us as a reader: leave at once, and do not
      // try again on this page (the poll fallback takes over).
      if (!f.watching) { watchRefused = true; stopWatch(); return; }
      live = true;
      locked = f.locked; pinned = f.pinned?.seq ?? null;
      merge(f.history || [], true);
      renderHead();
    } else if (f.type === "error" && !live) {
      watchRefused = true; stopWatch();
    } else if (f.type === "message" || f.type === "restored") {
      merge([f.message], false);
    } else if (f.type === "deleted" || f.type === "hidden") {
      byId.delete(f.seq); render();
    } else if (f.type === "room") {
      locked = f.locked; renderHead();
    } else if (f.type === "pinned") {
      pinned = f.message?.seq ?? null; render(); renderHead();
    }
  };
  // A dropped socket (pod draining, network): poll meanwhile; the next tick tries the socket again.
  sock.onclose = () => { if (sock === ws) { ws = null; live = false; renderHead(); } };
}

function stopWatch() {
  const sock = ws;
  ws = null; live = false;
  sock?.close();
  if (id) renderHead();
}

/** The 5 s tick while the page is visible: refresh when not live, and retry the socket. */
export function tick() {
  if (!id) return;
  refresh();
  watch();
}
