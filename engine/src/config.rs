//! Process configuration: command-line flags, each with the environment fallback that
//! PROTOCOL.md names, so the same binary runs from a terminal, a container or a pod spec.

use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::clients::ClientLimits;

#[derive(Debug, Clone, Parser)]
#[command(name = "chat-engine", version, about = "Real-time chat for blog posts: widget, WebSocket, JSON API and metrics in one binary")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the chosen address is logged).
    #[arg(long, env = "BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    /// Message store: `sqlite://path` (the default is the file chat.db in the working directory)
    /// or `postgres://user:password@host/db` (several pods share one database).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://chat.db", hide_env_values = true, global = true)]
    pub database_url: String,

    /// Connections in the Postgres pool (per pod).
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Redis for several pods: `redis://host:6379`. Unset: a single pod, fan-out in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// This pod's name on the bus (Kubernetes: the pod name). Unset: a random one per start.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Comma-separated origins allowed to embed the widget and open sockets; unset: any.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Bearer token for the moderation routes; unset: they answer 403.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// How long a draining pod waits for its readers to leave before it exits (seconds, `30` or `30s`).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,

    /// Sends per second one reader (anonymousId) may make in a room, all its sockets together
    /// (token bucket refill rate).
    #[arg(long, env = "SEND_RATE", default_value_t = 5.0)]
    pub send_rate: f64,

    /// Sends one reader may make in a room in a burst (token bucket size).
    #[arg(long, env = "SEND_BURST", default_value_t = 10)]
    pub send_burst: u32,

    /// Sends per second from one client address (IPv4, or IPv6 /64), every reader and room
    /// together. Default: 3 x --send-rate (a household or office behind one address).
    #[arg(long, env = "SEND_RATE_PER_IP")]
    pub send_rate_per_ip: Option<f64>,

    /// Burst of sends from one client address. Default: 3 x --send-burst.
    #[arg(long, env = "SEND_BURST_PER_IP")]
    pub send_burst_per_ip: Option<u32>,

    /// Messages per second one room stores at most, whoever sends them; past it the room is in
    /// slow mode and sends are refused with `rate_limited`.
    #[arg(long, env = "ROOM_SEND_RATE", default_value_t = 30.0)]
    pub room_send_rate: f64,

    /// Burst of messages one room stores before slow mode starts.
    #[arg(long, env = "ROOM_SEND_BURST", default_value_t = 60)]
    pub room_send_burst: u32,

    /// Open WebSocket connections per client address (IPv4, or IPv6 /64); more get HTTP 429.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: usize,

    /// New WebSocket connections per second per client address (token bucket refill rate); more
    /// get HTTP 429.
    #[arg(long, env = "JOINS_PER_IP", default_value_t = 10.0)]
    pub joins_per_ip: f64,

    /// New WebSocket connections per client address in a burst (token bucket size).
    #[arg(long, env = "JOIN_BURST_PER_IP", default_value_t = 30)]
    pub join_burst_per_ip: u32,

    /// Comma-separated CIDRs (or addresses) of the proxies in front of the engine. Only a request
    /// whose TCP peer is one of them has its client address taken from `X-Forwarded-For` or
    /// `Forwarded`; unset: the TCP peer is always the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::client_ip::parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Seconds a room without members stays loaded before its actor stops.
    #[arg(long, env = "ROOM_IDLE", default_value = "60", value_parser = parse_seconds)]
    pub room_idle: Duration,

    /// Frames queued for one reader before it counts as a slow consumer and is closed (1013).
    #[arg(long, env = "OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,

    /// Seconds a store operation may take before the sends it carries fail with `unavailable`.
    #[arg(long, env = "STORE_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub store_timeout: Duration,

    /// Open WebSocket connections this pod accepts; more get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Seconds a write to a client may make no progress (and a WebSocket frame batch, a welcome
    /// included, may take in all) before the connection is closed and its buffers freed.
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub write_timeout: Duration,

    /// Kernel send buffer of each client socket, in bytes (0: the kernel's auto-tuning, which lets
    /// one socket that never reads hold up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default).
    #[arg(long, env = "SOCKET_SEND_BUFFER", default_value_t = 128 * 1024)]
    pub socket_send_buffer: usize,

    /// Bytes of history one `welcome` may carry; past it the oldest messages are left out (and a
    /// resume that does not fit answers `resumed: false`). The widget pages older ones over HTTP.
    #[arg(long, env = "WELCOME_MAX_BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(16 * 1024..))]
    pub welcome_max_bytes: u64,

    /// Bytes of recent messages one room keeps in memory (besides the 500-message cap).
    #[arg(long, env = "ROOM_RING_BYTES", default_value_t = 512 * 1024, value_parser = clap::value_parser!(u64).range(16 * 1024..))]
    pub room_ring_bytes: u64,

    /// Bytes of recent messages all rooms of this pod keep in memory together; past it the oldest
    /// messages of the least recently active rooms are dropped (and read from the store when asked).
    #[arg(long, env = "RING_MEMORY", default_value_t = 128 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024 * 1024..))]
    pub ring_memory: u64,

    /// Bytes a request's line and headers may take together; larger heads get 431.
    #[arg(long, env = "MAX_REQUEST_HEAD", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(8 * 1024..=1024 * 1024))]
    pub max_request_head: u64,

    /// Days a message is kept; older ones are pruned in the background. Unset: kept forever.
    #[arg(long, env = "RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: Option<u32>,

    /// Messages kept per room, the newest; older ones are pruned in the background. 0: unlimited.
    /// At least the 500 a live room keeps in memory.
    #[arg(long, env = "MAX_MESSAGES_PER_ROOM", default_value_t = 10_000, value_parser = parse_max_messages)]
    pub max_messages_per_room: u64,

    /// Seconds between pruning passes (`--retention-days`, `--max-messages-per-room`, expired bans).
    #[arg(long, env = "PRUNE_EVERY", default_value = "300", value_parser = parse_interval)]
    pub prune_every: Duration,

    /// Distinct readers whose reports hide a message from every reader until the owner dismisses
    /// them. 0: reports only queue messages for the owner, never hide one.
    #[arg(long, env = "AUTO_HIDE_REPORTS", default_value_t = 3)]
    pub auto_hide_reports: u32,

    /// Seconds after sending a message during which its author may edit it; later edits are
    /// refused with `edit_expired`.
    #[arg(long, env = "EDIT_WINDOW", default_value = "300", value_parser = parse_seconds)]
    pub edit_window: Duration,

    /// A reader's first messages in a room during which it may not post links (see
    /// `--spam-link-wait`). 0: links are always allowed.
    #[arg(long, env = "SPAM_LINK_MESSAGES", default_value_t = 3)]
    pub spam_link_messages: u32,

    /// Seconds after a reader is first seen in a room (its first message there, or its connection)
    /// from which it may post links, even before `--spam-link-messages` messages.
    #[arg(long, env = "SPAM_LINK_WAIT", default_value = "600", value_parser = parse_seconds)]
    pub spam_link_wait: Duration,

    /// File of blocked words and phrases (one per line, `#` comments), reloaded when it changes
    /// and on SIGHUP. Unset: no word is blocked.
    #[arg(long, env = "BLOCKED_WORDS")]
    pub blocked_words: Option<std::path::PathBuf>,

    /// Postings of the same content (normalised) allowed within `--spam-repeat-window`, across
    /// rooms and authors; later ones are refused. 0: not counted.
    #[arg(long, env = "SPAM_REPEAT_MAX", default_value_t = 3)]
    pub spam_repeat_max: u64,

    /// Seconds over which repeated content is counted.
    #[arg(long, env = "SPAM_REPEAT_WINDOW", default_value = "600", value_parser = parse_interval)]
    pub spam_repeat_window: Duration,

    /// Content shorter than this many characters (spaces not counted) is never counted as
    /// repeated, so short replies everyone writes ("thanks!") always go through.
    #[arg(long, env = "SPAM_REPEAT_MIN_CHARS", default_value_t = 20)]
    pub spam_repeat_min_chars: usize,

    /// Different contents one pod counts itself (without Redis, or while Redis does not answer);
    /// past it, new content is not counted until older windows expire.
    #[arg(long, env = "SPAM_REPEAT_TRACKED", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub spam_repeat_tracked: u64,

    /// Serve `/metrics` only on this address (e.g. `0.0.0.0:9091`); the main port then answers
    /// 404 for it. Unset: `/metrics` is on the main port.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// The engine's public base URL (e.g. `https://chat.example.com`), for links to a room's widget
    /// page in webhook events. Unset: events carry no link.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

    /// An endpoint that is told about new messages, reports and lock changes (repeatable; the
    /// environment variable is comma-separated). `slack:` or `discord:` before the URL posts that
    /// service's message shape instead of the JSON event.
    #[arg(long = "webhook-url", env = "WEBHOOK_URLS", value_delimiter = ',', value_parser = crate::webhooks::Target::parse, hide_env_values = true)]
    pub webhook_urls: Vec<crate::webhooks::Target>,

    /// Key of the `X-Chat-Signature` HMAC-SHA256 on webhook requests. Unset: they are not signed.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Webhook events waiting per endpoint; when an endpoint falls this far behind, new events
    /// for it are dropped (and counted).
    #[arg(long, env = "WEBHOOK_QUEUE", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub webhook_queue: u64,

    /// Seconds one webhook request may take before it counts as failed and is retried.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "5", value_parser = parse_interval)]
    pub webhook_timeout: Duration,

    /// Without a subcommand the engine serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off jobs on the store `--database-url` names, instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Writes rooms as JSON lines to stdout: per room its state (counter, lock, pin, bans),
    /// then every stored message oldest first.
    Export {
        /// Every room in the store.
        #[arg(long, conflicts_with = "rooms", required_unless_present = "rooms")]
        all: bool,
        /// Only these rooms.
        rooms: Vec<String>,
    },
    /// Reads an export file into the store, one transaction per room; rooms and messages already
    /// there under the same seq are left as they are, so it may be run again.
    Import {
        /// The export file (`-`: stdin).
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let digits = s.trim().trim_end_matches('s');
    let secs: f64 = digits.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    Some(parse_seconds(s)?).filter(|d| !d.is_zero()).ok_or_else(|| format!("`{s}` must be more than 0 seconds"))
}

/// 0 (unlimited), or at least a room's ring: a live room must never show a message the store
/// dropped for being too many.
fn parse_max_messages(s: &str) -> Result<u64, String> {
    let n: u64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number of messages"))?;
    let ring = crate::room::RING_CAPACITY as u64;
    if n != 0 && n < ring {
        return Err(format!("`{s}` is below {ring}, the messages a live room keeps in memory (0: unlimited)"));
    }
    Ok(n)
}

impl Config {
    /// The per-address limits, with the send budget defaulting to three readers' worth.
    pub fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            max_sockets: self.max_connections_per_ip,
            join_rate: self.joins_per_ip,
            join_burst: self.join_burst_per_ip,
            send_rate: self.send_rate_per_ip.unwrap_or(self.send_rate * 3.0),
            send_burst: self.send_burst_per_ip.unwrap_or(self.send_burst.saturating_mul(3)),
        }
    }

    /// How webhooks are delivered, when any endpoint is configured.
    pub fn webhooks(&self) -> Option<crate::webhooks::WebhookSettings> {
        (!self.webhook_urls.is_empty()).then(|| crate::webhooks::WebhookSettings {
            targets: self.webhook_urls.clone(),
            secret: self.webhook_secret.clone(),
            public_url: self.public_url.clone(),
            queue: usize::try_from(self.webhook_queue).unwrap_or(usize::MAX),
            timeout: self.webhook_timeout,
        })
    }

    /// The spam rules' settings.
    pub fn spam_rules(&self) -> crate::spam::SpamRules {
        crate::spam::SpamRules {
            link_messages: self.spam_link_messages,
            link_after: self.spam_link_wait,
            repeat_max: self.spam_repeat_max,
            repeat_window: self.spam_repeat_window,
            repeat_min_chars: self.spam_repeat_min_chars,
        }
    }

    /// Origins normalised for comparison with a browser's `Origin` header.
    pub fn origins(&self) -> Vec<String> {
        self.allowed_origins.iter().map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()).filter(|o| !o.is_empty()).collect()
    }
}
