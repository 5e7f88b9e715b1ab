// Storage: the reader's profile (anonymousId, nickname, avatar), kept in localStorage across
// visits. Where the browser blocks storage for embedded pages, the host page keeps it when it
// embeds the widget with embed.js (`hostProfile=1` in the URL; handed over by postMessage, see
// docs/PROTOCOL.md), else it lasts for this tab only. A profile saved in another widget of this
// site, on this page or in another tab, reaches this one through `onProfile`.
import { uuid } from "./client.js";

// Storage can throw (blocked or partitioned third-party storage, private mode): every access is
// wrapped. Order: localStorage (kept across visits), else this tab's sessionStorage, else memory.
const memory = new Map();
const areas = [];
for (const name of ["localStorage", "sessionStorage"]) {
  try {
    const area = window[name];
    area.setItem("chat.probe", "1");
    area.removeItem("chat.probe");
    areas.push(area);
  } catch { /* blocked: try the next one */ }
}
const ownLocal = areas.length > 0 && (() => { try { return areas[0] === window.localStorage; } catch { return false; } })();
const store = {
  get(k) {
    try { const v = areas[0]?.getItem(k); if (v != null) return v; } catch { /* memory */ }
    return memory.get(k) ?? null;
  },
  set(k, v) { memory.set(k, v); try { areas[0]?.setItem(k, v); } catch { /* memory only */ } },
};

// Whether the identity outlives the tab (here or on the host page): the widget tells the reader
// discreetly when it will not. Settled once loadIdentity has resolved.
export let persistent = ownLocal;
let host = null;  // the host page's origin while it keeps the profile
const HOST_WAIT = 1000;  // ms the first hello waits at most for the host's answer
const listeners = [];
const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const profile = () => ({ anonymousId: store.get("chat.anonymousId"), nickname: store.get("chat.nickname") || "", avatar: store.get("chat.avatar") || "" });
const fromHost = (e, origin) => e.source === window.parent && e.origin === origin && e.data?.chat && "profile" in e.data.chat;

// The host's answer to getProfile, or undefined when it gave none in time (not embed.js, or an
// older one).
function askHost(origin) {
  return new Promise((resolve) => {
    const done = (p) => { removeEventListener("message", on); clearTimeout(timer); resolve(p); };
    const on = (e) => { if (fromHost(e, origin)) done(e.data.chat.profile); };
    const timer = setTimeout(done, HOST_WAIT);
    addEventListener("message", on);
    window.parent.postMessage({ chat: { getProfile: {} } }, origin);
  });
}

// Takes a profile from the host (over anything this tab kept); anything malformed is left out.
function take(p) {
  if (!p || typeof p !== "object") return;
  for (const k of ["anonymousId", "nickname", "avatar"]) if (typeof p[k] === "string" && p[k].length <= 64) store.set(`chat.${k}`, p[k]);
}

/**
 * The saved identity: a v4 anonymousId (a new one, saved at once, when missing or malformed), the
 * avatar (a random one from `animals` until one is saved) and the saved nickname ("" when none).
 * `hostOrigin`: the host page that offered to keep the profile; asked only when this frame has no
 * localStorage of its own, and waited for at most HOST_WAIT.
 */
export async function loadIdentity(animals, hostOrigin) {
  if (!ownLocal && hostOrigin) {
    const p = await askHost(hostOrigin);
    if (p !== undefined) {
      take(p);
      host = hostOrigin;
      persistent = true;
    }
  }
  let anonymousId = store.get("chat.anonymousId");
  if (!V4.test(anonymousId || "")) {
    anonymousId = uuid();
    store.set("chat.anonymousId", anonymousId);
    tellHost();
  }
  let avatar = store.get("chat.avatar");
  if (!animals.includes(avatar || "")) avatar = animals[Math.floor(Math.random() * animals.length)];
  return { anonymousId, avatar, nickname: store.get("chat.nickname") || "" };
}

function tellHost() {
  if (host) window.parent.postMessage({ chat: { profile: profile() } }, host);
}

export function saveProfile(nickname, avatar) {
  store.set("chat.nickname", nickname);
  store.set("chat.avatar", avatar);
  tellHost();
}

export const hasNickname = () => !!store.get("chat.nickname");

/**
 * `fn({ nickname, avatar })` after a profile was saved elsewhere: another widget of this site (this
 * page or another tab) through this frame's storage, or, where the host keeps the profile, what
 * embed.js passes on from the other widgets.
 */
export function onProfile(fn) {
  listeners.push(fn);
}
function changed() {
  const { nickname, avatar } = profile();
  for (const fn of listeners) fn({ nickname, avatar });
}
addEventListener("storage", (e) => { if (e.key === "chat.nickname" || e.key === "chat.avatar") changed(); });
addEventListener("message", (e) => {
  // The anonymousId stays this page's: only the name and the avatar change while connected.
  if (!host || !fromHost(e, host) || e.data.chat.profile?.anonymousId !== store.get("chat.anonymousId")) return;
  take(e.data.chat.profile);
  changed();
});
