// Shared pieces of the widget's browser tests: the real engine process, a host page server on
// another origin, Debian's Chromium through playwright-core, and small waiting helpers (events and
// polling, never fixed sleeps).
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");
export const ARTIFACTS = path.join(HERE, "artifacts");
const ENGINE = process.env.CHAT_ENGINE_BIN || path.join(ROOT, "target/debug/chat-engine");

// ---- engine -------------------------------------------------------------------------------------

/**
 * Starts the engine on 127.0.0.1 (port 0 = any free port) with a SQLite file in `dir` (a fresh
 * temporary folder unless given, so a restart can reuse the same store). Resolves once it logs
 * the address it listens on.
 */
export async function startEngine({ args = [], port = 0, dir } = {}) {
  const own = !dir;
  dir ??= mkdtempSync(path.join(tmpdir(), "chat-widget-"));
  const proc = spawn(ENGINE, ["--bind", `127.0.0.1:${port}`, "--database-url", `sqlite://${dir}/chat.db`, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", RUST_LOG: "info", LOG_FORMAT: "text" },
  });
  let log = "";
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  const listening = new Promise((resolve, reject) => {
    const onData = (d) => {
      log += d;
      // eslint-disable-next-line no-control-regex
      const m = log.replace(/\x1b\[[0-9;]*m/g, "").match(/listening addr=127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    exited.then(({ code }) => reject(new Error(`engine exited (${code}) before listening:\n${log}`)));
  });
  const bound = await listening;
  const engine = {
    port: bound,
    origin: `http://127.0.0.1:${bound}`,
    dir,
    proc,
    exited,
    log: () => log,
    /** SIGTERM: the engine drains (every reader gets `reconnect`) and exits. */
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      return exited;
    },
    /** Ends the process for good (test teardown) and removes its store when we made it. */
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
      if (own) rmSync(dir, { recursive: true, force: true });
    },
  };
  return engine;
}

// ---- host page server (a different origin from the engine's) --------------------------------------

/** A tiny HTTP server on 127.0.0.1 serving the pages registered with `page(path, html)`. */
export async function startHost() {
  const pages = new Map();
  const server = http.createServer((req, res) => {
    const html = pages.get(new URL(req.url, "http://x").pathname);
    res.writeHead(html === undefined ? 404 : 200, { "content-type": "text/html; charset=utf-8" });
    res.end(html ?? "not found");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    page(p, html) { pages.set(p, html); return origin + p; },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

// ---- browser ------------------------------------------------------------------------------------

/**
 * Debian's Chromium. playwright-core turns third-party storage partitioning off; `partitioned`
 * turns it back on, as readers' browsers have it (the last --disable-features wins, and this one
 * keeps the rest of playwright's list that matters here).
 */
export function launchBrowser({ partitioned = false } = {}) {
  const args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"];
  if (partitioned) args.push("--disable-features=AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,MediaRouter,PaintHolding");
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args });
}

/**
 * A reader: one browser context (its own storage, like another person's browser) with one page.
 * `identity` pre-seeds the widget's storage so the reader skips the first-visit prompt.
 */
export async function reader(browser, { identity, ...options } = {}) {
  const context = await browser.newContext({ viewport: { width: 720, height: 640 }, ...options });
  if (identity) {
    await context.addInitScript((id) => {
      localStorage.setItem("chat.anonymousId", id.anonymousId ?? crypto.randomUUID());
      localStorage.setItem("chat.nickname", id.nickname);
      localStorage.setItem("chat.avatar", id.avatar ?? "otter");
    }, identity);
  }
  // Content-Security-Policy violations, as the page reports them and as Chromium logs them.
  await context.addInitScript(() => document.addEventListener("securitypolicyviolation",
    (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)));
  const page = await context.newPage();
  page.csp = [];
  page.on("pageerror", (e) => { page.errors = [...(page.errors || []), e]; });
  page.on("console", (m) => { if (/Content Security Policy|CSP violation/i.test(m.text())) page.csp.push(m.text()); });
  return page;
}

/** Opens the widget page directly and waits for the engine's welcome (the composer is live). */
export async function openRoom(page, engine, room, query = "") {
  await page.goto(`${engine.origin}/room/${room}${query ? `?${query}` : ""}`);
  await page.locator("#me").waitFor();
  await connected(page);
  return page;
}

/** Waits until the widget's socket is open and welcomed: the banner has gone. */
export async function connected(frame) {
  await frame.waitForFunction(() => document.getElementById("banner").hidden
    && document.getElementById("online").textContent !== "");
}

/** Types and sends a message with the keyboard; returns its pending element's clientId. */
export async function say(page, text) {
  const input = page.locator("#input");
  await input.fill(text);
  await input.press("Enter");
}

/** Polls `fn` until it returns a truthy value (or throws after `timeout`). */
export async function until(fn, { timeout = 10000, interval = 50, message = "condition" } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${message}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The seqs of the confirmed messages shown in a widget (frame or page), in display order. */
export function shownSeqs(frame) {
  return frame.$$eval("#list [data-seq]", (els) => els.map((el) => Number(el.dataset.seq)));
}

/** Texts of the confirmed messages shown, in display order. */
export function shownTexts(frame) {
  return frame.$$eval("#list [data-seq] .text", (els) => els.map((el) => el.textContent));
}

/** JSON from the engine's HTTP API. */
export async function api(engine, p, init) {
  const res = await fetch(engine.origin + p, init);
  return { status: res.status, body: await res.json().catch(() => null), headers: res.headers };
}

/**
 * A scripted client for seeding rooms: a browser page on the engine's origin speaking the wire
 * protocol directly. Returns `send(contents)` resolving after every ack.
 */
export async function bot(browser, engine, room, nickname = "Seeder", avatar = "owl") {
  const page = await browser.newPage();
  await page.goto(`${engine.origin}/healthz`);
  await page.evaluate(({ room, nickname, avatar }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}/ws/${room}`);
    window.bot = { ws, acks: new Map(), errors: [] };
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", anonymousId: crypto.randomUUID(), nickname, avatar }));
    ws.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === "welcome") resolve();
      if (f.type === "ack") window.bot.acks.set(f.clientId, f.seq);
      if (f.type === "error") window.bot.errors.push(f);
    };
    ws.onerror = () => reject(new Error("bot socket failed"));
  }), { room, nickname, avatar });
  return {
    page,
    async send(contents) {
      return page.evaluate(async (contents) => {
        const ids = contents.map((content) => {
          const clientId = crypto.randomUUID();
          window.bot.ws.send(JSON.stringify({ type: "send", clientId, content }));
          return clientId;
        });
        while (!ids.every((id) => window.bot.acks.has(id))) {
          if (window.bot.errors.length) throw new Error(JSON.stringify(window.bot.errors));
          await new Promise((r) => setTimeout(r, 20));
        }
        return ids.map((id) => window.bot.acks.get(id));
      }, contents);
    },
    close: () => page.close(),
  };
}

/**
 * Routes a page's sockets to the engine through Playwright and records every frame both ways with
 * a timestamp (`frames`), so a test can see what the widget said (hello with lastSeq, retries with
 * the same clientId) and hold back server frames for a moment (`hold(predicate)`).
 */
export async function tapSockets(page) {
  const tap = { frames: [], sockets: [], attempts: [], held: [], holdIf: null, blocked: false };
  await page.routeWebSocket(/\/ws\//, (ws) => {
    tap.attempts.push(Date.now());
    // `blocked`: the network is down for this page; the socket fails at once.
    if (tap.blocked) { ws.close({ code: 1011, reason: "blocked by test" }); return; }
    const server = ws.connectToServer();
    const sock = { ws, server, opened: Date.now() };
    tap.sockets.push(sock);
    ws.onMessage((m) => { tap.frames.push({ dir: "out", at: Date.now(), sock, f: JSON.parse(m) }); server.send(m); });
    server.onMessage((m) => {
      const f = JSON.parse(m);
      tap.frames.push({ dir: "in", at: Date.now(), sock, f });
      if (tap.holdIf && tap.holdIf(f)) tap.held.push(() => ws.send(m));
      else ws.send(m);
    });
    ws.onClose((code, reason) => server.close({ code, reason }));
    server.onClose((code, reason) => ws.close({ code, reason }));
  });
  tap.out = (type) => tap.frames.filter((x) => x.dir === "out" && x.f.type === type).map((x) => x.f);
  tap.in = (type) => tap.frames.filter((x) => x.dir === "in" && x.f.type === type).map((x) => x.f);
  tap.hold = (predicate) => { tap.holdIf = predicate; };
  tap.release = () => { tap.holdIf = null; tap.held.splice(0).forEach((send) => send()); };
  /** Cuts the current connection (both sides), as a dropped network would. */
  tap.drop = () => {
    const sock = tap.sockets.at(-1);
    sock.server.close({ code: 1001, reason: "dropped by test" });
    sock.ws.close({ code: 1001, reason: "dropped by test" });
  };
  return tap;
}

export function artifactsDir(sub = "") {
  const dir = path.join(ARTIFACTS, sub);
  mkdirSync(dir, { recursive: true });
  return dir;
}

// Every visible text in the widget against the background it is drawn on (the nearest ancestor
// with an opaque background): at least 4.5:1, the AA level for normal-size text.
export async function textContrasts(page) {
  return page.evaluate(() => {
    const out = [];
    const bgOf = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const bg = getComputedStyle(e).backgroundColor;
        if (!/rgba\(.*,\s*0\)$/.test(bg) && bg !== "transparent") return bg;
      }
      return getComputedStyle(document.documentElement).backgroundColor;
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el.checkVisibility() || el.closest(".sr, [aria-hidden=true], :disabled")) continue;
      out.push({ text: n.textContent.trim().slice(0, 30), fg: getComputedStyle(el).color, bg: bgOf(el) });
    }
    // Input borders and the focus ring are non-text contrast (3:1).
    for (const el of document.querySelectorAll("textarea, input")) {
      if (el.checkVisibility()) out.push({ text: `border of #${el.id}`, fg: getComputedStyle(el).borderTopColor, bg: bgOf(el.parentElement), min: 3 });
    }
    return out;
  });
}

// WCAG 2.x contrast ratio of two CSS rgb()/rgba() colors (alpha ignored: callers pass opaque ones).
export function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const s = Number(v) / 255;
      return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}
