//! Fair share per client: the client address (the TCP peer, or what a trusted proxy forwarded
//! for), the per-address caps on sockets and joins, and send limits that one reader's sockets,
//! one address's readers and one room's readers each share.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A socket whose upgrade came through a proxy that says it forwarded for `chain`.
async fn connect_via(engine: &Engine, room: &str, header: &str, chain: &str) -> Result<Client, u16> {
    Client::try_connect_with(engine.addr, room, &[(header, chain)]).await
}

async fn join_via(engine: &Engine, room: &str, forwarded_for: &str, reader: &Reader) -> Client {
    let mut client = connect_via(engine, room, "X-Forwarded-For", forwarded_for)
        .await
        .unwrap_or_else(|status| panic!("upgrade for {forwarded_for} refused with HTTP {status}"));
    client.hello(reader, None).await;
    client
}

/// Asserts the refused upgrade answer: HTTP 429 with the JSON error `code`.
async fn assert_refused(engine: &Engine, room: &str, header: &str, chain: &str, code: &str) {
    let response = engine.raw_upgrade_with(&format!("/ws/{room}"), &[(header, chain)]).await;
    response.assert_error(429, code);
}

/// Sends `count` messages on `client` at once and returns their clientIds.
async fn fire(client: &mut Client, count: usize, label: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(client.send_message(&format!("{label} {i}")).await);
    }
    ids
}

/// The ack or error answering each of `ids` on `client`, in any order: (acked, refusals).
async fn answers(client: &mut Client, ids: &[String]) -> (Vec<String>, Vec<Value>) {
    let mut waiting: HashSet<String> = ids.iter().cloned().collect();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    while !waiting.is_empty() {
        let frame = client
            .next_where(&format!("answers to {} sends", waiting.len()), |f| {
                matches!(frame_type(f), "ack" | "error") && f["clientId"].as_str().is_some_and(|id| waiting.contains(id))
            })
            .await;
        waiting.remove(frame["clientId"].as_str().unwrap_or_default());
        if frame_type(&frame) == "ack" {
            acked.push(frame["clientId"].as_str().unwrap_or_default().to_string());
        } else {
            assert_eq!(frame["code"], "rate_limited", "{frame}");
            let retry = frame["retryAfterMs"].as_u64().unwrap_or_else(|| panic!("no retryAfterMs in {frame}"));
            assert!((1..=60_000).contains(&retry), "retryAfterMs {retry} in {frame}");
            refused.push(frame);
        }
    }
    (acked, refused)
}

/// Stored clientIds of a room.
async fn stored(engine: &Engine, room: &str) -> HashSet<String> {
    engine.full_history(room).await.iter().map(|m| m["clientId"].as_str().unwrap().to_string()).collect()
}

/// What a token bucket lets through in `elapsed`: the burst, plus the rate for every started second.
fn budget(burst: u32, rate: f64, elapsed: Duration) -> usize {
    burst as usize + (rate * elapsed.as_secs_f64().ceil()) as usize
}

// ---------------------------------------------------------------------------------------------
// The client address and the socket cap
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sockets_over_the_per_address_cap_get_429_until_one_closes() {
    let engine = Engine::start(&["--max-connections-per-ip", "3"]);
    let room = room("cap");
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(engine.join(&room, &Reader::new(&format!("탭 {i}"))).await.0);
    }
    let refused = engine.raw_upgrade(&format!("/ws/{room}"), None).await;
    refused.assert_error(429, "too_many_connections");

    // The others in the room are unaffected, and a closed socket gives its place back.
    let (said, _) = open[0].say("still here").await;
    assert!(said >= 1);
    open.pop().expect("three open").close().await;
    let reader = Reader::new("넷째 탭");
    eventually("a socket is accepted once one closed", FRAME_TIMEOUT, || async {
        match Client::try_connect(engine.addr, &room, None).await {
            Ok(mut client) => {
                client.hello(&reader, None).await;
                true
            }
            Err(status) => {
                assert_eq!(status, 429);
                false
            }
        }
    })
    .await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let engine = Engine::start(&["--max-connections-per-ip", "2"]);
    let room = room("spoof");
    let _a = join_via(&engine, &room, "198.51.100.1", &Reader::new("첫째")).await;
    let _b = join_via(&engine, &room, "198.51.100.2", &Reader::new("둘째")).await;
    // Every socket comes from 127.0.0.1, whatever it claims.
    assert_refused(&engine, &room, "X-Forwarded-For", "198.51.100.3", "too_many_connections").await;
    assert_refused(&engine, &room, "Forwarded", "for=198.51.100.4", "too_many_connections").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
    let engine = Engine::start(&["--max-connections-per-ip", "2", "--trusted-proxies", "127.0.0.1/32, 10.0.0.0/8"]);
    let room = room("proxied");
    // The left part is whatever the client sent; 10.1.2.3 is a proxy of ours; 203.0.113.9 is the client.
    let _a = join_via(&engine, &room, "1.1.1.1, 203.0.113.9, 10.1.2.3", &Reader::new("첫째")).await;
    let _b = join_via(&engine, &room, "2.2.2.2, 203.0.113.9", &Reader::new("둘째")).await;
    assert_refused(&engine, &room, "X-Forwarded-For", "3.3.3.3, 203.0.113.9", "too_many_connections").await;
    let _other = join_via(&engine, &room, "203.0.113.10", &Reader::new("이웃")).await;
}

#[tokio::test]
async fn forwarded_for_is_read_and_ipv6_clients_count_by_their_64() {
    let engine = Engine::start(&["--max-connections-per-ip", "2", "--trusted-proxies", "127.0.0.1"]);
    let room = room("v6");
    let mut open = Vec::new();
    for chain in [r#"for="[2001:db8:1:2::1]:4711""#, r#"for="[2001:db8:1:2:ffff::2]";proto=https"#] {
        let mut client = connect_via(&engine, &room, "Forwarded", chain).await.expect("upgrade accepted");
        client.hello(&Reader::new("육번 독자"), None).await;
        open.push(client);
    }
    assert_refused(&engine, &room, "Forwarded", r#"for="[2001:db8:1:2::3]""#, "too_many_connections").await;
    let mut next_64 = connect_via(&engine, &room, "Forwarded", r#"for="[2001:db8:1:3::1]""#).await.expect("another /64");
    next_64.hello(&Reader::new("옆집 독자"), None).await;
}

#[tokio::test]
async fn new_sockets_over_the_per_address_join_rate_get_429() {
    let engine = Engine::start(&["--joins-per-ip", "1", "--join-burst-per-ip", "3", "--trusted-proxies", "127.0.0.1"]);
    let room = room("joins");
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(join_via(&engine, &room, "192.0.2.7", &Reader::new(&format!("탭 {i}"))).await);
    }
    let refused = engine.raw_upgrade_with(&format!("/ws/{room}"), &[("X-Forwarded-For", "192.0.2.7")]).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)), "{refused:?}");
    // Another address is not held up, and the first may come back once a token refilled.
    let _other = join_via(&engine, &room, "192.0.2.8", &Reader::new("다른 집")).await;
    let reader = Reader::new("다시 온 탭");
    eventually("a join is accepted after a second", Duration::from_secs(10), || async {
        match connect_via(&engine, &room, "X-Forwarded-For", "192.0.2.7").await {
            Ok(mut client) => {
                client.hello(&reader, None).await;
                true
            }
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test]
async fn addresses_that_went_away_are_forgotten() {
    let engine = Engine::start(&["--trusted-proxies", "127.0.0.1"]);
    let room = room("churn");
    let mut open = Vec::new();
    for i in 0..200 {
        let chain = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        open.push(connect_via(&engine, &room, "X-Forwarded-For", &chain).await.expect("upgrade accepted"));
    }
    eventually("200 addresses tracked", FRAME_TIMEOUT, || async { engine.metric("chat_client_addresses").await >= 200.0 }).await;
    for client in open {
        client.close().await;
    }
    // Their join budgets refill within 3 s and the table is swept every 2 s.
    eventually("every address forgotten", Duration::from_secs(20), || async { engine.metric("chat_client_addresses").await == 0.0 }).await;
}

// ---------------------------------------------------------------------------------------------
// Shared send limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_reader_on_many_sockets_shares_one_send_budget() {
    let engine = Engine::start(&[]);
    let room = room("tabs");
    let reader = Reader::new("탭부자");
    let mut tabs = Vec::new();
    for _ in 0..20 {
        tabs.push(engine.join(&room, &reader).await.0);
    }
    let start = Instant::now();
    let mut sent = Vec::new();
    for (i, tab) in tabs.iter_mut().enumerate() {
        sent.push(fire(tab, 5, &format!("tab {i}")).await);
    }
    let mut acked = HashSet::new();
    let mut refused = 0;
    for (tab, ids) in tabs.iter_mut().zip(&sent) {
        let (a, r) = answers(tab, ids).await;
        acked.extend(a);
        refused += r.len();
    }
    let elapsed = start.elapsed();
    assert_eq!(acked.len() + refused, 100);
    // Defaults: 10 at once, 5 per second after that, for all 20 sockets together.
    assert!(acked.len() <= budget(10, 5.0, elapsed), "{} of 100 sends stored in {elapsed:?} from one reader", acked.len());
    assert!(acked.len() >= 10, "the burst of 10 is allowed, only {} stored", acked.len());
    assert_eq!(stored(&engine, &room).await, acked, "exactly the acked sends are stored");
}

#[tokio::test]
async fn readers_behind_one_address_share_its_send_budget_across_rooms() {
    // 50 sockets from one address at once: the join limits are not what this test is about.
    let engine = Engine::start(&["--joins-per-ip", "1000", "--join-burst-per-ip", "1000"]);
    let rooms: Vec<String> = (0..10).map(|i| room(&format!("office-{i}"))).collect();
    let mut readers = Vec::new();
    for i in 0..50 {
        let room = &rooms[i % rooms.len()];
        readers.push(engine.join(room, &Reader::new(&format!("직원 {i}"))).await.0);
    }
    let start = Instant::now();
    let mut sent = Vec::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        sent.push(fire(reader, 10, &format!("reader {i}")).await);
    }
    let mut acked = HashSet::new();
    let mut refused = Vec::new();
    for (reader, ids) in readers.iter_mut().zip(&sent) {
        let (a, r) = answers(reader, ids).await;
        acked.extend(a);
        refused.extend(r);
    }
    let elapsed = start.elapsed();
    // Each reader stays within its own burst (10) and each room within its ceiling (50 < 60):
    // only the address's budget (3 x 5/s, burst 3 x 10) holds them back.
    assert!(acked.len() <= budget(30, 15.0, elapsed), "{} of 500 sends stored in {elapsed:?} from one address", acked.len());
    assert!(acked.len() >= 30, "the address's burst of 30 is allowed, only {} stored", acked.len());
    assert!(refused.iter().all(|f| f["message"].as_str().is_some_and(|m| m.contains("network"))), "{refused:?}");
    let mut all_stored = HashSet::new();
    for room in &rooms {
        all_stored.extend(stored(&engine, room).await);
    }
    assert_eq!(all_stored, acked, "exactly the acked sends are stored");
}

#[tokio::test]
async fn a_busy_room_goes_into_slow_mode_and_says_when_to_retry() {
    let engine = Engine::start(&["--trusted-proxies", "127.0.0.1", "--room-send-rate", "2", "--room-send-burst", "20"]);
    let quiet = room("quiet");
    let room = room("hot");
    let mut readers = Vec::new();
    for i in 0..30 {
        let reader = Reader::new(&format!("독자 {i}"));
        readers.push(join_via(&engine, &room, &format!("203.0.113.{}", i + 1), &reader).await);
    }
    let start = Instant::now();
    let mut sent = Vec::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        sent.push(fire(reader, 4, &format!("reader {i}")).await);
    }
    let mut acked = HashSet::new();
    let mut refused = Vec::new();
    for (i, (reader, ids)) in readers.iter_mut().zip(&sent).enumerate() {
        let (a, r) = answers(reader, ids).await;
        acked.extend(a);
        refused.extend(r.into_iter().map(|f| (i, f)));
    }
    let elapsed = start.elapsed();
    // Every reader and every address is far within its own limits; only the room is not.
    assert!(acked.len() <= budget(20, 2.0, elapsed), "{} of 120 sends stored in {elapsed:?}", acked.len());
    assert!(acked.len() >= 20, "the room's burst of 20 is allowed, only {} stored", acked.len());
    assert!(refused.iter().all(|(_, f)| f["message"].as_str().is_some_and(|m| m.contains("slow mode"))), "{refused:?}");
    assert_eq!(stored(&engine, &room).await, acked, "exactly the acked sends are stored");

    // Another room is not slowed down.
    let (mut elsewhere, _) = engine.join(&quiet, &Reader::new("조용한 방")).await;
    elsewhere.say("hello from a quiet room").await;

    // A refused reader that waits `retryAfterMs` and resends with the same clientId is stored.
    let (i, refusal) = &refused[refused.len() - 1];
    let retry = refusal["retryAfterMs"].as_u64().expect("retryAfterMs");
    let client_id = refusal["clientId"].as_str().expect("clientId").to_string();
    // Waiting is what the reader was told to do; there is no event to await.
    tokio::time::sleep(Duration::from_millis(retry)).await;
    readers[*i].send_with_id(&client_id, "second try").await;
    readers[*i].ack_for(&client_id).await;
}
