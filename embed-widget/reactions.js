// Reactions under a message: a compact bar of the emoji readers left with their counts (the
// reader's own pressed), and an add button among the message's actions that opens the six emoji. Pressing one puts the
// reader's reaction on or takes it back; the engine's `reactions` frame redraws the bar. No state
// of its own: the view passes the counts and the reader's set in, and a toggle callback.

// The reactions' texts, in Korean and English.
export const REACTION_TEXTS = {
  en: {
    reactions: "Reactions", reactAdd: "Add a reaction", react: (name, n) => `${name}: ${n}`,
    emojiNames: { "👍": "Thumbs up", "❤️": "Heart", "😂": "Laughing", "😮": "Surprised", "😢": "Sad", "🙏": "Thanks" },
  },
  ko: {
    reactions: "반응", reactAdd: "반응 남기기", react: (name, n) => `${name}: ${n}`,
    emojiNames: { "👍": "좋아요", "❤️": "하트", "😂": "웃겨요", "😮": "놀라워요", "😢": "슬퍼요", "🙏": "고마워요" },
  },
};

export const EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

function btn(cls, text, label, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.title = label;
  b.onclick = onclick;
  return b;
}

/**
 * The bar of a message's reactions (null when it has none). `counts`: `{ "👍": 3 }` from the
 * message; `mine`: the reader's own emoji (a Set); `toggle(emoji, on)`: sends the change; `T`: the
 * strings; `open`: whether the reader may react now (not in a closed room).
 */
export function reactionBar(counts, mine, toggle, T, open) {
  const bar = document.createElement("div");
  bar.className = "reacts";
  for (const e of EMOJI) {
    const n = Number(counts?.[e]) || 0;
    if (!n) continue;
    const b = btn(mine.has(e) ? "react mine" : "react", `${e} ${n}`, T.react(T.emojiNames[e], n), () => toggle(e, !mine.has(e)));
    b.setAttribute("aria-pressed", String(mine.has(e)));
    b.dataset.emoji = e;
    b.disabled = !open;
    bar.append(b);
  }
  return bar.childElementCount ? bar : null;
}

/** The add-reaction button among a message's actions; it opens the six emoji in its place. */
export function addReaction(mine, toggle, T) {
  const add = btn("act icon react-add", "☺+", T.reactAdd, () => {
    const picks = EMOJI.map((e) => {
      const b = btn(mine.has(e) ? "react pick mine" : "react pick", e, T.emojiNames[e], () => {
        toggle(e, !mine.has(e));
        group.replaceWith(add);
        add.focus();
      });
      b.setAttribute("aria-pressed", String(mine.has(e)));
      return b;
    });
    // Escape or a choice puts the button back.
    const group = document.createElement("span");
    group.className = "picker";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", T.reactions);
    group.append(...picks);
    group.addEventListener("keydown", (ev) => { if (ev.key === "Escape") { ev.stopPropagation(); group.replaceWith(add); add.focus(); } });
    add.replaceWith(group);
    picks[0].focus();
  });
  add.setAttribute("aria-haspopup", "true");
  return add;
}
