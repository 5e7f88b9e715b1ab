//! What a client can make the engine hold in memory, bounded whatever it sends or fails to read:
//! welcomes have a byte cap, every write has a deadline (WebSocket and plain HTTP), request heads
//! are capped, rings are bounded per room and by one budget for the pod, and an idle reader
//! costs a few KiB.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A message of the largest size the contract allows: 2000 characters of 4 bytes each.
fn largest_content(i: usize) -> String {
    format!("{i:04}{}", "😀".repeat(1996))
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    FAST.iter().copied().chain(extra.iter().copied()).collect()
}

/// Fills `room` with `count` messages of the largest size; returns the last seq.
async fn fill(engine: &Engine, room: &str, count: usize) -> u64 {
    let (mut writer, _) = engine.join(room, &Reader::new("채우는 수달")).await;
    let contents: Vec<String> = (0..count).map(largest_content).collect();
    let seqs = writer.send_many_windowed(&contents, 32).await;
    writer.close().await;
    *seqs.last().expect("sent at least one")
}

/// The welcome as raw text, with its size.
async fn welcome_of(engine: &Engine, room: &str, last_seq: Option<u64>) -> (Value, usize) {
    let mut client = engine.ws(room).await;
    let welcome = client.hello(&Reader::new("읽는 수달"), last_seq).await;
    let size = welcome.to_string().len();
    client.close().await;
    (welcome, size)
}

#[tokio::test]
async fn a_welcome_is_capped_in_bytes_and_a_resume_that_does_not_fit_starts_over() {
    let engine = Engine::start(&args(&[]));
    let room = room("big");
    let last = fill(&engine, &room, 80).await;
    const CAP: usize = 256 * 1024;

    let (welcome, size) = welcome_of(&engine, &room, None).await;
    let history = welcome["history"].as_array().unwrap();
    assert!(size <= CAP + 1024, "a welcome of {size} bytes");
    assert!(history.len() >= 20 && history.len() < 50, "{} messages fit in 256 KiB", history.len());
    let seqs = seqs(history);
    assert_consecutive(&seqs, last + 1 - seqs.len() as u64);
    assert_eq!(*seqs.last().unwrap(), last, "the newest messages are the ones kept");
    assert_eq!(welcome["resumed"], false);

    // 80 missed messages do not fit: the reader starts over from the newest, told so.
    let (welcome, size) = welcome_of(&engine, &room, Some(0)).await;
    assert!(size <= CAP + 1024, "a resume welcome of {size} bytes");
    assert_eq!(welcome["resumed"], false, "a resume that does not fit is not a resume");
    assert_eq!(seq_of(welcome["history"].as_array().unwrap().last().unwrap()), last);

    // A few missed messages still resume.
    let (welcome, _) = welcome_of(&engine, &room, Some(last - 5)).await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(seqs_of(&welcome), (last - 4..=last).collect::<Vec<_>>());

    // Older messages are still there, over HTTP.
    assert_eq!(engine.full_history(&room).await.len() as u64, last);
}

fn seqs_of(welcome: &Value) -> Vec<u64> {
    seqs(welcome["history"].as_array().unwrap())
}

/// A socket that takes in only a few KiB, so whatever the engine writes beyond that waits on us.
async fn tiny_window(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("TCP socket");
    socket.set_recv_buffer_size(2048).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("TCP connect")
}

#[tokio::test]
async fn readers_that_never_read_their_welcome_are_cut_off_and_others_carry_on() {
    let engine = Engine::start(&args(&["--write-timeout", "2"]));
    let room = room("hoard");
    fill(&engine, &room, 60).await;

    let mut hoarders = Vec::new();
    for _ in 0..10 {
        let mut client = Client::connect_slow(engine.addr, &room).await;
        client.send_json(&Reader::new("안 읽는 수달").hello_frame(Some(0))).await;
        hoarders.push(client);
    }
    let timeouts = engine.metric("chat_write_timeouts_total").await;
    eventually("every hoarding reader is cut off", Duration::from_secs(20), || async {
        engine.metric("chat_write_timeouts_total").await >= timeouts + 10.0
    })
    .await;
    eventually("their sockets are closed", Duration::from_secs(10), || async { engine.metric("chat_connections").await == 0.0 }).await;

    // A reader that does read gets the same room's welcome and new messages.
    let (mut reader, welcome) = engine.join(&room, &Reader::new("읽는 수달")).await;
    assert!(!welcome["history"].as_array().unwrap().is_empty());
    let (mut writer, _) = engine.join(&room, &Reader::new("쓰는 수달")).await;
    let (seq, _) = writer.say("still here").await;
    let message = reader.next_of_type("message").await;
    assert_eq!(seq_of(&message["message"]), seq);
}

#[tokio::test]
async fn plain_http_clients_that_never_read_are_cut_off() {
    let engine = Engine::start(&["--write-timeout", "2"]);
    // Raw bytes, not the HTTP client: a client reads each answer, these pipeline 200 requests
    // and read none.
    let request = format!("GET /assets/widget.js HTTP/1.1\r\nHost: {}\r\n\r\n", engine.addr).repeat(200);
    let mut pipelines = Vec::new();
    let before = engine.metric("chat_write_timeouts_total").await;
    for _ in 0..5 {
        let mut stream = tiny_window(engine.addr).await;
        stream.write_all(request.as_bytes()).await.expect("pipeline requests");
        pipelines.push(stream);
    }
    eventually("the never-read pipelines are cut off", Duration::from_secs(20), || async {
        engine.metric("chat_write_timeouts_total").await >= before + 5.0
    })
    .await;
    // The connection is gone: once the little that was sent is read, the stream ends.
    let mut stream = pipelines.pop().unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(sink.len() < request.len() * 10, "read {} bytes", sink.len());
}

#[tokio::test]
async fn request_heads_are_capped() {
    let engine = Engine::start(&[]);
    // One header line over 8 KiB.
    let long = "a".repeat(9 * 1024);
    let response = engine.http("GET", "/healthz", &[("X-Long", &long)], None).await;
    assert_eq!(response.status, 431, "{response:?}");
    // A head that keeps growing past 16 KiB is answered without waiting for its end (raw bytes:
    // a client sends whole requests).
    let mut stream = TcpStream::connect(engine.addr).await.unwrap();
    let mut head = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", engine.addr);
    for i in 0..40 {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "b".repeat(1000)));
    }
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(FRAME_TIMEOUT, stream.read(&mut answer)).await.expect("an answer before the head ends").unwrap();
    let status_line = String::from_utf8_lossy(&answer[..n]);
    assert!(status_line.starts_with("HTTP/1.1 431"), "{status_line:?}");
    // Ordinary heads (a few KiB of cookies) are fine.
    let cookie = "c".repeat(6 * 1024);
    assert_eq!(engine.http("GET", "/healthz", &[("Cookie", &cookie)], None).await.status, 200);
}

#[tokio::test]
async fn rings_share_one_budget_and_evicted_rooms_answer_from_the_store() {
    let budget = 2 * 1024 * 1024;
    // The same filler goes to every room: not counted as repeated content.
    let engine = Engine::start(&args(&["--ring-memory", &budget.to_string(), "--spam-repeat-max", "0"]));
    let rooms: Vec<String> = (0..8).map(|i| room(&format!("ring{i}"))).collect();
    // Each room's ring holds up to 512 KiB: eight of them are twice the budget. Readers keep the
    // rooms loaded.
    let mut readers = Vec::new();
    let mut last = Vec::new();
    for room in &rooms {
        let (reader, _) = engine.join(room, &Reader::new("머무는 수달")).await;
        readers.push(reader);
        last.push(fill(&engine, room, 70).await);
    }
    eventually("the rings are back under the budget", Duration::from_secs(10), || async {
        engine.metric("chat_ring_bytes").await <= budget as f64
    })
    .await;
    assert!(engine.metric("chat_ring_evictions_total").await > 0.0);
    // Whatever a ring lost, joins still see the newest messages, in order, from the store.
    for (room, last) in rooms.iter().zip(&last) {
        let (welcome, _) = welcome_of(&engine, room, None).await;
        let seqs = seqs_of(&welcome);
        assert_eq!(seqs.last(), Some(last), "{room}");
        assert_consecutive(&seqs, last + 1 - seqs.len() as u64);
        let (resumed, _) = welcome_of(&engine, room, Some(last - 3)).await;
        assert_eq!(seqs_of(&resumed), (last - 2..=*last).collect::<Vec<_>>(), "{room}");
    }
}

/// An idle reader costs the engine a few KiB (bench/README.md, "Where an idle socket's bytes go",
/// measures 3.7 KiB at 19,000 in a release build): 2,000 joined readers who send nothing grow its
/// RSS by under 6 KiB each (a debug build measures about 4.3). A connection that keeps the read
/// buffer hyper used for its upgrade request costs about 9.5 here, and fails this.
#[tokio::test]
async fn an_idle_reader_costs_a_few_kib() {
    let engine = Engine::start(&args(&["--max-connections-per-ip", "5000", "--joins-per-ip", "100000", "--join-burst-per-ip", "100000"]));
    let rooms: Vec<String> = (0..10).map(|_| room("idle")).collect();
    let mut readers = Vec::new();
    for room in &rooms {
        readers.push(engine.join(room, &Reader::new("첫 독자")).await.0);
    }
    let before = rss_kib(engine.pid());
    let crowd = 2000;
    for batch in 0..crowd / 100 {
        let joins = (0..100).map(|i| {
            let (engine, room) = (&engine, &rooms[i % rooms.len()]);
            async move { engine.join(room, &Reader::new(&format!("reader {batch}-{i}"))).await.0 }
        });
        readers.extend(futures_util::future::join_all(joins).await);
    }
    let grown = rss_kib(engine.pid()).saturating_sub(before);
    let per_reader = grown as f64 / crowd as f64;
    eprintln!("{per_reader:.2} KiB per idle reader ({grown} KiB for {crowd})");
    assert!(per_reader < 6.0, "{per_reader:.2} KiB per idle reader");
    assert_eq!(engine.room_info(&rooms[0]).await["online"], (crowd / rooms.len() + 1) as u64);
}
