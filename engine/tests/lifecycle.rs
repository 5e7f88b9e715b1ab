//! The process: draining on SIGTERM (reconnect frames, `/readyz` 503, exit), acked messages
//! surviving `kill -9`, a locked store reported as `unavailable` without a seq gap, and logs
//! (text and JSON) that never contain an anonymousId.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Polls `/readyz` until it answers `status` (readiness has no event to await).
async fn wait_for_readyz(engine: &Engine, status: u16) {
    let deadline = Instant::now() + FRAME_TIMEOUT;
    loop {
        let response = try_http(engine.addr, "GET", "/readyz", &[], None)
            .await
            .unwrap_or_else(|e| panic!("GET /readyz while draining: {e} (PROTOCOL.md: it answers 503)"));
        if response.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz still {} instead of {status}", response.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_sends_reconnect_turns_unready_and_exits_within_the_grace() {
    let mut engine = Engine::start(&["--shutdown-grace", "5"]);
    let room = room("post");
    let (mut stubborn, _) = engine.join(&room, &Reader::new("안 떠나는 독자")).await;
    assert_eq!(engine.get("/readyz").await.status, 200);

    let signalled = Instant::now();
    engine.sigterm();
    let reconnect = stubborn.next_of_type("reconnect").await;
    assert!(reconnect["afterMs"].as_u64().is_some_and(|ms| ms > 0), "afterMs is not a positive integer: {reconnect}");

    // The client ignores the hint and stays, so the pod keeps draining.
    wait_for_readyz(&engine, 503).await;
    assert_eq!(engine.get("/healthz").await.status, 200, "alive while draining");

    let status = engine.wait_exit(Duration::from_secs(5 + 5)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "took {:?}", signalled.elapsed());
    stubborn.expect_close(FRAME_TIMEOUT).await;
}

#[tokio::test]
async fn sigterm_exits_as_soon_as_members_have_left() {
    let mut engine = Engine::start(&["--shutdown-grace", "30"]);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("착한 독자")).await;
    let (mut b, _) = engine.join(&room, &Reader::new("또 착한 독자")).await;

    engine.sigterm();
    for client in [&mut a, &mut b] {
        let reconnect = client.next_of_type("reconnect").await;
        assert!(reconnect["afterMs"].as_u64().is_some_and(|ms| ms > 0), "{reconnect}");
    }
    a.close().await;
    b.close().await;
    let status = engine.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[tokio::test]
async fn acked_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("post");
    let alice = Reader::new("끈질긴 수달");
    let mut engine = Engine::start_in(dir.path(), FAST);
    let (mut a, _) = engine.join(&room, &alice).await;

    const TOTAL: usize = 300;
    const WINDOW: usize = 32;
    let client_ids: Vec<String> = (0..TOTAL).map(|_| new_id()).collect();
    let content = |i: usize| format!("durable {i}");
    let mut acked: Vec<(u64, usize)> = Vec::new();
    let mut sent = 0;
    let mut killed = false;
    loop {
        while !killed && sent < TOTAL && sent - acked.len() < WINDOW {
            let frame = json!({"type": "send", "clientId": client_ids[sent], "content": content(sent)});
            if a.try_send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
            sent += 1;
        }
        match a.next_frame_or_close().await {
            Ok(frame) if frame_type(&frame) == "ack" => {
                let i = client_ids
                    .iter()
                    .position(|id| frame["clientId"] == id.as_str())
                    .unwrap_or_else(|| panic!("ack for an unknown clientId: {frame}"));
                acked.push((seq_of(&frame), i));
            }
            Ok(frame) if frame_type(&frame) == "error" => panic!("{frame}"),
            Ok(_) => {}
            Err(_) => break,
        }
        if !killed && acked.len() >= 100 {
            engine.kill9();
            killed = true;
        }
        if acked.len() == TOTAL {
            break;
        }
    }
    assert!(killed, "the stream finished before the kill");
    drop(engine);

    let engine = Engine::start_in(dir.path(), FAST);
    let history = engine.full_history(&room).await;
    assert_consecutive(&seqs(&history), 1);
    for (seq, i) in &acked {
        let stored = history
            .iter()
            .find(|m| seq_of(m) == *seq)
            .unwrap_or_else(|| panic!("acked seq {seq} is missing after kill -9 ({} stored)", history.len()));
        assert_eq!(stored["content"], content(*i), "seq {seq}");
        assert_eq!(stored["clientId"], client_ids[*i].as_str(), "seq {seq}");
    }
    let (mut a, _) = engine.join(&room, &alice).await;
    let (next, _) = a.say("after the crash").await;
    assert_eq!(next, history.len() as u64 + 1, "seq continues after the crash");
}

/// A `python3` process holding an exclusive write lock on a SQLite file until it is killed.
/// Another client holding the store's write lock, as a stuck migration or a long manual
/// transaction would: SQLite `BEGIN EXCLUSIVE`, Postgres `LOCK TABLE rooms IN EXCLUSIVE MODE`.
/// Reads still work; every commit of the engine waits for it and times out.
struct StoreLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl StoreLock {
    fn hold(database_url: &str) -> StoreLock {
        use sqlx::Connection;
        let url = database_url.to_string();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if url.starts_with("sqlite:") {
                    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open the SQLite file");
                    sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.expect("lock");
                    locked_tx.send(()).expect("report lock");
                    let _ = release_rx.recv();
                    sqlx::query("ROLLBACK").execute(&mut conn).await.expect("unlock");
                } else {
                    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to Postgres");
                    sqlx::query("BEGIN").execute(&mut conn).await.expect("begin");
                    sqlx::query("LOCK TABLE rooms IN EXCLUSIVE MODE").execute(&mut conn).await.expect("lock");
                    locked_tx.send(()).expect("report lock");
                    let _ = release_rx.recv();
                    sqlx::query("ROLLBACK").execute(&mut conn).await.expect("unlock");
                }
            });
        });
        locked_rx.recv_timeout(Duration::from_secs(10)).expect("the store lock was taken");
        StoreLock { release: Some(release), holder: Some(holder) }
    }

    fn release(mut self) {
        self.unlock();
    }

    fn unlock(&mut self) {
        self.release.take();
        if let Some(holder) = self.holder.take() {
            holder.join().expect("lock holder");
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        self.unlock();
    }
}

#[tokio::test]
async fn a_locked_store_answers_unavailable_and_leaves_no_gap() {
    let engine = Engine::start(&["--store-timeout", "1"]);
    let room = room("post");
    let (mut a, _) = engine.join(&room, &Reader::new("불운한 수달")).await;
    let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;
    let (before, _) = a.say("before the lock").await;
    assert_eq!(seq_of(&b.next_of_type("message").await["message"]), before);

    let lock = StoreLock::hold(&engine.database_url);
    let refused = a.send_message("while the store is locked").await;
    let answer = loop {
        let frame = a.next_frame().await;
        if !matches!(frame_type(&frame), "presence" | "typing" | "message") {
            break frame;
        }
        assert_ne!(frame["message"]["clientId"], refused.as_str(), "broadcast while the store was locked: {frame}");
    };
    assert_eq!(answer["type"], "error", "a send the store did not take: {answer}");
    assert_eq!(answer["code"], "unavailable", "{answer}");
    assert_eq!(answer["clientId"], refused.as_str(), "{answer}");
    lock.release();

    let (after, _) = a.say("after the lock").await;
    assert_eq!(after, before + 1, "no seq was used up by the refused send");
    let next_at_bob: Value = b.next_of_type("message").await;
    assert_eq!(seq_of(&next_at_bob["message"]), after, "bob got {next_at_bob}");
    assert_eq!(next_at_bob["message"]["content"], "after the lock");

    let history = engine.full_history(&room).await;
    assert_eq!(seqs(&history), vec![before, after]);
    assert!(history.iter().all(|m| m["clientId"] != refused.as_str()), "the refused send was stored");
    assert_eq!(engine.get("/readyz").await.status, 200, "ready again once the store answers");
}

/// Joins, chats and breaks a few rules with several readers, then checks no log line has any of
/// their anonymousIds.
async fn exercise_and_check_logs(engine: &Engine) {
    let room = room("post");
    let alice = Reader::new("비밀 수달");
    let bob = Reader::new("비밀 여우");
    let carol = Reader::new("x");
    let (mut a, _) = engine.join(&room, &alice).await;
    let (mut b, _) = engine.join(&room, &bob).await;
    let (seq, _) = a.say("hello").await;
    b.send_json(&json!({"type": "delete", "seq": seq})).await;
    b.expect_error("forbidden").await;
    b.send_json(&json!({"type": "dance", "anonymousId": bob.anonymous_id})).await;
    b.expect_error("bad_frame").await;

    let mut c = engine.ws(&room).await;
    c.send_json(&carol.hello_frame(None)).await;
    c.expect_error("invalid_nickname").await;
    a.close().await;
    b.close().await;
    drop(c);
    let (mut again, _) = engine.join(&room, &alice).await;
    again.say("back again").await;

    engine.assert_logs_never_contain(&[&alice.anonymous_id, &bob.anonymous_id, &carol.anonymous_id]);
}

#[tokio::test]
async fn text_logs_never_contain_an_anonymous_id() {
    let engine = Engine::start(&["--log-format", "text"]);
    exercise_and_check_logs(&engine).await;
}

#[tokio::test]
async fn json_logs_are_json_and_never_contain_an_anonymous_id() {
    let engine = Engine::start(&["--log-format", "json"]);
    exercise_and_check_logs(&engine).await;
    for line in engine.logs().iter().filter(|l| !l.starts_with("[stderr] ")) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok_and(|v| v.is_object()), "not a JSON log line: {line}");
    }
}
