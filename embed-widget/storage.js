// Storage: the reader's identity (anonymousId, nickname, avatar) kept in localStorage across
// visits, or for this tab only where the browser blocks storage for embedded pages.
import { uuid } from "./client.js";

// Storage can throw (blocked or partitioned third-party storage, private mode): every access is
// wrapped. Order: localStorage (kept across visits), else this tab's sessionStorage, else memory.
// `persistent` tells the reader discreetly when their identity will not outlive the tab.
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
export const persistent = areas.length > 0 && (() => { try { return areas[0] === window.localStorage; } catch { return false; } })();
export const store = {
  get(k) {
    try { const v = areas[0]?.getItem(k); if (v != null) return v; } catch { /* memory */ }
    return memory.get(k) ?? null;
  },
  set(k, v) { memory.set(k, v); try { areas[0]?.setItem(k, v); } catch { /* memory only */ } },
};

// The saved identity: a v4 anonymousId (a new one, saved at once, when missing or malformed), the
// avatar (a random one from `animals` until one is saved) and the saved nickname ("" when none).
export function loadIdentity(animals) {
  let anonymousId = store.get("chat.anonymousId");
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.test(anonymousId || "")) {
    anonymousId = uuid();
    store.set("chat.anonymousId", anonymousId);
  }
  let avatar = store.get("chat.avatar");
  if (!animals.includes(avatar || "")) avatar = animals[Math.floor(Math.random() * animals.length)];
  return { anonymousId, avatar, nickname: store.get("chat.nickname") || "" };
}

export function saveProfile(nickname, avatar) {
  store.set("chat.nickname", nickname);
  store.set("chat.avatar", avatar);
}

export const hasNickname = () => !!store.get("chat.nickname");
