//! Measures what an idle reader costs: opens N WebSocket connections to a running engine (five
//! readers per room, each joined with `hello`), holds them, and reports the engine's resident
//! memory before and after from /proc.
//!
//! cargo run --release -p chat-engine --example idle_readers -- <engine addr> <engine pid> <readers> [history]
//!
//! `IDLE_HOLD_SECS=N` keeps the readers connected N seconds after the figures are printed.
//!
//! With `history`, each room first gets that many messages, so every welcome carries history
//! (start the engine with `--send-burst` at least that large).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("engine pid");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, pid, readers, history) = match args.as_slice() {
        [_, addr, pid, n, rest @ ..] if rest.len() <= 1 => (
            addr.clone(),
            pid.parse::<u32>().expect("pid"),
            n.parse::<usize>().expect("readers"),
            rest.first().map_or(0, |h| h.parse::<usize>().expect("history")),
        ),
        _ => panic!("usage: idle_readers <engine addr> <engine pid> <readers> [history]"),
    };
    if history > 0 {
        for room in 0..readers.div_ceil(5) {
            seed(&addr, &format!("idle-{room}"), history).await;
        }
    }
    let before = rss_kib(pid);
    let mut sockets = Vec::with_capacity(readers);
    let started = Instant::now();
    for i in 0..readers {
        let url = format!("ws://{addr}/ws/idle-{}", i / 5);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
        let hello = serde_json::json!({
            "type": "hello",
            "anonymousId": uuid::Uuid::new_v4().to_string(),
            "nickname": format!("reader {i}"),
            "avatar": "otter",
        });
        ws.send(Message::text(hello.to_string())).await.expect("hello");
        loop {
            let frame = ws.next().await.expect("welcome").expect("welcome");
            if frame.to_text().is_ok_and(|t| t.contains("\"welcome\"")) {
                break;
            }
        }
        sockets.push(ws);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let presence frames settle, then read the engine's memory with everyone idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for ws in &mut sockets {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await {}
    }
    let after = rss_kib(pid);
    println!("readers            {readers}");
    println!("connect rate       {:.0}/s", readers as f64 / connect_secs);
    println!("engine RSS before  {before} KiB");
    println!("engine RSS after   {after} KiB");
    println!("per reader         {:.2} KiB", (after.saturating_sub(before)) as f64 / readers as f64);
    // Held for a heap profile (SIGUSR1 to an engine built with `--features heap-profile`).
    if let Some(secs) = std::env::var("IDLE_HOLD_SECS").ok().and_then(|s| s.parse().ok()) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    drop(sockets);
}

/// Sends `count` messages of about 200 characters into a room and waits for their acks.
async fn seed(addr: &str, room: &str, count: usize) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/{room}")).await.expect("connect");
    let hello = serde_json::json!({"type": "hello", "anonymousId": uuid::Uuid::new_v4().to_string(), "nickname": "seeder"});
    ws.send(Message::text(hello.to_string())).await.expect("hello");
    for i in 0..count {
        let send = serde_json::json!({"type": "send", "clientId": uuid::Uuid::new_v4().to_string(), "content": format!("{i} {}", "history ".repeat(25))});
        ws.send(Message::text(send.to_string())).await.expect("send");
    }
    let mut acks = 0;
    while acks < count {
        let frame = ws.next().await.expect("frame").expect("frame");
        let text = frame.to_text().unwrap_or_default();
        assert!(!text.contains("\"error\""), "seeding failed: {text}");
        if text.contains("\"ack\"") {
            acks += 1;
        }
    }
}
