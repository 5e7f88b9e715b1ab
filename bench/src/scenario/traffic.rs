//! Traffic: `rooms × per-room` joined readers, the first `senders-per-room` of each room sending
//! at a fixed total rate. Covers hot post (1 × 5000), blog mix (2000 × 5), durable writes (commit
//! latency = send → ack), cross-pod delivery (members spread over several pods' URLs) and the blog
//! network (many rooms of quiet readers, a few of them chatting).
//!
//! Open loop: send number i is due at `start + i / rate` whatever happened before it, and its
//! latency is measured from that intended time (carried in the content), so a stalled server
//! cannot hide its stall by slowing the sender down (no coordinated omission). Only sends due in
//! the measured window count; the warm-up before it and the drain after it do not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::clock::{now_ns, MS, SEC};
use crate::conn::{self, Sources, Ws};
use crate::procstat;
use crate::proto::{Incoming, Proto};
use crate::stats::{Counters, Latency};

#[derive(clap::Args, Debug)]
pub struct TrafficArgs {
    /// Scenario label in the output (hot, mix, durable, xpod).
    #[arg(long)]
    pub scenario: String,
    /// Server label in the output (ours, socketio, ws, ...).
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum)]
    pub proto: Proto,
    /// Server base URL, ws://127.x.x.x:port; repeat for several pods (member j joins pod j mod n).
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Server process ids whose CPU and memory are reported.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    #[arg(long, default_value_t = 5)]
    pub per_room: usize,
    #[arg(long, default_value_t = 1)]
    pub senders_per_room: usize,
    /// Rooms with senders, the first ones; the others' readers only read (default: every room).
    #[arg(long)]
    pub chatting_rooms: Option<usize>,
    /// Messages per second, all senders together.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    pub duration: f64,
    /// Longest wait after the last send for the last deliveries.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Joins in flight at once while the readers connect.
    #[arg(long, default_value_t = 200)]
    pub join_concurrency: usize,
}

/// Runs are bounded in time: at most ten minutes of sending.
pub fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if (0.0..=600.0).contains(&v) {
        Ok(v)
    } else {
        Err("0 to 600 seconds".into())
    }
}

/// Everything the connection tasks share.
struct Shared {
    proto: Proto,
    per_room: usize,
    pods: usize,
    window_start: AtomicU64,
    window_end: AtomicU64,
    latency: Latency,
    cross_pod: Latency,
    ack: Latency,
    counters: Counters,
    /// Deliveries and acks of sends due in the measured window.
    window_deliveries: AtomicU64,
    window_acks: AtomicU64,
    /// Highest acked seq per room: every live reader of the room must reach it.
    max_acked: Vec<AtomicU64>,
    /// Highest seq each reader has seen (the welcome's newest to start with).
    last_seq: Vec<AtomicU64>,
    alive: Vec<AtomicU64>,
}

impl Shared {
    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.window_start.load(Relaxed) && sent_ns < self.window_end.load(Relaxed)
    }

    fn pod_of(&self, conn: usize) -> usize {
        (conn % self.per_room) % self.pods
    }
}

pub async fn run(args: TrafficArgs) -> Value {
    let clients = args.rooms * args.per_room;
    let senders_per_room = args.senders_per_room.min(args.per_room);
    let shared = Arc::new(Shared {
        proto: args.proto,
        per_room: args.per_room,
        pods: args.urls.len(),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        latency: Latency::new(),
        cross_pod: Latency::new(),
        ack: Latency::new(),
        counters: Counters::default(),
        window_deliveries: AtomicU64::new(0),
        window_acks: AtomicU64::new(0),
        max_acked: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        last_seq: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        alive: (0..clients).map(|_| AtomicU64::new(0)).collect(),
    });

    let rss_before = procstat::rss_kib_all(&args.server_pids);
    let join_started = now_ns();
    let joined = match join_all(&args, clients).await {
        Ok(joined) => joined,
        Err(err) => return json!({"scenario": args.scenario, "server": args.server, "error": err}),
    };
    let join_secs = (now_ns() - join_started) as f64 / SEC as f64;

    // Every reader gets a task; senders also get a queue of due sends.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut queues = vec![None; clients];
    let mut tasks = Vec::with_capacity(clients);
    for (conn, (ws, last_seq)) in joined.into_iter().enumerate() {
        shared.last_seq[conn].store(last_seq, Relaxed);
        shared.alive[conn].store(1, Relaxed);
        let cmds = if conn % args.per_room < senders_per_room {
            let (tx, rx) = mpsc::unbounded_channel();
            queues[conn] = Some(tx);
            Some(rx)
        } else {
            None
        };
        tasks.push(tokio::spawn(drive(shared.clone(), conn, ws, cmds, stop_rx.clone())));
    }
    // Consecutive sends go to different rooms: sender s of room r is number s * rooms + r.
    let chatting = args.chatting_rooms.unwrap_or(args.rooms).min(args.rooms);
    let senders: Vec<_> = (0..senders_per_room)
        .flat_map(|s| (0..chatting).map(move |r| r * args.per_room + s))
        .filter_map(|conn| queues[conn].clone())
        .collect();
    drop(queues);

    let start = now_ns() + 100 * MS;
    let window_start = start + (args.warmup * SEC as f64) as u64;
    let window_end = window_start + (args.duration * SEC as f64) as u64;
    shared.window_start.store(window_start, Relaxed);
    shared.window_end.store(window_end, Relaxed);
    let cpu = tokio::spawn(sample_cpu(args.server_pids.clone(), window_start, window_end));
    let rss = tokio::spawn(sample_rss(args.server_pids.clone(), window_start, window_end));

    schedule(&senders, &shared.counters.sent, args.rate, start, window_end).await;
    drop(senders);
    let drained = drain(&shared, args.drain).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let (server_cpu, client_cpu) = cpu.await.unwrap_or((0.0, 0.0));
    let rss_timeline = rss.await.unwrap_or_default();

    let c = &shared.counters;
    let tail_lost: u64 = (0..clients)
        .filter(|&conn| shared.alive[conn].load(Relaxed) == 1)
        .map(|conn| shared.max_acked[conn / args.per_room].load(Relaxed).saturating_sub(shared.last_seq[conn].load(Relaxed)))
        .sum();
    json!({
        "scenario": args.scenario,
        "server": args.server,
        "rooms": args.rooms,
        "chatting_rooms": chatting,
        "per_room": args.per_room,
        "pods": args.urls.len(),
        "rate": args.rate,
        "duration_s": args.duration,
        "clients": clients,
        "join_s": round3(join_secs),
        "sent": Counters::get(&c.sent),
        "acked": Counters::get(&c.acked),
        "errors": Counters::get(&c.errors),
        "delivered": Counters::get(&c.delivered),
        "lost": Counters::get(&c.lost) + tail_lost,
        "duplicated": Counters::get(&c.duplicated),
        "dropped_connections": Counters::get(&c.dropped),
        "drained": drained,
        "deliveries_per_s": (Counters::get(&shared.window_deliveries) as f64 / args.duration).round(),
        "acked_per_s": (Counters::get(&shared.window_acks) as f64 / args.duration).round(),
        "latency": shared.latency.summary(),
        "cross_pod_latency": shared.cross_pod.summary(),
        "ack_latency": shared.ack.summary(),
        "server_cpu_cores": round3(server_cpu),
        "client_cpu_cores": round3(client_cpu),
        "server_rss_before_kib": rss_before,
        "server_rss_kib": procstat::rss_kib_all(&args.server_pids),
        "server_rss_timeline_kib": rss_timeline,
    })
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Joins every reader (a bounded number at once); reader `conn` is member `conn % per_room` of
/// room `conn / per_room` and joins pod `member % pods`.
async fn join_all(args: &TrafficArgs, clients: usize) -> Result<Vec<(Ws, u64)>, String> {
    let nonce = now_ns() as u32;
    let sources = Sources::for_clients(clients, std::process::id());
    let gate = Arc::new(Semaphore::new(args.join_concurrency));
    let mut joins = Vec::with_capacity(clients);
    for conn in 0..clients {
        let (proto, gate) = (args.proto, gate.clone());
        let base = args.urls[(conn % args.per_room) % args.urls.len()].clone();
        let room = format!("{}-{}", args.scenario, conn / args.per_room);
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            conn::join(proto, &base, &room, sources.pick(conn), &conn::anonymous_id(nonce, 0, conn)).await
        }));
    }
    let mut joined = Vec::with_capacity(clients);
    let mut first_error = None;
    for join in joins {
        match join.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            Ok(j) => joined.push((j.ws, j.last_seq)),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        None => Ok(joined),
        Some(e) => Err(format!("{} of {clients} joins failed, first: {e}", clients - joined.len())),
    }
}

/// Hands send i to its sender at its due time. A late tick sends everything that is due at once,
/// each still stamped with its own due time. A send counts as sent once handed over, so the drain
/// waits for the last one even when its sender has not written it yet (counted when written, the
/// last send could go out after the drain had seen everything acked, and the run stop while it was
/// still reaching the readers: they were counted as having lost it).
async fn schedule(senders: &[mpsc::UnboundedSender<(u64, u64)>], sent: &AtomicU64, rate: u64, start: u64, end: u64) {
    if senders.is_empty() {
        return;
    }
    let due = |i: u64| start + (i as u128 * SEC as u128 / rate as u128) as u64;
    let mut i = 0u64;
    loop {
        let now = now_ns();
        while due(i) <= now && due(i) < end {
            if senders[i as usize % senders.len()].send((i, due(i))).is_ok() {
                Counters::add(sent, 1);
            }
            i += 1;
        }
        if due(i) >= end {
            break;
        }
        let wait = due(i).saturating_sub(now_ns()).clamp(MS / 4, MS);
        tokio::time::sleep(Duration::from_nanos(wait)).await;
    }
}

/// Waits (at most `limit` seconds) until every send is acked and every live reader has its room's
/// last acked message. Returns whether that happened.
async fn drain(shared: &Shared, limit: f64) -> bool {
    let deadline = now_ns() + (limit * SEC as f64) as u64;
    loop {
        let c = &shared.counters;
        let all_acked = Counters::get(&c.acked) + Counters::get(&c.errors) >= Counters::get(&c.sent);
        let caught_up = shared.last_seq.iter().enumerate().all(|(conn, seq)| {
            shared.alive[conn].load(Relaxed) == 0 || seq.load(Relaxed) >= shared.max_acked[conn / shared.per_room].load(Relaxed)
        });
        if all_acked && caught_up {
            return true;
        }
        if now_ns() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Server RSS at the start of the window and after each tenth of it: whether memory levels off.
async fn sample_rss(pids: Vec<u32>, from: u64, to: u64) -> Vec<u64> {
    tokio::time::sleep(Duration::from_nanos(from.saturating_sub(now_ns()))).await;
    let mut samples = vec![procstat::rss_kib_all(&pids)];
    for i in 1..=10u64 {
        let at = from + (to - from) * i / 10;
        tokio::time::sleep(Duration::from_nanos(at.saturating_sub(now_ns()))).await;
        samples.push(procstat::rss_kib_all(&pids));
    }
    samples
}

/// CPU cores used by the server(s) and by this client during the measured window.
async fn sample_cpu(pids: Vec<u32>, from: u64, to: u64) -> (f64, f64) {
    tokio::time::sleep(Duration::from_nanos(from.saturating_sub(now_ns()))).await;
    let me = std::process::id();
    let (s0, c0, t0) = (procstat::cpu_secs_all(&pids), procstat::cpu_secs(me), now_ns());
    tokio::time::sleep(Duration::from_nanos(to.saturating_sub(now_ns()))).await;
    let secs = (now_ns() - t0) as f64 / SEC as f64;
    ((procstat::cpu_secs_all(&pids) - s0) / secs, (procstat::cpu_secs(me) - c0) / secs)
}

async fn next_cmd(cmds: &mut Option<mpsc::UnboundedReceiver<(u64, u64)>>) -> Option<(u64, u64)> {
    match cmds {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One reader (and maybe sender) until the run stops or the server closes it.
async fn drive(
    sh: Arc<Shared>,
    conn: usize,
    mut ws: Ws,
    mut cmds: Option<mpsc::UnboundedReceiver<(u64, u64)>>,
    mut stop: watch::Receiver<bool>,
) {
    let room = conn / sh.per_room;
    let pod = sh.pod_of(conn) as u64;
    let mut last = sh.last_seq[conn].load(Relaxed);
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let c = &sh.counters;
    loop {
        tokio::select! {
            cmd = next_cmd(&mut cmds) => {
                let Some((id, due)) = cmd else { cmds = None; continue };
                let content = format!("t={due} p={pod} hello from the benchmark");
                pending.insert(id, due);
                if ws.send(Message::text(sh.proto.send_frame(id, &content))).await.is_err() {
                    break;
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                match sh.proto.classify(text.as_bytes()) {
                    Incoming::Message { seq, sent_ns, pod: from } => {
                        let now = now_ns();
                        Counters::add(&c.delivered, 1);
                        if seq > last + 1 {
                            Counters::add(&c.lost, seq - last - 1);
                        } else if seq <= last {
                            Counters::add(&c.duplicated, 1);
                        }
                        last = last.max(seq);
                        sh.last_seq[conn].store(last, Relaxed);
                        if let Some(sent) = sent_ns.filter(|&t| sh.in_window(t)) {
                            Counters::add(&sh.window_deliveries, 1);
                            sh.latency.record_ns(conn, now.saturating_sub(sent));
                            if from.is_some_and(|p| p != pod) {
                                sh.cross_pod.record_ns(conn, now.saturating_sub(sent));
                            }
                        }
                    }
                    Incoming::Ack { id, seq } => {
                        Counters::add(&c.acked, 1);
                        sh.max_acked[room].fetch_max(seq, Relaxed);
                        if let Some(due) = id.and_then(|id| pending.remove(&id)) {
                            if sh.in_window(due) {
                                Counters::add(&sh.window_acks, 1);
                                sh.ack.record_ns(conn, now_ns().saturating_sub(due));
                            }
                        }
                    }
                    Incoming::Ping if ws.send(Message::text("3")).await.is_err() => break,
                    Incoming::Error => Counters::add(&c.errors, 1),
                    _ => {}
                }
            }
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
    // The server closed us (or the socket broke) while the run was still on.
    sh.alive[conn].store(0, Relaxed);
    Counters::add(&c.dropped, 1);
}
