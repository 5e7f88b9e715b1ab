// Moderator mode: the blog owner's controls inside the widget (delete, ban, pin, close).
// The owner's session cookie never reaches a widget embedded on the blog (a cross-site frame), and
// its storage is partitioned away from the engine's own pages, so the widget asks for the session:
// `open()` shows the admin page in a popup (first-party, signed in there), which posts the
// session's moderator grant back to this frame at the engine's own origin. The grant is kept for
// this tab until it expires and sent as `Authorization: Moderator <grant>`; no cookie, so no CSRF.
// No DOM: the view asks and renders.

// The moderator's texts, in Korean and English (strings.js has the ones a reader sees).
export const MODERATOR_TEXTS = {
  en: {
    ban: "Ban", banFor: ["1 hour", "1 day", "1 week"], banHow: (who) => `Ban ${who} for`,
    bannedFor: (who, long) => `${who} is banned for ${long}.`,
    pin: "Pin", unpin: "Unpin",
    modOutcome: { gone: "Already gone.", expired: "Sign in again to moderate.", failed: "That did not work. Try again." },
  },
  ko: {
    ban: "차단", banFor: ["1시간", "1일", "1주"], banHow: (who) => `${who} 차단 기간`,
    bannedFor: (who, long) => `${who}님을 ${long} 동안 차단했어요.`,
    pin: "고정", unpin: "고정 해제",
    modOutcome: { gone: "이미 없어요.", expired: "관리하려면 다시 로그인하세요.", failed: "처리하지 못했어요. 다시 시도하세요." },
  },
};

const KEY = "chat.moderatorGrant";
export const BAN_MINUTES = [60, 24 * 60, 7 * 24 * 60];

function loadSaved() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && typeof saved.grant === "string" && saved.expiresAt > Date.now()) return saved;
  } catch { /* blocked storage: memory only */ }
  return null;
}

/**
 * `roomId`: this widget's room. `onChange(active)`: moderator mode turned on or off.
 * Every action resolves to "ok", "gone" (404: already deleted, or no such ban), "expired" (the
 * grant no longer works; mode is off) or "failed".
 */
export function createModerator({ roomId, lang, onChange }) {
  let saved = loadSaved();
  let popup = null;
  const room = `/api/rooms/${encodeURIComponent(roomId)}`;

  function set(next) {
    saved = next;
    try { if (next) sessionStorage.setItem(KEY, JSON.stringify(next)); else sessionStorage.removeItem(KEY); } catch { /* memory only */ }
    onChange(!!next);
  }

  // Only the popup we opened, at our own origin, may hand us a grant.
  addEventListener("message", (e) => {
    if (!popup || e.source !== popup || e.origin !== location.origin) return;
    const g = e.data?.chat;
    const expiresAt = Date.parse(g?.expiresAt);
    if (typeof g?.moderatorGrant !== "string" || !(expiresAt > Date.now())) return;
    popup = null;
    set({ grant: g.moderatorGrant, expiresAt });
  });

  async function call(method, path, body) {
    if (!saved) return "expired";
    try {
      const res = await fetch(path, {
        method,
        headers: { Authorization: `Moderator ${saved.grant}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      if (res.ok) return "ok";
      if (res.status === 403) { set(null); return "expired"; }
      return res.status === 404 ? "gone" : "failed";
    } catch {
      return "failed";
    }
  }

  return {
    get active() { return !!saved && saved.expiresAt > Date.now(); },
    /** Opens the admin page to sign in (or confirm) and hand this widget the grant. */
    open() {
      popup = window.open(`/admin?lang=${lang}#moderate`, "chat-moderate", "popup,width=480,height=640");
    },
    stop() { set(null); },
    deleteMessage: (seq) => call("DELETE", `${room}/messages/${seq}`),
    ban: (authorId, minutes) => call("POST", `${room}/bans`, { authorId, minutes }),
    pin: (seq) => (seq ? call("PUT", `${room}/pin`, { seq }) : call("DELETE", `${room}/pin`)),
    lock: (locked) => call(locked ? "PUT" : "DELETE", `${room}/lock`),
  };
}
