//! Retention: `--max-messages-per-room` and `--retention-days`, enforced by the background pruner
//! on a room's history while its numbering, its bans and its live sends carry on. Old history is
//! written straight into the engine's database (stopped meanwhile), as years of use would leave it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const DAY_MS: i64 = 86_400_000;
/// How long a pruner may take to catch up with a test's backlog on a busy machine.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// A folder whose database has the engine's schema and nothing else.
fn fresh_database() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Engine::start_in(dir.path(), &[]));
    dir
}

/// Stored messages of one room as an older engine left them: `seqs` with their `created_at`, and
/// the room's counter at `last_seq`.
struct Backlog<'a> {
    room: &'a str,
    messages: Vec<(u64, i64)>,
    last_seq: u64,
    /// Seqs stored as deleted messages: content erased, row kept.
    deleted: Vec<u64>,
}

/// Writes rooms, messages and bans (`(room, authorId, until)`) into the database of `dir`.
fn seed(dir: &Path, rooms: &[Backlog], bans: &[(&str, &str, i64)]) {
    let url = match std::env::var("CHAT_TEST_POSTGRES") {
        Ok(server) if !server.is_empty() => postgres_database_for(&server, dir),
        _ => format!("sqlite://{}/chat.db", dir.display()),
    };
    let mut statements = Vec::new();
    for backlog in rooms {
        statements.push(format!("INSERT INTO rooms (id, last_seq, created_at) VALUES ('{}', {}, 0)", backlog.room, backlog.last_seq));
        for chunk in backlog.messages.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(seq, at)| {
                    format!("('{}', {seq}, '0123456789abcdef', 'archive', 'otter', 'old {seq}', {at}, 'seed-{seq}')", backlog.room)
                })
                .collect();
            statements.push(format!(
                "INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id) VALUES {}",
                values.join(", ")
            ));
        }
        for seq in &backlog.deleted {
            statements.push(format!("UPDATE messages SET content = '', deleted_at = 1 WHERE room_id = '{}' AND seq = {seq}", backlog.room));
        }
    }
    for (room, author, until) in bans {
        statements.push(format!("INSERT INTO bans (room_id, author_id, until, created_at) VALUES ('{room}', '{author}', {until}, 0)"));
    }
    // The harness's own runtime is busy with the test; the database gets a small one of its own.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            use sqlx::Connection;
            if url.starts_with("postgres") {
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to Postgres");
                for sql in &statements {
                    sqlx::query(sql).execute(&mut conn).await.expect("seed Postgres");
                }
            } else {
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open SQLite");
                let mut tx = conn.begin().await.expect("begin");
                for sql in &statements {
                    sqlx::query(sql).execute(&mut *tx).await.expect("seed SQLite");
                }
                tx.commit().await.expect("commit seed");
            }
        });
    })
    .join()
    .expect("seed thread");
}

fn recent(seqs: std::ops::RangeInclusive<u64>, at: i64) -> Vec<(u64, i64)> {
    seqs.map(|seq| (seq, at)).collect()
}

async fn wait_for_pruned(engine: &Engine, rule: &str, expected: f64) {
    let name = format!("chat_messages_pruned_total{{rule=\"{rule}\"}}");
    eventually(&format!("{expected} messages pruned by {rule}"), PRUNE_TIMEOUT, || async {
        let now = engine.metric(&name).await;
        assert!(now <= expected, "{now} messages pruned by {rule}, more than the {expected} expected");
        now == expected
    })
    .await;
}

#[tokio::test]
async fn a_room_over_the_maximum_keeps_its_newest_messages_and_its_numbering() {
    let dir = fresh_database();
    let (big, small) = (room("big"), room("small"));
    let now = now_ms();
    seed(
        dir.path(),
        &[
            Backlog { room: &big, messages: recent(1..=1200, now), last_seq: 1200, deleted: vec![] },
            Backlog { room: &small, messages: recent(1..=100, now), last_seq: 100, deleted: vec![] },
        ],
        &[],
    );
    let mut args = vec!["--max-messages-per-room", "500", "--prune-every", "0.2"];
    args.extend(FAST);
    let engine = Engine::start_in(dir.path(), &args);

    wait_for_pruned(&engine, "count", 700.0).await;
    assert_eq!(seqs(&engine.full_history(&big).await), (701..=1200).collect::<Vec<_>>());
    assert_eq!(seqs(&engine.full_history(&small).await), (1..=100).collect::<Vec<_>>(), "a room under the maximum keeps all");
    assert!(engine.history(&big, "?before=701").await.is_empty(), "nothing is left before the oldest kept message");
    assert_eq!(engine.room_info(&big).await["lastSeq"], 1200);

    // Readers see the newest messages, resume over the pruned edge, and numbering carries on.
    let reader = Reader::new("reader");
    let (mut client, welcome) = engine.join(&big, &reader).await;
    assert_eq!(seqs(welcome["history"].as_array().expect("messages")), (1151..=1200).collect::<Vec<_>>());
    let mut resumed = engine.ws(&big).await;
    let welcome = resumed.hello(&Reader::new("back"), Some(700)).await;
    assert_eq!(seqs(welcome["history"].as_array().expect("messages")), (701..=1200).collect::<Vec<_>>());
    let (seq, _) = client.say("after the pruning").await;
    assert_eq!(seq, 1201);

    // The room keeps its maximum as it grows.
    wait_for_pruned(&engine, "count", 701.0).await;
    assert_eq!(seqs(&engine.full_history(&big).await), (702..=1201).collect::<Vec<_>>());
    assert_eq!(engine.room_info(&big).await["lastSeq"], 1201);
}

#[tokio::test]
async fn deleted_messages_never_push_a_live_rooms_messages_out_of_the_store() {
    // 1000 seqs whose newest 101 were deleted: the newest 500 messages still shown (400..=899)
    // are what a live room holds in memory, so the store keeps them all, beyond the newest 500 seqs.
    let dir = fresh_database();
    let busy = room("moderated");
    let backlog = Backlog { room: &busy, messages: recent(1..=1000, now_ms()), last_seq: 1000, deleted: (900..=1000).collect() };
    seed(dir.path(), &[backlog], &[]);
    let engine = Engine::start_in(dir.path(), &["--max-messages-per-room", "500", "--prune-every", "0.2"]);

    wait_for_pruned(&engine, "count", 399.0).await;
    assert_eq!(seqs(&engine.full_history(&busy).await), (400..=899).collect::<Vec<_>>());
    let mut client = engine.ws(&busy).await;
    let welcome = client.hello(&Reader::new("reader"), Some(399)).await;
    assert_eq!(welcome["resumed"], false, "601 missed messages is beyond a resume");
    assert_eq!(seqs(welcome["history"].as_array().expect("history")), (850..=899).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_maximum_below_what_a_live_room_holds_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-engine"))
        .args(["--bind", "127.0.0.1:0", "--max-messages-per-room", "499"])
        .current_dir(dir.path())
        .env_remove("MAX_MESSAGES_PER_ROOM")
        .output()
        .expect("run chat-engine");
    assert!(!output.status.success(), "a maximum of 499 was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("500"), "the refusal does not name the minimum: {stderr}");
}

#[tokio::test]
async fn messages_older_than_the_retention_go_while_numbering_and_bans_stay() {
    let dir = fresh_database();
    let (kept, emptied) = (room("kept"), room("emptied"));
    let now = now_ms();
    let old = now - 40 * DAY_MS;

    // A ban that is still running, set through the API, and one that ended long ago.
    let troll = Reader::new("troll");
    {
        let engine = Engine::start_in(dir.path(), &["--admin-token", "secret"]);
        let (client, welcome) = engine.join(&emptied, &troll).await;
        client.close().await;
        let author = welcome["you"]["authorId"].as_str().expect("authorId").to_string();
        let body = json!({"authorId": author, "minutes": 60 * 24}).to_string();
        let response = engine
            .http(
                "POST",
                &format!("/api/rooms/{emptied}/bans"),
                &[("Authorization", "Bearer secret"), ("Content-Type", "application/json")],
                Some(&body),
            )
            .await;
        assert_eq!(response.status, 201, "ban: {response:?}");
    }
    let mut kept_messages = recent(1..=300, old);
    kept_messages.extend(recent(301..=320, now - 3_600_000));
    seed(
        dir.path(),
        &[
            Backlog { room: &kept, messages: kept_messages, last_seq: 320, deleted: vec![] },
            Backlog { room: &emptied, messages: recent(1..=50, old), last_seq: 50, deleted: vec![] },
        ],
        &[(&kept, "fedcba9876543210", now - DAY_MS)],
    );
    let mut args = vec!["--retention-days", "30", "--prune-every", "0.2"];
    args.extend(FAST);
    let engine = Engine::start_in(dir.path(), &args);

    let line = engine.wait_for_log("`pruned`", |l| l.contains("pruned")).await;
    assert!(line.contains("by_age=350") && line.contains("bans=1"), "one pass prunes the old messages and the ended ban: {line}");
    wait_for_pruned(&engine, "age", 350.0).await;

    assert_eq!(seqs(&engine.full_history(&kept).await), (301..=320).collect::<Vec<_>>());
    assert!(engine.history(&kept, "?before=301").await.is_empty());
    assert!(engine.full_history(&emptied).await.is_empty());
    assert_eq!(engine.room_info(&emptied).await["lastSeq"], 50);

    // A reader resuming from before the pruning gets what is left, and numbering carries on.
    let mut client = engine.ws(&emptied).await;
    let welcome = client.hello(&Reader::new("back"), Some(10)).await;
    assert_eq!(welcome["history"], json!([]), "pruned messages came back: {welcome}");
    assert_eq!(client.say("first of the new era").await.0, 51);

    // Bans are not messages: the running one still holds.
    let mut banned = engine.ws(&emptied).await;
    banned.send_json(&troll.hello_frame(None)).await;
    banned.expect_error("banned").await;
}

#[tokio::test]
async fn a_busy_room_sends_normally_while_its_backlog_is_pruned() {
    let dir = fresh_database();
    let busy = room("busy");
    seed(dir.path(), &[Backlog { room: &busy, messages: recent(1..=20_000, now_ms()), last_seq: 20_000, deleted: vec![] }], &[]);
    let mut args = vec!["--max-messages-per-room", "500", "--prune-every", "0.1"];
    args.extend(FAST);
    let engine = Engine::start_in(dir.path(), &args);

    let (mut sender, _) = engine.join(&busy, &Reader::new("sender")).await;
    let (mut talker, _) = engine.join(&busy, &Reader::new("talker")).await;
    let pruned = "chat_messages_pruned_total";
    eventually("pruning under way", PRUNE_TIMEOUT, || async { engine.metric(pruned).await > 0.0 }).await;
    let before = engine.metric(pruned).await;

    // A flood from one reader and single messages from another, at once with the pruner.
    let contents: Vec<String> = (0..1000).map(|i| format!("busy {i}")).collect();
    let flood = async { sender.send_many(&contents).await };
    let chat = async {
        let mut slowest = Duration::ZERO;
        for i in 0..30 {
            let started = Instant::now();
            talker.say(&format!("still here {i}")).await;
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let (acked, slowest) = tokio::join!(flood, chat);
    let during = engine.metric(pruned).await;

    assert_eq!(acked.len(), 1000, "every send is acked");
    assert!(acked.iter().all(|&s| s > 20_000), "a new message reused a seq: {acked:?}");
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "seqs out of order: {acked:?}");
    assert!(during > before, "the pruner did not run during the sends ({before} -> {during})");
    // A batch holds the writer for milliseconds; a send waiting seconds means pruning blocked it.
    assert!(slowest < Duration::from_secs(2), "a send waited {slowest:?} for its ack while pruning");

    wait_for_pruned(&engine, "count", 20_530.0).await;
    let history = engine.full_history(&busy).await;
    assert_eq!(seqs(&history), (20_531..=21_030).collect::<Vec<_>>(), "the newest 500 messages are kept");
    assert_eq!(engine.room_info(&busy).await["lastSeq"], 21_030);
}

#[tokio::test]
async fn pods_pruning_one_postgres_database_at_once_prune_each_message_once() {
    if !on_postgres() {
        return; // Several pods share a database only on Postgres.
    }
    let dir = fresh_database();
    let shared = room("shared");
    seed(dir.path(), &[Backlog { room: &shared, messages: recent(1..=5000, now_ms()), last_seq: 5000, deleted: vec![] }], &[]);
    let args = ["--max-messages-per-room", "500", "--prune-every", "0.05"];
    let pods = [Engine::start_in(dir.path(), &args), Engine::start_in(dir.path(), &args)];

    let name = "chat_messages_pruned_total{rule=\"count\"}";
    eventually("4500 messages pruned by the two pods together", PRUNE_TIMEOUT, || async {
        let total = pods[0].metric(name).await + pods[1].metric(name).await;
        assert!(total <= 4500.0, "{total} pruned: a message was counted twice");
        total == 4500.0
    })
    .await;
    assert_eq!(seqs(&pods[1].full_history(&shared).await), (4501..=5000).collect::<Vec<_>>());
    for pod in &pods {
        assert!(!pod.logs().iter().any(|l| l.contains("pruning failed")), "a pod failed to prune:\n{}", pod.logs().join("\n"));
    }
}
