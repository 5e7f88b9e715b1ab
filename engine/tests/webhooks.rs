//! Webhooks: the owner's endpoint hears about new messages, reports and lock changes, signed with
//! the secret; a receiver that is down is retried until it comes up, a 4xx is not retried, and a
//! slow receiver or a full queue never slows readers' sends (events are dropped and counted).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::net::TcpListener;

const SECRET: &str = "webhook-test-secret";
const TOKEN: &str = "webhook-admin-token";

fn engine_for(receiver: &Receiver, extra: &[&str]) -> Engine {
    let url = receiver.url();
    let mut args = vec!["--webhook-url", url.as_str(), "--webhook-secret", SECRET, "--admin-token", TOKEN];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

#[tokio::test]
async fn a_new_message_arrives_signed_with_its_author_content_and_link() {
    let mut receiver = Receiver::start().await;
    let engine = engine_for(&receiver, &["--public-url", "https://chat.example.com/"]);
    let room = room("hook");
    let author = Reader::new("작성자");
    let (mut client, _) = engine.join(&room, &author).await;
    let (seq, _) = client.say("첫 댓글 & <b>hi</b>").await;

    let hook = receiver.next().await;
    assert_signed(&hook, SECRET);
    assert_eq!(hook.header("X-Chat-Event"), "message.created");
    let body = hook.json();
    assert_eq!(body["event"], "message.created");
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap_or("")).is_ok(), "id of {body}");
    assert!(body["at"].as_str().is_some_and(is_rfc3339_utc), "at of {body}");
    let data = &body["data"];
    let history = engine.history(&room, "").await;
    let stored = history.iter().find(|m| m["seq"] == seq).expect("stored");
    assert_eq!(
        *data,
        json!({
            "room": room,
            "seq": seq,
            "authorId": stored["authorId"],
            "nickname": "작성자",
            "content": "첫 댓글 & <b>hi</b>",
            "createdAt": stored["createdAt"],
            "url": format!("https://chat.example.com/room/{room}"),
        })
    );
    assert!(!hook.body.windows(author.anonymous_id.len()).any(|w| w == author.anonymous_id.as_bytes()), "anonymousId leaked");
    eventually("counted delivered", FRAME_TIMEOUT, || async { webhook_deliveries(&engine, "message.created", "delivered").await == 1.0 })
        .await;
}

#[tokio::test]
async fn locking_and_reporting_arrive_without_a_link_when_no_public_url_is_set() {
    let mut receiver = Receiver::start().await;
    let engine = engine_for(&receiver, &["--auto-hide-reports", "1"]);
    let room = room("hook-mod");
    let (mut author, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (mut reader, _) = engine.join(&room, &Reader::new("독자")).await;
    let (seq, _) = author.say("spam spam").await;
    assert!(receiver.next_of("message.created").await.json()["data"].get("url").is_none(), "no link without --public-url");

    reader.send_json(&json!({"type": "report", "seq": seq})).await;
    reader.next_of_type("reported").await;
    let hook = receiver.next_of("message.reported").await;
    assert_signed(&hook, SECRET);
    assert_eq!(hook.json()["data"], json!({"room": room, "seq": seq, "reports": 1, "hidden": true}));
    // Reporting again is not a new report: nothing more is sent for it.
    reader.send_json(&json!({"type": "report", "seq": seq})).await;
    reader.next_of_type("reported").await;

    let auth = format!("Bearer {TOKEN}");
    let locked = engine.http("PUT", &format!("/api/rooms/{room}/lock"), &[("Authorization", auth.as_str())], None).await;
    assert!(locked.status < 300, "{locked:?}");
    let hook = receiver.next().await;
    assert_eq!(hook.header("X-Chat-Event"), "room.locked", "the repeated report sent nothing: {:?}", hook.body);
    assert_signed(&hook, SECRET);
    assert_eq!(hook.json()["data"], json!({"room": room, "locked": true}));
    let reopened = engine.http("DELETE", &format!("/api/rooms/{room}/lock"), &[("Authorization", auth.as_str())], None).await;
    assert!(reopened.status < 300, "{reopened:?}");
    assert_eq!(receiver.next_of("room.locked").await.json()["data"]["locked"], false);
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_event_once_it_comes_up() {
    // A port nobody listens on, for now: connections to it are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hook");
    let engine = Engine::start(&["--webhook-url", &url, "--webhook-secret", SECRET]);
    let room = room("hook-down");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (seq, _) = client.say("anyone there?").await;
    eventually("a refused try to be retried", FRAME_TIMEOUT, || async { engine.metric("chat_webhook_retries_total").await >= 1.0 }).await;

    let mut receiver = Receiver::on(TcpListener::bind(addr).await.expect("the port is free again"));
    let hook = receiver.next().await;
    assert_signed(&hook, SECRET);
    assert_eq!(hook.json()["data"]["seq"], seq);
    eventually("counted delivered", FRAME_TIMEOUT, || async { webhook_deliveries(&engine, "message.created", "delivered").await == 1.0 })
        .await;
    assert_eq!(webhook_deliveries(&engine, "message.created", "failed").await, 0.0);
}

#[tokio::test]
async fn a_5xx_is_retried_after_retry_after_with_the_same_event_id() {
    let mut receiver = Receiver::start().await;
    receiver.answer(&[(503, Some("1"))]);
    let engine = engine_for(&receiver, &[]);
    let room = room("hook-503");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;
    client.say("retry me").await;

    let first = receiver.next().await;
    let refused_at = Instant::now();
    let second = receiver.next().await;
    assert!(refused_at.elapsed() >= Duration::from_millis(900), "Retry-After: 1 honoured, retried after {:?}", refused_at.elapsed());
    assert_eq!(first.json()["id"], second.json()["id"], "a retry is the same event");
    assert_eq!(first.body, second.body);
    eventually("counted delivered", FRAME_TIMEOUT, || async { webhook_deliveries(&engine, "message.created", "delivered").await == 1.0 })
        .await;
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let mut receiver = Receiver::start().await;
    receiver.answer(&[(400, None)]);
    let engine = engine_for(&receiver, &[]);
    let room = room("hook-400");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;
    client.say("bad request").await;

    receiver.next().await;
    // The failure is counted once the worker has given up on the event: no retry can follow.
    eventually("counted failed", FRAME_TIMEOUT, || async { webhook_deliveries(&engine, "message.created", "failed").await == 1.0 }).await;
    assert_eq!(engine.metric("chat_webhook_retries_total").await, 0.0);
    assert!(receiver.none_waiting(), "a 400 was retried");
    // The worker goes on with the next event.
    client.say("next one").await;
    assert_eq!(receiver.next().await.json()["data"]["content"], "next one");
}

#[tokio::test]
async fn a_slow_receiver_never_slows_sends() {
    let mut receiver = Receiver::start().await;
    // Long enough that sends waiting on the delivery would time out in the test first.
    let mut args = vec!["--webhook-timeout", "60"];
    args.extend_from_slice(FAST);
    let engine = engine_for(&receiver, &args);
    let room = room("hook-slow");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;

    receiver.hold();
    client.say("held").await;
    receiver.next().await;
    // The receiver is holding that request; sends go on and are acked meanwhile.
    for i in 0..20 {
        client.say(&format!("while held {i}")).await;
    }
    assert!(receiver.none_waiting(), "one request at a time per endpoint");
    // The other events wait in the queue (each is queued just after its ack is written, so the
    // gauge may trail the last ack by a moment).
    eventually("20 events queued", FRAME_TIMEOUT, || async { engine.metric("chat_webhook_queue_depth").await == 20.0 }).await;
    assert!(receiver.none_waiting(), "still one request at a time");
    receiver.release();
    for i in 0..20 {
        assert_eq!(receiver.next().await.json()["data"]["content"], format!("while held {i}"), "in order");
    }
    eventually("queue drained", FRAME_TIMEOUT, || async { engine.metric("chat_webhook_queue_depth").await == 0.0 }).await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_new_events() {
    let mut receiver = Receiver::start().await;
    let engine = engine_for(&receiver, &["--webhook-queue", "2", "--webhook-timeout", "60"]);
    let room = room("hook-full");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;

    receiver.hold();
    client.say("in flight").await;
    receiver.next().await;
    for i in 0..5 {
        client.say(&format!("queued or dropped {i}")).await;
    }
    assert_eq!(webhook_deliveries(&engine, "message.created", "dropped").await, 3.0, "2 queued, 3 dropped");
    receiver.release();
    assert_eq!(receiver.next().await.json()["data"]["content"], "queued or dropped 0");
    assert_eq!(receiver.next().await.json()["data"]["content"], "queued or dropped 1");
    eventually("counted delivered", FRAME_TIMEOUT, || async { webhook_deliveries(&engine, "message.created", "delivered").await == 3.0 })
        .await;
    assert!(receiver.none_waiting(), "dropped events are not sent later");
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued() {
    let mut receiver = Receiver::start().await;
    let mut engine = engine_for(&receiver, &["--shutdown-grace", "1"]);
    let room = room("hook-stop");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;
    receiver.hold();
    client.say("first").await;
    receiver.next().await;
    client.say("second").await;
    client.say("third").await;

    engine.sigterm();
    // The pod is stopping with two events queued behind the held one.
    engine.wait_for_log("draining", |l| l.contains("draining")).await;
    receiver.release();
    assert_eq!(receiver.next().await.json()["data"]["content"], "second");
    assert_eq!(receiver.next().await.json()["data"]["content"], "third");
    assert!(engine.wait_exit(Duration::from_secs(15)).await.success());
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_tried_again() {
    let mut receiver = Receiver::start().await;
    let engine = engine_for(&receiver, &["--webhook-timeout", "1"]);
    let room = room("hook-timeout");
    let (mut client, _) = engine.join(&room, &Reader::new("작성자")).await;
    receiver.hold();
    client.say("are you there?").await;

    let first = receiver.next().await;
    // Still holding the first request: the engine gave up on it and tries again.
    let second = receiver.next().await;
    assert_eq!(first.body, second.body, "the same event again");
    assert!(engine.metric("chat_webhook_retries_total").await >= 1.0);
    receiver.release();
    eventually("counted delivered", FRAME_TIMEOUT, || async { webhook_deliveries(&engine, "message.created", "delivered").await == 1.0 })
        .await;
}
