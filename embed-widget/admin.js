// The admin page's entry: language, sign-in and sign-out, and the lists (rooms active now, the
// reports queue, all rooms, bans), refreshed every 5 s while the page is visible. The open room
// lives in admin-room.js, the dialogs in admin-ban.js.

import * as api from "./admin-api.js";
import { initDialogs } from "./admin-ban.js";
import { $, button, h, messageItem, setLang, time, when } from "./admin-dom.js";
import * as room from "./admin-room.js";
import { STRINGS, pickLang } from "./admin-strings.js";

const params = new URLSearchParams(location.search);
const lang = pickLang(params.get("lang"), navigator.language);
const T = STRINGS[lang];
document.documentElement.lang = lang;
document.title = T.title;
setLang(lang);
for (const el of document.querySelectorAll("[data-t]")) el.textContent = T[el.dataset.t];

let statusTimer;
/** A short line in the status region (aria-live), cleared after a while. */
function say(text) {
  $("status").textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { $("status").textContent = ""; }, 8000);
}

// ---- lists ------------------------------------------------------------------------------------

/**
 * Puts `rows` ({ key, sig, make }) in `list`, reusing the element of a row whose data (`sig`) did
 * not change, so a refresh neither moves the keyboard focus nor re-reads unchanged rows.
 */
function sync(list, rows, emptyText) {
  const old = new Map([...list.children].map((el) => [el.dataset.key, el]));
  const active = document.activeElement;
  const next = rows.map(({ key, sig, make }) => {
    const prev = old.get(key);
    if (prev?.dataset.sig === sig) return prev;
    const el = make();
    el.dataset.key = key; el.dataset.sig = sig;
    // A report whose context was open stays open (and loads it again).
    if (prev?.querySelector("details")?.open) el.querySelector("details").open = true;
    // The same control in the new row takes the focus its old one had.
    if (prev?.contains(active)) queueMicrotask(() => el.querySelectorAll("button")[[...prev.querySelectorAll("button")].indexOf(active)]?.focus());
    return el;
  });
  if (!next.length) next.push(list.querySelector(":scope > .none") ?? h("li", { className: "none" }, emptyText));
  const hadFocus = list.contains(active);
  next.forEach((el, i) => { if (list.children[i] !== el) list.insertBefore(el, list.children[i] ?? null); });
  while (list.children.length > next.length) list.lastElementChild.remove();
  if (hadFocus && !list.contains(document.activeElement)) queueMicrotask(() => { if (!list.contains(document.activeElement)) list.closest("section").querySelector("h2").focus(); });
}

const openButton = (id, known) => button(id, () => room.open(id, known), { className: "link", label: `${T.open}: ${id}` });

async function loadActive() {
  const { rooms } = await api.activeRooms();
  // A room stays live on the pod a while after its last reader left (or after a lock): only rooms
  // with readers or recent messages are "active now". Rooms live only on other pods come with
  // their readers alone (`here: false`).
  sync($("active"), rooms.filter((r) => r.online || r.messagesPerMinute).map((r) => ({
    key: r.id, sig: `${r.online}|${r.messagesPerMinute}|${r.locked}`,
    make: () => h("li", { className: "row" }, openButton(r.id, r.locked == null ? {} : { locked: r.locked }),
      h("span", { className: "info" }, `${T.online(r.online)} · ${r.here === false ? T.otherPods : T.perMin(r.messagesPerMinute)}`),
      r.locked ? h("span", { className: "badge warn" }, T.locked) : null),
  })), T.noActive);
}

// All rooms: the pages loaded so far are fetched again on each refresh (usually just one).
let search = "", pages = 1, next = null, roomsAsked = 0;
async function loadRooms() {
  // Only the latest request counts: a slow refresh must not overwrite a newer search.
  const asked = ++roomsAsked;
  let all = [], after = null;
  for (let i = 0; i < pages; i++) {
    const page = await api.rooms(search, after);
    if (asked !== roomsAsked) return;
    all = all.concat(page.rooms);
    after = page.next;
    if (!after) break;
  }
  next = after;
  $("more-rooms").hidden = !next;
  sync($("rooms"), all.map((r) => ({
    key: r.id, sig: `${r.messages}|${r.lastActivity}|${r.locked}|${lang}`,
    make: () => h("li", { className: "row" }, openButton(r.id, { locked: r.locked }),
      h("span", { className: "info" }, r.lastActivity ? `${T.msgs(r.messages)} · ${T.lastActivity(when(r.lastActivity))}` : T.never),
      r.locked ? h("span", { className: "badge warn" }, T.locked) : null),
  })), T.noRooms);
}

async function loadBans() {
  const { bans } = await api.bans();
  sync($("bans"), bans.map((b) => ({
    key: `${b.room}/${b.authorId}`, sig: b.until,
    make: () => h("li", { className: "row" },
      h("span", { className: "info" }, h("code", {}, b.authorId), " ", T.inRoom(b.room), " · ", T.until(when(b.until))),
      button(T.unban, () => unban(b), { label: `${T.unban}: ${b.authorId} ${T.inRoom(b.room)}` })),
  })), T.noBans);
}

async function unban(b) {
  try {
    await api.unban(b.room, b.authorId);
    say(T.unbanned);
    await loadBans();
  } catch (e) {
    say(T.failed(e.message));
  }
}

// The reports queue (an engine without it answers 404: the panel says so and stays quiet).
let reportsOff = false;
async function loadReports() {
  if (reportsOff) return;
  let reports;
  try {
    ({ reports } = await api.reports());
  } catch (e) {
    if (e.status !== 404) throw e;
    reportsOff = true;
    $("reports").replaceChildren(h("li", { className: "none" }, T.reportsOff));
    return;
  }
  sync($("reports"), reports.map((r) => ({
    key: `${r.room}/${r.seq}`, sig: `${r.reports}|${r.hidden}`,
    make: () => reportItem(r),
  })), T.noReports);
}

function reportItem(r) {
  const m = { ...r.message, roomId: r.room };
  const name = `#${m.seq} ${m.nickname}`;
  const context = h("ol", { className: "msgs context" });
  const details = h("details", { ontoggle: () => { if (details.open && !context.children.length) loadContext(r, context); } },
    h("summary", {}, T.context), context);
  return h("li", { className: "report" },
    h("div", { className: "meta" }, openButton(r.room, {}), h("span", { className: "badge warn" }, T.reportCount(r.reports)),
      r.hidden ? h("span", { className: "badge" }, T.hidden) : null),
    messageItem(m, [
      button(T.dismiss, () => dismiss(m), { label: `${T.dismiss}: ${name}` }),
      button(T.del, () => room.remove(m), { label: `${T.del}: ${name}` }),
      button(T.ban, () => room.banAuthor(m), { label: `${T.ban}: ${name}` }),
    ], h("span", { className: "sr" }, T.reported)),
    details);
}

/** The messages around a reported one, from the public history (it leaves hidden ones out). */
async function loadContext(r, list) {
  list.append(h("li", { className: "none" }, T.loading));
  try {
    const { messages } = await api.history(r.room, r.seq + 3, 6);
    if (!messages.some((m) => m.seq === r.seq)) messages.push(r.message);
    messages.sort((a, b) => a.seq - b.seq);
    list.replaceChildren(...messages.map((m) => {
      const li = messageItem(m);
      if (m.seq === r.seq) { li.classList.add("reported"); li.setAttribute("aria-current", "true"); }
      return li;
    }));
  } catch (e) {
    list.replaceChildren(h("li", { className: "none" }, T.failed(e.message)));
  }
}

async function dismiss(m) {
  try {
    await api.dismiss(m.roomId, m.seq);
    say(T.dismissed);
    await loadReports();
  } catch (e) {
    say(T.failed(e.message));
  }
}

/** Every list again, and the open room when it is not live. */
async function refreshAll() {
  if (!api.signedIn()) return;
  const results = await Promise.allSettled([loadActive(), loadReports(), loadRooms(), loadBans()]);
  const failed = results.find((r) => r.status === "rejected" && r.reason?.status !== 403);
  if (failed) say(failed.reason.status === 0 ? T.netError : T.failed(failed.reason.message));
  room.tick();
}

let timer = null;
function startRefresh() {
  clearInterval(timer);
  timer = setInterval(() => { if (document.visibilityState === "visible") refreshAll(); }, 5000);
}
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") refreshAll(); });

$("search").onsubmit = (e) => {
  e.preventDefault();
  const input = $("search-input");
  if (!input.checkValidity()) { say(T.failed(T.search)); return; }
  search = input.value.trim(); pages = 1;
  loadRooms().catch((err) => say(T.failed(err.message)));
};
$("more-rooms").onclick = () => {
  pages++;
  loadRooms().catch((err) => say(T.failed(err.message)));
};

// ---- signing in and out ---------------------------------------------------------------------------

function showSignIn(message = "") {
  clearInterval(timer);
  room.close(false);
  // Nothing of the admin's data stays in the page once signed out.
  for (const id of ["active", "reports", "rooms", "bans", "room-list"]) $(id).replaceChildren();
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  if (message) say(message);
  $("token").focus();
}

// Opened by a widget's "Moderate" button (a popup at /admin#moderate): hand that widget the
// session's grant, at our own origin only (the widget's frame is on it; the blog's page is not).
function handOff() {
  const g = api.grant();
  if (location.hash !== "#moderate" || !window.opener || !g) return;
  window.opener.postMessage({ chat: g }, location.origin);
  say(T.handedOff);
  window.close();
}

function showApp() {
  handOff();
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  reportsOff = false;
  refreshAll();
  startRefresh();
}

$("sign-in").onsubmit = async (e) => {
  e.preventDefault();
  const input = $("token"), btn = $("sign-in-btn"), err = $("token-err");
  if (!input.value) { err.textContent = T.wrongToken; input.focus(); return; }
  err.textContent = "";
  btn.disabled = true;
  say(T.checking);
  try {
    if (await api.signIn(input.value)) {
      input.value = "";
      say(T.signedIn);
      showApp();
      $("active-h").focus();
    } else {
      err.textContent = T.wrongToken;
      input.setAttribute("aria-invalid", "true");
      input.select();
      input.focus();
    }
  } catch {
    err.textContent = T.netError;
  } finally {
    btn.disabled = false;
  }
};
$("token").oninput = () => $("token").removeAttribute("aria-invalid");

$("sign-out").onclick = async () => {
  await api.signOut().catch(() => {});
  showSignIn(T.signedOut);
};

api.whenExpired(() => { if (!$("app").hidden) showSignIn(T.expired); });
initDialogs(T);
room.initRoom(T, say, () => refreshAll());

api.resume().then((yes) => (yes ? showApp() : showSignIn()), () => showSignIn(T.netError));
