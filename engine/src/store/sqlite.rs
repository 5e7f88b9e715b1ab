//! The embedded store: one SQLite file in WAL mode. Writes go through a single connection (SQLite
//! has one writer anyway, and this keeps lock waits out of the picture); reads use a small pool
//! that WAL lets run beside the writer. `synchronous = FULL` makes every acked commit survive a
//! crash of the process or the machine.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use super::queries::Queries;
use super::transfer::{ExportedMessage, RoomState};
use super::{
    Appended, BanEntry, Deletion, Dismissal, Edit, NewMessage, Reaction, Report, ReportedMessage, RoomSnapshot, RoomSummary, Store,
    StoreError,
};
use crate::chat::{now_millis, AuthorId, Emoji, Message, ReplyQuote, RoomId, Seq};

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &str, timeout: Duration) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new().max_connections(1).acquire_timeout(timeout).connect_with(options.clone()).await?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new().max_connections(4).acquire_timeout(timeout).connect_with(options.read_only(true)).await?;
        Ok(SqliteStore { writer, readers })
    }

    async fn append_batch(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let now = now_millis();
        let mut tx = self.writer.begin().await?;
        let mut out = Vec::with_capacity(batch.len());
        // Batches arrive grouped by room, but a room may appear more than once; the counter is
        // read back each time the room changes so it stays right either way.
        let mut current: Option<(RoomId, Seq)> = None;
        for msg in &batch {
            let last_seq = match &current {
                Some((room, seq)) if *room == msg.room_id => *seq,
                _ => {
                    if let Some((room, seq)) = current.take() {
                        save_counter(&mut tx, &room, seq).await?;
                    }
                    sqlx::query("INSERT INTO rooms (id, last_seq, created_at) VALUES (?, 0, ?) ON CONFLICT (id) DO NOTHING")
                        .bind(msg.room_id.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query_scalar::<_, Seq>("SELECT last_seq FROM rooms WHERE id = ?")
                        .bind(msg.room_id.as_str())
                        .fetch_one(&mut *tx)
                        .await?
                }
            };
            let seq = last_seq + 1;
            // The message answered, read in this transaction: a reply to one that is gone is not stored.
            let reply = match msg.reply_to {
                Some(original) => {
                    let row = sqlx::query(
                        "SELECT author_id, nickname, content FROM messages
                         WHERE room_id = ? AND seq = ? AND deleted_at IS NULL AND hidden_at IS NULL",
                    )
                    .bind(msg.room_id.as_str())
                    .bind(original)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match row {
                        Some(row) => Some(ReplyQuote::shown(original, AuthorId::from_store(row.get(0)), row.get(1), row.get(2))),
                        None => {
                            let stored =
                                sqlx::query("SELECT seq, created_at FROM messages WHERE room_id = ? AND author_id = ? AND client_id = ?")
                                    .bind(msg.room_id.as_str())
                                    .bind(msg.author.author_id.as_str())
                                    .bind(&msg.client_id)
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            // Stored before (the original went since): acked again like any repeat.
                            out.push(match stored {
                                Some(row) => Appended::stored(row.get(0), row.get(1), false, None),
                                None => Appended::reply_missing(),
                            });
                            current = Some((msg.room_id.clone(), last_seq));
                            continue;
                        }
                    }
                }
                None => None,
            };
            let inserted = sqlx::query(
                "INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id, reply_to)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (room_id, author_id, client_id) DO NOTHING",
            )
            .bind(msg.room_id.as_str())
            .bind(seq)
            .bind(msg.author.author_id.as_str())
            .bind(&msg.author.nickname)
            .bind(&msg.author.avatar)
            .bind(&msg.content)
            .bind(now)
            .bind(&msg.client_id)
            .bind(msg.reply_to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                out.push(Appended::stored(seq, now, true, reply));
                current = Some((msg.room_id.clone(), seq));
            } else {
                let row = sqlx::query("SELECT seq, created_at FROM messages WHERE room_id = ? AND author_id = ? AND client_id = ?")
                    .bind(msg.room_id.as_str())
                    .bind(msg.author.author_id.as_str())
                    .bind(&msg.client_id)
                    .fetch_one(&mut *tx)
                    .await?;
                out.push(Appended::stored(row.get(0), row.get(1), false, None));
                current = Some((msg.room_id.clone(), last_seq));
            }
        }
        if let Some((room, seq)) = current {
            save_counter(&mut tx, &room, seq).await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

async fn save_counter(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, room: &RoomId, seq: Seq) -> Result<(), StoreError> {
    sqlx::query("UPDATE rooms SET last_seq = ? WHERE id = ?").bind(seq).bind(room.as_str()).execute(&mut **tx).await?;
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
        async move { Ok(Queries(&self.writer).delete(&room, seq, author.as_ref()).await?) }.boxed()
    }

    fn report(&self, room: RoomId, seq: Seq, reporter: AuthorId, auto_hide: u32) -> BoxFuture<'_, Result<Report, StoreError>> {
        async move { Ok(Queries(&self.writer).report(&room, seq, &reporter, auto_hide).await?) }.boxed()
    }

    fn react(&self, room: RoomId, seq: Seq, author: AuthorId, emoji: Emoji, on: bool) -> BoxFuture<'_, Result<Reaction, StoreError>> {
        async move { Ok(Queries(&self.writer).react(&room, seq, &author, emoji, on).await?) }.boxed()
    }

    fn edit(&self, room: RoomId, seq: Seq, author: AuthorId, content: String, window_ms: i64) -> BoxFuture<'_, Result<Edit, StoreError>> {
        async move { Ok(Queries(&self.writer).edit(&room, seq, &author, &content, window_ms).await?) }.boxed()
    }

    fn reactions_by(&self, room: RoomId, author: AuthorId, from: Seq, to: Seq) -> BoxFuture<'_, Result<Vec<(Seq, Emoji)>, StoreError>> {
        async move { Ok(Queries(&self.readers).reactions_by(&room, &author, from, to).await?) }.boxed()
    }

    fn dismiss(&self, room: RoomId, seq: Seq) -> BoxFuture<'_, Result<Dismissal, StoreError>> {
        async move { Ok(Queries(&self.writer).dismiss(&room, seq).await?) }.boxed()
    }

    fn reports(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ReportedMessage>, StoreError>> {
        async move { Ok(Queries(&self.readers).reports(limit).await?) }.boxed()
    }

    fn ban(&self, room: RoomId, author: AuthorId, until: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.writer).ban(&room, &author, until).await?) }.boxed()
    }

    fn unban(&self, room: RoomId, author: AuthorId) -> BoxFuture<'_, Result<bool, StoreError>> {
        async move { Ok(Queries(&self.writer).unban(&room, &author).await?) }.boxed()
    }

    fn set_locked(&self, room: RoomId, locked: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.writer).set_locked(&room, locked).await?) }.boxed()
    }

    fn set_slow_mode(&self, room: RoomId, seconds: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.writer).set_slow_mode(&room, seconds).await?) }.boxed()
    }

    fn author_standing(&self, room: RoomId, author: AuthorId, upto: u32) -> BoxFuture<'_, Result<(u32, Option<i64>), StoreError>> {
        async move { Ok(Queries(&self.readers).author_standing(&room, &author, upto).await?) }.boxed()
    }

    fn pin(&self, room: RoomId, seq: Option<Seq>) -> BoxFuture<'_, Result<Option<Message>, StoreError>> {
        async move { Ok(Queries(&self.writer).pin(&room, seq).await?) }.boxed()
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

    // The deletes go through the single writer connection like the commits do, so each is one
    // short statement that a waiting commit follows at once (no busy waits, no second writer).
    fn prune_older_than(&self, before: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(Queries(&self.writer).prune_older_than(before, limit).await?) }.boxed()
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
        async move { Ok(Queries(&self.writer).prune_room(&room, upto, limit).await?) }.boxed()
    }

    fn prune_bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(Queries(&self.writer).prune_bans(now, limit).await?) }.boxed()
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
        async move { Ok(Queries(&self.writer).import_room(&state, &messages).await?) }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.readers).ping().await?) }.boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            self.readers.close().await;
            self.writer.close().await;
        }
        .boxed()
    }
}
