// embed.js: every <div data-chat-room="postId"> becomes the chat iframe (height synced, theme
// forwarded); every <span data-chat-count="postId"> gets its counts. Idempotent, SPA-safe (elements
// picked up on load and when added, changed, removed). Only global: window.ChatEmbed.
(() => {
  if (window.ChatEmbed) return;  // included twice

  // The engine origin: where this script came from (currentScript is null in some loaders).
  const script = document.currentScript || document.querySelector('script[src$="/embed.js"]');
  const ORIGIN = new URL(script ? script.src : location.href).origin;
  const ATTRS = ["data-chat-room", "data-theme", "data-chat-theme", "data-title", "data-height", "data-loading", "data-lang"];
  const dark = matchMedia("(prefers-color-scheme: dark)");
  const frames = new Map();   // element -> { iframe, key, theme, h, ready, queue, timer }
  const off = new WeakSet();  // elements destroy(el) was called on; update(el) brings them back
  const counted = new WeakSet();
  let observers = null, queued = false;

  const themeOk = (t) => t === "light" || t === "dark" || t === "auto";

  // Theme: own data-(chat-)theme, else the host <html> class / data-theme, else the OS setting.
  const ownTheme = (el) => el.dataset.chatTheme || el.dataset.theme;
  function themeFor(el) {
    const root = document.documentElement, own = ownTheme(el), attr = root.dataset.theme;
    if (themeOk(own)) return own;
    if (root.classList.contains("dark")) return "dark";
    if (root.classList.contains("light")) return "light";
    if (attr === "dark" || attr === "light") return attr;
    return dark.matches ? "dark" : "light";
  }

  function langOf(el) {
    const l = ((el && el.dataset.lang) || document.documentElement.lang || "").split("-")[0].toLowerCase();
    return l === "ko" || l === "en" ? l : "";
  }

  function srcFor(el, theme) {
    const q = new URLSearchParams({ theme, parentOrigin: location.origin });
    if (ownTheme(el) == "transparent") q.set("theme", "transparent"), q.set("scheme", theme);  // colours: the host's
    if (langOf(el)) q.set("lang", langOf(el));
    if (el.dataset.title) q.set("title", el.dataset.title);
    return `${ORIGIN}/room/${encodeURIComponent(el.dataset.chatRoom.trim())}?${q}`;
  }

  function height(el) {
    const h = (el.dataset.height || "").trim();
    return /^\d+$/.test(h) ? `${h}px` : h || "480px";
  }

  // Messages wait for the frame's `ready`; a newer setTheme replaces a queued one.
  function post(st, msg) {
    if (st.ready) st.iframe.contentWindow.postMessage({ chat: msg }, ORIGIN);
    else st.queue = st.queue.filter((m) => Object.keys(m)[0] !== Object.keys(msg)[0]).concat(msg);
  }

  function reveal(st) {
    clearTimeout(st.timer);
    st.iframe.style.opacity = "";
  }

  function mount(el) {
    const room = (el.dataset.chatRoom || "").trim();
    if (!room || off.has(el)) return unmount(el);
    const theme = themeFor(el), key = srcFor(el, ""), h = height(el);
    let st = frames.get(el);
    if (!st) {
      // Invisible until `ready` (or shortly after load): no half-painted flash.
      const iframe = document.createElement("iframe");
      iframe.style.cssText = "display:block;width:100%;border:0;opacity:0";
      st = { iframe, key: "", theme: "", h: "", ready: false, queue: [], timer: 0 };
      iframe.addEventListener("load", () => { clearTimeout(st.timer); st.timer = setTimeout(() => reveal(st), 1500); });
      frames.set(el, st);
    }
    const { iframe } = st;
    iframe.title = el.dataset.title || (langOf(el) === "ko" ? "댓글 채팅" : "Comments chat");
    iframe.loading = el.dataset.loading === "eager" ? "eager" : "lazy";  // before src, or lazy is ignored
    // data-height: the starting height; then the frame's resize reports win until it changes.
    if (st.h !== h) iframe.style.height = st.h = h;
    if (st.key !== key) {
      // New room (SPA navigation), title or lang: re-point the frame, never stack another.
      Object.assign(st, { key, theme, ready: false, queue: [] });
      iframe.style.opacity = "0";
      iframe.style.colorScheme = theme === "auto" ? "light dark" : theme;
      iframe.src = srcFor(el, theme);
    } else if (st.theme !== theme) {
      st.theme = theme;
      iframe.style.colorScheme = theme === "auto" ? "light dark" : theme;
      post(st, { setTheme: theme });
    }
    if (iframe.parentNode !== el) el.replaceChildren(iframe);
  }

  function unmount(el) {
    const st = frames.get(el);
    if (!st) return;
    clearTimeout(st.timer);
    st.iframe.remove();
    frames.delete(el);
  }

  // New count spans: one request per 50 rooms.
  function count() {
    const els = [...document.querySelectorAll("[data-chat-count]")].filter((el) => !counted.has(el) && counted.add(el));
    const id = (el) => el.dataset.chatCount.trim(), ids = [...new Set(els.map(id))];
    for (let i = 0; i < ids.length; i += 50)
      fetch(`${ORIGIN}/api/rooms?ids=${ids.slice(i, i + 50).map(encodeURIComponent)}`).then((r) => r.json()).then(({ rooms }) => els.forEach((el) => {
        const c = rooms[id(el)], m = c?.messages;
        if (c) el.textContent = langOf(el) == "ko" ? `메시지 ${m}개 · ${c.online}명 접속 중` : `${m} message${m == 1 ? "" : "s"} · ${c.online} online`;
      }), () => {});
  }

  // Re-reads the whole page: cheap, one path for load, additions, changes, removals.
  function sync() {
    queued = false;
    for (const el of frames.keys()) if (!el.isConnected || !el.hasAttribute("data-chat-room")) unmount(el);
    for (const el of document.querySelectorAll("[data-chat-room]")) mount(el);
    count();
  }
  function schedule() {
    if (!queued) { queued = true; queueMicrotask(sync); }
  }

  addEventListener("message", (e) => {
    if (e.origin !== ORIGIN || !e.data || typeof e.data.chat !== "object" || !e.data.chat) return;
    for (const [el, st] of frames) {
      if (e.source !== st.iframe.contentWindow) continue;
      const { ready, resize, unread } = e.data.chat;
      if (ready) {
        st.ready = true;
        reveal(st);
        st.queue.splice(0).forEach((m) => post(st, m));
        el.dispatchEvent(new CustomEvent("chat:ready", { bubbles: true, detail: { roomId: ready.roomId } }));
      }
      // data-max-height caps the frame; the widget scrolls inside.
      const max = parseInt(el.dataset.maxHeight, 10) || 10000;
      const h = resize && Math.min(max, Math.ceil(Number(resize.height)));
      if (h > 0) st.iframe.style.height = `${h}px`;
      const n = unread && Number(unread.count);
      if (n >= 0) el.dispatchEvent(new CustomEvent("chat:unread", { bubbles: true, detail: { count: n } }));
      return;
    }
  });

  function init() {
    if (!observers) {
      // Two observers: "class" on the whole subtree would wake us for every class change.
      const root = document.documentElement;
      observers = [new MutationObserver(schedule), new MutationObserver(schedule)];
      observers[0].observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ATTRS });
      observers[1].observe(root, { attributes: true, attributeFilter: ["class", "data-theme", "lang"] });
      dark.addEventListener("change", schedule);
      observers.push({ disconnect: () => dark.removeEventListener("change", schedule) });
    }
    sync();
  }

  window.ChatEmbed = {
    init,
    // Re-reads one element (or all); undoes destroy(el).
    update(el) {
      if (el) { off.delete(el); mount(el); } else sync();
    },
    // Removes one element's frame (off until update(el)), or every frame and all watching.
    destroy(el) {
      if (el) { off.add(el); unmount(el); return; }
      observers?.forEach((o) => o.disconnect());
      observers = null;
      [...frames.keys()].forEach(unmount);
    },
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init, { once: true });
  else init();
})();
