// The admin page's HTTP calls: the session (sign-in, status, sign-out) and the moderation routes.
// The CSRF token lives only in this module's memory; a reload gets it again from GET /admin/session.

let csrf = null;
// The session's moderator grant: for the watch-mode socket, and handed to a widget that asked.
let session = null;  // { moderatorGrant, expiresAt }
// Called when the engine says the session is gone (403 on a GET), so the page can ask to sign in.
let onExpired = () => {};
export const whenExpired = (fn) => { onExpired = fn; };

export class ApiError extends Error {
  constructor(status, code, message) { super(message || code || String(status)); this.status = status; this.code = code; }
}

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch {
    throw new ApiError(0, "network");
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new ApiError(res.status, data?.error?.code, data?.error?.message);
    if (res.status === 403 && !path.startsWith("/admin/session")) { csrf = null; onExpired(); }
    throw err;
  }
  return data;
}

const room = (id) => `/api/rooms/${encodeURIComponent(id)}`;

/** Signs in with the admin token; resolves true, or false for a wrong token. */
export async function signIn(token) {
  try {
    session = await call("POST", "/admin/session", { token });
    csrf = session.csrfToken;
    return true;
  } catch (e) {
    if (e.status === 403) return false;
    throw e;
  }
}

/** Whether this browser already has a session (then its CSRF token is kept). */
export async function resume() {
  try {
    session = await call("GET", "/admin/session");
    csrf = session.csrfToken;
    return true;
  } catch (e) {
    if (e.status === 403) return false;
    throw e;
  }
}

export async function signOut() {
  await call("DELETE", "/admin/session").finally(() => { csrf = null; session = null; });
}

export const grant = () => (session ? { moderatorGrant: session.moderatorGrant, expiresAt: session.expiresAt } : null);

export const signedIn = () => csrf !== null;

export const activeRooms = () => call("GET", "/api/admin/rooms/active");
export const rooms = (search, after) => call("GET", `/api/admin/rooms?${new URLSearchParams({ search: search || "", after: after || "", limit: "20" })}`);
export const bans = () => call("GET", "/api/admin/bans");
export const reports = () => call("GET", "/api/admin/reports?limit=50");
export const authorMessages = (author) => call("GET", `/api/admin/authors/${encodeURIComponent(author)}/messages?limit=20`);
export const history = (id, before, limit = 50) =>
  call("GET", `${room(id)}/messages?${new URLSearchParams(before ? { before, limit } : { limit })}`);
export const del = (id, seq) => call("DELETE", `${room(id)}/messages/${seq}`);
export const dismiss = (id, seq) => call("DELETE", `${room(id)}/reports/${seq}`);
export const ban = (id, authorId, minutes) => call("POST", `${room(id)}/bans`, { authorId, minutes });
export const unban = (id, authorId) => call("DELETE", `${room(id)}/bans/${encodeURIComponent(authorId)}`);
export const lock = (id, locked) => call(locked ? "PUT" : "DELETE", `${room(id)}/lock`);
export const pin = (id, seq) => (seq ? call("PUT", `${room(id)}/pin`, { seq }) : call("DELETE", `${room(id)}/pin`));
