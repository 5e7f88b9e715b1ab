//! Spam defences, black-box: links from readers new to a room, blocked words (with the ways of
//! writing them differently, and reloading the list without a restart), the same content posted
//! too often across rooms and authors, and the owner's per-room slow mode.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "owner-s3cret-token";

async fn admin(engine: &Engine, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    let auth = format!("Bearer {TOKEN}");
    engine.http(method, path, &[("Authorization", auth.as_str())], body).await
}

/// Sends `content` and waits for its refusal as `spam` for `reason`; asserts the send is named.
async fn refused_as(client: &mut Client, content: &str, reason: &str) -> Value {
    let client_id = client.send_message(content).await;
    let error = client.expect_error("spam").await;
    assert_eq!((error["reason"].as_str(), error["clientId"].as_str()), (Some(reason), Some(client_id.as_str())), "{content:?}: {error}");
    error
}

/// Writes the blocked-words file with a modification time later than any before it, so the
/// change is seen whatever the file system's time resolution.
fn write_words(path: &std::path::Path, text: &[u8], bump: u64) {
    std::fs::write(path, text).expect("write blocked words");
    let file = std::fs::File::options().write(true).open(path).expect("open blocked words");
    file.set_modified(SystemTime::now() + Duration::from_secs(bump)).expect("set mtime");
}

#[tokio::test]
async fn a_new_reader_cannot_post_links_until_its_third_message() {
    let engine = Engine::start(&[]);
    let room = room("links");
    let reader = Reader::new("새손님");
    let (mut newcomer, welcome) = engine.join(&room, &reader).await;
    assert_eq!(welcome["slowMode"], 0, "{welcome}");
    for link in ["see https://example.com/offer", "ｗｗｗ．ｃｈｅａｐ．ｃｏｍ", "cheap pills at pills-shop.xyz", "example.io/deal"]
    {
        refused_as(&mut newcomer, link, "links").await;
    }
    // Ordinary text with dots is no link.
    newcomer.say("I use node.js, e.g. for 1.2.3").await;
    assert_eq!(engine.history(&room, "").await.len(), 1, "refused links are not stored");
    newcomer.say("second message").await;
    refused_as(&mut newcomer, "still new: https://example.com", "links").await;
    newcomer.say("third message").await;
    newcomer.say("now a link is fine: https://example.com/docs").await;
    // Another connection of the same reader is known from the store; in another room it is new.
    let (mut again, _) = engine.join(&room, &reader).await;
    again.say("https://example.com/again").await;
    let (mut elsewhere, _) = engine.join(&common::room("other"), &reader).await;
    refused_as(&mut elsewhere, "https://example.com/elsewhere", "links").await;
    assert!(engine.metric("chat_spam_refused_total{reason=\"links\"}").await >= 6.0);
}

#[tokio::test]
async fn links_are_allowed_when_the_rule_is_off() {
    let engine = Engine::start(&["--spam-link-messages", "0"]);
    let (mut a, _) = engine.join(&room("nolinks"), &Reader::new("새손님")).await;
    a.say("https://example.com/first").await;
}

#[tokio::test]
async fn blocked_words_are_refused_in_every_spelling_and_the_list_reloads_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let words = dir.path().join("blocked.txt");
    write_words(&words, "# words nobody may post\nCheap Pills\n바보  # an insult\n".as_bytes(), 0);
    let path = words.to_str().expect("utf-8 path");
    let engine = Engine::start(&["--blocked-words", path]);
    let room = room("words");
    let (mut a, _) = engine.join(&room, &Reader::new("독자")).await;
    for content in [
        "buy cheap pills",
        "BUY CHEAP PILLS",
        "ｂｕｙ　ＣＨＥＡＰ　ｐｉｌｌｓ",
        "ch\u{200B}eap pi\u{200D}lls",
        "c h e a p p i l l s",
        "너 바보",
        "너 ㅂㅏㅂㅗ",
        "너 \u{FFB2}\u{FFC2}\u{FFB2}\u{FFCC}",
    ] {
        refused_as(&mut a, content, "blocked_words").await;
    }
    a.say("cheap flights to Jeju").await;
    assert_eq!(engine.history(&room, "").await.len(), 1);

    // A new list is picked up from the file, no restart.
    write_words(&words, b"casino\n", 10);
    engine.wait_for_log("blocked words reloaded", |l| l.contains("blocked words reloaded") && l.contains("words=1")).await;
    refused_as(&mut a, "Online CASINO night", "blocked_words").await;
    a.say("cheap pills are allowed now").await;

    // A file that cannot be read keeps the list in use.
    write_words(&words, &[0xff, 0xfe, b'\n'], 20);
    engine.wait_for_log("a warning about the file", |l| l.contains("keeping the previous list")).await;
    refused_as(&mut a, "casino again", "blocked_words").await;
    assert!(engine.metric("chat_spam_refused_total{reason=\"blocked_words\"}").await >= 10.0);
}

#[tokio::test]
async fn a_missing_blocked_words_file_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-engine"))
        .args(["--bind", "127.0.0.1:0", "--blocked-words", "/nonexistent/blocked.txt"])
        .current_dir(dir.path())
        .output()
        .expect("run chat-engine");
    assert!(!output.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(said.contains("blocked words file"), "{said}");
}

#[tokio::test]
async fn the_same_content_is_refused_after_three_postings_across_rooms_and_authors() {
    let engine = Engine::start(&[]);
    let (one, two) = (room("dup-one"), room("dup-two"));
    let (mut a, _) = engine.join(&one, &Reader::new("첫째")).await;
    let (mut b, _) = engine.join(&two, &Reader::new("둘째")).await;
    let spam = "Subscribe to my channel for free giveaways every day";
    a.say(spam).await;
    b.say(spam).await;
    // Case and spacing do not make it new content.
    a.say("SUBSCRIBE to my channel  for free giveaways every day").await;
    refused_as(&mut b, spam, "repeated").await;
    refused_as(&mut a, "subscribe to my channel for free giveaways every day", "repeated").await;
    let (mut c, _) = engine.join(&one, &Reader::new("셋째")).await;
    refused_as(&mut c, spam, "repeated").await;
    assert_eq!(engine.history(&one, "").await.len() + engine.history(&two, "").await.len(), 3);
    // Short replies everyone writes are never counted.
    for _ in 0..5 {
        c.say("ㅋㅋㅋ 좋은 글 감사합니다").await;
    }
    assert!(engine.metric("chat_spam_refused_total{reason=\"repeated\"}").await >= 3.0);
}

#[tokio::test]
async fn repeated_content_may_be_allowed_more_often() {
    let engine = Engine::start(&["--spam-repeat-max", "5"]);
    let (mut a, _) = engine.join(&room("dup-more"), &Reader::new("첫째")).await;
    for _ in 0..5 {
        a.say("Subscribe to my channel for free giveaways every day").await;
    }
    refused_as(&mut a, "Subscribe to my channel for free giveaways every day", "repeated").await;
}

#[tokio::test]
async fn slow_mode_is_set_by_the_owner_refuses_fast_sends_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("slow");
    let path = format!("/api/rooms/{room}/slow-mode");
    {
        let mut engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
        let (mut a, _) = engine.join(&room, &Reader::new("독자")).await;
        let (mut b, _) = engine.join(&room, &Reader::new("다른")).await;
        let set = admin(&engine, "PUT", &path, Some(r#"{"seconds": 2}"#)).await;
        assert_eq!(set.status, 200, "{set:?}");
        assert_eq!(set.json(), json!({"id": room, "slowMode": 2}));
        assert_eq!(a.next_of_type("room").await, json!({"type": "room", "locked": false, "slowMode": 2}));
        a.say("first").await;
        let client_id = a.send_message("too soon").await;
        let refused = a.expect_error("rate_limited").await;
        assert_eq!(refused["clientId"], client_id.as_str());
        let wait = refused["retryAfterMs"].as_u64().expect("retryAfterMs");
        assert!((1..=2000).contains(&wait), "{refused}");
        // Another reader has its own turn.
        b.say("my turn").await;
        // The wait the engine gave is enough.
        tokio::time::sleep(Duration::from_millis(wait)).await;
        a.say("second, in time").await;
        assert!(engine.metric("chat_spam_refused_total{reason=\"slow_mode\"}").await >= 1.0);
        engine.kill9();
    }
    let engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
    let (mut a, welcome) = engine.join(&room, &Reader::new("독자")).await;
    assert_eq!(welcome["slowMode"], 2, "slow mode survives a restart: {welcome}");
    assert_eq!(admin(&engine, "DELETE", &path, None).await.status, 200);
    assert_eq!(a.next_of_type("room").await["slowMode"], 0);
    a.say("one").await;
    a.say("two").await;
    // PUT 0 turns it off too, and a room nobody wrote in can be slowed down.
    let empty = common::room("slow-empty");
    assert_eq!(admin(&engine, "PUT", &format!("/api/rooms/{empty}/slow-mode"), Some(r#"{"seconds": 3600}"#)).await.status, 200);
    let (_b, welcome) = engine.join(&empty, &Reader::new("첫 손님")).await;
    assert_eq!(welcome["slowMode"], 3600);
    let off = admin(&engine, "PUT", &format!("/api/rooms/{empty}/slow-mode"), Some(r#"{"seconds": 0}"#)).await;
    assert_eq!(off.json()["slowMode"], 0);
}

#[tokio::test]
async fn the_slow_mode_route_needs_the_owner_and_bounded_input() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let path = format!("/api/rooms/{}/slow-mode", room("slow-auth"));
    engine.http("PUT", &path, &[], Some(r#"{"seconds": 5}"#)).await.assert_error(403, "forbidden");
    engine.http("DELETE", &path, &[("Authorization", "Bearer wrong")], None).await.assert_error(403, "forbidden");
    for body in [r#"{"seconds": 3601}"#, r#"{"seconds": -1}"#, r#"{"seconds": "5"}"#, r#"{}"#, "not json", r#"{"seconds": 1.5}"#] {
        admin(&engine, "PUT", &path, Some(body)).await.assert_error(400, "bad_request");
    }
    admin(&engine, "PUT", "/api/rooms/bad%2Fid/slow-mode", Some(r#"{"seconds": 5}"#)).await.assert_error(400, "invalid_room_id");
    assert_eq!(admin(&engine, "GET", &path, None).await.status, 405);
}
