//! Test harness: starts the real `chat-engine` binary on a free port with its own SQLite file and
//! talks to it the way browsers and tools do, over WebSocket frames and plain HTTP/1.1.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for a frame, an HTTP answer or a log line before it gives up.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables the engine falls back to; cleared so the flags a test passes are all it sees.
const ENGINE_ENV: &[&str] = &[
    "BIND",
    "DATABASE_URL",
    "REDIS_URL",
    "ALLOWED_ORIGINS",
    "ADMIN_TOKEN",
    "LOG_FORMAT",
    "SHUTDOWN_GRACE",
    "SEND_RATE",
    "SEND_BURST",
    "ROOM_IDLE",
    "OUTBOUND_QUEUE",
    "STORE_TIMEOUT",
    "MAX_CONNECTIONS",
    "RETENTION_DAYS",
    "MAX_MESSAGES_PER_ROOM",
    "PRUNE_EVERY",
    "MAX_CONNECTIONS_PER_IP",
    "JOINS_PER_IP",
    "JOIN_BURST_PER_IP",
    "SEND_RATE_PER_IP",
    "SEND_BURST_PER_IP",
    "ROOM_SEND_RATE",
    "ROOM_SEND_BURST",
    "TRUSTED_PROXIES",
    "METRICS_BIND",
    "DB_MAX_CONNECTIONS",
    "POD_NAME",
    "WRITE_TIMEOUT",
    "SOCKET_SEND_BUFFER",
    "WELCOME_MAX_BYTES",
    "ROOM_RING_BYTES",
    "RING_MEMORY",
    "MAX_REQUEST_HEAD",
    "RUST_LOG",
];

/// Lifts the send limits (per reader, per client address and per room) for tests that send many
/// messages on purpose.
pub const FAST: &[&str] = &[
    "--send-rate",
    "1000",
    "--send-burst",
    "1000",
    "--room-send-rate",
    "1000",
    "--room-send-burst",
    "1000",
];

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A room id no other test uses, so failures never mix.
pub fn room(prefix: &str) -> String {
    format!("{prefix}-{}", &new_id()[..8])
}

/// Polls `check` every 50 ms until it holds, for state that has no event to await (an HTTP
/// endpoint, a gauge); panics after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not so after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `type` of a server frame, or "" when it has none.
pub fn frame_type(frame: &Value) -> &str {
    frame["type"].as_str().unwrap_or("")
}

/// `seq` of an `ack`, `deleted` or Message object; panics when it is not a non-negative integer.
pub fn seq_of(value: &Value) -> u64 {
    value["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("expected an integer `seq` in {value}"))
}

// ---------------------------------------------------------------------------------------------
// The engine process
// ---------------------------------------------------------------------------------------------

/// Whether the engines of this test run use Postgres (`CHAT_TEST_POSTGRES`) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("CHAT_TEST_POSTGRES").is_ok_and(|s| !s.is_empty())
}

/// The URL of the database that belongs to `dir`, created on first use (the name is kept in the
/// folder, so an engine restarted on the same folder finds the same data).
pub fn postgres_database_for(server: &str, dir: &Path) -> String {
    let marker = dir.join("postgres-database");
    let name = match std::fs::read_to_string(&marker) {
        Ok(name) => name,
        Err(_) => {
            let name = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
            let server = server.to_string();
            let create = format!("CREATE DATABASE {name}");
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                        .await
                        .expect("connect to Postgres");
                    sqlx::query(&create)
                        .execute(&mut conn)
                        .await
                        .expect("create database");
                });
            })
            .join()
            .expect("create database thread");
            std::fs::write(&marker, &name).expect("remember database");
            name
        }
    };
    format!("{}/{}", server.trim_end_matches('/'), name)
}

/// One running engine process. Killed (SIGKILL) when dropped.
pub struct Engine {
    pub addr: SocketAddr,
    /// The `--database-url` the engine runs on.
    pub database_url: String,
    /// Folder holding the SQLite file `chat.db`.
    pub dir: PathBuf,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    log_count: watch::Receiver<usize>,
    _owned_dir: Option<TempDir>,
}

impl Engine {
    /// Starts an engine with a fresh database in its own temporary folder.
    pub fn start(args: &[&str]) -> Engine {
        let dir = tempfile::tempdir().expect("create temp dir");
        let mut engine = Engine::start_in(dir.path(), args);
        engine._owned_dir = Some(dir);
        engine
    }

    /// Starts an engine on `dir/chat.db`, e.g. again on the database of an engine that stopped.
    /// With `CHAT_TEST_POSTGRES` set (a server URL), the folder instead names a fresh Postgres
    /// database of its own, so the same tests run against the production store.
    pub fn start_in(dir: &Path, args: &[&str]) -> Engine {
        let database_url = match std::env::var("CHAT_TEST_POSTGRES") {
            Ok(server) if !server.is_empty() => postgres_database_for(&server, dir),
            _ => format!("sqlite://{}/chat.db", dir.display()),
        };
        Engine::start_on(&database_url, dir, args)
    }

    /// Starts an engine on the given database, working in `dir`.
    pub fn start_on(database_url: &str, dir: &Path, args: &[&str]) -> Engine {
        let database_url = database_url.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat-engine"));
        command
            .args(["--bind", "127.0.0.1:0", "--database-url", &database_url])
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in ENGINE_ENV {
            command.env_remove(name);
        }
        let mut child = command.spawn().expect("spawn chat-engine");

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (count_tx, log_count) = watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let out_thread = drain_lines(stdout, "", logs.clone(), count_tx.clone(), Some(addr_tx));
        let err_thread = drain_lines(stderr, "[stderr] ", logs.clone(), count_tx, None);

        let addr = match addr_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => addr,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = out_thread.join();
                let _ = err_thread.join();
                panic!(
                    "chat-engine did not log `listening ... addr=127.0.0.1:PORT` ({why:?}); args {args:?}; output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Engine {
            addr,
            database_url,
            dir: dir.to_path_buf(),
            child,
            logs,
            log_count,
            _owned_dir: None,
        }
    }

    /// Every line the engine printed so far (stderr lines prefixed with `[stderr] `).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line satisfies `pred` and returns it.
    pub async fn wait_for_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut count = self.log_count.clone();
        let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| pred(l)) {
                return line;
            }
            if tokio::time::timeout_at(deadline, count.changed())
                .await
                .is_err()
            {
                panic!(
                    "no log line {what} within {FRAME_TIMEOUT:?}; logs:\n{}",
                    self.logs().join("\n")
                );
            }
        }
    }

    /// Panics when any log line contains one of `secrets` (e.g. anonymousIds).
    pub fn assert_logs_never_contain(&self, secrets: &[&str]) {
        let logs = self.logs();
        assert!(!logs.is_empty(), "the engine logged nothing at all");
        for secret in secrets {
            let simple = secret.replace('-', "");
            for line in &logs {
                assert!(
                    !line.contains(secret) && !line.contains(&simple),
                    "a log line contains the anonymousId {secret}:\n{line}"
                );
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL chat-engine");
        self.child.wait().expect("reap chat-engine");
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit; panics with the logs when it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait chat-engine") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "chat-engine still running {timeout:?} later; logs:\n{}",
                    self.logs().join("\n")
                );
            }
            // No event to await for a child's exit without extra deps: poll briefly.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    // --- HTTP -----------------------------------------------------------------------------

    pub async fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, &[], None).await
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        http(self.addr, method, path, headers, body).await
    }

    /// A WebSocket upgrade request sent by hand, to see the HTTP answer to a refused upgrade.
    pub async fn raw_upgrade(&self, path: &str, origin: Option<&str>) -> HttpResponse {
        let mut headers = vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        http(self.addr, "GET", path, &headers, None).await
    }

    /// A WebSocket upgrade request sent by hand with extra headers (e.g. `X-Forwarded-For`).
    pub async fn raw_upgrade_with(&self, path: &str, extra: &[(&str, &str)]) -> HttpResponse {
        let mut headers = vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        headers.extend_from_slice(extra);
        http(self.addr, "GET", path, &headers, None).await
    }

    /// `GET /api/rooms/{room}` as JSON, asserting 200.
    pub async fn room_info(&self, room: &str) -> Value {
        let response = self.get(&format!("/api/rooms/{room}")).await;
        assert_eq!(response.status, 200, "GET /api/rooms/{room}: {response:?}");
        response.json()
    }

    /// `GET /api/rooms/{room}/messages?{query}` messages, asserting 200.
    pub async fn history(&self, room: &str, query: &str) -> Vec<Value> {
        let path = format!("/api/rooms/{room}/messages{query}");
        let response = self.get(&path).await;
        assert_eq!(response.status, 200, "GET {path}: {response:?}");
        let body = response.json();
        body["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no `messages` array in {body}"))
            .clone()
    }

    /// The whole stored history of a room, oldest first, paged with `before=` 100 at a time.
    pub async fn full_history(&self, room: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut page = self.history(room, "?limit=100").await;
        while !page.is_empty() {
            let oldest = seq_of(&page[0]);
            if let Some(previous) = all.first() {
                assert!(
                    seqs(&page).iter().all(|&s| s < seq_of(previous)),
                    "a `before=` page holds seqs not before {}: {:?}",
                    seq_of(previous),
                    seqs(&page)
                );
            }
            page.append(&mut all);
            all = page;
            if oldest <= 1 {
                break;
            }
            page = self
                .history(room, &format!("?limit=100&before={oldest}"))
                .await;
        }
        all
    }

    /// Sum of every sample of the metric `name` on `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "GET /metrics: {response:?}");
        metric_sum(&response.body, name).unwrap_or(0.0)
    }

    // --- WebSocket ------------------------------------------------------------------------

    pub async fn ws(&self, room: &str) -> Client {
        Client::connect(self.addr, room).await
    }

    /// Joins `room` as `reader` and returns the client with the welcome frame.
    pub async fn join(&self, room: &str, reader: &Reader) -> (Client, Value) {
        let mut client = self.ws(room).await;
        let welcome = client.hello(reader, None).await;
        (client, welcome)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_lines(
    pipe: impl Read + Send + 'static,
    prefix: &'static str,
    logs: Arc<Mutex<Vec<String>>>,
    count: Arc<watch::Sender<usize>>,
    mut addr_tx: Option<mpsc::Sender<SocketAddr>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening") {
                if let Some(addr) = parse_listen_addr(&line) {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
            let len = {
                let mut logs = logs.lock().unwrap();
                logs.push(format!("{prefix}{line}"));
                logs.len()
            };
            count.send_replace(len);
        }
    })
}

/// Finds `addr=127.0.0.1:PORT` (text logs) or `"addr":"127.0.0.1:PORT"` (JSON logs) in a line.
fn parse_listen_addr(line: &str) -> Option<SocketAddr> {
    let start = line
        .find("addr=")
        .map(|i| i + "addr=".len())
        .or_else(|| line.find("\"addr\":").map(|i| i + "\"addr\":".len()))?;
    let rest = line[start..].trim_start_matches(['"', ' ']);
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '}')
        .unwrap_or(rest.len());
    let addr = rest[..end].trim_start_matches("http://");
    addr.trim_end_matches('/').parse().ok()
}

/// Sum of the samples of metric `name` in Prometheus text, `None` when it has none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts the status and the protocol's JSON error shape `{error:{code,message}}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status, status,
            "expected HTTP {status} `{code}`, got {self:?}"
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "error code in {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without a human-readable message: {body}"
        );
    }
}

/// One request on a fresh connection. `path` goes on the request line as given (percent-encode it).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    match try_http(addr, method, path, headers, body).await {
        Ok(response) => response,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// Like `http`, with connection failures and timeouts as an `Err`.
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let request = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
        {
            head.push_str("Connection: close\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                head.push_str("Content-Type: application/json\r\n");
            }
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else if matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        stream.write_all(head.as_bytes()).await?;
        read_response(&mut stream).await
    };
    match tokio::time::timeout(FRAME_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::other(format!(
            "no complete answer within {FRAME_TIMEOUT:?}"
        ))),
    }
}

async fn read_response(stream: &mut TcpStream) -> std::io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::other(format!(
                "connection closed before the end of the headers: {:?}",
                String::from_utf8_lossy(&buf)
            )));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };

    let body = if status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        while rest.len() < len {
            if stream.read_buf(&mut rest).await? == 0 {
                return Err(std::io::Error::other("connection closed inside the body"));
            }
        }
        rest.truncate(len);
        rest
    } else if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            if let Some(body) = decode_chunked(&rest) {
                break body;
            }
            if stream.read_buf(&mut rest).await? == 0 {
                return Err(std::io::Error::other(
                    "connection closed inside a chunked body",
                ));
            }
        }
    } else {
        while stream.read_buf(&mut rest).await? != 0 {}
        rest
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The decoded body once `data` holds the whole chunked encoding, `None` while it is incomplete.
fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers, if any, end with an empty line; we only need to know the body is complete.
            return find(data, b"\r\n").map(|_| body);
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------------

/// A browser tab's identity: what the widget keeps in `localStorage` plus its display name.
#[derive(Debug, Clone)]
pub struct Reader {
    pub anonymous_id: String,
    pub nickname: String,
    pub avatar: String,
}

impl Reader {
    pub fn new(nickname: &str) -> Reader {
        Reader {
            anonymous_id: new_id(),
            nickname: nickname.to_string(),
            avatar: "otter".to_string(),
        }
    }

    pub fn hello_frame(&self, last_seq: Option<u64>) -> Value {
        let mut frame = json!({
            "type": "hello",
            "anonymousId": self.anonymous_id,
            "nickname": self.nickname,
            "avatar": self.avatar,
        });
        if let Some(last_seq) = last_seq {
            frame["lastSeq"] = json!(last_seq);
        }
        frame
    }
}

/// What the socket produced next.
#[derive(Debug)]
pub enum Event {
    Frame(Value),
    /// A Close frame (with its code, if any), or the end of the connection (`None`).
    Closed(Option<u16>),
    TimedOut,
}

/// With `CHAT_TEST_TRACE=1`, prints every frame a test client sends and receives (to debug a test).
fn trace(room: &str, direction: &str, what: &str) {
    if std::env::var_os("CHAT_TEST_TRACE").is_some() {
        let short: String = what.chars().take(300).collect();
        eprintln!("[ws {room}] {direction} {short}");
    }
}

fn describe(message: &Message) -> String {
    match message {
        Message::Text(text) => text.as_str().to_string(),
        Message::Binary(bytes) => format!("binary {} bytes", bytes.len()),
        Message::Close(close) => format!("close {close:?}"),
        other => format!("{other:?}"),
    }
}

/// Frames that arrive on their own schedule; `next_of_type` skips them unless asked for.
fn is_noise(frame: &Value) -> bool {
    matches!(frame_type(frame), "presence" | "typing")
}

/// One WebSocket connection to `/ws/{room}`.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    /// Frames read while looking for another type, handed out first by later reads.
    pending: VecDeque<Value>,
    pub room: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr, room: &str) -> Client {
        match Client::try_connect(addr, room, None).await {
            Ok(client) => client,
            Err(status) => panic!("WebSocket upgrade to /ws/{room} refused with HTTP {status}"),
        }
    }

    /// Connects with an `Origin` header, like a browser on that origin.
    pub async fn connect_with_origin(
        addr: SocketAddr,
        room: &str,
        origin: &str,
    ) -> Result<Client, u16> {
        Client::try_connect(addr, room, Some(origin)).await
    }

    /// `Err(status)` when the server answers the upgrade with an HTTP error.
    pub async fn try_connect(
        addr: SocketAddr,
        room: &str,
        origin: Option<&str>,
    ) -> Result<Client, u16> {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        Client::try_connect_with(addr, room, &headers).await
    }

    /// Connects with extra request headers, e.g. `X-Forwarded-For` as a proxy in front would send.
    /// `Err(status)` when the server answers the upgrade with an HTTP error.
    pub async fn try_connect_with(
        addr: SocketAddr,
        room: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let stream = TcpStream::connect(addr)
            .await
            .expect("TCP connect to the engine");
        Client::handshake(stream, addr, room, headers).await
    }

    /// A reader whose socket takes in only a few KiB and that the test then stops reading.
    pub async fn connect_slow(addr: SocketAddr, room: &str) -> Client {
        let socket = TcpSocket::new_v4().expect("TCP socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket
            .connect(addr)
            .await
            .expect("TCP connect to the engine");
        match Client::handshake(stream, addr, room, &[]).await {
            Ok(client) => client,
            Err(status) => panic!("WebSocket upgrade to /ws/{room} refused with HTTP {status}"),
        }
    }

    /// Connects from a loopback source address of the test's choosing (127.0.0.0/8 is all
    /// local), so a crowd can come from several client addresses; `slow` as in `connect_slow`.
    pub async fn connect_from(addr: SocketAddr, room: &str, source: std::net::Ipv4Addr, slow: bool) -> Client {
        let socket = TcpSocket::new_v4().expect("TCP socket");
        socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source address");
        if slow {
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        let stream = socket.connect(addr).await.expect("TCP connect to the engine");
        match Client::handshake(stream, addr, room, &[]).await {
            Ok(client) => client,
            Err(status) => panic!("WebSocket upgrade to /ws/{room} from {source} refused with HTTP {status}"),
        }
    }

    async fn handshake(
        stream: TcpStream,
        addr: SocketAddr,
        room: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let mut request = format!("ws://{addr}/ws/{room}")
            .into_client_request()
            .expect("WebSocket request");
        for (name, value) in headers {
            let name =
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
            request
                .headers_mut()
                .append(name, HeaderValue::from_str(value).expect("header value"));
        }
        let handshake = tokio_tungstenite::client_async(request, stream);
        match tokio::time::timeout(FRAME_TIMEOUT, handshake).await {
            Ok(Ok((ws, _response))) => Ok(Client {
                ws,
                pending: VecDeque::new(),
                room: room.to_string(),
            }),
            Ok(Err(tungstenite::Error::Http(response))) => Err(response.status().as_u16()),
            Ok(Err(e)) => panic!("WebSocket handshake for /ws/{room} failed: {e}"),
            Err(_) => panic!("WebSocket handshake for /ws/{room} timed out"),
        }
    }

    // --- sending --------------------------------------------------------------------------

    pub async fn send_json(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        if let Err(e) = self.try_send(Message::text(text)).await {
            panic!("sending a frame on /ws/{} failed: {e}", self.room);
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.try_send(Message::binary(bytes)).await {
            panic!("sending a binary frame on /ws/{} failed: {e}", self.room);
        }
    }

    pub async fn try_send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        trace(&self.room, "->", &describe(&message));
        self.ws.send(message).await
    }

    /// Queues a frame without flushing (for floods); `flush` sends what was queued.
    pub async fn feed_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.ws.feed(Message::text(text)).await
    }

    pub async fn flush(&mut self) -> Result<(), tungstenite::Error> {
        self.ws.flush().await
    }

    /// Sends `hello` and returns the `welcome`; panics on an `error` or a close instead.
    pub async fn hello(&mut self, reader: &Reader, last_seq: Option<u64>) -> Value {
        self.send_json(&reader.hello_frame(last_seq)).await;
        self.next_of_type("welcome").await
    }

    /// Sends `{"type":"send"}` with a fresh clientId and returns that clientId.
    pub async fn send_message(&mut self, content: &str) -> String {
        let client_id = new_id();
        self.send_with_id(&client_id, content).await;
        client_id
    }

    pub async fn send_with_id(&mut self, client_id: &str, content: &str) {
        self.send_json(&json!({"type": "send", "clientId": client_id, "content": content}))
            .await;
    }

    /// Waits for the `ack` of `client_id` and returns its seq.
    pub async fn ack_for(&mut self, client_id: &str) -> u64 {
        let ack = self
            .next_where(&format!("ack for clientId {client_id}"), |f| {
                frame_type(f) == "ack" && f["clientId"] == client_id
            })
            .await;
        seq_of(&ack)
    }

    /// Sends a message, waits for its ack and returns `(seq, clientId)`.
    pub async fn say(&mut self, content: &str) -> (u64, String) {
        let client_id = self.send_message(content).await;
        (self.ack_for(&client_id).await, client_id)
    }

    /// Sends every content with a few sends in flight, reading frames as it goes (so the engine
    /// never sees this client as slow), and returns the acked seqs in send order.
    /// The `message` frames this client receives meanwhile are consumed.
    pub async fn send_many(&mut self, contents: &[String]) -> Vec<u64> {
        self.send_many_windowed(contents, 16).await
    }

    /// `send_many` with at most `window` sends awaiting their ack.
    pub async fn send_many_windowed(&mut self, contents: &[String], window: usize) -> Vec<u64> {
        let client_ids: Vec<String> = contents.iter().map(|_| new_id()).collect();
        let mut seqs: HashMap<String, u64> = HashMap::new();
        let mut sent = 0;
        while seqs.len() < contents.len() {
            while sent < contents.len() && sent - seqs.len() < window {
                self.send_with_id(&client_ids[sent], &contents[sent]).await;
                sent += 1;
            }
            let frame = self.next_frame().await;
            match frame_type(&frame) {
                "ack" => {
                    let id = frame["clientId"].as_str().unwrap_or_default().to_string();
                    assert!(
                        client_ids.contains(&id),
                        "ack for an unknown clientId: {frame}"
                    );
                    assert!(
                        seqs.insert(id, seq_of(&frame)).is_none(),
                        "second ack: {frame}"
                    );
                }
                "error" => panic!("error while sending {} messages: {frame}", contents.len()),
                _ => {}
            }
        }
        client_ids.iter().map(|id| seqs[id]).collect()
    }

    // --- receiving ------------------------------------------------------------------------

    /// The next frame off the socket (ignoring pending ones), a close, or a timeout.
    pub async fn read_event(&mut self, timeout: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Event::TimedOut,
                Ok(None) => {
                    trace(&self.room, "<-", "end of stream");
                    return Event::Closed(None);
                }
                Ok(Some(Err(e))) => {
                    trace(&self.room, "<-", &format!("error: {e}"));
                    return Event::Closed(None);
                }
                Ok(Some(Ok(message))) => message,
            };
            trace(&self.room, "<-", &describe(&message));
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                        panic!("server sent a text frame that is not JSON ({e}): {text}")
                    });
                    assert!(
                        frame.is_object(),
                        "server frame is not a JSON object: {frame}"
                    );
                    return Event::Frame(frame);
                }
                Message::Close(close) => return Event::Closed(close.map(|c| u16::from(c.code))),
                Message::Binary(bytes) => panic!("server sent a binary frame: {bytes:?}"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next frame of any type; panics after `FRAME_TIMEOUT` or on a close.
    pub async fn next_frame(&mut self) -> Value {
        match self.next_frame_or_close().await {
            Ok(frame) => frame,
            Err(code) => panic!(
                "/ws/{}: connection closed ({code:?}) while waiting for a frame",
                self.room
            ),
        }
    }

    /// The next frame, or `Err(close code)` when the connection ends first.
    pub async fn next_frame_or_close(&mut self) -> Result<Value, Option<u16>> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        match self.read_event(FRAME_TIMEOUT).await {
            Event::Frame(frame) => Ok(frame),
            Event::Closed(code) => Err(code),
            Event::TimedOut => panic!("/ws/{}: no frame within {FRAME_TIMEOUT:?}", self.room),
        }
    }

    /// The next frame that is not `presence`.
    pub async fn next_non_presence(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame_type(&frame) != "presence" {
                return frame;
            }
        }
    }

    /// The next frame of type `ty`. `presence` and `typing` frames before it are dropped, other
    /// frames are kept for later reads, and an `error` (unless `ty` is "error") fails the test.
    pub async fn next_of_type(&mut self, ty: &str) -> Value {
        self.next_where(&format!("`{ty}` frame"), |f| frame_type(f) == ty)
            .await
    }

    /// The next `error` frame, asserting its code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let error = self.next_of_type("error").await;
        assert_eq!(error["code"], code, "unexpected error frame {error}");
        assert!(
            error["message"].is_string(),
            "error frame without a message: {error}"
        );
        error
    }

    /// Like `next_of_type` with any predicate.
    pub async fn next_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.next_where_within(what, FRAME_TIMEOUT, pred).await
    }

    /// `next_where` with its own timeout, for events that take longer than a frame round trip.
    pub async fn next_where_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index in range");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_event(left).await {
                Event::Frame(frame) if pred(&frame) => return frame,
                Event::Frame(frame) if frame_type(&frame) == "error" => {
                    panic!("/ws/{}: got {frame} while waiting for {what}", self.room)
                }
                Event::Frame(frame) if is_noise(&frame) => {}
                Event::Frame(frame) => self.pending.push_back(frame),
                Event::Closed(code) => panic!(
                    "/ws/{}: connection closed ({code:?}) while waiting for {what}; frames kept meanwhile: {:?}",
                    self.room, self.pending
                ),
                Event::TimedOut => panic!(
                    "/ws/{}: no {what} within {timeout:?}; frames kept meanwhile: {:?}",
                    self.room, self.pending
                ),
            }
        }
    }

    /// Reads (and drops) frames until the connection closes; returns the close code, `None` when
    /// the connection ended without a Close frame. Panics when it is still open after `timeout`.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<u16> {
        self.pending.clear();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = 0usize;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_event(left).await {
                Event::Frame(_) => skipped += 1,
                Event::Closed(code) => return code,
                Event::TimedOut => panic!(
                    "/ws/{}: still open after {timeout:?} ({skipped} frames read meanwhile)",
                    self.room
                ),
            }
        }
    }

    /// Every frame still queued for this client, until the connection ends; with the close code.
    pub async fn drain_until_close(&mut self, timeout: Duration) -> (Vec<Value>, Option<u16>) {
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_event(left).await {
                Event::Frame(frame) => frames.push(frame),
                Event::Closed(code) => return (frames, code),
                Event::TimedOut => panic!(
                    "/ws/{}: still open after {timeout:?} ({} frames read)",
                    self.room,
                    frames.len()
                ),
            }
        }
    }

    /// Sends a Close frame and waits for the server to finish the closing handshake.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(FRAME_TIMEOUT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions shared by the test files
// ---------------------------------------------------------------------------------------------

/// Asserts a Message object is complete and matches what was sent.
pub fn assert_message(message: &Value, room: &str, author: &Reader, content: &str) {
    assert_eq!(message["roomId"], room, "roomId of {message}");
    assert_eq!(message["content"], content, "content of {message}");
    assert_eq!(
        message["nickname"],
        author.nickname.as_str(),
        "nickname of {message}"
    );
    assert_eq!(
        message["avatar"],
        author.avatar.as_str(),
        "avatar of {message}"
    );
    assert!(
        message["seq"].as_u64().is_some_and(|s| s >= 1),
        "seq of {message}"
    );
    assert_author_id(&message["authorId"], author);
    assert!(
        message["createdAt"].as_str().is_some_and(is_rfc3339_utc),
        "createdAt is not an RFC 3339 UTC timestamp in {message}"
    );
    assert!(
        message["clientId"].is_string(),
        "clientId missing in {message}"
    );
    assert!(
        !message.to_string().contains(&author.anonymous_id),
        "the anonymousId leaked in {message}"
    );
}

/// An authorId is 16 lowercase hex digits and does not reveal the anonymousId.
pub fn assert_author_id(author_id: &Value, author: &Reader) {
    let id = author_id
        .as_str()
        .unwrap_or_else(|| panic!("authorId is not a string: {author_id}"));
    assert!(
        id.len() == 16 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "authorId {id:?} is not 16 lowercase hex digits"
    );
    let raw = author.anonymous_id.replace('-', "");
    assert!(
        !author.anonymous_id.contains(id) && !raw.contains(id) && id != author.anonymous_id,
        "authorId {id} is (part of) the anonymousId {}",
        author.anonymous_id
    );
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        range
            .clone()
            .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    let Some(rest) = s.get(19..) else {
        return false;
    };
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (rest == "Z"
            || rest
                .strip_prefix('.')
                .and_then(|r| r.strip_suffix('Z'))
                .is_some_and(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit())))
}

/// Asserts `seqs` run `first, first+1, ...` without gap or repeat.
pub fn assert_consecutive(seqs: &[u64], first: u64) {
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(
        seqs,
        expected.as_slice(),
        "seqs are not consecutive from {first}"
    );
}

pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(seq_of).collect()
}
