//! `chat-bench`: load generator for chat-engine and its peers (Socket.IO, Node `ws`), one
//! scenario per invocation, one JSON line of results on stdout; `report` turns a run's lines into
//! the Markdown table. `bench/run` drives the whole comparison.

mod clock;
mod conn;
mod procstat;
mod proto;
mod report;
mod scenario;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator for chat-engine and its peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rooms of readers with senders at a fixed rate: hot post, blog mix, durable writes, cross-pod.
    Traffic(scenario::traffic::TrafficArgs),
    /// Readers arriving at a fixed rate into a room with history.
    Join(scenario::join::JoinArgs),
    /// Idle readers held in steps: memory per socket, connect rate, the limit.
    Idle(scenario::idle::IdleArgs),
    /// (internal) one process of the idle scenario's readers.
    #[command(hide = true)]
    IdleWorker(scenario::idle::WorkerArgs),
    /// Markdown table from the JSON lines of a run.
    Report(report::ReportArgs),
}

/// Grows the process's descriptor table to `limit` at once, before any thread starts. The kernel
/// doubles it as descriptors are opened, and in a process with threads each doubling waits for an
/// RCU grace period with the table locked: a pause of 10–30 ms for every connect at 512, 1024,
/// 2048… open sockets, which showed in the join storm as a burst of slow joins at each of those
/// counts, against every server alike.
#[allow(unsafe_code)]
fn reserve_fd_table(limit: u64) {
    let highest = libc::c_int::try_from(limit.min(1 << 20)).unwrap_or(libc::c_int::MAX).saturating_sub(1);
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

fn main() {
    let cli = Cli::parse();
    // Every socket is a file: take all the descriptors the hard limit allows.
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
        reserve_fd_table(hard);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Traffic(args) => Some(scenario::traffic::run(args).await),
            Command::Join(args) => Some(scenario::join::run(args).await),
            Command::Idle(args) => Some(scenario::idle::run(args).await),
            Command::IdleWorker(args) => {
                scenario::idle::worker(args).await;
                None
            }
            Command::Report(args) => {
                report::run(args);
                None
            }
        }
    });
    if let Some(result) = result {
        println!("{result}");
        // The run script fails a scenario that could not run; frame accounting is its call.
        if result.get("error").is_some() {
            std::process::exit(1);
        }
    }
    // Do not wait for lingering connection tasks: the results are out.
    runtime.shutdown_background();
}
