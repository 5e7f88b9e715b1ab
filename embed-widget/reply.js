// Replies and edits: the quote a reply shows (pressing it jumps to the original), the line above
// the composer while the reader replies to or edits a message (Cancel or Escape leaves it), and how
// long an own message stays editable. User data reaches the DOM as text only.

// The texts of quotes and of the composer's reply and edit modes, in Korean and English.
export const REPLY_TEXTS = {
  en: {
    editing: "Editing your message",
    replyingTo: (who, text) => `Replying to ${who}: ${text}`, jumpTo: (who, text) => `Reply to ${who}: ${text}. Show the message`,
    quoteGone: "The original message was deleted.",
  },
  ko: {
    editing: "내 메시지 수정 중",
    replyingTo: (who, text) => `${who}님에게 답장: ${text}`, jumpTo: (who, text) => `${who}님에게 보낸 답장: ${text}. 원래 메시지 보기`,
    quoteGone: "원래 메시지가 삭제되었어요.",
  },
};

const EXCERPT = 100;  // characters of the original a quote shows, as the engine cuts them

// The quote of `m` as the engine would send it, for a reply shown before the engine's copy arrives.
export const quoteOf = (m) => ({ seq: m.seq, authorId: m.authorId, nickname: m.nickname, excerpt: [...String(m.content ?? "")].slice(0, EXCERPT).join("") });

// Milliseconds an own message can still be edited (0: no longer), from the engine's window.
export function editLeft(m, windowS, now = Date.now()) {
  const at = Date.parse(m.createdAt);
  return windowS > 0 && !isNaN(at) ? Math.max(0, at + windowS * 1000 - now) : 0;
}

// A reply's quote: a button that jumps to the original, or a line saying it is gone.
export function quoteEl(q, T, jump) {
  const gone = q.deleted || !q.nickname;
  const el = document.createElement(gone ? "div" : "button");
  el.className = gone ? "quote gone" : "quote";
  if (gone) { el.textContent = T.quoteGone; return el; }
  el.type = "button";
  const name = document.createElement("b");
  name.textContent = String(q.nickname);
  el.append(name, ` ${String(q.excerpt ?? "")}`);
  el.setAttribute("aria-label", T.jumpTo(`\u2068${q.nickname}\u2069`, String(q.excerpt ?? "")));
  el.onclick = () => jump(q.seq);
  return el;
}

/**
 * The composer's mode: a plain message, a reply to a message, or an edit of one. `bar`: the line
 * above the composer; `input`: the composer's textarea; `changed()`: called after every change.
 */
export function createComposeMode({ bar, input, T, changed }) {
  let mode = null;  // { kind: "reply" | "edit", msg, draft }
  function render() {
    bar.hidden = !mode;
    if (!mode) { bar.replaceChildren(); changed(); return; }
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = mode.kind === "reply"
      ? T.replyingTo(`\u2068${mode.msg.nickname}\u2069`, [...String(mode.msg.content ?? "")].slice(0, EXCERPT).join(""))
      : T.editing;
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "act";
    cancel.textContent = T.cancel;
    cancel.onclick = () => { leave(); input.focus(); };
    bar.replaceChildren(what, cancel);
    changed();
  }
  // Leaving an edit gives back what was typed before it.
  function leave() {
    if (mode?.kind === "edit") input.value = mode.draft;
    mode = null;
    render();
  }
  input.addEventListener("keydown", (e) => { if (e.key === "Escape" && mode) { e.preventDefault(); leave(); } });
  return {
    reply(msg) {
      if (mode?.kind === "edit") input.value = mode.draft;
      mode = { kind: "reply", msg };
      render();
      input.focus();
    },
    edit(msg) {
      const draft = mode?.kind === "edit" ? mode.draft : input.value;
      mode = { kind: "edit", msg, draft };
      input.value = String(msg.content ?? "");
      render();
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    },
    // After a send or an edit went out: back to a plain message (an edit's draft comes back).
    done() { leave(); },
    cancel: leave,
    get mode() { return mode; },
  };
}
