// Small DOM helpers for the admin page. Everything from the engine (message text, nicknames, room
// ids) goes in as text nodes: `h` never parses HTML, so untrusted content cannot become markup.

/** `h("li", { className: "x", onclick }, "text", child)`: props are set as properties. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("aria-") || k.startsWith("data-")) el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export const $ = (id) => document.getElementById(id);

let lang = "en";
export const setLang = (l) => { lang = l; };

/** A time as the reader's locale writes it: clock time today, else date and time. */
export function when(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return d.toLocaleString(lang === "ko" ? "ko-KR" : "en-GB",
    today ? { hour: "2-digit", minute: "2-digit" } : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** A `<time>` for an ISO timestamp. */
export const time = (iso) => h("time", { dateTime: iso, className: "when" }, when(iso));

/** Replaces a list's children, keeping an empty-state line when there is nothing. */
export function fill(list, items, emptyText) {
  list.replaceChildren(...(items.length ? items : [h("li", { className: "none" }, emptyText)]));
}

/**
 * One message as a list item: who, when, what, and `actions` (buttons) under it. `data-seq` lets
 * tests and live updates find it.
 */
export function messageItem(m, actions = [], extra = null) {
  return h("li", { className: "msg", "data-seq": m.seq, "data-author": m.authorId },
    h("div", { className: "meta" },
      h("span", { className: "name" }, m.nickname),
      h("span", { className: "author", title: m.authorId }, m.authorId.slice(0, 6)),
      h("span", { className: "seq" }, `#${m.seq}`),
      time(m.createdAt), extra),
    h("p", { className: "text" }, m.content),
    actions.length ? h("div", { className: "acts" }, actions) : null);
}

/** A button with text; `label` gives a fuller accessible name when the text alone is ambiguous. */
export const button = (text, onclick, { label, className = "act" } = {}) =>
  h("button", { type: "button", className, onclick, "aria-label": label }, text);
