//! What readers do to each other's messages: reactions (a fixed set of emoji, one per reader per
//! emoji, counts live to everyone), replies (a quote of the original that follows its edits and
//! its deletion) and edits of one's own message within `--edit-window`. Every frame and refusal,
//! the history API, welcomes, a restart, and an export imported elsewhere. Runs on SQLite and,
//! with `CHAT_TEST_POSTGRES`, on Postgres.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "features-admin-token";

async fn react(client: &mut Client, seq: u64, emoji: &str, on: bool) {
    client.send_json(&json!({"type": "react", "seq": seq, "emoji": emoji, "on": on})).await;
}

async fn edit(client: &mut Client, seq: u64, content: &str) {
    client.send_json(&json!({"type": "edit", "seq": seq, "content": content})).await;
}

/// Sends a reply and returns its clientId.
async fn send_reply(client: &mut Client, reply_to: Value, content: &str) -> String {
    let client_id = new_id();
    client.send_json(&json!({"type": "send", "clientId": client_id, "content": content, "replyTo": reply_to})).await;
    client_id
}

/// The next `reactions` frame about `seq`.
async fn reactions_of(client: &mut Client, seq: u64) -> Value {
    client.next_where(&format!("`reactions` for {seq}"), |f| frame_type(f) == "reactions" && f["seq"] == seq).await
}

/// The next `error` with `code`, asserting it names the message `seq`.
async fn refused_about(client: &mut Client, code: &str, seq: u64) -> Value {
    let error = client.expect_error(code).await;
    assert_eq!(error["seq"], seq, "{error}");
    error
}

fn author_of(welcome: &Value) -> String {
    welcome["you"]["authorId"].as_str().expect("you.authorId").to_string()
}

async fn admin(engine: &Engine, method: &str, path: &str) -> HttpResponse {
    let auth = format!("Bearer {TOKEN}");
    let response = engine.http(method, path, &[("Authorization", auth.as_str())], None).await;
    assert!(response.status < 300, "{method} {path}: {response:?}");
    response
}

#[tokio::test]
async fn a_reaction_counts_once_per_reader_and_emoji_reaches_everyone_and_can_be_taken_back() {
    let engine = Engine::start(&[]);
    let room = room("react");
    let (mut author, _) = engine.join(&room, &Reader::new("작성자")).await;
    let fan_reader = Reader::new("열혈 팬");
    let (mut fan, welcome) = engine.join(&room, &fan_reader).await;
    let fan_id = author_of(&welcome);
    let (seq, _) = author.say("react to me").await;

    react(&mut fan, seq, "👍", true).await;
    let expected = json!({"type": "reactions", "seq": seq, "reactions": {"👍": 1}, "authorId": fan_id, "emoji": "👍", "on": true});
    assert_eq!(reactions_of(&mut author, seq).await, expected);
    assert_eq!(reactions_of(&mut fan, seq).await, expected, "the reader's own tab hears it too");

    // Again: nothing changes, only the reader is answered; the author hears of the next change only.
    react(&mut fan, seq, "👍", true).await;
    assert_eq!(reactions_of(&mut fan, seq).await, expected);
    react(&mut fan, seq, "❤️", true).await;
    let both = json!({"👍": 1, "❤️": 1});
    assert_eq!(reactions_of(&mut author, seq).await["reactions"], both, "no frame for the repeat");
    assert_eq!(reactions_of(&mut fan, seq).await["reactions"], both);
    react(&mut author, seq, "👍", true).await;
    assert_eq!(reactions_of(&mut fan, seq).await["reactions"], json!({"👍": 2, "❤️": 1}));
    assert_eq!(reactions_of(&mut author, seq).await["reactions"], json!({"👍": 2, "❤️": 1}));

    // Taken back; taking back what is not there is answered to the reader only.
    react(&mut fan, seq, "👍", false).await;
    let back = reactions_of(&mut author, seq).await;
    assert_eq!((back["reactions"].clone(), back["on"].clone()), (json!({"👍": 1, "❤️": 1}), json!(false)));
    react(&mut fan, seq, "😮", false).await;
    assert_eq!(reactions_of(&mut fan, seq).await["reactions"], json!({"👍": 1, "❤️": 1}));

    let history = engine.history(&room, "").await;
    assert_eq!(history[0]["reactions"], json!({"👍": 1, "❤️": 1}), "{}", history[0]);
    let mine = engine.get(&format!("/api/rooms/{room}/messages?authorId={fan_id}")).await.json();
    assert_eq!(mine["myReactions"], json!({seq.to_string(): ["❤️"]}), "{mine}");
    let (_again, welcome) = engine.join(&room, &fan_reader).await;
    assert_eq!(welcome["history"][0]["reactions"], json!({"👍": 1, "❤️": 1}));
    assert_eq!(welcome["myReactions"], json!({seq.to_string(): ["❤️"]}), "{welcome}");
    assert_eq!(engine.metric("chat_reactions_total").await, 4.0, "changes only");

    // A message without reactions shows none.
    let (plain, _) = author.say("plain").await;
    let history = engine.history(&room, "").await;
    let last = history.iter().find(|m| seq_of(m) == plain).unwrap();
    assert!(last.get("reactions").is_none() && last.get("replyTo").is_none() && last.get("editedAt").is_none(), "{last}");
}

#[tokio::test]
async fn reactions_and_edits_are_refused_with_the_message_they_were_about() {
    let engine = Engine::start(&["--admin-token", TOKEN, "--send-burst", "6", "--send-rate", "0.01"]);
    let room = room("refused");
    let (mut author, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (mut other, _) = engine.join(&room, &Reader::new("남의 독자")).await;
    let (seq, _) = author.say("mine").await;

    for (emoji, on) in [(json!("🦦"), json!(true)), (json!("❤"), json!(true)), (json!(1), json!(true)), (json!("👍"), json!("yes"))] {
        other.send_json(&json!({"type": "react", "seq": seq, "emoji": emoji, "on": on})).await;
        refused_about(&mut other, "bad_frame", seq).await;
    }
    other.send_json(&json!({"type": "react", "seq": 0, "emoji": "👍", "on": true})).await;
    other.expect_error("bad_frame").await;
    react(&mut other, 999, "👍", true).await;
    refused_about(&mut other, "not_found", 999).await;

    edit(&mut other, seq, "not yours").await;
    refused_about(&mut other, "forbidden", seq).await;
    edit(&mut author, 999, "nothing there").await;
    refused_about(&mut author, "not_found", 999).await;
    edit(&mut author, seq, "   ").await;
    refused_about(&mut author, "invalid_content", seq).await;
    edit(&mut author, seq, &"x".repeat(2001)).await;
    refused_about(&mut author, "invalid_content", seq).await;

    // A locked room takes neither.
    admin(&engine, "PUT", &format!("/api/rooms/{room}/lock")).await;
    other.next_of_type("room").await;
    author.next_of_type("room").await;
    react(&mut other, seq, "👍", true).await;
    refused_about(&mut other, "room_locked", seq).await;
    edit(&mut author, seq, "locked out").await;
    refused_about(&mut author, "room_locked", seq).await;
    admin(&engine, "DELETE", &format!("/api/rooms/{room}/lock")).await;
    other.next_of_type("room").await;
    author.next_of_type("room").await;

    // They take from the send budget (burst 6; what the store refused above took one each, what
    // was refused before reaching the room none): the seventh is refused with when to retry.
    for emoji in ["👍", "❤️", "😂", "😮"] {
        react(&mut other, seq, emoji, true).await;
        reactions_of(&mut other, seq).await;
    }
    react(&mut other, seq, "😢", true).await;
    let limited = refused_about(&mut other, "rate_limited", seq).await;
    assert!(limited["retryAfterMs"].as_u64().unwrap() > 0, "{limited}");
    for _ in 0..4 {
        edit(&mut author, seq, "edit").await;
    }
    edit(&mut author, seq, "one too many").await;
    let limited = author.next_where("an edit refused", |f| frame_type(f) == "error").await;
    assert_eq!((limited["code"].as_str(), limited["seq"].as_u64()), (Some("rate_limited"), Some(seq)), "{limited}");

    // A deleted message takes neither.
    let (mut third, _) = engine.join(&room, &Reader::new("셋째 독자")).await;
    let (gone, _) = third.say("short-lived").await;
    third.send_json(&json!({"type": "delete", "seq": gone})).await;
    third.next_of_type("deleted").await;
    react(&mut third, gone, "👍", true).await;
    refused_about(&mut third, "not_found", gone).await;
    edit(&mut third, gone, "too late").await;
    refused_about(&mut third, "not_found", gone).await;
}

#[tokio::test]
async fn the_owners_live_view_may_not_react_or_edit() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("watch");
    let (mut author, _) = engine.join(&room, &Reader::new("작성자")).await;
    let (seq, _) = author.say("watched").await;
    let response = engine.http("POST", "/admin/session", &[], Some(&json!({"token": TOKEN}).to_string())).await;
    let grant = response.json()["moderatorGrant"].as_str().map(str::to_string);
    let Some(grant) = grant else { panic!("no grant at sign-in: {response:?}") };
    let mut watcher = engine.ws(&room).await;
    let mut hello = Reader::new("주인").hello_frame(None);
    hello["watch"] = json!(true);
    hello["grant"] = json!(grant);
    watcher.send_json(&hello).await;
    watcher.next_of_type("welcome").await;
    react(&mut watcher, seq, "👍", true).await;
    refused_about(&mut watcher, "forbidden", seq).await;
    edit(&mut watcher, seq, "owner's words").await;
    refused_about(&mut watcher, "forbidden", seq).await;
}

#[tokio::test]
async fn a_reply_quotes_its_original_which_must_exist_and_the_quote_follows_edits_and_deletion() {
    let engine = Engine::start(&["--spam-link-messages", "0"]);
    let room = room("reply");
    let original_text = format!("{}끝", "가".repeat(120));
    let (mut asker, welcome) = engine.join(&room, &Reader::new("질문자")).await;
    let asker_id = author_of(&welcome);
    let (mut answerer, _) = engine.join(&room, &Reader::new("답변자")).await;
    let (original, _) = asker.say(&original_text).await;

    let client_id = send_reply(&mut answerer, json!(original), "here is the answer").await;
    let reply = answerer.ack_for(&client_id).await;
    let message = asker.next_where("the reply", |f| frame_type(f) == "message" && f["message"]["seq"] == reply).await;
    let excerpt: String = original_text.chars().take(100).collect();
    let quote = json!({"seq": original, "authorId": asker_id, "nickname": "질문자", "excerpt": excerpt});
    assert_eq!(message["message"]["replyTo"], quote, "{message}");
    assert_eq!(engine.history(&room, "").await[1]["replyTo"], quote);

    // A reply to nothing (never sent, or deleted) is refused and not stored.
    for missing in [json!(999), json!(9_223_372_036_854_775_808u64)] {
        let client_id = send_reply(&mut answerer, missing, "to nothing").await;
        let error = answerer.expect_error("not_found").await;
        assert_eq!(error["clientId"], client_id.as_str(), "{error}");
    }
    for bad in [json!(0), json!(-3), json!("1"), json!(1.5)] {
        let client_id = send_reply(&mut answerer, bad, "bad").await;
        let error = answerer.expect_error("bad_frame").await;
        assert_eq!(error["clientId"], client_id.as_str(), "{error}");
    }

    // The original edited: the quote shows the new text, in the history API and in welcomes.
    edit(&mut asker, original, "short question").await;
    answerer.next_of_type("edited").await;
    let history = engine.history(&room, "").await;
    assert_eq!(history[1]["replyTo"]["excerpt"], "short question", "{}", history[1]);
    let (_late, welcome) = engine.join(&room, &Reader::new("늦은")).await;
    assert_eq!(welcome["history"][1]["replyTo"]["excerpt"], "short question", "{welcome}");

    // Deleted: its text lives on nowhere, the reply stays and says the original is gone.
    asker.send_json(&json!({"type": "delete", "seq": original})).await;
    answerer.next_of_type("deleted").await;
    let gone = json!({"seq": original, "deleted": true});
    assert_eq!(engine.history(&room, "").await[0]["replyTo"], gone);
    let (_later, welcome) = engine.join(&room, &Reader::new("나중")).await;
    assert_eq!(welcome["history"][0]["replyTo"], gone, "{welcome}");
    let client_id = send_reply(&mut answerer, json!(original), "to the deleted one").await;
    assert_eq!(answerer.expect_error("not_found").await["clientId"], client_id.as_str());
    assert_eq!(seqs(&engine.history(&room, "").await), vec![reply], "nothing refused was stored");
}

#[tokio::test]
async fn an_author_edits_its_message_within_the_window_and_everyone_sees_it_edited() {
    let words = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(words.path(), "badword\n").expect("write words");
    let engine = Engine::start(&["--edit-window", "3", "--blocked-words", words.path().to_str().unwrap()]);
    let room = room("edit");
    let (mut author, welcome) = engine.join(&room, &Reader::new("작성자")).await;
    assert_eq!(welcome["editWindow"], 3, "the widget shows Edit for as long: {welcome}");
    let (mut reader, _) = engine.join(&room, &Reader::new("독자")).await;
    let sent = tokio::time::Instant::now();
    let (seq, _) = author.say("teh typo").await;

    edit(&mut author, seq, "  the typo  ").await;
    for client in [&mut author, &mut reader] {
        let edited = client.next_of_type("edited").await;
        assert_eq!((edited["message"]["seq"].as_u64(), edited["message"]["content"].as_str()), (Some(seq), Some("the typo")));
        assert!(is_rfc3339_utc(edited["message"]["editedAt"].as_str().unwrap()), "{edited}");
    }
    let stored = engine.history(&room, "").await.remove(0);
    assert_eq!(stored["content"], "the typo");
    assert!(stored["editedAt"].is_string(), "{stored}");

    // The same content again: only the author hears, nothing is stored.
    edit(&mut author, seq, "the typo").await;
    author.next_of_type("edited").await;
    edit(&mut author, seq, "badword here").await;
    let spam = refused_about(&mut author, "spam", seq).await;
    assert_eq!(spam["reason"], "blocked_words");
    edit(&mut author, seq, "the last fix").await;
    assert_eq!(reader.next_of_type("edited").await["message"]["content"], "the last fix", "the repeat was not broadcast");
    assert_eq!(engine.metric("chat_edits_total").await, 2.0);

    // After the window (3 s from the send) the message stays as it is; time passing is the event.
    tokio::time::sleep_until(sent + Duration::from_millis(3100)).await;
    edit(&mut author, seq, "too late").await;
    refused_about(&mut author, "edit_expired", seq).await;
    assert_eq!(engine.history(&room, "").await[0]["content"], "the last fix");
}

#[tokio::test]
async fn reactions_replies_and_edits_survive_a_restart_and_a_returning_reader_knows_its_reactions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("restart");
    let (asker, fan) = (Reader::new("질문자"), Reader::new("열혈 팬"));
    let mut engine = Engine::start_in(dir.path(), &[]);
    let (mut a, _) = engine.join(&room, &asker).await;
    let (mut f, _) = engine.join(&room, &fan).await;
    let (original, _) = a.say("first").await;
    let client_id = send_reply(&mut f, json!(original), "second").await;
    let reply = f.ack_for(&client_id).await;
    react(&mut f, original, "🙏", true).await;
    reactions_of(&mut f, original).await;
    react(&mut f, reply, "😂", true).await;
    reactions_of(&mut f, reply).await;
    edit(&mut a, original, "first, edited").await;
    a.next_of_type("edited").await;
    let (_, welcome) = engine.join(&room, &fan).await;
    let mine = json!({original.to_string(): ["🙏"], reply.to_string(): ["😂"]});
    assert_eq!(welcome["myReactions"], mine, "from the room's memory: {welcome}");
    let before = engine.history(&room, "").await;
    engine.kill9();

    let engine = Engine::start_in(dir.path(), &[]);
    assert_eq!(engine.history(&room, "").await, before, "the store kept everything");
    let (_, welcome) = engine.join(&room, &fan).await;
    assert_eq!(welcome["myReactions"], mine, "loaded with the room: {welcome}");
    assert_eq!(welcome["history"][0]["content"], "first, edited");
    assert_eq!(welcome["history"][0]["reactions"], json!({"🙏": 1}));
    assert_eq!(welcome["history"][1]["replyTo"]["excerpt"], "first, edited");
    let (_, other) = engine.join(&room, &asker).await;
    assert_eq!(other["myReactions"], json!({}), "another reader's are not its own");
}

#[tokio::test]
async fn an_export_carries_who_reacted_replies_and_edits_and_imports_as_it_was() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("export");
    let (asker, fan) = (Reader::new("질문자"), Reader::new("열혈 팬"));
    let (mut a, _) = engine.join(&room, &asker).await;
    let (mut f, welcome) = engine.join(&room, &fan).await;
    let fan_id = author_of(&welcome);
    let (original, _) = a.say("first").await;
    let client_id = send_reply(&mut f, json!(original), "second").await;
    let reply = f.ack_for(&client_id).await;
    for (client, emoji) in [(&mut f, "👍"), (&mut a, "👍")] {
        react(client, original, emoji, true).await;
        reactions_of(client, original).await;
    }
    react(&mut f, original, "❤️", true).await;
    reactions_of(&mut f, original).await;
    edit(&mut a, original, "first, edited").await;
    a.next_of_type("edited").await;
    let before = engine.history(&room, "").await;

    let export = admin(&engine, "GET", &format!("/api/rooms/{room}/export")).await;
    let lines: Vec<Value> = export.body.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines[1]["reactions"], json!({"👍": 2, "❤️": 1}));
    assert_eq!(lines[1]["reactedBy"]["❤️"], json!([fan_id]), "{}", lines[1]);
    assert_eq!(lines[1]["reactedBy"]["👍"].as_array().map(Vec::len), Some(2));
    assert!(lines[1]["editedAt"].is_string());
    assert_eq!(lines[2]["replyTo"]["seq"], original);
    assert_eq!(seq_of(&lines[2]), reply);

    // Imported into another store: the same history, and each reader's reactions are its own.
    let target = tempfile::tempdir().expect("temp dir");
    let dump = target.path().join("room.jsonl");
    std::fs::write(&dump, &export.body).expect("write dump");
    let url = format!("sqlite://{}/chat.db", target.path().display());
    let out = Command::new(env!("CARGO_BIN_EXE_chat-engine"))
        .args(["import", dump.to_str().unwrap(), "--database-url", &url])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run import");
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let imported = Engine::start_on(&url, target.path(), &[]);
    assert_eq!(imported.history(&room, "").await, before);
    let (_, welcome) = imported.join(&room, &fan).await;
    assert_eq!(welcome["myReactions"], json!({original.to_string(): ["👍", "❤️"]}), "{welcome}");
}
