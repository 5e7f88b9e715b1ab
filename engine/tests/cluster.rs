//! Several pods as one engine: three engine processes on one Postgres database and one Redis,
//! readers spread over them, and the faults a cluster meets — a pod killed, Redis gone for a
//! while, Postgres unreachable, a rolling restart. Through all of them every reader sees one
//! gap-free, seq-ordered stream and no acknowledged message is lost.
//!
//! Needs a Postgres server (`CHAT_TEST_POSTGRES_SERVER`, default postgres://postgres:postgres@
//! 127.0.0.1:5432; each cluster gets a fresh database) and the `redis-server` binary (each
//! cluster starts its own on a free port, so it can kill and restart it). `scripts/test`
//! installs and starts both when missing.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const POSTGRES_SERVER: &str = "postgres://postgres:postgres@127.0.0.1:5432";

fn postgres_server() -> String {
    std::env::var("CHAT_TEST_POSTGRES_SERVER").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| POSTGRES_SERVER.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------------------------
// Redis and Postgres under the test's control
// ---------------------------------------------------------------------------------------------

/// A redis-server of the test's own, killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> RedisServer {
        let mut server = RedisServer { port: free_port(), child: None };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        self.child = Some(child);
        eventually("redis-server answers PING", Duration::from_secs(10), || async {
            let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
            let mut pong = [0u8; 7];
            conn.write_all(b"PING\r\n").await.is_ok() && conn.read_exact(&mut pong).await.is_ok() && &pong == b"+PONG\r\n"
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of Postgres that the test can cut (every connection dropped, new ones
/// refused) and restore: the network between the pods and their database failing.
struct PgProxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
}

impl PgProxy {
    async fn start(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (open, open_rx) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if !*open_rx.borrow() {
                    continue; // dropped: refused while cut
                }
                let mut cut = open_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        PgProxy { addr, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

// ---------------------------------------------------------------------------------------------
// A cluster of engine processes
// ---------------------------------------------------------------------------------------------

struct Cluster {
    dir: tempfile::TempDir,
    database_url: String,
    redis: RedisServer,
    pods: Vec<Option<Engine>>,
    /// Where participants may connect: the pods that are up.
    live: watch::Sender<Vec<SocketAddr>>,
    extra: Vec<String>,
}

impl Cluster {
    async fn start(pods: usize) -> Cluster {
        Cluster::start_with(pods, None, &[]).await
    }

    /// `database_host` replaces 127.0.0.1:5432 in the database URL (a proxy).
    async fn start_with(pods: usize, database_host: Option<SocketAddr>, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut database_url = postgres_database_for(&postgres_server(), dir.path());
        if let Some(host) = database_host {
            database_url = database_url.replace("127.0.0.1:5432", &host.to_string());
        }
        let redis = RedisServer::start().await;
        let mut cluster = Cluster {
            dir,
            database_url,
            redis,
            pods: Vec::new(),
            live: watch::Sender::new(Vec::new()),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..pods {
            let engine = cluster.start_pod(i);
            cluster.pods.push(Some(engine));
        }
        cluster.publish_live();
        cluster
    }

    fn start_pod(&self, i: usize) -> Engine {
        let redis_url = self.redis.url();
        let pod_name = format!("pod-{i}");
        let mut args = vec![
            "--redis-url",
            &redis_url,
            "--pod-name",
            &pod_name,
            "--send-rate",
            "1000",
            "--send-burst",
            "1000",
            "--room-send-rate",
            "1000",
            "--room-send-burst",
            "1000",
            "--shutdown-grace",
            "5",
            "--store-timeout",
            "2",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let dir = self.dir.path().join(&pod_name);
        std::fs::create_dir_all(&dir).expect("pod dir");
        Engine::start_on(&self.database_url, &dir, &args)
    }

    fn pod(&self, i: usize) -> &Engine {
        self.pods[i].as_ref().expect("pod is up")
    }

    fn publish_live(&self) {
        self.live.send_replace(self.pods.iter().flatten().map(|e| e.addr).collect());
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut engine) = self.pods[i].take() {
            engine.kill9();
        }
        self.publish_live();
    }

    /// SIGTERM, wait for the pod to drain and exit, then start its replacement.
    async fn roll(&mut self, i: usize) {
        let mut engine = self.pods[i].take().expect("pod is up");
        self.publish_live();
        engine.sigterm();
        let status = engine.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "pod-{i} exited with {status}");
        self.pods[i] = Some(self.start_pod(i));
        self.publish_live();
    }
}

// ---------------------------------------------------------------------------------------------
// Participants: readers who send, follow `reconnect`, fail over and resume
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Outcome {
    name: String,
    /// Seqs of `message` frames in the order this reader saw them, across reconnects.
    seen: Vec<u64>,
    /// clientId → seq of every acked send.
    acked: HashMap<String, u64>,
    /// Reconnects with `lastSeq` that the server did not answer with `resumed: true`.
    not_resumed: usize,
    reconnects: usize,
    unfinished: Option<String>,
    /// What each connection did, for the failure message.
    journal: Vec<String>,
}

struct Participant {
    name: String,
    room: String,
    reader: Reader,
    /// Index of the first pod to use; failover moves on from there.
    start_pod: usize,
    sends: usize,
    every: Duration,
    /// Total messages the room will hold; the participant is done once it has seen them all.
    total: usize,
}

impl Participant {
    fn new(room: &str, i: usize, sends: usize, total: usize) -> Participant {
        Participant {
            name: format!("reader {i}"),
            room: room.to_string(),
            reader: Reader::new(&format!("참가자 {i}")),
            start_pod: i,
            sends,
            every: Duration::from_millis(20),
            total,
        }
    }

    fn spawn(self, live: watch::Receiver<Vec<SocketAddr>>) -> tokio::task::JoinHandle<Outcome> {
        tokio::spawn(self.run(live))
    }

    async fn run(self, live: watch::Receiver<Vec<SocketAddr>>) -> Outcome {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(90);
        let mut out = Outcome { name: self.name.clone(), ..Outcome::default() };
        let mut pod = self.start_pod;
        // The whole stream from the room's first message: the first hello resumes from seq 0 (a
        // reader late to the room would otherwise get only the latest 50), and so does a reconnect
        // before any message came (kicked as too slow, or the pod died, right after the welcome).
        let mut last: Option<u64> = Some(0);
        // clientId → content of sends not acked yet, resent with the same clientId after a failover.
        let mut unacked: BTreeMap<usize, (String, String)> = BTreeMap::new();
        let mut next_send = 0;
        let mut first_connection = true;
        loop {
            let done = next_send == self.sends && unacked.is_empty() && out.seen.len() >= self.total;
            if done {
                return out;
            }
            if Instant::now() > deadline {
                out.unfinished =
                    Some(format!("sent {next_send}/{}, unacked {}, seen {}/{}", self.sends, unacked.len(), out.seen.len(), self.total));
                return out;
            }
            let pods = live.borrow().clone();
            if pods.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let addr = pods[pod % pods.len()];
            pod += 1;
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/{}", self.room)).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if !first_connection {
                out.reconnects += 1;
            }
            first_connection = false;
            let hello = self.reader.hello_frame(last);
            if ws.send(Message::text(hello.to_string())).await.is_err() {
                continue;
            }
            // Sends that were never acked go again, with their clientIds (idempotent).
            let mut resend: Vec<(String, String)> = unacked.values().cloned().collect();
            let mut tick = tokio::time::interval(self.every);
            let mut welcomed = false;
            let mut reconnect_at: Option<Instant> = None;
            let (mut messages, mut acks) = (0, 0);
            loop {
                let wait_reconnect = async {
                    match reconnect_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    frame = ws.next() => {
                        let Some(Ok(Message::Text(text))) = frame else {
                            if let Some(Ok(Message::Close(close))) = &frame {
                                out.journal.push(format!("{addr} at {:?}: closed by the pod: {close:?}", started.elapsed()));
                            }
                            if matches!(frame, Some(Ok(_))) { continue }
                            out.journal.push(format!("{addr} at {:?}: ended after {messages} messages, {acks} acks: {frame:?}", started.elapsed()));
                            break; // closed or failed: fail over
                        };
                        let frame: Value = serde_json::from_str(text.as_str()).expect("server frames are JSON");
                        match frame_type(&frame) {
                            "welcome" => {
                                welcomed = true;
                                let history = frame["history"].as_array().expect("history");
                                out.journal.push(format!(
                                    "{addr} at {:?}: hello lastSeq {last:?} → resumed {} history {:?}..{:?}",
                                    started.elapsed(),
                                    frame["resumed"],
                                    history.first().map(seq_of),
                                    history.last().map(seq_of)
                                ));
                                if last.is_some() && frame["resumed"] != true {
                                    out.not_resumed += 1;
                                }
                                for message in history {
                                    record(&mut out, &mut last, seq_of(message));
                                }
                            }
                            "message" => {
                                messages += 1;
                                record(&mut out, &mut last, seq_of(&frame["message"]))
                            }
                            "ack" => {
                                acks += 1;
                                let client_id = frame["clientId"].as_str().expect("clientId").to_string();
                                out.acked.insert(client_id.clone(), seq_of(&frame));
                                unacked.retain(|_, (id, _)| *id != client_id);
                            }
                            "error" => match (frame["code"].as_str(), frame["clientId"].as_str()) {
                                // The store or the pod could not take it: send it again, same clientId.
                                (Some("unavailable" | "rate_limited"), Some(client_id)) => {
                                    if let Some(send) = unacked.values().find(|(id, _)| id == client_id) {
                                        resend.push(send.clone());
                                    }
                                }
                                (Some("unavailable"), None) => break,
                                _ => panic!("{}: unexpected error {frame}", self.name),
                            },
                            "reconnect" => {
                                let after = frame["afterMs"].as_u64().expect("afterMs");
                                reconnect_at = Some(Instant::now() + Duration::from_millis(after));
                            }
                            _ => {}
                        }
                    }
                    _ = tick.tick(), if welcomed && reconnect_at.is_none() => {
                        let send = if let Some(again) = resend.pop() {
                            Some(again)
                        } else if next_send < self.sends {
                            let send = (new_id(), format!("{} #{next_send}", self.name));
                            unacked.insert(next_send, send.clone());
                            next_send += 1;
                            Some(send)
                        } else {
                            None
                        };
                        if let Some((client_id, content)) = send {
                            let frame = json!({"type": "send", "clientId": client_id, "content": content});
                            if let Err(err) = ws.send(Message::text(frame.to_string())).await {
                                out.journal.push(format!("{addr} at {:?}: a send failed after {messages} messages, {acks} acks: {err}", started.elapsed()));
                                break;
                            }
                        }
                        if next_send == self.sends && unacked.is_empty() && out.seen.len() >= self.total {
                            let _ = ws.close(None).await;
                            return out;
                        }
                    }
                    _ = wait_reconnect => {
                        let _ = ws.close(None).await;
                        break;
                    }
                    // A connection that goes quiet must not outlive the participant's deadline:
                    // it ends as unfinished, with what it was waiting for.
                    _ = tokio::time::sleep_until(deadline) => {
                        out.unfinished = Some(format!(
                            "stuck on {addr} (welcomed {welcomed}, reconnect {reconnect_at:?}): sent {next_send}/{}, unacked {}, seen {}/{}, last {last:?}",
                            self.sends,
                            unacked.len(),
                            out.seen.len(),
                            self.total
                        ));
                        return out;
                    }
                }
            }
        }
    }
}

fn record(out: &mut Outcome, last: &mut Option<u64>, seq: u64) {
    out.seen.push(seq);
    *last = Some(last.map_or(seq, |l| l.max(seq)));
}

/// Every reader saw exactly 1..=N in order, and every acked send is among them with its seq.
/// Prints the counts (run with `--no-capture` to see them).
fn assert_one_stream(outcomes: &[Outcome]) {
    let acked: HashMap<&String, u64> = outcomes.iter().flat_map(|o| o.acked.iter().map(|(id, seq)| (id, *seq))).collect();
    let total = acked.len() as u64;
    let distinct: HashSet<u64> = acked.values().copied().collect();
    assert_eq!(distinct.len() as u64, total, "two sends were acked with the same seq");
    let expected: Vec<u64> = (1..=total).collect();
    for outcome in outcomes {
        if let Some(unfinished) = &outcome.unfinished {
            let mut seen = outcome.seen.clone();
            seen.sort_unstable();
            seen.dedup();
            let missing: Vec<u64> = expected.iter().copied().filter(|s| seen.binary_search(s).is_err()).collect();
            panic!(
                "{}: unfinished: {unfinished}; missing {} seqs from {:?} to {:?}; connections: {:#?}",
                outcome.name,
                missing.len(),
                missing.first(),
                missing.last(),
                outcome.journal
            );
        }
        assert_eq!(outcome.not_resumed, 0, "{}: a reconnect with lastSeq was not resumed", outcome.name);
        if outcome.seen != expected {
            let first_bad = outcome.seen.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(outcome.seen.len().min(expected.len()));
            panic!(
                "{}: the stream is not 1..={total} in order, once each: {} seen, first difference at index {first_bad} ({:?}); connections: {:#?}",
                outcome.name,
                outcome.seen.len(),
                &outcome.seen[first_bad.saturating_sub(3)..(first_bad + 3).min(outcome.seen.len())],
                outcome.journal
            );
        }
    }
    let delivered: usize = outcomes.iter().map(|o| o.seen.len()).sum();
    let reconnects: usize = outcomes.iter().map(|o| o.reconnects).sum();
    println!(
        "counts: {} readers, sent and acked {total}, stored {total}, delivered {delivered} (= readers × stored), \
         lost 0, duplicated 0, reconnects {reconnects}",
        outcomes.len()
    );
}

async fn run_participants(cluster: &Cluster, room: &str, readers: usize, sends: usize) -> Vec<tokio::task::JoinHandle<Outcome>> {
    let total = readers * sends;
    (0..readers).map(|i| Participant::new(room, i, sends, total).spawn(cluster.live.subscribe())).collect()
}

async fn outcomes(handles: Vec<tokio::task::JoinHandle<Outcome>>) -> Vec<Outcome> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("participant task"));
    }
    out
}

/// Waits until the participants have had `n` sends acked in all.
async fn wait_for_acks(cluster: &Cluster, room: &str, n: u64) {
    eventually(&format!("{n} messages stored"), Duration::from_secs(30), || async {
        cluster.pods.iter().flatten().next().expect("a pod").room_info(room).await["lastSeq"].as_u64().unwrap_or(0) >= n
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_pods_sending_at_once_give_every_reader_one_ordered_stream() {
    let cluster = Cluster::start(3).await;
    let room = room("hot");
    let handles = run_participants(&cluster, &room, 6, 30).await;
    let outcomes = outcomes(handles).await;
    assert_one_stream(&outcomes);
    let history = cluster.pod(1).full_history(&room).await;
    assert_eq!(seqs(&history), (1..=180).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_starting_together_on_a_fresh_database_migrate_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = postgres_database_for(&postgres_server(), dir.path());
    let redis = RedisServer::start().await;
    let redis_url = redis.url();
    let pods: Vec<Engine> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..3)
            .map(|i| {
                let (dir, database_url, redis_url) = (dir.path().join(format!("pod-{i}")), &database_url, &redis_url);
                scope.spawn(move || {
                    std::fs::create_dir_all(&dir).expect("pod dir");
                    Engine::start_on(database_url, &dir, &["--redis-url", redis_url])
                })
            })
            .collect();
        starts.into_iter().map(|s| s.join().expect("pod started")).collect()
    });
    let room = room("fresh");
    let (mut a, _) = pods[0].join(&room, &Reader::new("첫 독자")).await;
    let (mut b, _) = pods[2].join(&room, &Reader::new("둘째 독자")).await;
    let (seq, _) = a.say("the schema is there").await;
    assert_eq!(seq, 1);
    assert_eq!(seq_of(&b.next_of_type("message").await["message"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_on_another_pod_is_acked_with_the_original_seq() {
    let cluster = Cluster::start(3).await;
    let room = room("resend");
    let alice = Reader::new("두 파드 수달");
    let (mut watcher, _) = cluster.pod(2).join(&room, &Reader::new("구경꾼")).await;
    let (mut first, _) = cluster.pod(0).join(&room, &alice).await;
    let client_id = new_id();
    first.send_with_id(&client_id, "once").await;
    let seq = first.ack_for(&client_id).await;

    // The page reloads and lands on another pod before it saw the ack.
    first.close().await;
    let (mut second, _) = cluster.pod(1).join(&room, &alice).await;
    second.send_with_id(&client_id, "once").await;
    assert_eq!(second.ack_for(&client_id).await, seq, "the resend is acked with the original seq");
    let (next, _) = second.say("next").await;
    assert_eq!(next, seq + 1);

    assert_eq!(seq_of(&watcher.next_of_type("message").await["message"]), seq);
    assert_eq!(seq_of(&watcher.next_of_type("message").await["message"]), next, "the resend was broadcast again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_room_wide_and_a_crashed_pods_readers_leave() {
    let mut cluster = Cluster::start(3).await;
    let room = room("presence");
    let alice = Reader::new("두 탭 수달");
    let bob = Reader::new("셋째 파드 곰");
    let (_a0, _) = cluster.pod(0).join(&room, &alice).await;
    let (_a1, _) = cluster.pod(1).join(&room, &alice).await;
    let (_b, bob_welcome) = cluster.pod(2).join(&room, &bob).await;
    let bob_id = bob_welcome["you"]["authorId"].clone();
    let (mut carol, _) = cluster.pod(1).join(&room, &Reader::new("지켜보는 여우")).await;

    // Alice's two tabs on two pods count once: three readers.
    let presence = carol.next_where("presence with online 3", |f| frame_type(f) == "presence" && f["online"] == 3).await;
    let members = presence["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{presence}");
    assert!(members.iter().any(|m| m["authorId"] == bob_id), "bob (on another pod) is listed: {presence}");
    for i in 0..3 {
        eventually(&format!("room info on pod-{i} counts readers on every pod"), Duration::from_secs(5), || async {
            cluster.pod(i).room_info(&room).await["online"] == 3
        })
        .await;
    }

    // Bob's pod dies without a word; its readers leave the room within ~30 s.
    cluster.kill9(2);
    let presence = carol
        .next_where_within("presence with online 2", Duration::from_secs(35), |f| frame_type(f) == "presence" && f["online"] == 2)
        .await;
    assert!(presence["members"].as_array().expect("members").iter().all(|m| m["authorId"] != bob_id), "{presence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_the_only_other_pod_leave_when_it_crashes() {
    let mut cluster = Cluster::start(2).await;
    let room = room("last-pod");
    let (mut carol, _) = cluster.pod(0).join(&room, &Reader::new("남는 여우")).await;
    let (_bob, _) = cluster.pod(1).join(&room, &Reader::new("떠나는 곰")).await;
    carol.next_where("presence with online 2", |f| frame_type(f) == "presence" && f["online"] == 2).await;

    // No other pod is left in the room's presence once its entry expires: that is an answer too.
    cluster.kill9(1);
    carol.next_where_within("presence with online 1", Duration::from_secs(35), |f| frame_type(f) == "presence" && f["online"] == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_typing_and_bans_reach_every_pod() {
    let cluster = Cluster::start_with(3, None, &["--admin-token", "secret"]).await;
    let room = room("moderation");
    let (mut alice, _) = cluster.pod(0).join(&room, &Reader::new("앨리스")).await;
    let (mut bob, bob_welcome) = cluster.pod(1).join(&room, &Reader::new("밥 아저씨")).await;

    let (seq, _) = alice.say("to be deleted").await;
    assert_eq!(seq_of(&bob.next_of_type("message").await["message"]), seq);
    alice.send_json(&json!({"type": "delete", "seq": seq})).await;
    assert_eq!(seq_of(&bob.next_of_type("deleted").await), seq, "the delete reached the other pod");

    alice.send_json(&json!({"type": "typing"})).await;
    let typing = bob.next_of_type("typing").await;
    assert_eq!(typing["nickname"], "앨리스");

    let response = cluster
        .pod(2)
        .http(
            "POST",
            &format!("/api/rooms/{room}/bans"),
            &[("authorization", "Bearer secret")],
            Some(&json!({"authorId": bob_welcome["you"]["authorId"], "minutes": 5}).to_string()),
        )
        .await;
    assert!(response.status / 100 == 2, "{response:?}");
    bob.expect_error("banned").await;
    assert_eq!(bob.expect_close(Duration::from_secs(5)).await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_killed_mid_stream_loses_no_acked_message() {
    let mut cluster = Cluster::start(3).await;
    let room = room("kill");
    // About 3 s of traffic; the kill comes early in it.
    let handles = run_participants(&cluster, &room, 6, 150).await;
    wait_for_acks(&cluster, &room, 100).await;
    cluster.kill9(0);
    let outcomes = outcomes(handles).await;
    assert_one_stream(&outcomes);
    assert!(outcomes.iter().filter(|o| o.reconnects > 0).count() >= 2, "the killed pod's readers failed over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_10_s_loses_nothing_and_keeps_order() {
    let mut cluster = Cluster::start(3).await;
    let room = room("redis");
    let handles = run_participants(&cluster, &room, 6, 150).await;
    wait_for_acks(&cluster, &room, 100).await;
    cluster.redis.kill();
    for i in 0..3 {
        eventually("chat_bus_up drops to 0", Duration::from_secs(10), || async { cluster.pod(i).metric("chat_bus_up").await == 0.0 }).await;
    }
    let during = cluster.pod(0).room_info(&room).await["lastSeq"].as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(10)).await; // the outage itself: its length is the point
    for i in 0..3 {
        assert_eq!(cluster.pod(i).get("/readyz").await.status, 200, "Redis down does not make pod-{i} unready");
    }
    let later = cluster.pod(0).room_info(&room).await["lastSeq"].as_u64().unwrap_or(0);
    assert!(later > during, "pods kept storing messages while Redis was down ({during} → {later})");
    cluster.redis.restart().await;
    for i in 0..3 {
        eventually("chat_bus_up back to 1", Duration::from_secs(15), || async { cluster.pod(i).metric("chat_bus_up").await == 1.0 }).await;
    }
    let outcomes = outcomes(handles).await;
    assert_one_stream(&outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_means_unavailable_then_recovery() {
    let proxy = PgProxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let cluster = Cluster::start_with(2, Some(proxy.addr), &[]).await;
    let room = room("pg");
    let (mut a, _) = cluster.pod(0).join(&room, &Reader::new("불운한 수달")).await;
    let (mut b, _) = cluster.pod(1).join(&room, &Reader::new("구경꾼")).await;
    let (before, _) = a.say("before").await;
    assert_eq!(seq_of(&b.next_of_type("message").await["message"]), before);

    proxy.cut();
    let refused = a.send_message("while Postgres is unreachable").await;
    let answer = a.next_where("an answer to the send", |f| matches!(frame_type(f), "ack" | "error")).await;
    assert_eq!(answer["type"], "error", "no ack without a commit: {answer}");
    assert_eq!(answer["code"], "unavailable", "{answer}");
    assert_eq!(answer["clientId"], refused.as_str());
    eventually("/readyz turns 503", Duration::from_secs(10), || async { cluster.pod(0).get("/readyz").await.status == 503 }).await;
    assert_eq!(cluster.pod(0).get("/healthz").await.status, 200, "the pod stays alive");

    proxy.restore();
    eventually("/readyz back to 200", Duration::from_secs(15), || async { cluster.pod(0).get("/readyz").await.status == 200 }).await;
    // The client resends the refused message with its clientId; it is stored once, next in order.
    a.send_with_id(&refused, "while Postgres is unreachable").await;
    let seq = a.ack_for(&refused).await;
    assert_eq!(seq, before + 1, "no seq was used up by the refused send");
    let at_b = b.next_of_type("message").await;
    assert_eq!(seq_of(&at_b["message"]), seq, "{at_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_sends_delivers_every_acked_message() {
    let mut cluster = Cluster::start(3).await;
    let room = room("rolling");
    // Enough traffic (about 12 s) to span the whole rollout.
    let handles: Vec<_> = (0..6)
        .map(|i| Participant { every: Duration::from_millis(30), ..Participant::new(&room, i, 400, 2400) }.spawn(cluster.live.subscribe()))
        .collect();
    wait_for_acks(&cluster, &room, 60).await;
    for i in 0..3 {
        cluster.roll(i).await;
    }
    let outcomes = outcomes(handles).await;
    assert_one_stream(&outcomes);
    let reconnects: usize = outcomes.iter().map(|o| o.reconnects).sum();
    assert!(reconnects >= 3, "readers were handed to other pods during the rollout ({reconnects} reconnects)");
}

// ---------------------------------------------------------------------------------------------
// Slow Redis: a room never waits on it
// ---------------------------------------------------------------------------------------------

/// A TCP proxy in front of Redis that holds every reply back by `delay` (requests pass at once):
/// a Redis far away or overloaded.
async fn slow_proxy(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let (replies, mut due) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                let requests = tokio::io::copy(&mut client_read, &mut server_write);
                let read_replies = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                        if replies.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                };
                let write_replies = async move {
                    while let Some((at, bytes)) = due.recv().await {
                        tokio::time::sleep_until(at).await;
                        if client_write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = requests => {}
                    _ = async { tokio::join!(read_replies, write_replies) } => {}
                }
            });
        }
    });
    addr
}

/// Send → ack times of `sends` messages, one at a time, in a room where readers keep coming and
/// going (so presence is written to Redis all the while).
async fn ack_times_under_presence_churn(engine: &Engine, sends: usize) -> Vec<Duration> {
    let room = room("churn");
    let (mut sender, _) = engine.join(&room, &Reader::new("말하는 수달")).await;
    let (stop, stopped) = watch::channel(false);
    let addr = engine.addr;
    let churn_room = room.clone();
    let churn = tokio::spawn(async move {
        let mut i = 0;
        while !*stopped.borrow() {
            let mut reader = Client::connect(addr, &churn_room).await;
            reader.hello(&Reader::new(&format!("손님 {i}")), None).await;
            reader.close().await;
            i += 1;
        }
    });
    let mut times = Vec::with_capacity(sends);
    for i in 0..sends {
        let started = Instant::now();
        let client_id = sender.send_message(&format!("message {i}")).await;
        sender.ack_for(&client_id).await;
        times.push(started.elapsed());
    }
    stop.send_replace(true);
    churn.await.expect("churn task");
    times.sort();
    times
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_never_holds_up_a_rooms_sends() {
    let redis = RedisServer::start().await;
    let upstream: SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let slow = slow_proxy(upstream, Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = postgres_database_for(&postgres_server(), dir.path());
    let start = |redis_url: String, name: &str| {
        let pod_dir = dir.path().join(name);
        std::fs::create_dir_all(&pod_dir).expect("pod dir");
        let args =
            [FAST, &["--redis-url", &redis_url, "--pod-name", name, "--max-connections-per-ip", "1000", "--joins-per-ip", "1000"]].concat();
        Engine::start_on(&database_url, &pod_dir, &args)
    };

    let direct = start(redis.url(), "direct");
    let baseline = ack_times_under_presence_churn(&direct, 150).await;
    drop(direct);
    let delayed = start(format!("redis://{slow}"), "delayed");
    let behind_slow_redis = ack_times_under_presence_churn(&delayed, 150).await;

    let (base, slowed) = (p99(&baseline), p99(&behind_slow_redis));
    eprintln!("send → ack p99: {base:?} with Redis direct, {slowed:?} with every Redis reply 300 ms late");
    // Each presence write and read waits 300 ms; a room that waited on them would ack late by
    // at least that much.
    assert!(slowed <= (base * 2).max(Duration::from_millis(150)), "send → ack p99 {slowed:?} behind a slow Redis, {base:?} without");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_pin_and_unban_on_one_pod_reach_the_other_pods_readers_and_its_rooms_show_as_active() {
    const TOKEN: &str = "cluster-admin-token";
    let cluster = Cluster::start_with(2, None, &["--admin-token", TOKEN]).await;
    let room = room("owner");
    let auth = format!("Bearer {TOKEN}");
    let admin = |method: &'static str, path: String, body: Option<String>| {
        let auth = auth.clone();
        let pod = cluster.pod(0);
        async move {
            let response = pod.http(method, &path, &[("Authorization", auth.as_str())], body.as_deref()).await;
            assert!((200..300).contains(&response.status), "{method} {path}: {response:?}");
        }
    };
    let troll = Reader::new("말썽꾼");
    let (mut far, _) = cluster.pod(1).join(&room, &Reader::new("먼 독자")).await;
    let (mut t, welcome) = cluster.pod(1).join(&room, &troll).await;
    let troll_id = welcome["you"]["authorId"].as_str().unwrap().to_string();
    let (seq, _) = far.say("pin me").await;

    // The owner on pod 0 sees the room among the active ones, by its readers on pod 1.
    eventually("pod 1's room active on pod 0", Duration::from_secs(10), || async {
        let active = cluster.pod(0).http("GET", "/api/admin/rooms/active", &[("Authorization", auth.as_str())], None).await.json();
        active["rooms"].as_array().unwrap().iter().any(|r| r["id"] == room.as_str() && r["online"] == 2 && r["here"] == false)
    })
    .await;
    // So do the post lists' counts, asked on pod 0 for a room whose readers are on pod 1.
    let counts = cluster.pod(0).get(&format!("/api/rooms?ids={room},nobody-here")).await.json();
    assert_eq!(counts["rooms"][room.as_str()]["online"], 2, "{counts}");
    assert_eq!(counts["rooms"]["nobody-here"]["online"], 0, "{counts}");

    admin("PUT", format!("/api/rooms/{room}/lock"), None).await;
    assert_eq!(far.next_of_type("room").await["locked"], true);
    far.send_message("closed?").await;
    far.expect_error("room_locked").await;
    admin("DELETE", format!("/api/rooms/{room}/lock"), None).await;
    assert_eq!(far.next_of_type("room").await["locked"], false);

    admin("PUT", format!("/api/rooms/{room}/pin"), Some(json!({ "seq": seq }).to_string())).await;
    assert_eq!(far.next_of_type("pinned").await["message"]["seq"], seq);

    admin("POST", format!("/api/rooms/{room}/bans"), Some(json!({ "authorId": troll_id, "minutes": 5 }).to_string())).await;
    t.expect_error("banned").await;
    admin("DELETE", format!("/api/rooms/{room}/bans/{troll_id}"), None).await;
    // The other pod forgets the ban once the unban reaches it over the bus (the admin's answer
    // only says pod-0 stored it): the reader is let back in there. A pod that has not heard yet
    // still refuses; there is no event to await from outside, so each try is a real join.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = loop {
        let mut client = cluster.pod(1).ws(&room).await;
        client.send_json(&troll.hello_frame(None)).await;
        match client.next_frame_or_close().await {
            Ok(frame) if frame_type(&frame) == "welcome" => break client,
            refused => assert!(Instant::now() < deadline, "pod-1 still refuses the unbanned reader: {refused:?}"),
        }
        // Polled: the unban has no event a client outside the room could await. Ten tries a
        // second at most, the address's join rate.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    back.say("sorry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_two_pods_hide_a_message_on_both_and_keeping_it_restores_it_on_both() {
    const TOKEN: &str = "cluster-admin-token";
    let cluster = Cluster::start_with(2, None, &["--admin-token", TOKEN, "--auto-hide-reports", "2"]).await;
    let room = room("reports");
    let author = Reader::new("말썽꾼");
    let (mut a, _) = cluster.pod(1).join(&room, &author).await;
    let (mut near, _) = cluster.pod(1).join(&room, &Reader::new("가까운 독자")).await;
    let (mut far, _) = cluster.pod(0).join(&room, &Reader::new("먼 독자")).await;
    let (kept, _) = a.say("fine").await;
    let (rude, _) = a.say("not fine").await;
    for client in [&mut near, &mut far] {
        assert_eq!(seq_of(&client.next_where("message `not fine`", |f| f["message"]["seq"] == rude).await["message"]), rude);
    }

    // One report on each pod: the second, wherever it lands, hides it on both.
    for client in [&mut far, &mut near] {
        client.send_json(&json!({"type": "report", "seq": rude})).await;
        assert_eq!(client.next_of_type("reported").await["seq"], rude);
    }
    for client in [&mut a, &mut near, &mut far] {
        assert_eq!(client.next_of_type("hidden").await, json!({"type": "hidden", "seq": rude}));
    }
    for pod in 0..2 {
        assert_eq!(seqs(&cluster.pod(pod).history(&room, "").await), vec![kept], "pod-{pod}'s history API");
        let (_late, welcome) = cluster.pod(pod).join(&room, &Reader::new("늦은 독자")).await;
        assert_eq!(seqs(welcome["history"].as_array().unwrap()), vec![kept], "pod-{pod}'s welcome: {welcome}");
    }

    // The owner keeps it on pod-0: readers on both pods get it back.
    let auth = format!("Bearer {TOKEN}");
    let response = cluster.pod(0).http("DELETE", &format!("/api/rooms/{room}/reports/{rude}"), &[("Authorization", &auth)], None).await;
    assert_eq!(response.status, 200, "{response:?}");
    for client in [&mut a, &mut near, &mut far] {
        let restored = client.next_of_type("restored").await;
        assert_message(&restored["message"], &room, &author, "not fine");
    }
    for pod in 0..2 {
        let (_later, welcome) = cluster.pod(pod).join(&room, &Reader::new("나중 독자")).await;
        assert_eq!(seqs(welcome["history"].as_array().unwrap()), vec![kept, rude], "pod-{pod}'s welcome: {welcome}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_webhook_event_is_sent_once_by_the_pod_where_it_happened() {
    const TOKEN: &str = "cluster-hook-token";
    let mut receiver = Receiver::start().await;
    let url = receiver.url();
    let cluster = Cluster::start_with(2, None, &["--admin-token", TOKEN, "--webhook-url", &url]).await;
    let room = room("hooks");
    let (mut alice, _) = cluster.pod(0).join(&room, &Reader::new("앨리스")).await;
    let (mut bob, _) = cluster.pod(1).join(&room, &Reader::new("밥 아저씨")).await;
    for i in 0..3 {
        alice.say(&format!("from pod 0: {i}")).await;
        bob.say(&format!("from pod 1: {i}")).await;
    }
    // Each pod relayed the other's messages to its reader.
    for (client, from) in [(&mut alice, "from pod 1: 2"), (&mut bob, "from pod 0: 2")] {
        client.next_where("the other pod's last message", |f| frame_type(f) == "message" && f["message"]["content"] == from).await;
    }
    let auth = format!("Bearer {TOKEN}");
    let locked = cluster.pod(1).http("PUT", &format!("/api/rooms/{room}/lock"), &[("Authorization", auth.as_str())], None).await;
    assert!(locked.status < 300, "{locked:?}");

    let mut seqs = Vec::new();
    let mut locks = 0;
    while seqs.len() < 6 || locks < 1 {
        let body = receiver.next().await.json();
        match body["event"].as_str() {
            Some("message.created") => seqs.push(body["data"]["seq"].as_u64().unwrap()),
            Some("room.locked") => locks += 1,
            other => panic!("unexpected event {other:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=6).collect::<Vec<u64>>(), "every message once");
    // Every pod has finished its deliveries: nothing more is on its way.
    eventually("both pods done delivering", Duration::from_secs(10), || async {
        let mut delivered = 0.0;
        for pod in [cluster.pod(0), cluster.pod(1)] {
            delivered +=
                webhook_deliveries(pod, "message.created", "delivered").await + webhook_deliveries(pod, "room.locked", "delivered").await;
        }
        delivered == 7.0
    })
    .await;
    assert_eq!(webhook_deliveries(cluster.pod(0), "message.created", "delivered").await, 3.0, "pod 0 sent its own three");
    assert!(receiver.none_waiting(), "an event was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_content_is_counted_across_pods_and_slow_mode_reaches_the_other_pod() {
    const TOKEN: &str = "cluster-admin-token";
    let cluster = Cluster::start_with(2, None, &["--admin-token", TOKEN]).await;
    let (one, two) = (room("dup-a"), room("dup-b"));
    let (mut a, _) = cluster.pod(0).join(&one, &Reader::new("첫째")).await;
    let (mut b, _) = cluster.pod(1).join(&two, &Reader::new("둘째")).await;
    let spam = "Subscribe to my channel for free giveaways every day";
    a.say(spam).await;
    b.say(spam).await;
    a.say(spam).await;
    // The fourth, on the other pod, in another room, by another author: the count is shared.
    let refused = b.send_message(spam).await;
    let error = b.expect_error("spam").await;
    assert_eq!((error["reason"].as_str(), error["clientId"].as_str()), (Some("repeated"), Some(refused.as_str())), "{error}");

    // Slow mode set on pod 0 reaches pod 1's readers, and pod 1 applies it.
    let (mut far, _) = cluster.pod(1).join(&one, &Reader::new("먼 독자")).await;
    let auth = format!("Bearer {TOKEN}");
    let set = cluster
        .pod(0)
        .http("PUT", &format!("/api/rooms/{one}/slow-mode"), &[("Authorization", auth.as_str())], Some(r#"{"seconds": 30}"#))
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(far.next_of_type("room").await["slowMode"], 30);
    far.say("one message").await;
    far.send_message("and another").await;
    let limited = far.expect_error("rate_limited").await;
    assert!(limited["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0 && ms <= 30_000), "{limited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_edits_and_replies_on_one_pod_reach_the_readers_of_the_other() {
    let cluster = Cluster::start(2).await;
    let room = room("features");
    let far_reader = Reader::new("먼 독자");
    let (mut near, welcome) = cluster.pod(0).join(&room, &Reader::new("가까운 작성자")).await;
    let near_id = welcome["you"]["authorId"].clone();
    let (mut far, welcome) = cluster.pod(1).join(&room, &far_reader).await;
    let far_id = welcome["you"]["authorId"].clone();
    let (seq, _) = near.say("hello from pod-0").await;
    far.next_where("the message", |f| frame_type(f) == "message" && f["message"]["seq"] == seq).await;

    // A reaction on pod-0 reaches pod-1's reader, and the other way round.
    near.send_json(&json!({"type": "react", "seq": seq, "emoji": "👍", "on": true})).await;
    let frame = far.next_of_type("reactions").await;
    assert_eq!(frame, json!({"type": "reactions", "seq": seq, "reactions": {"👍": 1}, "authorId": near_id, "emoji": "👍", "on": true}));
    far.send_json(&json!({"type": "react", "seq": seq, "emoji": "👍", "on": true})).await;
    for client in [&mut far, &mut near] {
        let frame = client.next_where("far's reaction", |f| frame_type(f) == "reactions" && f["authorId"] == far_id).await;
        assert_eq!(frame["reactions"], json!({"👍": 2}), "{frame}");
    }

    // An edit on pod-0 reaches pod-1; a reply on pod-1 quotes the edited text on pod-0.
    near.send_json(&json!({"type": "edit", "seq": seq, "content": "hello, edited on pod-0"})).await;
    let edited = far.next_of_type("edited").await;
    assert_eq!(edited["message"]["content"], "hello, edited on pod-0", "{edited}");
    assert!(edited["message"]["editedAt"].is_string(), "{edited}");
    let client_id = new_id();
    far.send_json(&json!({"type": "send", "clientId": client_id, "content": "a reply", "replyTo": seq})).await;
    let reply = near.next_where("the reply", |f| frame_type(f) == "message" && f["message"]["clientId"] == client_id.as_str()).await;
    assert_eq!(reply["message"]["replyTo"]["excerpt"], "hello, edited on pod-0", "{reply}");

    // Each pod's memory took the changes: a reader joining either sees them, with its own reactions.
    for pod in 0..2 {
        let (_, welcome) = cluster.pod(pod).join(&room, &far_reader).await;
        let first = &welcome["history"][0];
        assert_eq!(
            (first["content"].as_str(), first["reactions"].clone()),
            (Some("hello, edited on pod-0"), json!({"👍": 2})),
            "pod-{pod}"
        );
        assert_eq!(welcome["myReactions"], json!({seq.to_string(): ["👍"]}), "pod-{pod}: {welcome}");
    }
}
