//! Moderation: authors deleting their own messages, the admin deleting over HTTP, bans that
//! disconnect a reader and survive a restart, and the admin token guarding those routes.

mod common;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-admin-token";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn admin_delete(engine: &Engine, room: &str, seq: u64, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
    engine.http("DELETE", &format!("/api/rooms/{room}/messages/{seq}"), &headers, None).await
}

async fn ban(engine: &Engine, room: &str, body: &Value, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
    engine.http("POST", &format!("/api/rooms/{room}/bans"), &headers, Some(&body.to_string())).await
}

async fn assert_deleted_frame(client: &mut Client, seq: u64) {
    let deleted = client.next_of_type("deleted").await;
    assert_eq!(deleted["seq"], seq, "{deleted}");
}

#[tokio::test]
async fn author_deletes_own_message_for_everyone() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("실수한 수달")).await;
    let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;
    let (oops, _) = a.say("oops, wrong window").await;
    let (kept, _) = a.say("this one stays").await;

    a.send_json(&json!({"type": "delete", "seq": oops})).await;
    assert_deleted_frame(&mut a, oops).await;
    assert_deleted_frame(&mut b, oops).await;

    let (_c, welcome) = engine.join(&room, &Reader::new("새 손님")).await;
    assert_eq!(seqs(welcome["history"].as_array().unwrap()), vec![kept], "{welcome}");
    assert_eq!(seqs(&engine.history(&room, "").await), vec![kept]);

    let (next, _) = a.say("after the delete").await;
    assert_eq!(next, kept + 1, "a deleted message keeps its number");
}

#[tokio::test]
async fn admin_deletes_a_message_over_http() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;
    let (seq, _) = a.say("spam spam spam").await;
    let (kept, _) = a.say("fine").await;

    let response = admin_delete(&engine, &room, seq, Some(&bearer(TOKEN))).await;
    assert!((200..300).contains(&response.status), "admin delete: {response:?}");
    assert_deleted_frame(&mut a, seq).await;
    assert_deleted_frame(&mut b, seq).await;
    assert_eq!(seqs(&engine.history(&room, "").await), vec![kept]);
}

#[tokio::test]
async fn moderation_needs_the_right_token() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("post");
    let (mut a, welcome) = engine.join(&room, &Reader::new("작성자")).await;
    let (seq, _) = a.say("keep me").await;
    let author_id = welcome["you"]["authorId"].as_str().unwrap().to_string();

    let wrong = [
        None,
        Some("Bearer wrong-token".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer ".to_string()),
    ];
    for authorization in &wrong {
        admin_delete(&engine, &room, seq, authorization.as_deref()).await.assert_error(403, "forbidden");
        ban(&engine, &room, &json!({"authorId": author_id, "minutes": 5}), authorization.as_deref()).await.assert_error(403, "forbidden");
    }
    assert_eq!(seqs(&engine.history(&room, "").await), vec![seq], "nothing was deleted");
    a.say("not banned").await;
}

#[tokio::test]
async fn moderation_is_forbidden_without_a_configured_token() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let (mut a, welcome) = engine.join(&room, &Reader::new("작성자")).await;
    let (seq, _) = a.say("keep me").await;
    let author_id = welcome["you"]["authorId"].as_str().unwrap().to_string();

    for authorization in [None, Some("Bearer "), Some("Bearer anything"), Some("Bearer null")] {
        admin_delete(&engine, &room, seq, authorization).await.assert_error(403, "forbidden");
        ban(&engine, &room, &json!({"authorId": author_id, "minutes": 5}), authorization).await.assert_error(403, "forbidden");
    }
    assert_eq!(seqs(&engine.history(&room, "").await), vec![seq]);
    a.say("not banned").await;
}

#[tokio::test]
async fn a_ban_disconnects_the_reader_and_refuses_its_hello() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("post");
    let troll = Reader::new("말썽꾼");
    let (mut a, _) = engine.join(&room, &Reader::new("착한 독자")).await;
    let (mut c, _) = engine.join(&room, &Reader::new("다른 독자")).await;
    let (mut t, welcome) = engine.join(&room, &troll).await;
    let troll_id = welcome["you"]["authorId"].as_str().unwrap().to_string();

    let response = ban(&engine, &room, &json!({"authorId": troll_id, "minutes": 5}), Some(&bearer(TOKEN))).await;
    assert!((200..300).contains(&response.status), "ban: {response:?}");

    t.expect_error("banned").await;
    assert_eq!(t.expect_close(FRAME_TIMEOUT).await, Some(1008));

    let mut again = engine.ws(&room).await;
    again.send_json(&troll.hello_frame(None)).await;
    again.expect_error("banned").await;
    assert_eq!(again.expect_close(FRAME_TIMEOUT).await, Some(1008));

    // Everyone else goes on chatting.
    let (seq, _) = a.say("peace at last").await;
    let seen = c.next_of_type("message").await;
    assert_eq!(seq_of(&seen["message"]), seq);

    // The ban is for this room only.
    let (mut elsewhere, _) = engine.join(&format!("{room}-other"), &troll).await;
    elsewhere.say("hello over here").await;
}

#[tokio::test]
async fn a_ban_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("post");
    let troll = Reader::new("말썽꾼");
    {
        let mut engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
        let (t, welcome) = engine.join(&room, &troll).await;
        t.close().await;
        let body = json!({"authorId": welcome["you"]["authorId"], "minutes": 5});
        let response = ban(&engine, &room, &body, Some(&bearer(TOKEN))).await;
        assert!((200..300).contains(&response.status), "ban: {response:?}");
        engine.kill9();
    }

    let engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
    let mut t = engine.ws(&room).await;
    t.send_json(&troll.hello_frame(None)).await;
    t.expect_error("banned").await;
    assert_eq!(t.expect_close(FRAME_TIMEOUT).await, Some(1008));
    let (mut a, _) = engine.join(&room, &Reader::new("착한 독자")).await;
    a.say("still open for others").await;
}

#[tokio::test]
async fn a_malformed_ban_is_a_bad_request() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("post");
    let (mut a, welcome) = engine.join(&room, &Reader::new("작성자")).await;
    let author_id = welcome["you"]["authorId"].clone();
    let auth = bearer(TOKEN);
    let headers = [("Authorization", auth.as_str())];

    let bodies = [
        "not json".to_string(),
        "[]".to_string(),
        json!({"minutes": 5}).to_string(),
        json!({"authorId": 42, "minutes": 5}).to_string(),
        json!({"authorId": author_id, "minutes": "5"}).to_string(),
        json!({"authorId": author_id, "minutes": -1}).to_string(),
    ];
    for body in &bodies {
        engine.http("POST", &format!("/api/rooms/{room}/bans"), &headers, Some(body)).await.assert_error(400, "bad_request");
    }
    a.say("not banned by any of that").await;
}
