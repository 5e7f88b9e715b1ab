// The admin page's two dialogs: "delete this message?" and the ban dialog (pick a duration while
// seeing the author's other recent messages across rooms). Native <dialog> with showModal(): the
// browser traps focus and closes on Escape; focus goes back to the button that opened it.

import { authorMessages } from "./admin-api.js";
import { $, fill, h, messageItem } from "./admin-dom.js";

let T;
export function initDialogs(strings) {
  T = strings;
  $("confirm-no").textContent = T.cancel;
  $("ban-cancel").textContent = T.cancel;
  $("ban-ok").textContent = T.banBtn;
  $("ban-legend").textContent = T.banFor;
  $("ban-other-title").textContent = T.otherMsgs;
  $("ban-times").replaceChildren(...T.durations.map(([label, minutes], i) =>
    h("label", { className: "radio" }, h("input", { type: "radio", name: "minutes", value: minutes, checked: i === 1 }), label)));
}

/** Opens `dialog` and resolves with what `wire(done)` decides; restores focus afterwards. */
function open(dialog, wire) {
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const finish = (value) => {
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      // The opener may have gone (its message was deleted meanwhile); the room heading then.
      (opener?.isConnected ? opener : $("room-title"))?.focus();
      resolve(value);
    };
    dialog.onclose = () => finish(null);
    wire(finish);
    dialog.showModal();
  });
}

/** "Delete this message?" Resolves true to go ahead. */
export function confirmDelete(m) {
  $("confirm-title").textContent = T.delTitle;
  $("confirm-body").replaceChildren(h("span", { className: "name" }, m.nickname), ": ", h("q", {}, m.content));
  $("confirm-yes").textContent = T.del;
  return open($("confirm"), (done) => {
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    // Cancel is focused first: Enter right away must not delete.
    queueMicrotask(() => $("confirm-no").focus());
  });
}

/** The ban dialog for `m`'s author. Resolves with the minutes chosen, or null. */
export function askBan(m) {
  $("ban-title").textContent = T.banTitle(m.nickname);
  $("ban-err").textContent = "";
  const list = $("ban-other");
  fill(list, [], T.loading);
  list.setAttribute("aria-busy", "true");
  authorMessages(m.authorId).then(({ messages }) => {
    fill(list, messages.map((x) => messageItem(x, [], h("span", { className: "room" }, T.inRoom(x.roomId)))), T.noOther);
  }, (e) => fill(list, [], T.failed(e.message))).finally(() => list.removeAttribute("aria-busy"));
  return open($("ban"), (done) => {
    $("ban-form").onsubmit = (e) => {
      e.preventDefault();
      done(Number(new FormData($("ban-form")).get("minutes")));
    };
    $("ban-cancel").onclick = () => done(null);
    queueMicrotask(() => $("ban-form").querySelector("input:checked").focus());
  });
}
