//! Every rule a client can break: room ids on each route, frame size, malformed frames, the hello
//! handshake, nicknames, content and deletes. Each gets the error the protocol names, and the
//! connection stays open unless the protocol says it closes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Room ids as they appear in a request path (percent-encoded where a URL needs it).
fn invalid_room_ids() -> Vec<String> {
    vec![
        "a%20b".to_string(),  // "a b"
        "a".repeat(129),      // one too long
        "%2e%2e".to_string(), // ".." spelled to slip past path normalisation
        "%C3%BC".to_string(), // "ü"
        "a*b".to_string(),
        "a%2Fb".to_string(), // "a/b"
    ]
}

#[tokio::test]
async fn invalid_room_ids_get_400_on_every_route() {
    let engine = Engine::start(&[]);
    for id in invalid_room_ids() {
        for path in [format!("/api/rooms/{id}"), format!("/api/rooms/{id}/messages"), format!("/room/{id}")] {
            engine.get(&path).await.assert_error(400, "invalid_room_id");
        }
        engine.raw_upgrade(&format!("/ws/{id}"), None).await.assert_error(400, "invalid_room_id");
        assert_eq!(Client::try_connect(engine.addr, &id, None).await.err(), Some(400), "WebSocket upgrade to /ws/{id}");
    }
    assert_eq!(engine.metric("chat_rooms_active").await, 0.0, "an invalid room id started a room");
    // Nothing was created under a cut-down or cleaned-up name either.
    for id in ["a".repeat(128), "ab".to_string(), "a_b".to_string(), "u".to_string()] {
        let info = engine.room_info(&id).await;
        assert_eq!(info["online"], 0, "{info}");
        assert_eq!(info["lastSeq"], 0, "{info}");
    }
}

#[tokio::test]
async fn room_id_of_128_allowed_characters_works() {
    let engine = Engine::start(&[]);
    let id: String = "Ab0._-".repeat(22).chars().take(128).collect();
    assert_eq!(id.len(), 128);
    let (mut client, _) = engine.join(&id, &Reader::new("긴 방 손님")).await;
    let (seq, _) = client.say("hello").await;
    let message = client.next_of_type("message").await;
    assert_eq!(message["message"]["roomId"], id.as_str());

    let info = engine.room_info(&id).await;
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["lastSeq"], seq);
    assert_eq!(engine.history(&id, "").await.len(), 1);
    assert_eq!(engine.get(&format!("/room/{id}")).await.status, 200);
}

#[tokio::test]
async fn frame_over_16_kib_closes_with_1009() {
    let engine = Engine::start(&[]);
    let (mut client, _) = engine.join(&room("big"), &Reader::new("큰 손님")).await;
    let frame = json!({"type": "send", "clientId": new_id(), "content": "a".repeat(17 * 1024)});
    client.send_json(&frame).await;
    assert_eq!(client.expect_close(FRAME_TIMEOUT).await, Some(1009));
}

#[tokio::test]
async fn frame_of_15_kib_gets_invalid_content_and_stays_open() {
    let engine = Engine::start(&[]);
    let (mut client, _) = engine.join(&room("big"), &Reader::new("큰 손님")).await;
    let client_id = new_id();
    let frame = json!({"type": "send", "clientId": client_id, "content": "a".repeat(15 * 1024)});
    assert!(frame.to_string().len() < 16 * 1024);
    client.send_json(&frame).await;
    let error = client.expect_error("invalid_content").await;
    assert_eq!(error["clientId"], client_id.as_str());
    client.say("still here").await;
}

#[tokio::test]
async fn malformed_frames_get_bad_frame_and_the_connection_stays_open() {
    let engine = Engine::start(&[]);
    let room = room("bad");
    let (mut client, _) = engine.join(&room, &Reader::new("엉망 손님")).await;
    let bad_frames = [
        "this is not json".to_string(),
        "{\"type\":\"send\"".to_string(),
        "[1,2,3]".to_string(),
        "\"hello\"".to_string(),
        "42".to_string(),
        json!({"content": "no type"}).to_string(),
        json!({"type": "dance"}).to_string(),
        json!({"type": 7}).to_string(),
        json!({"type": "send", "clientId": new_id(), "content": 42}).to_string(),
        json!({"type": "delete", "seq": "5"}).to_string(),
    ];
    for text in &bad_frames {
        client.send_text(text).await;
        let error = client.next_of_type("error").await;
        assert_eq!(error["code"], "bad_frame", "answer to {text}: {error}");
    }
    client.say("still here").await;
    assert_eq!(engine.room_info(&room).await["lastSeq"], 1, "only the good send was stored");
}

#[tokio::test]
async fn binary_frame_gets_bad_frame() {
    let engine = Engine::start(&[]);
    let (mut client, _) = engine.join(&room("bin"), &Reader::new("이진 손님")).await;
    let frame = json!({"type": "send", "clientId": new_id(), "content": "binary"});
    client.send_binary(frame.to_string().into_bytes()).await;
    client.expect_error("bad_frame").await;
    client.say("text works").await;
}

#[tokio::test]
async fn frames_before_hello_get_hello_required() {
    let engine = Engine::start(&[]);
    let room = room("early");
    let mut client = engine.ws(&room).await;
    client.send_json(&json!({"type": "send", "clientId": new_id(), "content": "too early"})).await;
    client.expect_error("hello_required").await;
    client.send_json(&json!({"type": "typing"})).await;
    client.expect_error("hello_required").await;

    client.hello(&Reader::new("늦은 인사"), None).await;
    client.say("now it works").await;
    assert_eq!(engine.room_info(&room).await["lastSeq"], 1, "the early send was not stored");
}

#[tokio::test]
async fn no_hello_within_10_s_closes_with_1008() {
    let engine = Engine::start(&[]);
    let upgraded = Instant::now();
    let mut client = engine.ws(&room("silent")).await;
    client.send_json(&json!({"type": "typing"})).await;
    client.expect_error("hello_required").await;
    let code = client.expect_close(Duration::from_secs(15)).await;
    assert_eq!(code, Some(1008));
    assert!(upgraded.elapsed() >= Duration::from_secs(9), "closed after {:?}, before the 10 s for hello ran out", upgraded.elapsed());
}

#[tokio::test]
async fn hello_needs_a_uuid_anonymous_id() {
    let engine = Engine::start(&[]);
    let mut client = engine.ws(&room("ids")).await;
    for anonymous_id in [json!("not-a-uuid"), json!(""), json!(12345), json!(null)] {
        let hello = json!({"type": "hello", "anonymousId": anonymous_id, "nickname": "익명의 수달", "avatar": "otter"});
        client.send_json(&hello).await;
        let error = client.next_of_type("error").await;
        assert_eq!(error["code"], "bad_frame", "answer to {hello}: {error}");
    }
    client.hello(&Reader::new("익명의 수달"), None).await;
}

#[tokio::test]
async fn nicknames_must_have_2_to_15_characters_and_no_control_characters() {
    let engine = Engine::start(&[]);
    let room = room("names");
    let mut client = engine.ws(&room).await;
    for nickname in ["  a  ", "", "abcdefghijklmnop", "가나다라마바사아자차카타파하거너", "ab\u{7}cd", "tab\tname", "new\nline"]
    {
        client.send_json(&Reader::new(nickname).hello_frame(None)).await;
        let error = client.next_of_type("error").await;
        assert_eq!(error["code"], "invalid_nickname", "answer to nickname {nickname:?}: {error}");
    }

    let korean_15 = "가나다라마바사아자차카타파하거";
    assert_eq!(korean_15.chars().count(), 15);
    let reader = Reader::new(korean_15);
    let welcome = client.hello(&reader, None).await;
    assert_eq!(welcome["you"]["nickname"], korean_15);

    for nickname in ["x", "abcdefghijklmnop", "bell\u{7}"] {
        client.send_json(&json!({"type": "rename", "nickname": nickname, "avatar": "fox"})).await;
        let error = client.next_of_type("error").await;
        assert_eq!(error["code"], "invalid_nickname", "answer to rename {nickname:?}: {error}");
    }
    client.say("still the same name").await;
    let message = client.next_of_type("message").await;
    assert_eq!(message["message"]["nickname"], korean_15, "a refused rename changes nothing");

    client.send_json(&json!({"type": "rename", "nickname": "ab", "avatar": "fox"})).await;
    client.say("two letters").await;
    let message = client.next_of_type("message").await;
    assert_eq!(message["message"]["nickname"], "ab");
}

#[tokio::test]
async fn content_must_have_1_to_2000_characters_after_trimming() {
    let engine = Engine::start(&[]);
    let room = room("content");
    let (mut client, _) = engine.join(&room, &Reader::new("글쓴이")).await;
    for content in [String::new(), "   \n\t  ".to_string(), "a".repeat(2001), "가".repeat(2001)] {
        let client_id = client.send_message(&content).await;
        let error = client.next_of_type("error").await;
        assert_eq!(error["code"], "invalid_content", "answer to {} chars: {error}", content.chars().count());
        assert_eq!(error["clientId"], client_id.as_str(), "{error}");
    }

    let longest = "가".repeat(2000);
    let (seq, client_id) = client.say(&longest).await;
    let message = client.next_of_type("message").await;
    assert_eq!(message["message"]["content"], longest.as_str());
    assert_eq!(message["message"]["clientId"], client_id.as_str());

    let padded = format!("  {}  ", "a".repeat(2000));
    let (padded_seq, _) = client.say(&padded).await;
    assert_eq!(padded_seq, seq + 1, "2000 characters after trimming are accepted");
    assert_eq!(engine.room_info(&room).await["lastSeq"], padded_seq, "refused sends were not stored");
}

#[tokio::test]
async fn deleting_needs_your_own_existing_message() {
    let engine = Engine::start(&[]);
    let room = room("delete");
    let (mut a, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (mut b, _) = engine.join(&room, &Reader::new("남의 손님")).await;
    let (seq, _) = a.say("mine").await;

    b.send_json(&json!({"type": "delete", "seq": seq})).await;
    b.expect_error("forbidden").await;
    a.send_json(&json!({"type": "delete", "seq": seq + 100})).await;
    a.expect_error("not_found").await;

    let history = engine.history(&room, "").await;
    assert_eq!(seqs(&history), vec![seq], "the message is still there");
    b.say("still connected").await;
}
