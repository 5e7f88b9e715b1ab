//! Idle capacity: open N readers (5 per room), hold them, and read the server's resident memory
//! per socket and the connect rate; step N up until a step fails, and name what failed.
//!
//! One process holds at most ~15k sockets (its fd cap is 20,000), so the readers are spread over
//! worker processes: this binary re-executed as `idle-worker`, one line per step on its stdin
//! ("open up to N in total"), one JSON line per step on its stdout.

use std::process::Stdio;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{watch, Semaphore};

use super::join::hold;
use super::traffic::round3;
use crate::clock::{now_ns, SEC};
use crate::conn::{self, Sources};
use crate::procstat;
use crate::proto::Proto;

/// Sockets per worker process, well under the 20,000 fds a process may hold.
const PER_WORKER: usize = 15_000;

#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum)]
    pub proto: Proto,
    #[arg(long)]
    pub url: String,
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Total readers at each step, ascending (e.g. 5000,10000,19000).
    #[arg(long, value_delimiter = ',', required = true)]
    pub steps: Vec<usize>,
    #[arg(long, default_value_t = 5)]
    pub per_room: usize,
    /// Seconds to hold each step before reading memory.
    #[arg(long, default_value_t = 1.0)]
    pub hold: f64,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    pub proto: Proto,
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub per_room: usize,
    /// This worker opens readers k with k mod workers == index.
    #[arg(long)]
    pub index: usize,
    #[arg(long)]
    pub workers: usize,
    #[arg(long)]
    pub max_clients: usize,
}

pub async fn run(args: IdleArgs) -> Value {
    let max = args.steps.iter().copied().max().unwrap_or(0);
    let workers = max.div_ceil(PER_WORKER).max(1);
    let exe = std::env::current_exe().expect("own executable");
    let mut procs = Vec::new();
    for index in 0..workers {
        let child = Command::new(&exe)
            .args(["idle-worker", "--proto", args.proto.label(), "--url", &args.url])
            .args(["--per-room", &args.per_room.to_string(), "--index", &index.to_string()])
            .args(["--workers", &workers.to_string(), "--max-clients", &max.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn idle worker");
        procs.push(child);
    }
    let mut io: Vec<_> = procs.iter_mut().map(|c| (c.stdin.take().unwrap(), BufReader::new(c.stdout.take().unwrap()).lines())).collect();

    let base_rss = procstat::rss_kib_all(&args.server_pids);
    let mut steps = Vec::new();
    let mut limit = Value::Null;
    for &target in &args.steps {
        let started = now_ns();
        for (stdin, _) in io.iter_mut() {
            let _ = stdin.write_all(format!("{target}\n").as_bytes()).await;
        }
        let (mut open, mut failed, mut first_error) = (0u64, 0u64, Value::Null);
        for (_, lines) in io.iter_mut() {
            let reply: Value = match lines.next_line().await {
                Ok(Some(line)) => serde_json::from_str(&line).unwrap_or(Value::Null),
                _ => json!({"failed": 1, "first_error": "worker exited"}),
            };
            open += reply["open"].as_u64().unwrap_or(0);
            failed += reply["failed"].as_u64().unwrap_or(0);
            if first_error.is_null() {
                first_error = reply["first_error"].clone();
            }
        }
        let secs = (now_ns() - started) as f64 / SEC as f64;
        let newly = open.saturating_sub(steps.last().map_or(0, |s: &Value| s["open"].as_u64().unwrap_or(0)));
        tokio::time::sleep(std::time::Duration::from_secs_f64(args.hold)).await;
        let rss = procstat::rss_kib_all(&args.server_pids);
        steps.push(json!({
            "target": target,
            "open": open,
            "failed": failed,
            "connects_per_s": (newly as f64 / secs).round(),
            "server_rss_kib": rss,
            "rss_per_socket_kib": if open > 0 { round3(rss.saturating_sub(base_rss) as f64 / open as f64) } else { 0.0 },
        }));
        if failed > 0 {
            limit = first_error;
            break;
        }
    }
    // Closing their stdin tells the workers to let go of their readers and exit.
    drop(io);
    for mut child in procs {
        let _ = child.wait().await;
    }
    let best = steps.iter().rev().find(|s| s["failed"] == 0).cloned().unwrap_or(Value::Null);
    json!({
        "scenario": "idle",
        "server": args.server,
        "base_rss_kib": base_rss,
        "steps": steps,
        "held": best["open"],
        "rss_per_socket_kib": best["rss_per_socket_kib"],
        "connects_per_s": best["connects_per_s"],
        "limit": limit,
    })
}

/// A worker: opens its share of each step and holds every reader until its stdin closes.
pub async fn worker(args: WorkerArgs) {
    let nonce = now_ns() as u32;
    let sources = Sources::for_clients(args.max_clients, std::process::id());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(200));
    let mut opened = 0;
    let mut next = args.index;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let target: usize = line.trim().parse().unwrap_or(0);
        let mut joins = Vec::new();
        while next < target {
            let (gate, stop, url) = (gate.clone(), stop_rx.clone(), args.url.clone());
            let (proto, per_room, client) = (args.proto, args.per_room, next);
            let (tx, rx) = tokio::sync::oneshot::channel();
            joins.push(rx);
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let room = format!("idle-{}", client / per_room);
                let anonymous_id = conn::anonymous_id(nonce, 1, client);
                match conn::join(proto, &url, &room, sources.pick(client), &anonymous_id).await {
                    Ok(joined) => {
                        drop(permit);
                        let _ = tx.send(Ok(()));
                        hold(proto, joined.ws, stop).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
            next += args.workers;
        }
        let (mut failed, mut first_error) = (0, None);
        for rx in joins {
            match rx.await {
                Ok(Ok(())) => opened += 1,
                Ok(Err(e)) => {
                    failed += 1;
                    first_error = first_error.or(Some(e));
                }
                Err(_) => failed += 1,
            }
        }
        println!("{}", json!({"open": opened, "failed": failed, "first_error": first_error}));
    }
    let _ = stop_tx.send(true);
}
