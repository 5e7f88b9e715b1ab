//! Readers' reports: a reader reports someone else's message, enough distinct readers hide it from
//! everyone, and the owner keeps it (it comes back) or deletes it, from a queue of reported
//! messages behind the moderation auth.

mod common;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "reports-admin-token";

async fn admin(engine: &Engine, method: &str, path: &str) -> HttpResponse {
    let auth = format!("Bearer {TOKEN}");
    engine.http(method, path, &[("Authorization", auth.as_str())], None).await
}

/// The owner's queue, asserting 200.
async fn queue(engine: &Engine) -> Vec<Value> {
    let response = admin(engine, "GET", "/api/admin/reports").await;
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["reports"].as_array().expect("a reports array").clone()
}

/// The queue's entry for one message of `room`, if listed.
async fn queued(engine: &Engine, room: &str, seq: u64) -> Option<Value> {
    queue(engine).await.into_iter().find(|r| r["room"] == room && r["seq"] == seq)
}

async fn report(client: &mut Client, seq: u64) {
    client.send_json(&json!({"type": "report", "seq": seq})).await;
}

/// Reports `seq` and waits for `reported`.
async fn reported(client: &mut Client, seq: u64) {
    report(client, seq).await;
    assert_eq!(client.next_of_type("reported").await, json!({"type": "reported", "seq": seq}));
}

/// Reads up to the `message` frame with `content`, failing on any `hidden` frame before it.
async fn not_hidden_before(client: &mut Client, content: &str) {
    loop {
        let frame = client.next_frame().await;
        assert_ne!(frame_type(&frame), "hidden", "hidden: {frame}");
        if frame_type(&frame) == "message" && frame["message"]["content"] == content {
            return;
        }
    }
}

#[tokio::test]
async fn a_report_counts_once_per_reader_and_is_refused_for_own_unknown_or_bad_seqs() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("report");
    let (mut author, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (mut reader, _) = engine.join(&room, &Reader::new("독자")).await;
    let (seq, _) = author.say("is this allowed?").await;

    reported(&mut reader, seq).await;
    reported(&mut reader, seq).await;
    let entry = queued(&engine, &room, seq).await.expect("queued");
    assert_eq!((entry["reports"].as_u64(), entry["hidden"].as_bool()), (Some(1), Some(false)), "a repeat counts once: {entry}");
    assert_eq!(engine.metric("chat_reports_total").await, 1.0);

    report(&mut author, seq).await;
    let refused = author.expect_error("forbidden").await;
    assert_eq!(refused["seq"], seq, "{refused}");
    report(&mut reader, 999).await;
    assert_eq!(reader.expect_error("not_found").await["seq"], 999);
    for bad in [json!(0), json!(-1), json!("1"), json!(1.5)] {
        reader.send_json(&json!({"type": "report", "seq": bad})).await;
        reader.expect_error("bad_frame").await;
    }
    // A deleted message can no longer be reported.
    author.send_json(&json!({"type": "delete", "seq": seq})).await;
    reader.next_of_type("deleted").await;
    report(&mut reader, seq).await;
    assert_eq!(reader.expect_error("not_found").await["seq"], seq);
}

#[tokio::test]
async fn three_readers_hide_a_message_everywhere_until_the_owner_keeps_it() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("hide");
    let author = Reader::new("말썽꾼");
    let (mut a, _) = engine.join(&room, &author).await;
    let (first, _) = a.say("hello").await;
    let (rude, _) = a.say("something rude").await;
    let (last, _) = a.say("and more").await;
    let auth = format!("Bearer {TOKEN}");
    let body = json!({"seq": rude}).to_string();
    let pinned = engine.http("PUT", &format!("/api/rooms/{room}/pin"), &[("Authorization", &auth)], Some(&body)).await;
    assert_eq!(pinned.status, 200, "{pinned:?}");
    assert_eq!(a.next_of_type("pinned").await["message"]["seq"], rude);

    let mut readers = Vec::new();
    for name in ["하나", "두울", "세엣"] {
        readers.push(engine.join(&room, &Reader::new(name)).await.0);
    }
    reported(&mut readers[0], rude).await;
    reported(&mut readers[1], rude).await;
    a.say("two reports are not enough").await;
    not_hidden_before(&mut readers[2], "two reports are not enough").await;
    assert_eq!(seqs(&engine.history(&room, "").await), vec![first, rude, last, last + 1]);

    reported(&mut readers[2], rude).await;
    for client in readers.iter_mut().chain([&mut a]) {
        assert_eq!(client.next_of_type("hidden").await, json!({"type": "hidden", "seq": rude}));
        assert!(client.next_of_type("pinned").await["message"].is_null(), "hiding the pinned message unpins it");
    }
    assert_eq!(seqs(&engine.history(&room, "").await), vec![first, last, last + 1], "out of the history API");
    let (_late, welcome) = engine.join(&room, &Reader::new("늦은")).await;
    assert_eq!(seqs(welcome["history"].as_array().unwrap()), vec![first, last, last + 1], "out of welcome: {welcome}");
    assert!(welcome["pinned"].is_null(), "{welcome}");
    let mut back = engine.ws(&room).await;
    let resumed = back.hello(&Reader::new("돌아온"), Some(first)).await;
    assert_eq!((seqs(resumed["history"].as_array().unwrap()), &resumed["resumed"]), (vec![last, last + 1], &json!(true)));
    let entry = queued(&engine, &room, rude).await.expect("queued");
    assert_eq!((entry["reports"].as_u64(), entry["hidden"].as_bool()), (Some(3), Some(true)), "{entry}");
    assert_eq!(entry["message"]["content"], "something rude", "the owner sees what was hidden: {entry}");
    assert!(is_rfc3339_utc(entry["lastReportedAt"].as_str().unwrap()), "{entry}");
    assert_eq!(engine.metric("chat_messages_hidden_total").await, 1.0);

    // The owner keeps it: back for everyone, in history, welcome and resume.
    let kept = admin(&engine, "DELETE", &format!("/api/rooms/{room}/reports/{rude}")).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    assert_eq!(kept.json(), json!({"id": room, "seq": rude, "dismissed": true}));
    for client in readers.iter_mut().chain([&mut a, &mut back]) {
        let restored = client.next_of_type("restored").await;
        assert_message(&restored["message"], &room, &author, "something rude");
        assert_eq!(restored["message"]["seq"], rude);
    }
    assert_eq!(seqs(&engine.history(&room, "").await), vec![first, rude, last, last + 1]);
    let (_later, welcome) = engine.join(&room, &Reader::new("나중에")).await;
    assert_eq!(seqs(welcome["history"].as_array().unwrap()), vec![first, rude, last, last + 1]);
    let resumed = engine.ws(&room).await.hello(&Reader::new("또 돌아온"), Some(first)).await;
    assert_eq!(seqs(resumed["history"].as_array().unwrap()), vec![rude, last, last + 1]);
    assert!(queued(&engine, &room, rude).await.is_none(), "its reports are cleared");
    admin(&engine, "DELETE", &format!("/api/rooms/{room}/reports/{rude}")).await.assert_error(404, "not_found");

    // Kept: reported again it is queued again, but never hidden again.
    for client in &mut readers {
        reported(client, rude).await;
    }
    a.say("still here").await;
    not_hidden_before(&mut readers[0], "still here").await;
    let entry = queued(&engine, &room, rude).await.expect("queued again");
    assert_eq!((entry["reports"].as_u64(), entry["hidden"].as_bool()), (Some(3), Some(false)), "{entry}");
    assert_eq!(seqs(&engine.history(&room, "").await).len(), 5);
}

#[tokio::test]
async fn auto_hide_can_be_turned_off() {
    let engine = Engine::start(&["--admin-token", TOKEN, "--auto-hide-reports", "0"]);
    let room = room("never");
    let (mut a, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (seq, _) = a.say("controversial").await;
    let (mut b, _) = engine.join(&room, &Reader::new("독자")).await;
    for name in ["하나", "두울", "세엣", "네엣"] {
        reported(&mut engine.join(&room, &Reader::new(name)).await.0, seq).await;
    }
    a.say("marker").await;
    not_hidden_before(&mut b, "marker").await;
    assert_eq!(queued(&engine, &room, seq).await.expect("queued")["reports"], 4);
    assert_eq!(engine.history(&room, "").await.len(), 2);
}

#[tokio::test]
async fn the_queue_needs_moderation_is_ordered_and_deleting_takes_a_message_off_it() {
    let engine = Engine::start(&["--admin-token", TOKEN, "--auto-hide-reports", "0"]);
    for (method, path) in [("GET", "/api/admin/reports"), ("DELETE", "/api/rooms/r/reports/1")] {
        for headers in [&[][..], &[("Authorization", "Bearer wrong")], &[("Cookie", "chat_admin=1.2.3")]] {
            engine.http(method, path, headers, None).await.assert_error(403, "forbidden");
        }
    }
    for path in ["/api/admin/reports?limit=0", "/api/admin/reports?limit=101", "/api/admin/reports?limit=x"] {
        admin(&engine, "GET", path).await.assert_error(400, "bad_request");
    }
    admin(&engine, "DELETE", "/api/rooms/r/reports/0").await.assert_error(400, "bad_request");
    admin(&engine, "DELETE", "/api/rooms/r/reports/7").await.assert_error(404, "not_found");

    let room = room("queue");
    let (mut a, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (once, _) = a.say("reported once").await;
    let (twice, _) = a.say("reported twice").await;
    let (also_once, _) = a.say("reported once, later").await;
    let (mut b, _) = engine.join(&room, &Reader::new("하나")).await;
    let (mut c, _) = engine.join(&room, &Reader::new("두울")).await;
    reported(&mut b, once).await;
    reported(&mut b, twice).await;
    reported(&mut c, twice).await;
    reported(&mut c, also_once).await;
    let mine: Vec<Value> = queue(&engine).await.into_iter().filter(|r| r["room"] == room.as_str()).collect();
    let order: Vec<(u64, u64)> = mine.iter().map(|r| (seq_of(r), r["reports"].as_u64().unwrap())).collect();
    assert_eq!(order, vec![(twice, 2), (once, 1), (also_once, 1)], "most reported, then the longest waiting");
    assert_eq!(mine[0]["message"]["content"], "reported twice");
    let limited = admin(&engine, "GET", "/api/admin/reports?limit=1").await.json();
    assert_eq!(limited["reports"].as_array().unwrap().len(), 1);

    let deleted = admin(&engine, "DELETE", &format!("/api/rooms/{room}/messages/{twice}")).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    b.next_of_type("deleted").await;
    assert!(queued(&engine, &room, twice).await.is_none(), "a deleted message leaves the queue");
    admin(&engine, "DELETE", &format!("/api/rooms/{room}/reports/{twice}")).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn reports_take_from_the_send_limits() {
    let engine = Engine::start(&["--send-burst", "2", "--send-rate", "0.01"]);
    let room = room("flood");
    let (mut a, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (seq, _) = a.say("report me").await;
    let (mut b, _) = engine.join(&room, &Reader::new("성급한")).await;
    b.say("one send").await;
    reported(&mut b, seq).await;
    report(&mut b, seq).await;
    let refused = b.expect_error("rate_limited").await;
    assert_eq!(refused["seq"], seq, "{refused}");
    assert!(refused["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0), "{refused}");
}

#[tokio::test]
async fn a_hidden_message_stays_hidden_across_a_restart_until_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("restart");
    let args = ["--admin-token", TOKEN, "--auto-hide-reports", "1"];
    let (kept, rude);
    {
        let mut engine = Engine::start_in(dir.path(), &args);
        let (mut a, _) = engine.join(&room, &Reader::new("작성자")).await;
        kept = a.say("fine").await.0;
        rude = a.say("not fine").await.0;
        let (mut b, _) = engine.join(&room, &Reader::new("독자")).await;
        reported(&mut b, rude).await;
        assert_eq!(b.next_of_type("hidden").await["seq"], rude);
        engine.kill9();
    }
    let engine = Engine::start_in(dir.path(), &args);
    let (mut c, welcome) = engine.join(&room, &Reader::new("새 손님")).await;
    assert_eq!(seqs(welcome["history"].as_array().unwrap()), vec![kept], "{welcome}");
    assert_eq!(queued(&engine, &room, rude).await.expect("still queued")["hidden"], true);
    assert_eq!(admin(&engine, "DELETE", &format!("/api/rooms/{room}/reports/{rude}")).await.status, 200);
    assert_eq!(c.next_of_type("restored").await["message"]["content"], "not fine");
}
