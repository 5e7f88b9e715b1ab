//! Limits that protect a room: the send rate, the flood cut-off, and the bounded
//! outbound queue that disconnects a reader who cannot keep up without holding up the others.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::sync::watch;

#[tokio::test]
async fn sends_over_the_rate_limit_are_refused_and_not_stored() {
    let engine = Engine::start(&[]);
    let room = room("busy");
    let (mut client, _) = engine.join(&room, &Reader::new("성급한 수달")).await;

    let client_ids: Vec<String> = (0..20).map(|_| new_id()).collect();
    for (i, client_id) in client_ids.iter().enumerate() {
        client.send_with_id(client_id, &format!("burst {i}")).await;
    }
    let mut acked = HashSet::new();
    let mut limited = HashSet::new();
    while acked.len() + limited.len() < client_ids.len() {
        let frame = client.next_frame().await;
        match frame_type(&frame) {
            "ack" => assert!(acked.insert(frame["clientId"].as_str().unwrap().to_string()), "{frame}"),
            "error" => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                assert!(frame["message"].is_string(), "{frame}");
                let client_id = frame["clientId"].as_str().unwrap_or_else(|| panic!("no clientId in {frame}"));
                assert!(limited.insert(client_id.to_string()), "{frame}");
            }
            _ => {}
        }
    }
    assert!(acked.len() >= 10, "a burst of 10 is allowed, only {} acked", acked.len());
    assert!(limited.len() >= 5, "only {} of 20 back-to-back sends were limited", limited.len());
    assert!(acked.is_disjoint(&limited));
    assert!(client_ids.iter().all(|id| acked.contains(id) || limited.contains(id)));

    let stored: HashSet<String> = engine.full_history(&room).await.iter().map(|m| m["clientId"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored, acked, "exactly the acked sends are stored");
    assert_eq!(engine.room_info(&room).await["lastSeq"], acked.len());

    // The connection stays open: once tokens refill, sending works again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let client_id = client.send_message("after the burst").await;
        let frame = client.next_where("ack or error", |f| matches!(frame_type(f), "ack" | "error")).await;
        if frame_type(&frame) == "ack" {
            assert_eq!(frame["clientId"], client_id.as_str());
            break;
        }
        assert_eq!(frame["code"], "rate_limited", "{frame}");
        assert!(tokio::time::Instant::now() < deadline, "no token refilled in 3 s");
        // Tokens refill with time; there is no event to wait for.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_flooding_client_is_closed_while_others_keep_chatting() {
    let engine = Engine::start(&[]);
    let room = room("flood");
    let (mut b, _) = engine.join(&room, &Reader::new("평범한 독자")).await;
    let (mut flooder, _) = engine.join(&room, &Reader::new("도배꾼")).await;

    let typing = json!({"type": "typing"}).to_string();
    for _ in 0..1000 {
        if flooder.feed_text(&typing).await.is_err() {
            break;
        }
    }
    let _ = flooder.flush().await;
    assert_eq!(flooder.expect_close(Duration::from_secs(10)).await, Some(1008));

    let (seq, _) = b.say("still working").await;
    let message = b.next_of_type("message").await;
    assert_eq!(seq_of(&message["message"]), seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_disconnected_without_holding_up_the_room() {
    let engine = Engine::start(&[
        "--send-rate",
        "1000",
        "--send-burst",
        "1000",
        "--room-send-rate",
        "1000",
        "--room-send-burst",
        "1000",
        "--outbound-queue",
        "16",
        // The slow reader misses ~100 messages of ~5.7 KB; its resume must fit one welcome.
        "--welcome-max-bytes",
        "4194304",
    ]);
    let room = room("busy");

    let slow_reader = Reader::new("느린 독자");
    let mut slow = Client::connect_slow(engine.addr, &room).await;
    slow.hello(&slow_reader, None).await;

    // A normal reader that reads everything, in its own task, until it has `total` messages.
    let (mut normal, _) = engine.join(&room, &Reader::new("보통 독자")).await;
    let (total_tx, mut total_rx) = watch::channel(None::<usize>);
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            if let Some(total) = *total_rx.borrow() {
                if seen.len() >= total {
                    return seen;
                }
            }
            tokio::select! {
                changed = total_rx.changed() => changed.expect("test still running"),
                event = normal.read_event(Duration::from_secs(30)) => match event {
                    Event::Frame(frame) if frame_type(&frame) == "message" => seen.push(seq_of(&frame["message"])),
                    Event::Frame(_) => {}
                    other => panic!("normal reader: {other:?} after {} messages", seen.len()),
                },
            }
        }
    });

    // Large frames (1900 Hangul syllables, ~5.7 KB) fill the slow reader's socket buffers; keep
    // sending until the engine reports a slow consumer closed, at most ~11 MB per member.
    let (mut sender, _) = engine.join(&room, &Reader::new("수다쟁이")).await;
    let content = "가".repeat(1900);
    let mut total = 0;
    let mut closes = 0.0;
    for _ in 0..20 {
        let batch: Vec<String> = (0..100).map(|i| format!("{} {content}", total + i + 1)).collect();
        // Few sends in flight: an ack and a message per send must fit the 16-frame queue.
        let seqs = sender.send_many_windowed(&batch, 4).await;
        assert_consecutive(&seqs, total as u64 + 1);
        total += batch.len();
        closes = engine.metric("chat_slow_consumer_closes_total").await;
        if closes >= 1.0 {
            break;
        }
    }
    assert!(closes >= 1.0, "no slow consumer closed after {total} messages");

    total_tx.send(Some(total)).expect("watcher alive");
    let seen = watcher.await.expect("normal reader task");
    assert_eq!(seen.len(), total, "the normal reader got every message");
    assert_consecutive(&seen, 1);

    // The slow reader finally reads: what was buffered, in order, then the end of the connection.
    let (frames, code) = slow.drain_until_close(Duration::from_secs(30)).await;
    assert!(matches!(code, Some(1013) | None), "slow reader closed with {code:?}, not 1013");
    let received: Vec<u64> = frames.iter().filter(|f| frame_type(f) == "message").map(|f| seq_of(&f["message"])).collect();
    assert_consecutive(&received, 1);
    assert!(received.len() < total, "the slow reader was not cut off at all");

    // It comes back with lastSeq and gets the rest.
    let last_seq = received.len() as u64;
    let mut back = engine.ws(&room).await;
    let welcome = back.hello(&slow_reader, Some(last_seq)).await;
    assert_eq!(welcome["resumed"], true, "missed {} messages", total as u64 - last_seq);
    let history = welcome["history"].as_array().expect("history array");
    assert_consecutive(&seqs(history), last_seq + 1);
    assert_eq!(history.len() as u64, total as u64 - last_seq);
}

#[tokio::test]
async fn sockets_over_max_connections_are_refused_until_one_leaves() {
    let engine = Engine::start(&["--max-connections", "2"]);
    let room = room("full");
    let (first, _) = engine.join(&room, &Reader::new("첫 손님")).await;
    let (_second, _) = engine.join(&room, &Reader::new("둘째 손님")).await;

    let refused = Client::try_connect(engine.addr, &room, None).await.err();
    assert!(refused.is_some_and(|status| status >= 400), "a third socket with --max-connections 2 got {refused:?}");
    assert_eq!(engine.get("/healthz").await.status, 200, "plain HTTP is still served");

    first.close().await;
    let third = Reader::new("셋째 손님");
    eventually("a socket is accepted after a reader left", FRAME_TIMEOUT, || async {
        match Client::try_connect(engine.addr, &room, None).await {
            Ok(mut client) => {
                client.hello(&third, None).await;
                true
            }
            Err(_) => false,
        }
    })
    .await;
}
