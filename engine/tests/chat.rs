//! Chatting in a room: messages and acks, the welcome frame, history and resume with `lastSeq`,
//! idempotent resends, seq numbering, persistence across a restart, renames and typing indicators.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test]
async fn two_readers_chat_and_text_comes_back_verbatim() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let alice = Reader::new("<i>수달&amp;</i>");
    let bob = Reader::new("익명의 여우");
    let (mut a, _) = engine.join(&room, &alice).await;
    let (mut b, _) = engine.join(&room, &bob).await;

    let content = "<b>bold</b> & <script>alert('x')</script> \"quoted\" 안녕하세요, 반가워요 😀";
    let client_id = a.send_message(content).await;
    let seq = a.ack_for(&client_id).await;
    assert_eq!(seq, 1, "the first message of a new room");

    let own = a.next_of_type("message").await;
    assert_message(&own["message"], &room, &alice, content);
    assert_eq!(seq_of(&own["message"]), seq);
    assert_eq!(own["message"]["clientId"], client_id.as_str());

    let seen_by_bob = b.next_of_type("message").await;
    assert_eq!(seen_by_bob, own, "both members get the same message frame");

    let reply = "& 나도 <반가워> &amp;";
    let (reply_seq, _) = b.say(reply).await;
    assert_eq!(reply_seq, seq + 1);
    let at_alice = a.next_of_type("message").await;
    assert_message(&at_alice["message"], &room, &bob, reply);
    assert_eq!(seq_of(&at_alice["message"]), reply_seq);

    engine.assert_logs_never_contain(&[&alice.anonymous_id, &bob.anonymous_id]);
}

#[tokio::test]
async fn welcome_describes_the_reader_and_the_room() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let mut alice = Reader::new("익명의 수달");
    alice.avatar = "fox".to_string();

    let (mut a, welcome) = engine.join(&room, &alice).await;
    assert_eq!(welcome["you"]["nickname"], "익명의 수달");
    assert_eq!(welcome["you"]["avatar"], "fox");
    assert_author_id(&welcome["you"]["authorId"], &alice);
    assert_eq!(welcome["online"], 1, "the reader itself is online: {welcome}");
    assert_eq!(welcome["history"], json!([]), "a new room has no history: {welcome}");
    assert_ne!(welcome["resumed"], true, "nothing to resume without lastSeq: {welcome}");
    assert!(!welcome.to_string().contains(&alice.anonymous_id));
    let alice_id = welcome["you"]["authorId"].clone();

    a.say("first").await;

    // Another tab of the same browser: same authorId, and its own message is recognisable.
    let (_tab, again) = engine.join(&room, &alice).await;
    assert_eq!(again["you"]["authorId"], alice_id, "authorId is stable per anonymousId");
    assert_eq!(again["online"], 1, "two tabs of one reader count once: {again}");
    assert_eq!(again["history"][0]["authorId"], alice_id);

    let bob = Reader::new("익명의 여우");
    let (_b, bob_welcome) = engine.join(&room, &bob).await;
    assert_author_id(&bob_welcome["you"]["authorId"], &bob);
    assert_ne!(bob_welcome["you"]["authorId"], alice_id, "readers get distinct authorIds");
    assert_eq!(bob_welcome["online"], 2);
    let history = bob_welcome["history"].as_array().expect("history array");
    assert_eq!(history.len(), 1);
    assert_message(&history[0], &room, &alice, "first");
}

#[tokio::test]
async fn history_is_the_latest_50_oldest_first() {
    let engine = Engine::start(FAST);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("수다쟁이")).await;
    let contents = numbered("message", 60);
    let sent = a.send_many(&contents).await;
    assert_consecutive(&sent, 1);

    let (_b, welcome) = engine.join(&room, &Reader::new("늦은 독자")).await;
    let history = welcome["history"].as_array().expect("history array");
    assert_consecutive(&seqs(history), 11);
    assert_eq!(history.len(), 50);
    for message in history {
        assert_eq!(message["content"], format!("message {}", seq_of(message)));
    }
    assert_ne!(welcome["resumed"], true);
}

#[tokio::test]
async fn reconnect_with_last_seq_resumes_up_to_500_missed_messages() {
    let engine = Engine::start(FAST);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("수다쟁이")).await;
    let sent = a.send_many(&numbered("message", 502)).await;
    assert_consecutive(&sent, 1);

    let bob = Reader::new("돌아온 독자");
    let resume = |last_seq: u64| {
        let engine = &engine;
        let room = room.clone();
        let bob = bob.clone();
        async move {
            let mut client = engine.ws(&room).await;
            let welcome = client.hello(&bob, Some(last_seq)).await;
            client.close().await;
            welcome
        }
    };

    // Exactly 500 missed: all of them.
    let welcome = resume(2).await;
    assert_eq!(welcome["resumed"], true, "500 missed messages resume");
    let history = welcome["history"].as_array().expect("history array");
    assert_eq!(history.len(), 500);
    assert_consecutive(&seqs(history), 3);
    assert_eq!(history[0]["content"], "message 3");

    // 501 missed: too far behind, the latest 50 instead.
    let welcome = resume(1).await;
    assert_eq!(welcome["resumed"], false, "501 missed messages do not resume");
    let history = welcome["history"].as_array().expect("history array");
    assert_eq!(history.len(), 50);
    assert_consecutive(&seqs(history), 453);

    let welcome = resume(460).await;
    assert_eq!(welcome["resumed"], true);
    assert_consecutive(&seqs(welcome["history"].as_array().unwrap()), 461);
    assert_eq!(welcome["history"].as_array().unwrap().len(), 42);

    let welcome = resume(502).await;
    assert_eq!(welcome["resumed"], true, "nothing missed still resumes");
    assert_eq!(welcome["history"], json!([]));
}

#[tokio::test]
async fn resent_client_id_is_stored_and_broadcast_once() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let alice = Reader::new("재전송러");
    let (mut a, _) = engine.join(&room, &alice).await;
    let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;

    let client_id = new_id();
    a.send_with_id(&client_id, "only once").await;
    let seq = a.ack_for(&client_id).await;
    // Same connection, same clientId: acked again with the same seq.
    a.send_with_id(&client_id, "only once").await;
    assert_eq!(a.ack_for(&client_id).await, seq, "a resend is acked with the original seq");
    let (next, _) = a.say("after the resend").await;
    assert_eq!(next, seq + 1, "the resend took no seq");

    for (who, client) in [("sender", &mut a), ("other reader", &mut b)] {
        let first = client.next_of_type("message").await;
        assert_eq!(seq_of(&first["message"]), seq, "{who}");
        let second = client.next_of_type("message").await;
        assert_eq!(seq_of(&second["message"]), next, "{who} got the resend broadcast again");
        assert_eq!(second["message"]["content"], "after the resend");
    }

    // A later connection (the page was reloaded before the ack arrived).
    a.close().await;
    let (mut a, _) = engine.join(&room, &alice).await;
    a.send_with_id(&client_id, "only once").await;
    assert_eq!(a.ack_for(&client_id).await, seq, "a resend on a new connection is acked with the original seq");
    let (last, _) = a.say("third").await;
    assert_eq!(last, seq + 2);
    let at_bob = b.next_of_type("message").await;
    assert_eq!(seq_of(&at_bob["message"]), last, "bob must not see the resend again: {at_bob}");

    let history = engine.full_history(&room).await;
    assert_eq!(seqs(&history), vec![seq, seq + 1, seq + 2]);
    assert_eq!(history.iter().filter(|m| m["clientId"] == client_id.as_str()).count(), 1, "one stored message for the clientId");
}

#[tokio::test]
async fn every_member_sees_the_same_gapless_seq_order() {
    let engine = Engine::start(FAST);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("앨리스")).await;
    let (mut b, _) = engine.join(&room, &Reader::new("밥밥")).await;

    for i in 0..20 {
        a.send_message(&format!("a{i}")).await;
        b.send_message(&format!("b{i}")).await;
    }
    let mut orders = Vec::new();
    for client in [&mut a, &mut b] {
        let mut order = Vec::new();
        for _ in 0..40 {
            let frame = client.next_of_type("message").await;
            order.push((seq_of(&frame["message"]), frame["message"]["content"].clone()));
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1], "both members see the same messages in the same order");
    let seqs: Vec<u64> = orders[0].iter().map(|(s, _)| *s).collect();
    assert_consecutive(&seqs, 1);
    let from_a: Vec<String> = orders[0].iter().filter_map(|(_, c)| c.as_str().filter(|c| c.starts_with('a')).map(str::to_string)).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    assert_eq!(from_a, expected, "one sender's messages keep their order");
}

#[tokio::test]
async fn messages_survive_a_restart_and_seq_continues() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("post");
    let alice = Reader::new("기억하는 수달");

    let (alice_id, second_client_id) = {
        let mut engine = Engine::start_in(dir.path(), &[]);
        let (mut a, welcome) = engine.join(&room, &alice).await;
        let mut client_ids = Vec::new();
        for content in ["one", "two", "three"] {
            client_ids.push(a.say(content).await.1);
        }
        a.close().await;
        engine.kill9();
        (welcome["you"]["authorId"].clone(), client_ids[1].clone())
    };

    let engine = Engine::start_in(dir.path(), &[]);
    assert_eq!(engine.room_info(&room).await["lastSeq"], 3);
    let (mut a, welcome) = engine.join(&room, &alice).await;
    assert_eq!(welcome["you"]["authorId"], alice_id, "authorId is stable across restarts");
    let history = welcome["history"].as_array().expect("history array");
    assert_eq!(seqs(history), vec![1, 2, 3]);
    for (message, content) in history.iter().zip(["one", "two", "three"]) {
        assert_message(message, &room, &alice, content);
    }
    // Idempotency lives in the store: a resend after the restart is acked with its old seq.
    a.send_with_id(&second_client_id, "two").await;
    assert_eq!(a.ack_for(&second_client_id).await, 2, "resend after a restart");
    let (seq, _) = a.say("four").await;
    assert_eq!(seq, 4, "seq continues after a restart");
    assert_eq!(seqs(&engine.full_history(&room).await), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn rename_changes_the_name_on_later_messages() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let alice = Reader::new("옛 이름");
    let (mut a, welcome) = engine.join(&room, &alice).await;
    let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;

    let (before, _) = a.say("before").await;
    a.send_json(&json!({"type": "rename", "nickname": "새 이름 <&>", "avatar": "fox"})).await;
    let (after, _) = a.say("after").await;

    let old = b.next_of_type("message").await;
    assert_eq!(seq_of(&old["message"]), before);
    assert_eq!(old["message"]["nickname"], "옛 이름");
    assert_eq!(old["message"]["avatar"], "otter");
    let new = b.next_of_type("message").await;
    assert_eq!(seq_of(&new["message"]), after);
    assert_eq!(new["message"]["nickname"], "새 이름 <&>");
    assert_eq!(new["message"]["avatar"], "fox");
    assert_eq!(new["message"]["authorId"], welcome["you"]["authorId"], "same author after a rename");

    let history = engine.history(&room, "").await;
    assert_eq!(history[0]["nickname"], "옛 이름", "stored messages keep the old name");
    assert_eq!(history[1]["nickname"], "새 이름 <&>");
}

#[tokio::test]
async fn typing_reaches_the_others_once_and_not_the_sender() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let alice = Reader::new("타자치는 수달");
    let (mut a, welcome) = engine.join(&room, &alice).await;
    let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;

    a.send_json(&json!({"type": "typing"})).await;
    a.send_json(&json!({"type": "typing"})).await;
    let client_id = a.send_message("done typing").await;

    let typing = b.next_non_presence().await;
    assert_eq!(typing["type"], "typing", "bob first sees alice typing: {typing}");
    assert_eq!(typing["authorId"], welcome["you"]["authorId"]);
    assert_eq!(typing["nickname"], "타자치는 수달");
    assert!(!typing.to_string().contains(&alice.anonymous_id));
    let next = b.next_non_presence().await;
    assert_eq!(next["type"], "message", "a second typing right after the first must be throttled; got {next}");
    assert_eq!(next["message"]["clientId"], client_id.as_str());

    // The sender only gets its ack and its message, never its own typing.
    let mut got = Vec::new();
    for _ in 0..2 {
        let frame = a.next_non_presence().await;
        got.push(frame_type(&frame).to_string());
    }
    got.sort();
    assert_eq!(got, ["ack", "message"], "the typing reader gets no typing frame of its own");
}

#[tokio::test]
async fn a_room_that_went_idle_keeps_its_history_and_seq() {
    let engine = Engine::start(&["--room-idle", "1"]);
    let room = room("post");
    let alice = Reader::new("돌아온 수달");
    let (mut a, _) = engine.join(&room, &alice).await;
    let (first, _) = a.say("before the room went idle").await;
    a.close().await;

    eventually("the idle room stopped (chat_rooms_active 0)", Duration::from_secs(10), || async {
        engine.metric("chat_rooms_active").await == 0.0
    })
    .await;

    let (mut a, welcome) = engine.join(&room, &alice).await;
    let history = welcome["history"].as_array().expect("history array");
    assert_eq!(seqs(history), vec![first]);
    assert_message(&history[0], &room, &alice, "before the room went idle");
    let (next, _) = a.say("after").await;
    assert_eq!(next, first + 1, "seq continues when the room comes back");
}

/// A post with more readers than one task writes to (the room shares a broadcast's writes out
/// over several tasks): every reader still gets every message once, in seq order, and the
/// sender its acks.
#[tokio::test]
async fn a_crowded_post_reaches_every_reader_in_order() {
    let mut args = FAST.to_vec();
    args.extend(["--max-connections-per-ip", "1000", "--joins-per-ip", "1000", "--join-burst-per-ip", "1000"]);
    let engine = Engine::start(&args);
    let room = room("crowded");
    let crowd = 600;
    let joins = (0..crowd).map(|i| {
        let engine = &engine;
        let room = room.clone();
        async move { engine.join(&room, &Reader::new(&format!("reader {i}"))).await.0 }
    });
    let mut readers = futures_util::future::join_all(joins).await;
    let (mut sender, _) = engine.join(&room, &Reader::new("글쓴이")).await;

    let contents = numbered("crowd", 30);
    let acked = sender.send_many(&contents).await;
    assert_consecutive(&acked, 1);
    let reads = readers.iter_mut().map(|reader| async move {
        let mut got = Vec::new();
        for _ in 0..30 {
            let frame = reader.next_of_type("message").await;
            got.push((seq_of(&frame["message"]), frame["message"]["content"].as_str().unwrap().to_string()));
        }
        got
    });
    let expected: Vec<(u64, String)> = acked.iter().copied().zip(contents).collect();
    for got in futures_util::future::join_all(reads).await {
        assert_eq!(got, expected, "every message once, in order");
    }
}
