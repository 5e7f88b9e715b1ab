//! The `chat-engine` binary: parse flags, set up logging, serve until SIGTERM or SIGINT.

use std::io::IsTerminal;

use anyhow::Context;
use chat_engine::config::{Config, LogFormat};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
}

/// Resolves on the first SIGTERM (Kubernetes, docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}

/// Each reader holds a socket: use every file descriptor the hard limit allows.
fn raise_fd_limit() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if soft < hard {
            let _ = rlimit::Resource::NOFILE.set(hard, hard);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(config.log_format);
    raise_fd_limit();
    let listener = TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on {}", config.bind))?;
    let metrics = match config.metrics_bind {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?),
        None => None,
    };
    chat_engine::serve(config, listener, metrics, shutdown_signal()).await.context("engine failed")?;
    Ok(())
}
