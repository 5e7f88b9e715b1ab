//! Process configuration: command-line flags, each with the environment fallback that
//! PROTOCOL.md names, so the same binary runs from a terminal, a container or a pod spec.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(name = "chat-engine", version, about = "Real-time chat for blog posts: widget, WebSocket, JSON API and metrics in one binary")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the chosen address is logged).
    #[arg(long, env = "BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    /// Message store: `sqlite://path` (the default is the file chat.db in the working directory)
    /// or `postgres://user:password@host/db` (several pods share one database).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://chat.db", hide_env_values = true)]
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

    /// Sends per second a connection may make (token bucket refill rate).
    #[arg(long, env = "SEND_RATE", default_value_t = 5.0)]
    pub send_rate: f64,

    /// Sends a connection may make in a burst (token bucket size).
    #[arg(long, env = "SEND_BURST", default_value_t = 10)]
    pub send_burst: u32,

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

    /// Serve `/metrics` only on this address (e.g. `0.0.0.0:9091`); the main port then answers
    /// 404 for it. Unset: `/metrics` is on the main port.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
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

impl Config {
    /// Origins normalised for comparison with a browser's `Origin` header.
    pub fn origins(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect()
    }
}
