//! Join storm: readers arrive at a fixed rate (open loop) in one room that already holds
//! `history` messages; each join is timed from its due time to its welcome (TCP connect, upgrade,
//! hello, history), and must bring exactly `history` messages. Joined readers stay until the end.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::traffic::{round3, seconds};
use crate::clock::{now_ns, MS, SEC};
use crate::conn::{self, Sources, Ws};
use crate::procstat;
use crate::proto::{Incoming, Proto};
use crate::stats::Latency;

#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum)]
    pub proto: Proto,
    #[arg(long)]
    pub url: String,
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Joins per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// Messages written to the room before the storm; every welcome must carry this many.
    #[arg(long, default_value_t = 50)]
    pub history: usize,
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    pub duration: f64,
}

#[derive(Default)]
struct Tally {
    joined: AtomicU64,
    failed: AtomicU64,
    short_history: AtomicU64,
    window_joins: AtomicU64,
}

pub async fn run(args: JoinArgs) -> Value {
    let room = "storm";
    let nonce = now_ns() as u32;
    let total = ((args.warmup + args.duration) * args.rate as f64) as usize;
    let sources = Sources::for_clients(total + 1, std::process::id());
    if let Err(e) = prefill(&args, room, sources, nonce).await {
        return json!({"scenario": "join", "server": args.server, "error": format!("prefill: {e}")});
    }

    let latency = Arc::new(Latency::new());
    let tally = Arc::new(Tally::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = now_ns() + 100 * MS;
    let window_start = start + (args.warmup * SEC as f64) as u64;
    let window_end = window_start + (args.duration * SEC as f64) as u64;
    let cpu0 = procstat::cpu_secs_all(&args.server_pids);
    let mut tasks = Vec::with_capacity(total);
    let due = |i: usize| start + (i as u128 * SEC as u128 / args.rate as u128) as u64;
    let mut i = 0;
    while i < total {
        let now = now_ns();
        while i < total && due(i) <= now {
            let (latency, tally, stop, url) = (latency.clone(), tally.clone(), stop_rx.clone(), args.url.clone());
            let (proto, expected, at) = (args.proto, args.history, due(i));
            let anonymous_id = conn::anonymous_id(nonce, 0, i + 1);
            let source = sources.pick(i + 1);
            let in_window = at >= window_start && at < window_end;
            tasks.push(tokio::spawn(async move {
                match conn::join(proto, &url, room, source, &anonymous_id).await {
                    Ok(joined) => {
                        tally.joined.fetch_add(1, Relaxed);
                        if in_window {
                            tally.window_joins.fetch_add(1, Relaxed);
                            latency.record_ns(i, now_ns().saturating_sub(at));
                        }
                        if joined.history != expected {
                            tally.short_history.fetch_add(1, Relaxed);
                        }
                        hold(proto, joined.ws, stop).await;
                    }
                    Err(_) => {
                        tally.failed.fetch_add(1, Relaxed);
                    }
                }
            }));
            i += 1;
        }
        tokio::time::sleep(Duration::from_nanos(due(i.min(total)).saturating_sub(now_ns()).clamp(MS / 4, MS))).await;
    }
    // Let the last joins finish (each is bounded by the join timeout), then measure and leave.
    let deadline = now_ns() + 10 * SEC;
    while tally.joined.load(Relaxed) + tally.failed.load(Relaxed) < total as u64 && now_ns() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = (now_ns() - start) as f64 / SEC as f64;
    let server_cpu = (procstat::cpu_secs_all(&args.server_pids) - cpu0) / elapsed;
    let server_rss = procstat::rss_kib_all(&args.server_pids);
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    json!({
        "scenario": "join",
        "server": args.server,
        "rate": args.rate,
        "duration_s": args.duration,
        "history": args.history,
        "joins": total,
        "joined": tally.joined.load(Relaxed),
        "failed": tally.failed.load(Relaxed),
        "short_history": tally.short_history.load(Relaxed),
        "joins_per_s": (tally.window_joins.load(Relaxed) as f64 / args.duration).round(),
        "latency": latency.summary(),
        "server_cpu_cores": round3(server_cpu),
        "server_rss_kib": server_rss,
    })
}

/// Writes `history` messages into the room, one at a time, each acked before the next.
async fn prefill(args: &JoinArgs, room: &str, sources: Sources, nonce: u32) -> Result<(), conn::Error> {
    let mut writer = conn::join(args.proto, &args.url, room, sources.pick(0), &conn::anonymous_id(nonce, 0, 0)).await?.ws;
    for id in 0..args.history as u64 {
        // Numbered: the same sentence fifty times is what the engine's spam rules refuse.
        writer.send(Message::text(args.proto.send_frame(id, &format!("history for the join storm, message {id}")))).await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), writer.next()).await?.ok_or("closed")??;
            let Message::Text(text) = frame else { continue };
            match args.proto.classify(text.as_bytes()) {
                Incoming::Ack { .. } => break,
                Incoming::Ping => writer.send(Message::text("3")).await?,
                Incoming::Error => return Err(format!("send refused: {}", text.as_str()).into()),
                _ => {}
            }
        }
    }
    writer.close(None).await?;
    Ok(())
}

/// Keeps a joined reader open (answering engine.io pings) until the run ends.
pub async fn hold(proto: Proto, mut ws: Ws, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) if proto.classify(text.as_bytes()) == Incoming::Ping => {
                    let _ = ws.send(Message::text("3")).await;
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}
