//! The pod-wide memory budget under a mix of hostile clients at once, with default limits: 200
//! sockets resuming a room full of the largest messages and never reading, 300 request heads
//! that never end, 20 HTTP pipelines that are never read, and 100 rooms of the largest messages
//! kept loaded by one reader each. The engine stays under its stated RSS, a well-behaved pair of
//! readers in another room keeps talking, and RSS falls back once the hostile clients are gone.
//! The crowds come from many client addresses (127.0.0.0/8 is all local), as a botnet would:
//! from one address the per-address limits would refuse most of them before memory mattered.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// The README's stated budget for this mix.
const RSS_BUDGET_MIB: u64 = 256;

fn largest_content(i: usize) -> String {
    format!("{i:04}{}", "😀".repeat(1996))
}

async fn fill(addr: std::net::SocketAddr, room: &str, count: usize, from: std::net::Ipv4Addr) {
    let mut writer = Client::connect_from(addr, room, from, false).await;
    writer.hello(&Reader::new("채우는 수달"), None).await;
    let contents: Vec<String> = (0..count).map(largest_content).collect();
    writer.send_many_windowed(&contents, 32).await;
    writer.close().await;
}

/// Client `i` of a crowd comes from one of several loopback addresses, 20 each (within the
/// per-address socket cap and join burst).
fn source(i: usize, first: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, first, (i / 20) as u8 + 1)
}

async fn slow_socket(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(2048)?;
    socket.connect(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_mix_stays_within_the_memory_budget() {
    // Fast sends only so the test can fill rooms quickly, with the same filler in every room (not
    // counted as repeated content); every other limit is the default. Rooms unload a second after
    // their last reader leaves, so the rings go with the clients.
    let engine = Engine::start(&[FAST, &["--room-idle", "1", "--spam-repeat-max", "0"]].concat());
    let addr = engine.addr;
    let pid = engine.pid();
    let baseline = rss_kib(pid);

    // Set-up: one room for the resumers, 100 rooms to be kept loaded, all of the largest messages.
    let hoard = room("hoard");
    fill(addr, &hoard, 80, source(0, 50)).await;
    let loaded: Vec<String> = (0..100).map(|i| room(&format!("loaded{i}"))).collect();
    for (fills_started, chunk) in loaded.chunks(10).enumerate().map(|(i, c)| (i * 10, c)) {
        let fills = chunk.iter().map(|room| fill(addr, room, 70, source(fills_started, 60)));
        futures_util::future::join_all(fills).await;
    }
    // The rooms unloaded after filling; their readers load them again, one each.
    let mut keepers = Vec::new();
    for (i, room) in loaded.iter().enumerate() {
        let mut keeper = Client::connect_from(addr, room, source(i, 20), false).await;
        keeper.hello(&Reader::new("머무는 수달"), None).await;
        keepers.push(keeper);
    }

    let peak = Arc::new(AtomicU64::new(0));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // 200 resumers from seq 0 that never read their welcome.
    let mut resumers = Vec::new();
    for i in 0..200 {
        let mut client = Client::connect_from(addr, &hoard, source(i, 100), true).await;
        client.send_json(&Reader::new("안 읽는 수달").hello_frame(Some(0))).await;
        resumers.push(client);
    }
    // 300 request heads of 380 KB that never end (the engine answers 431 once it has 16 KiB),
    // and below pipelines never read: raw bytes, as no HTTP client would send them.
    let heads = (0..300).map(|i| async move {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let mut head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad-{i}: ").into_bytes();
        head.extend(std::iter::repeat_n(b'a', 380 * 1024));
        let _ = stream.write_all(&head).await;
        Some(stream)
    });
    let heads = futures_util::future::join_all(heads).await;
    // 20 pipelines of 200 requests each, never read.
    let request = "GET /assets/widget.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    let mut pipelines = Vec::new();
    for _ in 0..20 {
        let mut stream = slow_socket(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("pipeline");
        pipelines.push(stream);
    }

    // Meanwhile two well-behaved readers in their own room talk, and every message arrives.
    let calm = room("calm");
    let (mut listener, _) = engine.join(&calm, &Reader::new("듣는 수달")).await;
    let (mut speaker, _) = engine.join(&calm, &Reader::new("말하는 수달")).await;
    for i in 0..20 {
        let (seq, _) = speaker.say(&format!("still talking {i}")).await;
        let message = listener.next_of_type("message").await;
        assert_eq!(seq_of(&message["message"]), seq);
    }

    // The resumers are cut off once their writes miss the deadline.
    eventually("the resumers who never read are cut off", Duration::from_secs(40), || async {
        engine.metric("chat_connections").await <= (keepers.len() + 2) as f64
    })
    .await;
    let during = peak.load(Ordering::Relaxed);

    // Everyone hostile leaves, and so do the keepers: rooms unload, their rings go.
    drop(resumers);
    drop(heads);
    drop(pipelines);
    for keeper in keepers {
        keeper.close().await;
    }
    eventually("the loaded rooms unload", Duration::from_secs(20), || async { engine.metric("chat_rooms_active").await <= 1.0 }).await;
    sampling.abort();
    let during = during.max(peak.load(Ordering::Relaxed));
    assert!(during < RSS_BUDGET_MIB * 1024, "peak RSS {} MiB over the {RSS_BUDGET_MIB} MiB budget", during / 1024);
    // The engine gives freed memory back a few seconds after load falls (see `heap.rs`).
    let grown = during.saturating_sub(baseline);
    eventually("RSS falls back towards its baseline", Duration::from_secs(30), || async { rss_kib(pid) < baseline + grown / 3 }).await;
    eprintln!("RSS: baseline {} MiB, peak under the hostile mix {} MiB, after {} MiB", baseline / 1024, during / 1024, rss_kib(pid) / 1024);

    // And the room still works.
    let (seq, _) = speaker.say("after the storm").await;
    assert_eq!(seq_of(&listener.next_of_type("message").await["message"]), seq);
}
