//! The embedded store: one SQLite file in WAL mode. Writes are made one at a time under one lock
//! (SQLite has one writer anyway, and this keeps lock waits out of the picture): batches on a
//! connection of their own, everything else on a one-connection pool; reads use a small pool that
//! WAL lets run beside the writer. `synchronous = FULL` makes every acked commit survive a
//! crash of the process or the machine.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row};
use tokio::sync::{Mutex, MutexGuard, Notify};

use super::queries::Queries;
use super::transfer::{ExportedMessage, RoomState};
use super::{
    Appended, BanEntry, Deletion, Dismissal, Edit, NewMessage, Reaction, Report, ReportedMessage, RoomSnapshot, RoomSummary, Store,
    StoreError,
};
use crate::chat::{now_millis, AuthorId, Emoji, Message, ReplyQuote, RoomId, Seq};

pub struct SqliteStore {
    /// The connection batches are stored on, and the lock every write holds (see `one_writer`).
    batches: Mutex<Option<SqliteConnection>>,
    /// How to open the batches' connection again after a batch failed on it.
    options: SqliteConnectOptions,
    /// The other writes: moderation, reactions, pruning, imports.
    writes: SqlitePool,
    readers: SqlitePool,
    /// One connection that copies the WAL back beside the writer (see `copy_back`).
    checkpoints: SqlitePool,
    /// Wakes `copy_back` after a commit, and once more when the store closes.
    committed: Arc<Notify>,
    /// How long a write waits for the lock.
    timeout: Duration,
}

/// How often the WAL is copied back into the database beside the writer.
/// Small and often: each one's sync of the database file delays the writer's sync of the WAL
/// behind it, and the blog mix's p99 was lower at 50 ms than at 200 (bench/README.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

impl SqliteStore {
    pub async fn open(path: &str, timeout: Duration) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(timeout)
            .foreign_keys(true)
            // A batch's multi-row statements keep a statement journal (to undo a half-done one);
            // on disk it was a write per page it touched.
            .pragma("temp_store", "memory")
            // A checkpoint runs inside the commit that crosses this many WAL pages, and a batch of
            // a hundred rooms touches a few hundred: at SQLite's default (1,000) every third commit
            // also copied the WAL back and synced the database file. `copy_back` does most of
            // that copying beside the writer; this one finishes it and lets the WAL start over.
            .pragma("wal_autocheckpoint", "10000");
        // A file does not hang up: the pool's ping before each use was one more round trip to
        // SQLite's thread per commit and per read.
        let pool = || SqlitePoolOptions::new().acquire_timeout(timeout).test_before_acquire(false);
        let writes = pool().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("../migrations/sqlite").run(&writes).await?;
        let batches = Mutex::new(Some(options.connect().await?));
        let checkpoints = pool().max_connections(1).connect_with(options.clone()).await?;
        let committed = Arc::new(Notify::new());
        tokio::spawn(copy_back(checkpoints.clone(), committed.clone()));
        let readers = pool().max_connections(4).connect_with(options.clone().read_only(true)).await?;
        Ok(SqliteStore { batches, options, writes, readers, checkpoints, committed, timeout })
    }

    /// Waits for the writer's lock, which every write of this store holds while it runs, so only
    /// one writes at a time: no write waits on SQLite's own lock, and nothing else changes a
    /// room's counter between a batch's reads and its commit.
    async fn one_writer(&self) -> Result<MutexGuard<'_, Option<SqliteConnection>>, StoreError> {
        tokio::time::timeout(self.timeout, self.batches.lock()).await.map_err(|_| StoreError::Timeout)
    }

    /// One of the writes other than a batch, holding the writer's lock.
    async fn write<T>(&self, statements: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
        let _one_writer = self.one_writer().await?;
        Ok(statements.await?)
    }

    /// Stores a batch in two round trips to SQLite's thread however many messages it holds: what
    /// the batch needs to know, then begin, the writes and commit as one query. Statements per
    /// message were most of what a commit cost at thousands of messages a second, and each round
    /// trip wakes SQLite's thread and then the runtime's (bench/README.md). Seqs are counted here,
    /// from each room's counter: the writer's lock, held from the reads to the commit, keeps every
    /// other write out (an import writes counters too), so the reads need no transaction of their
    /// own.
    ///
    /// The connection is held outside any pool: a pool tests a connection each time it is handed
    /// back, one more round trip per commit, and the calm post's ack p50 was 0.7 ms lower without
    /// it (bench/README.md). It is taken out of its slot for the batch and put back only once the
    /// batch is through: one that fails, or is given up on, between its begin and its commit
    /// drops it, which rolls the transaction back, and the next batch opens a new one.
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let now = now_millis();
        let mut slot = self.one_writer().await?;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        let Known { mut counters, stored_before, originals } = read_known(&mut conn, &batch).await?;
        let mut out = Vec::with_capacity(batch.len());
        // What this batch stores: each message's seq by its idempotency key, and the rows.
        let mut fresh: HashMap<(&str, &str, &str), Seq> = HashMap::new();
        let mut rows: Vec<(&NewMessage, Seq)> = Vec::new();
        for msg in &batch {
            let key = (msg.room_id.as_str(), msg.author.author_id.as_str(), msg.client_id.as_str());
            // Stored before (in an earlier batch or earlier in this one): acked again with its seq.
            if let Some(&(seq, created_at)) = stored_before.get(&key) {
                out.push(Appended::stored(seq, created_at, false, None));
                continue;
            }
            if let Some(&seq) = fresh.get(&key) {
                out.push(Appended::stored(seq, now, false, None));
                continue;
            }
            // The message answered must be there: stored and shown, or stored earlier in this batch.
            let reply = match msg.reply_to {
                Some(original) => {
                    let quote = originals.get(&(msg.room_id.as_str(), original)).cloned().or_else(|| {
                        let (m, _) = rows.iter().find(|(m, seq)| *seq == original && m.room_id == msg.room_id)?;
                        Some(ReplyQuote::shown(original, m.author.author_id.clone(), m.author.nickname.clone(), &m.content))
                    });
                    let Some(quote) = quote else {
                        out.push(Appended::reply_missing());
                        continue;
                    };
                    Some(quote)
                }
                None => None,
            };
            let counter = counters.entry(msg.room_id.as_str()).or_insert(0);
            *counter += 1;
            fresh.insert(key, *counter);
            rows.push((msg, *counter));
            out.push(Appended::stored(*counter, now, true, reply));
        }
        if !rows.is_empty() {
            let used: HashSet<&str> = rows.iter().map(|(m, _)| m.room_id.as_str()).collect();
            let used: Vec<(&str, Seq)> = counters.into_iter().filter(|(room, _)| used.contains(room)).collect();
            write_rows(&mut conn, &used, &rows, now, prepared(&batch)).await?;
            self.committed.notify_one();
        }
        *slot = Some(conn);
        Ok(out)
    }
}

/// Copies what the WAL holds back into the database, from a connection of its own, at most every
/// `CHECKPOINT_EVERY` while messages are committed (an idle store does not wake), until the store
/// closes. A passive checkpoint takes no lock the writer waits on, so commits go on meanwhile; the
/// checkpoint the writer runs itself when the WAL is long, inside a commit and holding up every
/// send behind it, then finds little left to copy and sync (at 2,000 messages a second over 2,000
/// rooms it came every second, and a few commits after it took 4–10 ms instead of under one).
async fn copy_back(pool: SqlitePool, committed: Arc<Notify>) {
    loop {
        committed.notified().await;
        match checkpoint(&pool).await {
            Ok(_) => {}
            Err(sqlx::Error::PoolClosed) => return,
            Err(err) => tracing::warn!(error = %err, "copying the WAL back failed"),
        }
        tokio::time::sleep(CHECKPOINT_EVERY).await;
    }
}

/// One passive checkpoint: the WAL's length and how much of it is now in the database, in pages.
async fn checkpoint(pool: &SqlitePool) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await?;
    Ok((row.get(1), row.get(2)))
}

/// Rows per statement: nine parameters each stays far below SQLite's limit on them.
const ROWS_PER_STATEMENT: usize = 500;

/// A statement's text changes with the batch's shape, so only small batches, which a quiet
/// evening commits over and over (a message or two per commit), are kept prepared: parsing them
/// again took an eighth of the engine's CPU then (bench/README.md). Batches of up to this many
/// messages make a few dozen texts, well inside sqlx's cache of 100.
const PREPARED_UP_TO: usize = 4;

/// Whether the statements of this batch are kept prepared.
fn prepared(batch: &[NewMessage]) -> bool {
    batch.len() <= PREPARED_UP_TO
}

/// What a batch needs to know before it is counted, read in one round trip.
struct Known<'b> {
    /// The batch's rooms that are stored, with their counters (a new room starts at 0).
    counters: HashMap<&'b str, Seq>,
    /// Which sends were stored before, by (room, author, clientId): their seq and time.
    stored_before: HashMap<(&'b str, &'b str, &'b str), (Seq, i64)>,
    /// The messages the batch's replies answer, quoted, when they are stored and shown.
    originals: HashMap<(&'b str, Seq), ReplyQuote>,
}

/// The rows each statement of `read_known` returns start with which of these they are.
const COUNTER: i64 = 0;
const STORED: i64 = 1;
const ORIGINAL: i64 = 2;

/// Reads the batch's counters, repeats and quoted originals with one query of several
/// statements (SQLite's thread runs them one after the other and sends every row back at once).
/// Rows name rooms, authors and client ids by value; each is mapped back to the batch's own
/// borrow, so the maps can outlive the rows.
async fn read_known<'b>(conn: &mut SqliteConnection, batch: &'b [NewMessage]) -> Result<Known<'b>, StoreError> {
    let rooms: HashMap<&str, &'b str> = batch.iter().map(|m| (m.room_id.as_str(), m.room_id.as_str())).collect();
    let sends: HashMap<(&str, &str, &str), &'b NewMessage> =
        batch.iter().map(|m| ((m.room_id.as_str(), m.author.author_id.as_str(), m.client_id.as_str()), m)).collect();
    let wanted: HashMap<(&str, Seq), &'b str> =
        batch.iter().filter_map(|m| Some(((m.room_id.as_str(), m.reply_to?), m.room_id.as_str()))).collect();

    let mut query = QueryBuilder::<Sqlite>::new("");
    let ids: Vec<&str> = rooms.values().copied().collect();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        query.push(format_args!("SELECT {COUNTER}, id, last_seq FROM rooms WHERE id IN ("));
        let mut ids = query.separated(", ");
        for room in chunk {
            ids.push_bind(*room);
        }
        query.push(");");
    }
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        query.push("WITH sent (room_id, author_id, client_id) AS (");
        query.push_values(chunk, |mut row, msg| {
            row.push_bind(msg.room_id.as_str()).push_bind(msg.author.author_id.as_str()).push_bind(&msg.client_id);
        });
        query.push(format_args!(
            ") SELECT {STORED}, m.room_id, m.author_id, m.client_id, m.seq, m.created_at FROM sent
               JOIN messages m ON m.room_id = sent.room_id AND m.author_id = sent.author_id AND m.client_id = sent.client_id;"
        ));
    }
    let pairs: Vec<(&str, Seq)> = wanted.keys().copied().collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        query.push("WITH wanted (room_id, seq) AS (");
        query.push_values(chunk, |mut row, (room, seq)| {
            row.push_bind(*room).push_bind(*seq);
        });
        query.push(format_args!(
            ") SELECT {ORIGINAL}, m.room_id, m.seq, m.author_id, m.nickname, m.content FROM wanted
               JOIN messages m ON m.room_id = wanted.room_id AND m.seq = wanted.seq
               WHERE m.deleted_at IS NULL AND m.hidden_at IS NULL;"
        ));
    }

    let mut known = Known { counters: HashMap::new(), stored_before: HashMap::new(), originals: HashMap::new() };
    for row in query.build().persistent(prepared(batch)).fetch_all(conn).await? {
        match row.get::<i64, _>(0) {
            COUNTER => {
                let id: String = row.get(1);
                if let Some(&room) = rooms.get(id.as_str()) {
                    known.counters.insert(room, row.get(2));
                }
            }
            STORED => {
                let (room, author, client_id): (String, String, String) = (row.get(1), row.get(2), row.get(3));
                if let Some(&m) = sends.get(&(room.as_str(), author.as_str(), client_id.as_str())) {
                    let key = (m.room_id.as_str(), m.author.author_id.as_str(), m.client_id.as_str());
                    known.stored_before.insert(key, (row.get(4), row.get(5)));
                }
            }
            _ => {
                let (room, seq): (String, Seq) = (row.get(1), row.get(2));
                let Some(&room) = wanted.get(&(room.as_str(), seq)) else { continue };
                let content: String = row.get(5);
                known.originals.insert((room, seq), ReplyQuote::shown(seq, AuthorId::from_store(row.get(3)), row.get(4), &content));
            }
        }
    }
    Ok(known)
}

/// Writes the counters of the rooms that store something, then the messages, in one transaction
/// sent as one query of several statements (begin to commit): a room's row is made with its first
/// message, and messages name it.
async fn write_rows(
    conn: &mut SqliteConnection,
    counters: &[(&str, Seq)],
    rows: &[(&NewMessage, Seq)],
    now: i64,
    prepared: bool,
) -> Result<(), StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new("BEGIN;");
    for chunk in counters.chunks(ROWS_PER_STATEMENT) {
        query.push("INSERT INTO rooms (id, last_seq, created_at) ");
        query.push_values(chunk, |mut row, (room, seq)| {
            row.push_bind(*room).push_bind(*seq).push_bind(now);
        });
        query.push(" ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq;");
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        query.push("INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id, reply_to) ");
        query.push_values(chunk, |mut row, (msg, seq)| {
            row.push_bind(msg.room_id.as_str())
                .push_bind(*seq)
                .push_bind(msg.author.author_id.as_str())
                .push_bind(&msg.author.nickname)
                .push_bind(&msg.author.avatar)
                .push_bind(&msg.content)
                .push_bind(now)
                .push_bind(&msg.client_id)
                .push_bind(msg.reply_to);
        });
        query.push(";");
    }
    query.push("COMMIT;");
    query.build().persistent(prepared).execute(conn).await?;
    Ok(())
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn append(&self, batch: Vec<NewMessage>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        self.append_batch(batch).boxed()
    }

    fn load_room(&self, room: RoomId, recent: usize) -> BoxFuture<'_, Result<RoomSnapshot, StoreError>> {
        async move { Ok(Queries(&self.readers).load_room(&room, recent).await?) }.boxed()
    }

    fn history(&self, room: RoomId, before: Option<Seq>, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Queries(&self.readers).history(&room, before, limit).await?) }.boxed()
    }

    fn after(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Queries(&self.readers).after(&room, after, limit).await?) }.boxed()
    }

    fn last_seq(&self, room: RoomId) -> BoxFuture<'_, Result<Seq, StoreError>> {
        async move { Ok(Queries(&self.readers).last_seq(&room).await?) }.boxed()
    }

    fn delete(&self, room: RoomId, seq: Seq, author: Option<AuthorId>) -> BoxFuture<'_, Result<Deletion, StoreError>> {
        async move { self.write(Queries(&self.writes).delete(&room, seq, author.as_ref())).await }.boxed()
    }

    fn report(&self, room: RoomId, seq: Seq, reporter: AuthorId, auto_hide: u32) -> BoxFuture<'_, Result<Report, StoreError>> {
        async move { self.write(Queries(&self.writes).report(&room, seq, &reporter, auto_hide)).await }.boxed()
    }

    fn react(&self, room: RoomId, seq: Seq, author: AuthorId, emoji: Emoji, on: bool) -> BoxFuture<'_, Result<Reaction, StoreError>> {
        async move { self.write(Queries(&self.writes).react(&room, seq, &author, emoji, on)).await }.boxed()
    }

    fn edit(&self, room: RoomId, seq: Seq, author: AuthorId, content: String, window_ms: i64) -> BoxFuture<'_, Result<Edit, StoreError>> {
        async move { self.write(Queries(&self.writes).edit(&room, seq, &author, &content, window_ms)).await }.boxed()
    }

    fn reactions_by(&self, room: RoomId, author: AuthorId, from: Seq, to: Seq) -> BoxFuture<'_, Result<Vec<(Seq, Emoji)>, StoreError>> {
        async move { Ok(Queries(&self.readers).reactions_by(&room, &author, from, to).await?) }.boxed()
    }

    fn dismiss(&self, room: RoomId, seq: Seq) -> BoxFuture<'_, Result<Dismissal, StoreError>> {
        async move { self.write(Queries(&self.writes).dismiss(&room, seq)).await }.boxed()
    }

    fn reports(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ReportedMessage>, StoreError>> {
        async move { Ok(Queries(&self.readers).reports(limit).await?) }.boxed()
    }

    fn ban(&self, room: RoomId, author: AuthorId, until: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.write(Queries(&self.writes).ban(&room, &author, until)).await }.boxed()
    }

    fn unban(&self, room: RoomId, author: AuthorId) -> BoxFuture<'_, Result<bool, StoreError>> {
        async move { self.write(Queries(&self.writes).unban(&room, &author)).await }.boxed()
    }

    fn set_locked(&self, room: RoomId, locked: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.write(Queries(&self.writes).set_locked(&room, locked)).await }.boxed()
    }

    fn set_slow_mode(&self, room: RoomId, seconds: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.write(Queries(&self.writes).set_slow_mode(&room, seconds)).await }.boxed()
    }

    fn author_standing(&self, room: RoomId, author: AuthorId, upto: u32) -> BoxFuture<'_, Result<(u32, Option<i64>), StoreError>> {
        async move { Ok(Queries(&self.readers).author_standing(&room, &author, upto).await?) }.boxed()
    }

    fn pin(&self, room: RoomId, seq: Option<Seq>) -> BoxFuture<'_, Result<Option<Message>, StoreError>> {
        async move { self.write(Queries(&self.writes).pin(&room, seq)).await }.boxed()
    }

    fn rooms(&self, search: Option<String>, after: Option<RoomId>, limit: usize) -> BoxFuture<'_, Result<Vec<RoomSummary>, StoreError>> {
        async move { Ok(Queries(&self.readers).rooms(search.as_deref(), after.as_ref(), limit).await?) }.boxed()
    }

    fn author_messages(&self, author: AuthorId, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Queries(&self.readers).author_messages(&author, limit).await?) }.boxed()
    }

    fn bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<BanEntry>, StoreError>> {
        async move { Ok(Queries(&self.readers).bans(now, limit).await?) }.boxed()
    }

    // The deletes hold the writer's lock like the commits do, so each is one short statement
    // that a waiting commit follows at once (no busy waits, no second writer).
    fn prune_older_than(&self, before: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { self.write(Queries(&self.writes).prune_older_than(before, limit)).await }.boxed()
    }

    fn rooms_over(
        &self,
        keep: u64,
        protect: usize,
        after: Option<RoomId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(RoomId, Seq)>, StoreError>> {
        async move { Ok(Queries(&self.readers).rooms_over(keep, protect, after.as_ref(), limit).await?) }.boxed()
    }

    fn prune_room(&self, room: RoomId, upto: Seq, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { self.write(Queries(&self.writes).prune_room(&room, upto, limit)).await }.boxed()
    }

    fn prune_bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { self.write(Queries(&self.writes).prune_bans(now, limit)).await }.boxed()
    }

    fn message_counts(&self, rooms: Vec<RoomId>) -> BoxFuture<'_, Result<Vec<(RoomId, i64)>, StoreError>> {
        async move { Ok(Queries(&self.readers).message_counts(&rooms).await?) }.boxed()
    }

    fn room_state(&self, room: RoomId) -> BoxFuture<'_, Result<Option<RoomState>, StoreError>> {
        async move { Ok(Queries(&self.readers).room_state(&room).await?) }.boxed()
    }

    fn export_page(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<ExportedMessage>, StoreError>> {
        async move { Ok(Queries(&self.readers).export_page(&room, after, limit).await?) }.boxed()
    }

    fn import_room(&self, state: RoomState, messages: Vec<ExportedMessage>) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { self.write(Queries(&self.writes).import_room(&state, &messages)).await }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.readers).ping().await?) }.boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            self.checkpoints.close().await;
            self.committed.notify_one();
            self.readers.close().await;
            if let Ok(mut slot) = self.one_writer().await {
                if let Some(conn) = slot.take() {
                    let _ = conn.close().await;
                }
            }
            self.writes.close().await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(room: &str, author: &str, client_id: &str, reply_to: Option<Seq>) -> NewMessage {
        NewMessage {
            room_id: RoomId::parse(room).expect("room id"),
            author: crate::chat::Profile {
                author_id: AuthorId::parse(author).expect("author id"),
                nickname: format!("닉네임 {author}"),
                avatar: "otter".into(),
            },
            content: format!("{client_id} says hi"),
            client_id: client_id.into(),
            reply_to,
        }
    }

    fn seqs(appended: &[Appended]) -> Vec<(Seq, bool, bool)> {
        appended.iter().map(|a| (a.seq, a.fresh, a.reply_missing)).collect()
    }

    /// Asserts a room's stored messages, oldest first: each one's seq and content.
    async fn assert_stored(store: &SqliteStore, room: &str, expected: &[(Seq, &str)]) {
        let messages = Queries(&store.readers).after(&RoomId::parse(room).expect("room"), 0, 10).await.expect("read");
        let contents: Vec<(Seq, &str)> = messages.iter().map(|m| (m.seq, m.content.as_str())).collect();
        assert_eq!(contents, expected);
    }

    const ANN: &str = "00000000000000aa";
    const BOB: &str = "00000000000000bb";

    /// One batch with two rooms interleaved, a repeat inside the batch, a reply to a message stored
    /// earlier in the same batch and one to a message that does not exist: each room counts on
    /// from its own counter, and the next batch sees what this one stored.
    #[tokio::test]
    async fn a_batch_counts_each_room_on_and_answers_repeats_and_replies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("chat.db").to_str().expect("path"), Duration::from_secs(5)).await.expect("open");
        let first = store.append_batch(vec![send("post-1", ANN, "a1", None), send("post-2", BOB, "b1", None)]).await.expect("append");
        assert_eq!(seqs(&first), [(1, true, false), (1, true, false)]);

        let batch = vec![
            send("post-1", BOB, "b2", None),
            send("post-2", ANN, "a2", Some(1)),
            send("post-1", BOB, "b2", None),
            send("post-1", ANN, "a3", Some(2)),
            send("post-1", ANN, "a4", Some(9)),
            send("post-1", ANN, "a1", None),
            send("post-3", BOB, "b3", None),
        ];
        let appended = store.append_batch(batch).await.expect("append");
        assert_eq!(
            seqs(&appended),
            [
                (2, true, false),
                (2, true, false),
                (2, false, false),
                (3, true, false),
                (0, false, true),
                (1, false, false),
                (1, true, false)
            ]
        );
        let quote = appended[1].reply.as_ref().expect("a quote of a stored message");
        assert_eq!((quote.seq, quote.excerpt.as_deref()), (1, Some("b1 says hi")));
        let quote = appended[3].reply.as_ref().expect("a quote of a message stored earlier in the batch");
        assert_eq!((quote.seq, quote.excerpt.as_deref()), (2, Some("b2 says hi")));

        let next = store.append_batch(vec![send("post-1", BOB, "b4", None)]).await.expect("append");
        assert_eq!(seqs(&next), [(4, true, false)]);
        assert_stored(&store, "post-1", &[(1, "a1 says hi"), (2, "b2 says hi"), (3, "a3 says hi"), (4, "b4 says hi")]).await;
    }

    /// A batch that fails between its begin and its commit stores nothing, counts nothing, and
    /// leaves the writer ready for the next one (not inside the failed batch's transaction).
    #[tokio::test]
    async fn a_failed_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("chat.db").to_str().expect("path"), Duration::from_secs(5)).await.expect("open");
        // Fails the batch's message insert, after its room's counter is written.
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.client_id = 'refused'
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&store.writes)
        .await
        .expect("trigger");
        let failed = store.append_batch(vec![send("post-1", ANN, "a1", None), send("post-1", ANN, "refused", None)]).await;
        assert!(failed.is_err(), "the batch fails");

        let next = store.append_batch(vec![send("post-1", BOB, "b1", None)]).await.expect("the next batch is stored");
        assert_eq!(seqs(&next), [(1, true, false)], "the failed batch's counter was rolled back");
        assert_stored(&store, "post-1", &[(1, "b1 says hi")]).await;
    }

    /// Batches and the other writes arriving together all land: they take turns on the writer's
    /// lock instead of meeting on SQLite's, where a transaction that read before another
    /// connection committed cannot write and fails at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_and_other_writes_at_once_all_land() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        let store = Arc::new(SqliteStore::open(path.to_str().expect("path"), Duration::from_secs(5)).await.expect("open"));
        store.append_batch(vec![send("post-1", ANN, "a0", None)]).await.expect("append");
        let room = RoomId::parse("post-1").expect("room");
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..100 {
            let sender = store.clone();
            writes.spawn(async move { sender.append_batch(vec![send("post-1", BOB, &format!("b{i}"), None)]).await.map(|_| ()) });
            let (store, room) = (store.clone(), room.clone());
            let emoji = Emoji::from_index(i % 2).expect("emoji");
            writes.spawn(async move { store.react(room, 1, AuthorId::parse(ANN).expect("author"), emoji, i % 4 < 2).await.map(|_| ()) });
        }
        while let Some(done) = writes.join_next().await {
            done.expect("task").expect("every write lands");
        }
        assert_eq!(Queries(&store.readers).last_seq(&room).await.expect("read"), 101);
    }

    /// The WAL is copied back from the checkpoint connection while the writer's stays open, and
    /// closing the store ends the loop that does it.
    #[tokio::test]
    async fn the_wal_is_copied_back_beside_the_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("chat.db").to_str().expect("path"), Duration::from_secs(5)).await.expect("open");
        store.append_batch(vec![send("post-1", ANN, "a1", None), send("post-2", BOB, "b1", None)]).await.expect("append");
        let (wal, copied) = checkpoint(&store.checkpoints).await.expect("checkpoint");
        assert!(wal > 0, "the commit is in the WAL");
        assert_eq!(copied, wal, "all of it is copied back");
        store.close().await;
        assert!(matches!(checkpoint(&store.checkpoints).await, Err(sqlx::Error::PoolClosed)));
    }
}
