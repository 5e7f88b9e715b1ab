//! The engine process: starts the real `chat-engine` binary on a free port with a database of its
//! own (a SQLite file, or a fresh Postgres database with `CHAT_TEST_POSTGRES`), keeps its logs,
//! and stops it with the signals an orchestrator would send.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::sync::watch;

use super::FRAME_TIMEOUT;

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
    "SPAM_LINK_MESSAGES",
    "SPAM_LINK_WAIT",
    "BLOCKED_WORDS",
    "SPAM_REPEAT_MAX",
    "SPAM_REPEAT_WINDOW",
    "SPAM_REPEAT_MIN_CHARS",
    "SPAM_REPEAT_TRACKED",
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
    "PUBLIC_URL",
    "WEBHOOK_URLS",
    "WEBHOOK_SECRET",
    "WEBHOOK_QUEUE",
    "WEBHOOK_TIMEOUT",
    "EDIT_WINDOW",
    "RUST_LOG",
];

/// Lifts the send limits (per reader, per client address and per room) for tests that send many
/// messages on purpose.
pub const FAST: &[&str] = &["--send-rate", "1000", "--send-burst", "1000", "--room-send-rate", "1000", "--room-send-burst", "1000"];

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

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
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.expect("connect to Postgres");
                    sqlx::query(&create).execute(&mut conn).await.expect("create database");
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
        Engine { addr, database_url, dir: dir.to_path_buf(), child, logs, log_count, _owned_dir: None }
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
            if tokio::time::timeout_at(deadline, count.changed()).await.is_err() {
                panic!("no log line {what} within {FRAME_TIMEOUT:?}; logs:\n{}", self.logs().join("\n"));
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
                assert!(!line.contains(secret) && !line.contains(&simple), "a log line contains the anonymousId {secret}:\n{line}");
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
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill -TERM");
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
                panic!("chat-engine still running {timeout:?} later; logs:\n{}", self.logs().join("\n"));
            }
            // No event to await for a child's exit without extra deps: poll briefly.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
    let start = line.find("addr=").map(|i| i + "addr=".len()).or_else(|| line.find("\"addr\":").map(|i| i + "\"addr\":".len()))?;
    let rest = line[start..].trim_start_matches(['"', ' ']);
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '}').unwrap_or(rest.len());
    let addr = rest[..end].trim_start_matches("http://");
    addr.trim_end_matches('/').parse().ok()
}
