//! Moving rooms from one pod's SQLite file to a shared Postgres database: the export route
//! (moderation only, JSON lines), `chat-engine export --all` and `chat-engine import`, and what
//! readers notice afterwards on an engine running on Postgres: the same seqs, authors and times,
//! resume from their `lastSeq`, the room's lock and pin, the counter going on where it stopped.
//!
//! Needs a Postgres server (`CHAT_TEST_POSTGRES`, default postgres://postgres:postgres@127.0.0.1:5432).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "owner-s3cret-token";
const POSTGRES_SERVER: &str = "postgres://postgres:postgres@127.0.0.1:5432";

fn postgres_server() -> String {
    std::env::var("CHAT_TEST_POSTGRES").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| POSTGRES_SERVER.to_string())
}

/// Runs the binary's subcommand with `args`; stdout and stderr are captured.
fn cli(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-engine"));
    command.args(args).env_remove("DATABASE_URL").env_remove("RUST_LOG");
    command.output().expect("run chat-engine")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn admin(engine: &Engine, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
    let auth = format!("Bearer {TOKEN}");
    let body = body.map(|b| b.to_string());
    let response = engine.http(method, path, &[("Authorization", auth.as_str())], body.as_deref()).await;
    assert!(response.status < 300, "{method} {path}: {response:?}");
    response
}

fn lines(body: &str) -> Vec<Value> {
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/chat.db", dir.display())
}

#[tokio::test]
async fn a_sqlite_store_moves_to_postgres_and_readers_carry_on_where_they_were() {
    let source = tempfile::tempdir().expect("temp dir");
    let target = tempfile::tempdir().expect("temp dir");
    let (locked, pinned) = (room("locked"), room("pinned"));
    let (alice, bob, carol) = (Reader::new("Alice"), Reader::new("돌아온 밥"), Reader::new("Carol"));
    let args: Vec<&str> = ["--admin-token", TOKEN].into_iter().chain(FAST.iter().copied()).collect();

    // History on SQLite: bob reads up to seq 3 of `locked` and leaves; three more are written, the
    // middle one deleted; the room is locked. `pinned` has two messages, the first pinned, and a ban.
    let mut engine = Engine::start_on(&sqlite_url(source.path()), source.path(), &args);
    let (mut a, _) = engine.join(&locked, &alice).await;
    for text in ["one", "two", "three"] {
        a.say(text).await;
    }
    let (b, _) = engine.join(&locked, &bob).await;
    b.close().await;
    for text in ["four", "five", "six"] {
        a.say(text).await;
    }
    admin(&engine, "DELETE", &format!("/api/rooms/{locked}/messages/5"), None).await;
    admin(&engine, "PUT", &format!("/api/rooms/{locked}/lock"), None).await;
    let (mut a2, _) = engine.join(&pinned, &alice).await;
    let (mut c, _) = engine.join(&pinned, &carol).await;
    a2.say("pin me").await;
    c.say("hello").await;
    admin(&engine, "PUT", &format!("/api/rooms/{pinned}/pin"), Some(json!({"seq": 1}))).await;
    let carol_id = engine.full_history(&pinned).await[1]["authorId"].as_str().unwrap().to_string();
    admin(&engine, "POST", &format!("/api/rooms/{pinned}/bans"), Some(json!({"authorId": carol_id, "minutes": 60}))).await;
    let before_locked = engine.full_history(&locked).await;
    let before_pinned = engine.full_history(&pinned).await;
    assert_eq!(seqs(&before_locked), [1, 2, 3, 4, 6]);

    // The export route: moderation only, JSON lines, every stored message with its flags.
    engine.get(&format!("/api/rooms/{locked}/export")).await.assert_error(403, "forbidden");
    let export = admin(&engine, "GET", &format!("/api/rooms/{locked}/export"), None).await;
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let exported = lines(&export.body);
    assert_eq!(exported[0], json!({"room": {"id": locked, "lastSeq": 6, "locked": true, "pinned": null, "bans": []}}));
    assert_eq!(exported.iter().skip(1).map(seq_of).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6], "oldest first, deleted included");
    assert_eq!(exported[5]["deleted"], true, "{}", exported[5]);
    assert_eq!(exported[5]["content"], "", "a deleted message's content stays erased");
    assert_eq!(exported[1], before_locked[0], "a message line is the protocol's Message shape");
    a.close().await;
    a2.close().await;
    c.close().await;
    engine.sigterm();
    engine.wait_exit(Duration::from_secs(20)).await;

    // export --all from the file, import into a fresh Postgres database (twice: nothing changes).
    let dump = source.path().join("rooms.jsonl");
    let out = cli(&["export", "--all", "--database-url", &sqlite_url(source.path())]);
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    std::fs::write(&dump, &out.stdout).expect("write dump");
    let dumped = lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(dumped.iter().filter(|l| l.get("room").is_some()).count(), 2, "a line per room");
    let pinned_line = dumped.iter().find(|l| l["room"]["id"] == pinned.as_str()).expect("pinned room line");
    assert_eq!(pinned_line["room"]["pinned"], 1);
    assert_eq!(pinned_line["room"]["bans"][0]["authorId"], carol_id.as_str());

    let postgres = postgres_database_for(&postgres_server(), target.path());
    let dump_path = dump.to_str().unwrap();
    let out = cli(&["import", dump_path, "--database-url", &postgres]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    assert!(stderr(&out).contains("imported 2 rooms, 8 messages"), "{}", stderr(&out));
    let again = cli(&["import", dump_path, "--database-url", &postgres]);
    assert!(again.status.success(), "second import failed: {}", stderr(&again));
    assert!(stderr(&again).contains("imported 2 rooms, 0 messages"), "idempotent per (room, seq): {}", stderr(&again));

    // An engine on Postgres: same history, lock, pin and ban; bob resumes with exactly what he missed.
    let engine = Engine::start_on(&postgres, target.path(), &args);
    assert_eq!(engine.full_history(&locked).await, before_locked, "seqs, authorIds, createdAt and content unchanged");
    assert_eq!(engine.full_history(&pinned).await, before_pinned);
    let mut b = engine.ws(&locked).await;
    let welcome = b.hello(&bob, Some(3)).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(seqs(welcome["history"].as_array().unwrap()), [4, 6], "the missed messages, the deleted one left out");
    assert_eq!(welcome["locked"], true, "{welcome}");
    let (mut a, welcome) = engine.join(&pinned, &alice).await;
    assert_eq!(welcome["pinned"]["seq"], 1, "{welcome}");
    let (seq, _) = a.say("first on postgres").await;
    assert_eq!(seq, 3, "the counter goes on from the last seq");
    let newest = engine.history(&pinned, "").await.pop().unwrap();
    assert_eq!(newest["authorId"], before_pinned[0]["authorId"], "alice is still alice");
    let mut c = engine.ws(&pinned).await;
    c.send_json(&carol.hello_frame(None)).await;
    c.expect_error("banned").await;

    // Reopened, the locked room's next message comes after its deleted last-but-one: seq 7.
    admin(&engine, "DELETE", &format!("/api/rooms/{locked}/lock"), None).await;
    let (mut a3, _) = engine.join(&locked, &alice).await;
    assert_eq!(a3.say("seven").await.0, 7);
}

#[tokio::test]
async fn a_malformed_line_stops_the_import_with_its_number_and_writes_nothing_of_its_room() {
    let target = tempfile::tempdir().expect("temp dir");
    let (good, bad) = (room("good"), room("bad"));
    let message = |room: &str, seq: u64| {
        json!({"seq": seq, "roomId": room, "authorId": "0123456789abcdef", "nickname": "N", "avatar": "owl",
               "content": format!("m{seq}"), "createdAt": "2026-01-02T03:04:05.678Z", "clientId": format!("c{seq}")})
    };
    let file = [
        json!({"room": {"id": good, "lastSeq": 1, "locked": false, "pinned": null}}),
        message(&good, 1),
        json!({"room": {"id": bad, "lastSeq": 2, "locked": false, "pinned": null}}),
        message(&bad, 1),
    ]
    .iter()
    .map(Value::to_string)
    .chain(["{\"seq\": 2, \"roomId\": ".to_string()])
    .collect::<Vec<_>>()
    .join("\n");
    let path = target.path().join("broken.jsonl");
    std::fs::write(&path, file).expect("write file");

    let postgres = postgres_database_for(&postgres_server(), target.path());
    let out = cli(&["import", path.to_str().unwrap(), "--database-url", &postgres]);
    assert!(!out.status.success(), "a malformed file must fail");
    assert!(stderr(&out).contains("line 5: not JSON"), "the error names the line: {}", stderr(&out));

    let engine = Engine::start_on(&postgres, target.path(), &[]);
    assert_eq!(engine.room_info(&good).await["lastSeq"], 1, "the room before the bad line is in");
    assert_eq!(engine.room_info(&bad).await["lastSeq"], 0, "nothing of the bad line's room");
    assert!(engine.full_history(&bad).await.is_empty());
}
