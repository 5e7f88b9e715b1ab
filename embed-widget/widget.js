// The view: the page at /room/{roomId} (DOM, layout, scrolling, the nickname prompt) and the
// `{chat: ...}` postMessage protocol with the host page. The page's entry module: the socket is
// client.js's, the saved identity storage.js's, the texts strings.js's; reactions.js draws a
// message's reactions, reply.js the quotes of replies and the composer's reply and edit modes,
// moderator.js the owner's grant and calls (those three load while the socket opens: see
// `extras`). Rule kept throughout: user data (nicknames, content) reaches the DOM only as text nodes.
import { createClient } from "./client.js";
import { loadIdentity, hasNickname, onProfile, persistent, saveProfile } from "./storage.js";
import { ANIMALS, STRINGS, pickLang } from "./strings.js";

const MAX_LEN = 2000;          // server rule: content 1..2000 characters after trimming
const COUNTER_FROM = 1800;     // show the counter only when it matters
const PAGE = 50;               // older-history page size
const TYPING_EVERY = 2000;     // send `typing` at most this often
const TYPING_SHOWN = 3000;     // hide someone's indicator after this long without a new frame

// ---- page parameters ---------------------------------------------------------------------------
const params = new URLSearchParams(location.search);
const lang = pickLang(params.get("lang"), navigator.language);
const T = STRINGS[lang];
document.documentElement.lang = lang;

const roomId = (() => {
  const m = location.pathname.match(/^\/room\/([^/]+)/);
  try { return m ? decodeURIComponent(m[1]) : ""; } catch { return ""; }
})();
const roomOk = /^[A-Za-z0-9._-]{1,128}$/.test(roomId);

// postMessage target: the host's origin, from ?parentOrigin= or else the referrer. Without one we
// neither post nor listen, rather than guess with "*".
const hostOrigin = (() => {
  if (window.parent === window) return null;
  for (const src of [params.get("parentOrigin"), document.referrer]) {
    try { const o = src && new URL(src).origin; if (o && o !== "null") return o; } catch { /* next */ }
  }
  return null;
})();

// ---- elements and small helpers ------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const app = $("app"), list = $("list"), input = $("input"), composer = $("composer");
const banner = $("banner"), pill = $("pill"), typingEl = $("typing"), live = $("live");
const onlineEl = $("online"), meBtn = $("me"), count = $("count"), sendBtn = $("send");
const nickForm = $("nick"), nickInput = $("nick-input"), nickAvatar = $("nick-avatar");
const nickErr = $("nick-err"), nickCancel = $("nick-cancel");
const body = list.parentElement, peopleBox = $("people-box"), people = $("people"), hint = $("hint");
const pinBox = $("pin"), pinBody = $("pin-body"), closedEl = $("closed"), slowEl = $("slow");
const modBtn = $("mod"), lockBtn = $("lock"), emptyEl = $("empty"), contextEl = $("context");

// Creates an element; string children become text nodes (Element.append never parses HTML).
function h(tag, cls, ...children) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  el.append(...children);
  return el;
}

function button(text, onclick) {
  const b = h("button", "act", text);
  b.type = "button";
  b.onclick = onclick;
  return b;
}

const chars = (s) => [...s].length;  // Unicode scalar values, as the server counts
const reduceMotion = matchMedia("(prefers-reduced-motion: reduce)");

// ---- identity ---------------------------------------------------------------------------------
const animalKeys = Object.keys(ANIMALS);
const defaultNick = (a) => T.anon(T.animals[a]);
// The engine's rule: no control or bidi characters, and something visible (not only blanks,
// zero-width characters or combining marks).
const nickProblem = (s) => {
  const v = s.trim();
  return chars(v) < 2 || chars(v) > 15 || /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u.test(v) ||
    /^[\s\p{M}\u00ad\u115f\u1160\u180e\u200b-\u200d\u2060-\u2064\u2800\u3164\ufeff\uffa0\u{e0000}-\u{e007f}]*$/u.test(v) ? T.nickRule : "";
};
// A name inside running text is isolated (FSI…PDI), so a right-to-left name cannot reorder the words around it.
const iso = (name) => `\u2068${name}\u2069`;

// The saved identity (storage.js), before the first hello: from this frame's storage, or from the
// host page when embed.js keeps it there (`hostProfile=1`) because the browser blocks ours.
let anonymousId = "", avatar = animalKeys[0], nickname = "", firstVisit = false;
const identityReady = loadIdentity(animalKeys, params.get("hostProfile") === "1" && hostOrigin).then((identity) => {
  ({ anonymousId, avatar, nickname } = identity);
  firstVisit = !nickname || !!nickProblem(nickname);
  if (firstVisit) nickname = defaultNick(avatar);  // joins under the suggested name until one is saved
});

// ---- the modules a message needs ------------------------------------------------------------------
// Reactions, replies and the moderator's tools draw messages, and a socket does not need them to
// open: they are fetched while it opens (see start), not before it, and what the client reports
// waits, in order, until they are here. During a rollout a pod of another release may lack this
// release's hashed name: the plain name then.
let extras = null;
const waiting = [];
const loadExtras = () => Promise.all([
  import("./moderator.js").catch(() => import("/assets/moderator.js")),
  import("./reactions.js").catch(() => import("/assets/reactions.js")),
  import("./reply.js").catch(() => import("/assets/reply.js")),
]).then((modules) => {
  extras = Object.assign({}, ...modules);
  Object.assign(T, extras.MODERATOR_TEXTS[lang], extras.REACTION_TEXTS[lang], extras.REPLY_TEXTS[lang]);
  moderator = extras.createModerator({ roomId, lang, onChange: renderModerator });
  compose = extras.createComposeMode({ bar: contextEl, input, T, changed: onInput });
  renderModerator();
  for (const run of waiting.splice(0)) run();
}, () => {
  // Both names failed (a browser keeps a module's failure for the page's life): nothing can be
  // drawn, so nothing more is kept.
  waiting.length = 0;
  extras = false;
  setState(T.offline);
});
const afterExtras = (on) => Object.fromEntries(Object.entries(on).map(([name, fn]) =>
  [name, (...args) => (extras ? fn(...args) : extras === null && waiting.push(() => fn(...args)))]));

// ---- state ------------------------------------------------------------------------------------
const client = createClient({
  url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/${encodeURIComponent(roomId)}`,
  hello: () => ({ anonymousId, nickname, avatar }),
  on: afterExtras({ welcome: onWelcome, message: (m) => addLive([m], true), ack: onAck, deleted: removeSeq,
    restored: onRestored, error: onError, close: onClose, frame: onFrame, room: onRoom }),
});
const send = client.send;
let me = null;              // welcome.you
let hasOlder = false, loadingOlder = false, olderRetryAt = 0, listGen = 0;
let unread = 0;
let locked = false, nickOpen = false;  // the room is closed; the nickname prompt is up
let slowMode = 0;  // the owner's slow mode: seconds between one reader's messages (0: off)
const items = new Map();    // seq -> { el, msg, local }
const gone = new Set();     // deleted seqs: older history fetched later cannot bring one back
const pending = new Map();  // clientId -> { el, content, failed }: this page's sends the client holds
const typers = new Map();   // authorId -> { nickname, timer }
const reported = new Set(); // seqs this reader reported (the server counts each reader once anyway)
let pinnedSeq = 0;
const mine = new Map();     // seq -> Set of this reader's own reactions on it
const editTimers = new Map();  // seq -> timer that takes Edit off an own message when its window ends
let editWindow = 0;         // seconds an author may edit (welcome.editWindow)

// ---- time -------------------------------------------------------------------------------------
// A message shows how long ago it was written while that is today ("2 minutes ago"), else its clock
// time: the day divider above says which day. The full date and time are in the title.
const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
const fullFmt = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
const clockFmt = new Intl.DateTimeFormat(lang, { hour: "numeric", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(lang, { weekday: "short", month: "long", day: "numeric" });
const yearDayFmt = new Intl.DateTimeFormat(lang, { weekday: "short", year: "numeric", month: "long", day: "numeric" });
const dayKey = (t) => new Date(t).toDateString();
// Whole calendar days between then and today (Math.round absorbs daylight-saving days).
const daysAgo = (t) => {
  const d = new Date(t), now = new Date();
  return Math.round((new Date(now.getFullYear(), now.getMonth(), now.getDate()) - new Date(d.getFullYear(), d.getMonth(), d.getDate())) / 864e5);
};

function relTime(d, dated) {
  const s = (Date.now() - d) / 1000;
  if (s < 45) return T.justNow;
  if (daysAgo(d) > 0) return (dated ? fullFmt : clockFmt).format(d);
  if (s < 3600) return rtf.format(-Math.round(s / 60), "minute");
  return rtf.format(-Math.round(s / 3600), "hour");
}
// `dated`: shown where no day divider is above it (the pinned message).
function timeEl(iso, dated = false) {
  const t = h("time", dated ? "time dated" : "time");
  const d = new Date(iso);
  if (!isNaN(d)) { t.dateTime = d.toISOString(); t.title = fullFmt.format(d); t.textContent = relTime(d, dated); }
  return t;
}
function dayLabel(t) {
  const n = daysAgo(t);
  if (n === 0 || n === 1) { const s = rtf.format(-n, "day"); return s[0].toUpperCase() + s.slice(1); }
  return (new Date(t).getFullYear() === new Date().getFullYear() ? dayFmt : yearDayFmt).format(t);
}
// Every 30 s the times' texts (and after midnight the dividers') change in place; nothing is re-rendered.
let today = dayKey(Date.now());
setInterval(() => {
  for (const t of document.querySelectorAll("time[datetime]")) t.textContent = relTime(new Date(t.dateTime), t.classList.contains("dated"));
  if (today === dayKey(Date.now())) return;
  today = dayKey(Date.now());
  for (const d of list.querySelectorAll(".day")) labelDay(d, +d.parentElement.dataset.at);
}, 30000);

// ---- rendering --------------------------------------------------------------------------------
const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;

// Appends `text` to `el`, turning http(s) URLs into links built with DOM APIs.
function linkify(el, text) {
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    // Trailing punctuation usually ends the sentence, not the URL; a ")" stays when it closes a "(" inside.
    while (/[.,;:!?'")\]]$/.test(raw)) {
      if (raw.endsWith(")") && raw.split("(").length >= raw.split(")").length) break;
      raw = raw.slice(0, -1);
    }
    let url;
    try { url = new URL(raw); } catch { continue; }
    const a = h("a", "", raw);
    a.href = url.href;
    a.rel = "nofollow ugc noopener";
    a.target = "_blank";
    el.append(text.slice(last, m.index), a);
    last = m.index + raw.length;
  }
  el.append(text.slice(last));
}

// `more`: a reply's quote above the text and the reactions bar below it.
function bubble(m, extra, own = false, more = []) {
  const text = h("div", "text");
  linkify(text, String(m.content ?? ""));
  if (m.editedAt) extra = [h("span", "edited", T.edited), ...extra];
  // The reader's own name is not repeated on every own bubble (they sit at the right in their
  // own colour); screen readers still hear it.
  const meta = h("div", "meta", h("span", own ? "name sr" : "name", String(m.nickname ?? "")), ...extra);
  const av = h("span", "avatar", ANIMALS[m.avatar] || "💬");
  av.setAttribute("aria-hidden", "true");
  const quote = m.replyTo && typeof m.replyTo.seq === "number" ? extras.quoteEl(m.replyTo, T, jumpTo) : "";
  return [av, h("div", "bubble", meta, quote, text, ...more)];
}

function mineOf(seq) {
  let set = mine.get(seq);
  if (!set) mine.set(seq, set = new Set());
  return set;
}
const react = (seq) => (emoji, on) => { if (!send({ type: "react", seq, emoji, on })) note(T.offline); };

// Reply and React for every message; Edit on the reader's own while the engine's window lasts (a
// timer takes it away when the window ends).
function replyTools(m, own) {
  const out = [iconButton(ICONS.reply, T.reply, () => compose.reply(m), "reply")];
  if (!locked) out.push(extras.addReaction(mine.get(m.seq) || new Set(), react(m.seq), T));
  clearTimeout(editTimers.get(m.seq));
  const left = own ? extras.editLeft(m, editWindow) : 0;
  if (left) {
    out.push(iconButton(ICONS.edit, T.edit, () => compose.edit(m), "edit"));
    editTimers.set(m.seq, setTimeout(() => { editTimers.delete(m.seq); const it = items.get(m.seq); if (it && !it.local) renderMessage(it.msg, it.el); }, left));
  }
  return out;
}

function renderMessage(m, li = h("li")) {
  const own = !!me && m.authorId === me.authorId;
  li.className = own ? "msg own" : "msg";
  li.dataset.seq = m.seq;
  const tools = h("span", "tools", ...replyTools(m, own));
  if (moderator.active) tools.append(...modTools(m, own));
  else if (own) tools.append(deleteButton(m.seq));
  else tools.append(reportButton(m.seq));
  li.dataset.author = groupKey(m.authorId, m.nickname, m.avatar);
  li.dataset.at = Date.parse(m.createdAt) || Date.now();
  const reacts = extras.reactionBar(m.reactions, mine.get(m.seq) || new Set(), react(m.seq), T, !locked);
  // Drawn again under the reader's focus (a reaction pressed): focus stays on the same control.
  const had = li.contains(document.activeElement) && document.activeElement;
  const key = had && (had.dataset.emoji || had.getAttribute("aria-label"));
  li.replaceChildren(...bubble(m, [timeEl(m.createdAt), tools], own, reacts ? [reacts] : []));
  if (had) {
    const same = [...li.querySelectorAll("button")].find((b) => (b.dataset.emoji || b.getAttribute("aria-label")) === key);
    (same || li.querySelector(".react-add"))?.focus({ preventScroll: true });
  }
  if (li.isConnected) decorate(li);
  return li;
}

function rerender() {
  for (const { el, msg, local } of items.values()) if (!local) renderMessage(msg, el);
}

function renderPending(clientId, p) {
  const li = p.el;
  li.className = p.failed ? "msg own failed" : "msg own pending";
  delete li.dataset.seq;
  li.dataset.clientId = clientId;
  const extra = [h("span", "status", p.failed || T.sending)];
  if (p.failed) {
    extra.push(
      // Same clientId: if the first attempt was stored after all, the server acks without a duplicate.
      button(T.retry, () => { p.failed = null; renderPending(clientId, p); client.retry(clientId); }),
      button(T.discard, () => { pending.delete(clientId); client.discard(clientId); unlist(li); input.focus(); }),
    );
  }
  li.dataset.author = groupKey(me?.authorId, nickname, avatar);
  li.dataset.at ||= Date.now();
  li.replaceChildren(...bubble({ content: p.content, nickname, avatar, replyTo: p.replyTo }, extra, true));
  if (li.isConnected) decorate(li);
}

// A message's own actions are icons with an accessible name (the name is also the tooltip). Built
// with DOM APIs: the paths are constants, never user data.
const ICONS = {
  reply: "M10 9V5l-7 7 7 7v-4.1c5 0 8.5 1.6 11 5.1-1-5-4-10-11-11z",
  edit: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
  del: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6",
  report: "M5 21V4h11l-2 4 2 4H5",
};
function iconButton(d, label, onclick, cls = "") {
  const b = h("button", `act icon ${cls}`);
  b.type = "button";
  b.onclick = onclick;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", d);
  svg.append(path);
  b.idle = () => { b.replaceChildren(svg); b.setAttribute("aria-label", label); b.title = label; b.classList.remove("sure"); };
  b.idle();
  return b;
}

// Two steps (no window.confirm: it blocks and sandboxed frames may suppress it): the first press
// turns the icon into the question in words for 3 s, the second does it.
function twoStep(d, label, sure, action) {
  let timer = 0;
  const b = iconButton(d, label, () => {
    if (timer) { action(b); return; }
    b.replaceChildren(sure);
    b.setAttribute("aria-label", sure);
    b.classList.add("sure");
    timer = setTimeout(() => { timer = 0; b.idle(); }, 3000);
  });
  return b;
}

const deleteButton = (seq) => twoStep(ICONS.del, T.del, T.delSure, (b) => {
  if (send({ type: "delete", seq })) b.disabled = true; else note(T.offline);
});

// A report goes once; the engine answers `reported` (also for a repeat) and hides a message once
// enough readers reported it.
function reportButton(seq) {
  if (reported.has(seq)) {
    const done = iconButton(ICONS.report, T.reported, null);
    done.disabled = true;
    return done;
  }
  return twoStep(ICONS.report, T.report, T.reportSure, (b) => {
    if (send({ type: "report", seq })) b.disabled = true; else note(T.offline);
  });
}

function onReported(seq) {
  reported.add(seq);
  const it = items.get(seq);
  if (it && !it.local) renderMessage(it.msg, it.el);
  note(T.thanksReport);
}

// ---- moderator mode ---------------------------------------------------------------------------
let moderator = { active: false };  // moderator.js's, once `extras` are here

function renderModerator() {
  const on = moderator.active;
  modBtn.textContent = on ? T.modStop : T.moderate;
  modBtn.setAttribute("aria-pressed", String(on));
  lockBtn.hidden = !on;
  lockBtn.textContent = locked ? T.reopen : T.lock;
  app.classList.toggle("moderating", on);
  rerender();
  renderPin(client.pinned);
}

// Says how an action went; a grant that stopped working has already turned the mode off.
async function act(b, action, done) {
  b.disabled = true;
  const outcome = await action();
  if (outcome === "ok") { if (done) note(done); } else note(T.modOutcome[outcome]);
  b.disabled = false;
}

function modTools(m, own) {
  let timer = 0;
  const del = button(T.del, () => {
    if (!timer) {
      del.textContent = T.delSure;
      timer = setTimeout(() => { timer = 0; del.textContent = T.del; }, 3000);
    } else act(del, () => moderator.deleteMessage(m.seq));
  });
  const pinned = m.seq === pinnedSeq;
  const pin = button(pinned ? T.unpin : T.pin, () => act(pin, () => moderator.pin(pinned ? null : m.seq)));
  if (own) return [del, pin];
  const ban = button(T.ban, () => {
    // The lengths replace the button; a choice (or Escape) puts it back.
    const choices = extras.BAN_MINUTES.map((minutes, i) => button(T.banFor[i], async () => {
      await act(choices[i], () => moderator.ban(m.authorId, minutes), T.bannedFor(iso(m.nickname), T.banFor[i]));
      group.replaceWith(ban);
    }));
    const group = h("span", "ban-for", ...choices);
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", T.banHow(iso(String(m.nickname ?? ""))));
    group.addEventListener("keydown", (e) => { if (e.key === "Escape") { group.replaceWith(ban); ban.focus(); } });
    ban.replaceWith(group);
    choices[0].focus();
  });
  return [del, ban, pin];
}

modBtn.addEventListener("click", () => (moderator.active ? moderator.stop() : moderator.open?.()));
lockBtn.addEventListener("click", () => act(lockBtn, () => moderator.lock(!locked)));

// Confirmed messages sit in seq order; pending ones (no data-seq) stay below them.
function place(el, seq) {
  let prev = list.lastElementChild;
  while (prev && (prev === el || !prev.dataset.seq || +prev.dataset.seq > seq)) prev = prev.previousElementSibling;
  list.insertBefore(el, prev ? prev.nextElementSibling : list.firstElementChild);
  settle(el);
}

// ---- grouping and day dividers ------------------------------------------------------------------
// Both follow from a message's neighbour above, so they are worked out again for a message and the
// one below it whenever either changes (placed, drawn again, removed); never for the whole list.
const GROUP_MS = 5 * 60 * 1000;  // one author's messages this close together share one header
// A new name or animal shows a new header, even from the same author.
const groupKey = (authorId, name, animal) => JSON.stringify([authorId ?? "", name, animal]);

function decorate(li) {
  if (!li || !li.classList.contains("msg")) return;
  const prev = li.previousElementSibling, at = +li.dataset.at;
  const newDay = !prev || dayKey(+prev.dataset.at) !== dayKey(at);
  li.classList.toggle("cont", !newDay && prev.dataset.author === li.dataset.author && at - prev.dataset.at < GROUP_MS);
  let day = li.firstElementChild?.classList.contains("day") ? li.firstElementChild : null;
  if (!newDay) { day?.remove(); return; }
  if (!day) {
    day = h("div", "day");
    day.setAttribute("role", "separator");
    li.prepend(day);
  }
  labelDay(day, at);
}
function labelDay(day, at) {
  const label = dayLabel(at);
  day.textContent = label;
  day.setAttribute("aria-label", label);  // a separator's name; its content is not read
}
function settle(li) {
  decorate(li);
  decorate(li.nextElementSibling);
}
// Removes a message from the list; the one below it may start a group or a day now.
function unlist(li) {
  const next = li.nextElementSibling;
  li.remove();
  decorate(next);
}

// Returns true when the message is new to this page.
function addMessage(m) {
  if (!m || typeof m.seq !== "number" || gone.has(m.seq)) return false;
  const known = items.get(m.seq);
  if (known) {
    // An ack already placed it with a local timestamp; take the server's copy.
    if (known.local) { renderMessage(m, known.el); items.set(m.seq, { el: known.el, msg: m }); }
    return false;
  }
  let el;
  const p = me && m.authorId === me.authorId && m.clientId ? pending.get(m.clientId) : null;
  if (p) { pending.delete(m.clientId); el = p.el; }
  el = renderMessage(m, el);
  items.set(m.seq, { el, msg: m });
  place(el, m.seq);
  const t = typers.get(m.authorId);
  if (t) { clearTimeout(t.timer); typers.delete(m.authorId); renderTyping(); }
  return true;
}

// Adds messages at the live end: follows them when the reader is at the bottom, else counts them.
function addLive(msgs, announceThem) {
  const stick = nearBottom();
  let fromOthers = 0;
  for (const m of msgs) {
    if (!addMessage(m) || (me && m.authorId === me.authorId)) continue;
    fromOthers++;
    if (announceThem) announce(m);
  }
  if (stick && inSight) toBottom(false);
  else {
    if (stick) scrollToEnd(false);  // keep following, but the reader has not seen them yet
    if (fromOthers) { unread += fromOthers; renderPill(); }
  }
}

// A hidden message the owner kept: back in its place, quietly.
function onRestored(m) {
  gone.delete(m.seq);
  addMessage(m);
}

function removeSeq(seq) {
  gone.add(seq);
  const it = items.get(seq);
  if (it) { unlist(it.el); items.delete(seq); }
  mine.delete(seq);
  requote(seq, { seq, deleted: true });
}

// The replies shown to `seq` quote it as `quote` now (it was edited, deleted or hidden).
function requote(seq, quote) {
  for (const it of items.values()) {
    if (it.msg.replyTo?.seq !== seq) continue;
    it.msg = { ...it.msg, replyTo: quote };
    if (!it.local) renderMessage(it.msg, it.el);
  }
}

// `reactions`: the message's counts now; the reader's own set follows its own changes.
function onReactions(f) {
  if (me && f.authorId === me.authorId) mineOf(f.seq)[f.on ? "add" : "delete"](f.emoji);
  const it = items.get(f.seq);
  if (!it) return;
  it.msg = { ...it.msg, reactions: f.reactions };
  if (!it.local) renderMessage(it.msg, it.el);
}

function onEdited(m) {
  if (!m || typeof m.seq !== "number") return;
  const it = items.get(m.seq);
  if (it) { it.msg = m; it.local = false; renderMessage(m, it.el); }
  requote(m.seq, extras.quoteOf(m));
  if (m.seq === pinnedSeq) renderPin(m);
}

// Takes the reader to the original of a reply: older pages are loaded while it is above the
// loaded list (at most 10 pages), then it is scrolled to and briefly highlighted.
async function jumpTo(seq) {
  for (let pages = 0; !items.has(seq) && hasOlder && pages < 10; pages++) {
    const first = list.querySelector("[data-seq]");
    if (!first || +first.dataset.seq < seq) break;
    await loadOlder();
  }
  const it = items.get(seq);
  if (!it) { note(T.quoteGone); return; }
  list.scrollTop = it.el.offsetTop - list.clientHeight / 3;
  it.el.classList.remove("flash");
  void it.el.offsetWidth;  // restart the highlight when jumping to the same message again
  it.el.classList.add("flash");
  it.el.tabIndex = -1;
  it.el.focus({ preventScroll: true });
}

function clearList() {
  for (const { el } of items.values()) el.remove();
  items.clear();
  listGen++;  // an older-history fetch still in flight belongs to the old list
}

// ---- scrolling and older history --------------------------------------------------------------
const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 48;

// Pinned to the newest message while the reader is at the bottom, whatever changes the list's height
// or its last message's: the composer growing line by line or shrinking after a send, the nickname
// form closing, a bubble drawn again taller (Sending… -> confirmed). `atEnd` is where the reader's
// last scroll left the list; a resize alone does not move it.
let atEnd = true, lastWatched = null;
const keepPinned = new ResizeObserver(() => { if (atEnd) list.scrollTop = list.scrollHeight; });
keepPinned.observe(list);
new MutationObserver(() => {
  renderEmpty();
  const last = list.lastElementChild;
  if (last === lastWatched) return;
  if (lastWatched) keepPinned.unobserve(lastWatched);
  if (last) keepPinned.observe(last);
  lastWatched = last;
}).observe(list, { childList: true });

// An empty room says so, once the engine has said it is empty (not while connecting) and while
// it is open.
function renderEmpty() {
  emptyEl.hidden = !me || locked || list.childElementCount > 0;
}

// Scrolls the list itself, never scrollIntoView (that would also scroll the host page).
function scrollToEnd(smooth) {
  list.scrollTo({ top: list.scrollHeight, behavior: smooth && !reduceMotion.matches ? "smooth" : "auto" });
}
function toBottom(smooth) {
  scrollToEnd(smooth);
  unread = 0;
  renderPill();
}

// The pill shows only when the reader scrolled up; the host hears the count either way, so it can
// badge a chat the reader has scrolled the page away from.
function renderPill() {
  pill.hidden = !unread || nearBottom();
  pill.textContent = pill.hidden ? "" : T.newMsgs(unread);
  if (unread !== unreadPosted) { unreadPosted = unread; post({ unread: { count: unread } }); }
}
let unreadPosted = 0;

// Whether the frame is on the reader's screen. In a cross-origin frame an IntersectionObserver
// without a root measures against the top-level viewport, so this follows the host page's scroll.
let onScreen = true, inSight = true;
function updateSight() {
  inSight = onScreen && document.visibilityState !== "hidden";
  if (inSight && unread && nearBottom()) { unread = 0; renderPill(); }
}
if ("IntersectionObserver" in window) {
  new IntersectionObserver((es) => { onScreen = es[es.length - 1].isIntersecting; updateSight(); }).observe(app);
}
document.addEventListener("visibilitychange", updateSight);

// One load at a time; a caller that finds one running waits for it.
let olderLoad = null;
function loadOlder() {
  if (loadingOlder) return olderLoad;
  olderLoad = loadOlderPage();
  return olderLoad;
}
async function loadOlderPage() {
  if (!hasOlder || Date.now() < olderRetryAt) return;
  const first = list.querySelector("[data-seq]");
  if (!first) return;
  loadingOlder = true;
  list.setAttribute("aria-busy", "true");
  const gen = listGen;
  try {
    const who = me ? `&authorId=${me.authorId}` : "";
    const url = `/api/rooms/${encodeURIComponent(roomId)}/messages?before=${first.dataset.seq}&limit=${PAGE}${who}`;
    const res = await fetch(url, { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const page = await res.json();
    const msgs = page.messages || [];
    if (gen !== listGen) return;
    takeMine(page.myReactions);
    // Keep what the reader is looking at in place while content grows above it. Measured on the
    // message that was first, not on the list's height: joining the group above it can take its
    // header away, and that is no reason to move it.
    const anchorTop = first.getBoundingClientRect().top;
    for (const m of msgs) addMessage(m);
    list.scrollTop += first.getBoundingClientRect().top - anchorTop;
    if (msgs.length < PAGE || msgs[0].seq <= 1) hasOlder = false;
  } catch {
    olderRetryAt = Date.now() + 3000;  // the next scroll to the top tries again, without a storm
  } finally {
    loadingOlder = false;
    list.removeAttribute("aria-busy");
  }
  fillViewport();
}

// The reader's own reactions, as a welcome or a history page lists them.
function takeMine(given) {
  for (const [seq, emoji] of Object.entries(given || {})) if (Array.isArray(emoji)) mine.set(+seq, new Set(emoji));
}

// With no scrollbar yet, the reader cannot scroll up to ask for more.
function fillViewport() {
  if (hasOlder && list.scrollHeight <= list.clientHeight) loadOlder();
}

list.addEventListener("scroll", () => {
  atEnd = nearBottom();
  if (unread && atEnd && inSight) { unread = 0; renderPill(); }
  if (list.scrollTop < 64) loadOlder();
}, { passive: true });
pill.addEventListener("click", () => { toBottom(true); input.focus(); });

// ---- banner, live region, typing, presence -------------------------------------------------------
let bannerState = "", bannerNote = "", noteTimer = 0;
function renderBanner() {
  const text = bannerNote || bannerState;
  banner.hidden = !text;
  banner.textContent = text;
}
function setState(text) { bannerState = text; renderBanner(); }
function note(text) {
  bannerNote = text;
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => { bannerNote = ""; renderBanner(); }, 5000);
  renderBanner();
}

// Screen readers get at most one announcement every 1.5 s: a single message, or a count.
let liveQueue = [], liveTimer = 0;
function announce(m) {
  liveQueue.push(m);
  liveTimer ||= setTimeout(() => {
    const q = liveQueue;
    liveQueue = [];
    liveTimer = 0;
    live.textContent = q.length === 1 ? `${iso(q[0].nickname)}: ${String(q[0].content).slice(0, 200)}` : T.newMany(q.length);
  }, 1500);
}

function onTyping(f) {
  if (!f.authorId || (me && f.authorId === me.authorId)) return;
  const prev = typers.get(f.authorId);
  if (prev) clearTimeout(prev.timer);
  const timer = setTimeout(() => { typers.delete(f.authorId); renderTyping(); }, TYPING_SHOWN);
  typers.set(f.authorId, { nickname: String(f.nickname ?? ""), timer });
  renderTyping();
}
function renderTyping() {
  const names = [...typers.values()].map((t) => iso(t.nickname));
  typingEl.textContent = names.length ? T.typing(names.slice(0, 3).join(", ")) : "";
}

function setOnline(n) {
  if (typeof n !== "number") return;
  onlineEl.hidden = false;
  onlineEl.classList.remove("stale");
  onlineEl.textContent = T.online(n);
  online = n;
}
// Not connected: the last count may be long wrong, so no number until the next welcome.
function staleOnline() {
  onlineEl.classList.add("stale");
  onlineEl.textContent = T.onlineUnknown;
}

// The participant list the online count opens. The engine may cap `members`; the rest is counted.
let online = 0, members = [];
function onPresence(f) {
  setOnline(f.online);
  if (Array.isArray(f.members)) members = f.members;
  renderPeople();
}
function renderPeople() {
  if (peopleBox.hidden) return;
  const rows = members.map((m) => {
    const av = h("span", "avatar", ANIMALS[m.avatar] || "💬");
    av.setAttribute("aria-hidden", "true");
    const own = me && m.authorId === me.authorId;
    return h("li", own ? "person own" : "person", av, h("span", "name", String(m.nickname ?? "")),
      ...(own ? [h("span", "status", ` (${T.you})`)] : []));
  });
  if (online > members.length) rows.push(h("li", "person status", T.more(online - members.length)));
  people.replaceChildren(...rows);
}
function togglePeople(open = peopleBox.hidden) {
  peopleBox.hidden = !open;
  onlineEl.setAttribute("aria-expanded", String(open));
  renderPeople();
}
onlineEl.addEventListener("click", () => togglePeople());
peopleBox.addEventListener("keydown", (e) => { if (e.key === "Escape") { togglePeople(false); onlineEl.focus(); } });
onlineEl.addEventListener("keydown", (e) => { if (e.key === "Escape" && !peopleBox.hidden) togglePeople(false); });

// ---- closed room and pinned message ---------------------------------------------------------------
// Closed: no composer and no nickname prompt, a line saying so instead; reopened: back as they were.
function renderForms() {
  closedEl.hidden = !locked;
  slowEl.hidden = locked || !slowMode;
  slowEl.textContent = slowMode ? T.slowMode(slowMode) : "";
  nickForm.hidden = locked || !nickOpen;
  app.classList.toggle("locked", locked);
  composer.hidden = locked || nickOpen;
  meBtn.hidden = locked || !roomOk;
  renderEmpty();
}

function onRoom({ locked: isLocked, pinned, slowMode: slow = 0 }) {
  const had = composer.contains(document.activeElement) || nickForm.contains(document.activeElement);
  const relock = locked !== isLocked;
  locked = isLocked;
  slowMode = slow;
  renderForms();
  if (relock) rerender();  // reactions open or close with the room
  if (locked && had) list.focus();  // focus must not vanish with the form
  const pinChanged = (pinned?.seq || 0) !== pinnedSeq;
  pinnedSeq = pinned?.seq || 0;
  if (moderator.active) {
    lockBtn.textContent = locked ? T.reopen : T.lock;
    if (pinChanged) rerender();  // the Pin / Unpin labels follow
  }
  renderPin(pinned);
}

// The pinned message above the list: a labelled region, its text clamped to a few lines (shown in
// full while it has focus).
function renderPin(m) {
  pinBox.hidden = !m;
  if (!m) { pinBody.replaceChildren(); delete pinBox.dataset.seq; return; }
  pinBox.dataset.seq = m.seq;
  const extra = [timeEl(m.createdAt, true)];
  if (moderator.active) {
    const unpin = button(T.unpin, () => act(unpin, () => moderator.pin(null)));
    extra.push(unpin);
  }
  const [av, bub] = bubble(m, extra);
  bub.className = "pin-msg";
  pinBody.replaceChildren(av, bub);
}

// ---- what the client reports ----------------------------------------------------------------------
function onFrame(f) {
  if (f.type === "presence") onPresence(f);
  else if (f.type === "typing") onTyping(f);
  else if (f.type === "reported" && typeof f.seq === "number") onReported(f.seq);
  else if (f.type === "reactions" && typeof f.seq === "number") onReactions(f);
  else if (f.type === "edited") onEdited(f.message);
}

// `history`: what the client had not passed on before. Not resumed: a fresh page of the latest
// messages, whatever we showed may have a gap before it, so start over.
function onWelcome(f, history) {
  me = f.you || me;
  setState("");
  setOnline(f.online);
  editWindow = Number(f.editWindow) || 0;
  if (!f.resumed) mine.clear();
  takeMine(f.myReactions);
  if (f.resumed) {
    addLive(history, false);
    rerender();  // reactions and Edit may have changed while away
  } else {
    clearList();
    for (const m of history) addMessage(m);
    hasOlder = Array.isArray(f.history) && f.history.length > 0 && f.history[0].seq > 1;
    toBottom(false);
  }
  renderEmpty();
  fillViewport();
}

function onAck(clientId, seq) {
  const p = pending.get(clientId);
  if (!p) return;
  pending.delete(clientId);
  if (items.has(seq) || gone.has(seq)) { unlist(p.el); return; }
  // Shown as confirmed now; the matching `message` frame replaces the local timestamp.
  const m = { seq, roomId, authorId: me.authorId, nickname, avatar, content: p.content,
    createdAt: new Date().toISOString(), clientId, replyTo: p.replyTo };
  renderMessage(m, p.el);
  items.set(seq, { el: p.el, msg: m, local: true });
  place(p.el, seq);
}

function onError(f, { clientId, retryAfterMs }) {
  // A refused send says when a send will go through again (the reader's, the network's or the
  // room's limit); the message stays in its bubble with Retry, so nothing typed is lost.
  const wait = Math.ceil(retryAfterMs / 1000);
  // Refused as spam: what the rule was, so the reader knows what to change.
  const spam = f.code === "spam" && (T.spam[f.reason] || T.spam.other);
  const reason = (wait && T.slowDown(wait)) || spam || T.errors[f.code]
    || (f.code === "invalid_nickname" ? T.nickRule : f.message) || T.errors.internal;
  if (f.code === "banned") {
    setState(reason);
    sendBtn.disabled = input.disabled = true;
  }
  const p = clientId && pending.get(clientId);
  if (p) { p.failed = reason; renderPending(clientId, p); return; }
  if (f.code === "invalid_nickname") { openNick(reason); return; }
  if (f.code !== "banned") note(reason);
}

// `next`: what the client does now (see client.js); only a failure shows the banner.
function onClose(next) {
  for (const t of typers.values()) clearTimeout(t.timer);
  typers.clear();
  renderTyping();
  staleOnline();
  if (next === "banned") setState(T.errors.banned);  // the server closes with 1008 after `banned`
  else if (next === "retry") setState(T.reconnecting);
}

addEventListener("online", () => client.wake());

// ---- composing ----------------------------------------------------------------------------------
let lastTypingSent = 0;

function submit() {
  const content = input.value.trim();
  const n = chars(content);
  if (!n || n > MAX_LEN || client.banned) return;
  const mode = compose?.mode;
  if (mode?.kind === "edit") {
    // The engine answers with `edited` for everyone (or an error, shown as a note).
    if (!send({ type: "edit", seq: mode.msg.seq, content })) { note(T.offline); return; }
    compose.done();
    onInput();
    return;
  }
  const replyTo = mode ? extras.quoteOf(mode.msg) : undefined;
  const clientId = client.submit(content, replyTo?.seq);  // offline: stays pending, goes out after the next welcome
  compose?.done();
  const p = { el: h("li"), content, failed: null, replyTo };
  pending.set(clientId, p);
  renderPending(clientId, p);
  list.append(p.el);
  settle(p.el);
  input.value = "";
  onInput();
  toBottom(false);
}

function onInput() {
  input.style.height = "auto";
  input.style.height = `${input.scrollHeight + 2}px`;  // +2: the 1px borders (box-sizing: border-box)
  // "auto" let the list grow for a moment, which clamped its scrollTop; back to the same size, the
  // ResizeObserver sees no change, so the list is re-pinned here.
  if (atEnd) list.scrollTop = list.scrollHeight;
  const n = chars(input.value.trim());
  count.hidden = n < COUNTER_FROM;
  count.textContent = `${n}/${MAX_LEN}`;
  count.classList.toggle("over", n > MAX_LEN);
  sendBtn.disabled = client.banned || n === 0 || n > MAX_LEN;
  if (n && Date.now() - lastTypingSent > TYPING_EVERY && send({ type: "typing" })) lastTypingSent = Date.now();
}

let compose = null;  // reply.js's, once `extras` are here
input.addEventListener("input", onInput);
input.addEventListener("keydown", (e) => {
  // isComposing / 229: Enter that confirms a Korean (IME) syllable must not send.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    submit();
  }
});
composer.addEventListener("submit", (e) => { e.preventDefault(); submit(); });

// ---- nickname prompt ----------------------------------------------------------------------------
let draftAvatar = avatar;

function renderMe() {
  meBtn.hidden = locked;
  const glyph = h("span", "emoji", ANIMALS[avatar]);
  glyph.setAttribute("aria-hidden", "true");
  meBtn.replaceChildren(glyph, ` ${iso(nickname)}`);
  meBtn.setAttribute("aria-label", `${iso(nickname)}: ${T.changeNick}`);  // keeps the visible name in the label
}
function renderDraftAvatar() {
  nickAvatar.textContent = ANIMALS[draftAvatar];
  nickAvatar.setAttribute("aria-label", T.avatarLabel(T.animals[draftAvatar]));
}

function openNick(message = "") {
  draftAvatar = avatar;
  renderDraftAvatar();
  nickInput.value = nickname;
  showNickProblem(message);
  nickCancel.hidden = !hasNickname();  // the first choice cannot be skipped
  nickOpen = true;
  renderForms();
}
function closeNick() {
  nickOpen = false;
  renderForms();
}

nickAvatar.addEventListener("click", () => {
  const wasDefault = nickInput.value.trim() === defaultNick(draftAvatar);
  draftAvatar = animalKeys[(animalKeys.indexOf(draftAvatar) + 1) % animalKeys.length];
  if (wasDefault) nickInput.value = defaultNick(draftAvatar);  // keep the suggestion matching the animal
  renderDraftAvatar();
});
function showNickProblem(problem) {
  nickErr.textContent = problem;
  nickInput.setAttribute("aria-invalid", String(!!problem));
}
// The error clears as soon as the name is valid; it appears only on submit, not mid-typing.
nickInput.addEventListener("input", () => { if (nickErr.textContent && !nickProblem(nickInput.value)) showNickProblem(""); });
nickForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const problem = nickProblem(nickInput.value);
  showNickProblem(problem);
  if (problem) { nickInput.focus(); return; }
  const changed = nickInput.value.trim() !== nickname || draftAvatar !== avatar;
  nickname = nickInput.value.trim();
  avatar = draftAvatar;
  saveProfile(nickname, avatar);
  closeNick();
  renderMe();
  input.focus();
  if (client.held) client.release(); else if (changed) send({ type: "rename", nickname, avatar });
});
nickCancel.addEventListener("click", () => { closeNick(); meBtn.focus(); });
nickForm.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !nickCancel.hidden) { closeNick(); meBtn.focus(); }
});
meBtn.addEventListener("click", () => { openNick(); nickInput.focus(); nickInput.select(); });
// A name saved in another widget of this site (this page or another tab): taken here too.
onProfile((p) => {
  if (nickProblem(p.nickname) || !animalKeys.includes(p.avatar) || (p.nickname === nickname && p.avatar === avatar)) return;
  nickname = p.nickname;
  avatar = p.avatar;
  if (nickOpen && nickCancel.hidden) closeNick();  // the first-visit prompt has its answer
  renderMe();
  if (client.held) client.release(); else send({ type: "rename", nickname, avatar });
});

// ---- host page (postMessage) and theme --------------------------------------------------------------
function post(msg) {
  if (hostOrigin) window.parent.postMessage({ chat: msg }, hostOrigin);
}

// Same classes as the inline head script. "auto" leaves it to prefers-color-scheme, which the CSS follows live.
// A transparent widget ("bare", from the page's query) stays transparent; only its colours change.
function applyTheme(t) {
  const root = document.documentElement;
  root.classList.remove("theme-light", "theme-dark", "theme-auto");
  root.classList.add(`theme-${t}`);
  root.style.colorScheme = t === "auto" ? "light dark" : t;
}

addEventListener("message", (e) => {
  if (!hostOrigin || e.source !== window.parent || e.origin !== hostOrigin) return;
  const theme = e.data?.chat?.setTheme;
  if (theme === "light" || theme === "dark" || theme === "auto") applyTheme(theme);
});

// Height reports: the least height the widget needs, its fixed parts (header, forms, banner, ...)
// plus LIST_MIN for the list, rounded up, at most once per frame. The host keeps the frame at the
// height it gave it when that is more (embed.js does), so nothing on its page moves while the widget
// connects, fills up or sits in an empty room: the list takes what is left and scrolls inside.
// Measured from the parts, never from the frame's own height, so the need shrinks again (no ratchet).
const LIST_MIN = 128;
let lastHeight = 0, heightQueued = false;
function reportHeight() {
  if (heightQueued || !hostOrigin) return;
  heightQueued = true;
  requestAnimationFrame(() => {
    heightQueued = false;
    const fixed = app.getBoundingClientRect().height - body.getBoundingClientRect().height;
    const height = Math.ceil(fixed + LIST_MIN);
    // Kept on the element too, so tests can tell the height the widget last asked for.
    if (height !== lastHeight) { lastHeight = height; app.dataset.height = height; post({ resize: { height } }); }
  });
}
if (hostOrigin && "ResizeObserver" in window) {
  const ro = new ResizeObserver(reportHeight);
  for (const el of app.children) ro.observe(el);  // hidden parts report when they appear
}

// ---- start ------------------------------------------------------------------------------------
const title = (params.get("title") || "").trim().slice(0, 200) || T.title;
$("title").textContent = title;
document.title = title;
$("input-label").textContent = T.inputLabel;
$("nick-label").textContent = T.nickLabel;
$("nick-save").textContent = T.nickSave;
$("pin-label").textContent = T.pinned;
closedEl.textContent = T.closed;
emptyEl.textContent = T.empty;
nickCancel.textContent = T.cancel;
input.placeholder = T.placeholder;
sendBtn.textContent = T.send;
meBtn.title = T.changeNick;
modBtn.title = T.moderateTitle;
renderModerator();
onInput();

people.setAttribute("aria-label", T.people);
onlineEl.title = T.people;

// The frame is drawn: the host may show it and send messages now, before the socket opens.
post({ ready: { roomId } });
reportHeight();

if (!roomOk) {
  setState(T.badRoom);
  sendBtn.disabled = input.disabled = true;
} else {
  setState(T.connecting);
  identityReady.then(() => {
    if (!persistent) { hint.hidden = false; hint.textContent = T.tabOnly; }
    renderMe();
    if (firstVisit) openNick();
    client.connect();
    loadExtras();
  });
}
