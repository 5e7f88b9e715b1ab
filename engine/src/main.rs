//! The `chat-engine` binary: parse flags, set up logging, serve until SIGTERM or SIGINT; or run
//! one of the store jobs (`export`, `import`) and exit.

use std::io::IsTerminal;

use anyhow::Context;
use chat_engine::chat::RoomId;
use chat_engine::config::{Command, Config, LogFormat};
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

/// `--features heap-profile`: every allocation is recorded with its call stack; SIGUSR1 writes
/// what is live at that moment, by call site, to `dhat-heap.json` (its `eb` figures) and stops
/// recording. For measuring what a held connection costs (bench/README.md).
#[cfg(feature = "heap-profile")]
mod heap_profile {
    #[global_allocator]
    static ALLOC: dhat::Alloc = dhat::Alloc;

    pub fn start() {
        let profiler = dhat::Profiler::builder().trim_backtraces(Some(16)).build();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
                    usr1.recv().await;
                }
            });
            drop(profiler);
            tracing::info!("heap profile written to dhat-heap.json");
        });
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

/// Each reader holds a socket: use every file descriptor the hard limit allows, and size the
/// descriptor table for `sockets` of them now.
fn raise_fd_limit(sockets: usize) {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if soft < hard {
            let _ = rlimit::Resource::NOFILE.set(hard, hard);
        }
        let room_for = u64::try_from(sockets).unwrap_or(u64::MAX).saturating_add(FDS_BESIDE_SOCKETS);
        reserve_fd_table(room_for.min(hard));
    }
}

/// Descriptors the engine holds besides readers' sockets: listeners, the store's files and
/// connections, Redis, logs.
const FDS_BESIDE_SOCKETS: u64 = 1024;

/// Grows the descriptor table to `size` entries at once. The kernel doubles it as sockets are
/// accepted, and in a process with threads each doubling waits for an RCU grace period with the
/// table locked: every accept paused 10–30 ms at 1,024, 2,048, 4,096… open sockets, which a join
/// storm showed as a burst of slow joins at each (bench/README.md). Done once here, the pause
/// happens at start.
#[allow(unsafe_code)]
fn reserve_fd_table(size: u64) {
    let highest = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX).saturating_sub(1);
    let Ok(null) = std::fs::File::open("/dev/null") else { return };
    // SAFETY: duplicates a descriptor this function owns to the lowest free one at or above
    // `highest` and closes that duplicate at once; no other descriptor is touched.
    unsafe {
        let fd = libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&null), libc::F_DUPFD_CLOEXEC, highest);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// Runs an export or import on the store `--database-url` names. Nothing is logged: stdout
/// carries the export, and the outcome goes to stderr.
async fn run_job(config: &Config, command: &Command) -> anyhow::Result<()> {
    let store = chat_engine::store::open(&config.database_url, config.store_timeout, config.db_max_connections)
        .await
        .context("cannot open the store")?;
    match command {
        Command::Export { all, rooms } => {
            let rooms = if *all {
                None
            } else {
                Some(rooms.iter().map(|r| RoomId::parse(r).with_context(|| format!("invalid room id {r:?}"))).collect::<Result<_, _>>()?)
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = chat_engine::jobs::export(store.clone(), rooms, &mut out).await?;
            eprintln!("exported {written} rooms");
        }
        Command::Import { file } => {
            let input: Box<dyn std::io::BufRead> = match file.to_str() {
                Some("-") => Box::new(std::io::stdin().lock()),
                _ => {
                    Box::new(std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?))
                }
            };
            let done = chat_engine::jobs::import(store.clone(), input).await?;
            eprintln!("imported {} rooms, {} messages", done.rooms, done.messages);
        }
    }
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Some(command) = &config.command {
        return run_job(&config, command).await;
    }
    init_logging(config.log_format);
    raise_fd_limit(config.max_connections);
    #[cfg(feature = "heap-profile")]
    heap_profile::start();
    let listener = TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on {}", config.bind))?;
    let metrics = match config.metrics_bind {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?),
        None => None,
    };
    chat_engine::serve(config, listener, metrics, shutdown_signal()).await.context("engine failed")?;
    Ok(())
}
