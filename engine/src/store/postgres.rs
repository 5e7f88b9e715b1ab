//! The production store: Postgres through a bounded pool, shared by every pod. A batch is one
//! call of the `chat_append` function (see migrations/postgres), which locks each room's counter
//! row in the same transaction as the inserts: seq follows commit order across pods, and the
//! idempotency key is unique across pods.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::queries::Queries;
use super::transfer::{ExportedMessage, RoomState};
use super::{
    Appended, BanEntry, Deletion, Dismissal, Edit, NewMessage, Reaction, Report, ReportedMessage, RoomSnapshot, RoomSummary, Store,
    StoreError,
};
use crate::chat::{AuthorId, Emoji, Message, ReplyQuote, RoomId, Seq};

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn open(url: &str, timeout: Duration, max_connections: u32) -> Result<PgStore, StoreError> {
        // A pod that cannot reach Postgres at start fails fast (its orchestrator restarts it);
        // once running, it rides out outages: sends fail with `unavailable` and the pool reconnects.
        // The server cancels a statement that runs past the store timeout (a lock held elsewhere,
        // an overloaded server), so a failed commit is a clean rollback, never an unknown outcome.
        let options = PgConnectOptions::from_str(url)?.options([("statement_timeout", format!("{}", timeout.as_millis().max(1)))]);
        let pool = PgPoolOptions::new().max_connections(max_connections.max(2)).acquire_timeout(timeout).connect_with(options).await?;
        // sqlx takes an advisory lock for migrations, so pods starting together apply them once.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// Different rooms' batches do not wait on each other's locks, so a few commit in parallel.
    fn parallel_commits(&self) -> usize {
        4
    }

    fn append(&self, batch: Vec<NewMessage>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        async move {
            let mut rooms = Vec::with_capacity(batch.len());
            let mut authors = Vec::with_capacity(batch.len());
            let mut nicknames = Vec::with_capacity(batch.len());
            let mut avatars = Vec::with_capacity(batch.len());
            let mut contents = Vec::with_capacity(batch.len());
            let mut clients = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            for m in batch {
                rooms.push(m.room_id.as_str().to_string());
                authors.push(m.author.author_id.as_str().to_string());
                nicknames.push(m.author.nickname);
                avatars.push(m.author.avatar);
                contents.push(m.content);
                clients.push(m.client_id);
                replies.push(m.reply_to.unwrap_or(0));
            }
            let rows = sqlx::query(
                "SELECT seq, created_at, fresh, reply_author, reply_nickname, reply_excerpt, reply_missing
                 FROM chat_append($1, $2, $3, $4, $5, $6, $7) ORDER BY ord",
            )
            .bind(rooms)
            .bind(authors)
            .bind(nicknames)
            .bind(avatars)
            .bind(contents)
            .bind(clients)
            .bind(&replies)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .iter()
                .zip(replies)
                .map(|(r, original)| {
                    if r.get::<bool, _>(6) {
                        return Appended::reply_missing();
                    }
                    let reply = r.get::<Option<String>, _>(3).map(|author| {
                        let (nickname, excerpt): (Option<String>, Option<String>) = (r.get(4), r.get(5));
                        ReplyQuote::shown(
                            original,
                            AuthorId::from_store(&author),
                            nickname.unwrap_or_default(),
                            &excerpt.unwrap_or_default(),
                        )
                    });
                    Appended::stored(r.get(0), r.get(1), r.get(2), reply)
                })
                .collect())
        }
        .boxed()
    }

    fn load_room(&self, room: RoomId, recent: usize) -> BoxFuture<'_, Result<RoomSnapshot, StoreError>> {
        async move { Ok(Queries(&self.pool).load_room(&room, recent).await?) }.boxed()
    }

    fn history(&self, room: RoomId, before: Option<Seq>, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Queries(&self.pool).history(&room, before, limit).await?) }.boxed()
    }

    fn after(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Queries(&self.pool).after(&room, after, limit).await?) }.boxed()
    }

    fn last_seq(&self, room: RoomId) -> BoxFuture<'_, Result<Seq, StoreError>> {
        async move { Ok(Queries(&self.pool).last_seq(&room).await?) }.boxed()
    }

    fn delete(&self, room: RoomId, seq: Seq, author: Option<AuthorId>) -> BoxFuture<'_, Result<Deletion, StoreError>> {
        async move { Ok(Queries(&self.pool).delete(&room, seq, author.as_ref()).await?) }.boxed()
    }

    fn report(&self, room: RoomId, seq: Seq, reporter: AuthorId, auto_hide: u32) -> BoxFuture<'_, Result<Report, StoreError>> {
        async move { Ok(Queries(&self.pool).report(&room, seq, &reporter, auto_hide).await?) }.boxed()
    }

    fn react(&self, room: RoomId, seq: Seq, author: AuthorId, emoji: Emoji, on: bool) -> BoxFuture<'_, Result<Reaction, StoreError>> {
        async move { Ok(Queries(&self.pool).react(&room, seq, &author, emoji, on).await?) }.boxed()
    }

    fn edit(&self, room: RoomId, seq: Seq, author: AuthorId, content: String, window_ms: i64) -> BoxFuture<'_, Result<Edit, StoreError>> {
        async move { Ok(Queries(&self.pool).edit(&room, seq, &author, &content, window_ms).await?) }.boxed()
    }

    fn reactions_by(&self, room: RoomId, author: AuthorId, from: Seq, to: Seq) -> BoxFuture<'_, Result<Vec<(Seq, Emoji)>, StoreError>> {
        async move { Ok(Queries(&self.pool).reactions_by(&room, &author, from, to).await?) }.boxed()
    }

    fn dismiss(&self, room: RoomId, seq: Seq) -> BoxFuture<'_, Result<Dismissal, StoreError>> {
        async move { Ok(Queries(&self.pool).dismiss(&room, seq).await?) }.boxed()
    }

    fn reports(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ReportedMessage>, StoreError>> {
        async move { Ok(Queries(&self.pool).reports(limit).await?) }.boxed()
    }

    fn ban(&self, room: RoomId, author: AuthorId, until: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.pool).ban(&room, &author, until).await?) }.boxed()
    }

    fn unban(&self, room: RoomId, author: AuthorId) -> BoxFuture<'_, Result<bool, StoreError>> {
        async move { Ok(Queries(&self.pool).unban(&room, &author).await?) }.boxed()
    }

    fn set_locked(&self, room: RoomId, locked: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.pool).set_locked(&room, locked).await?) }.boxed()
    }

    fn set_slow_mode(&self, room: RoomId, seconds: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.pool).set_slow_mode(&room, seconds).await?) }.boxed()
    }

    fn author_standing(&self, room: RoomId, author: AuthorId, upto: u32) -> BoxFuture<'_, Result<(u32, Option<i64>), StoreError>> {
        async move { Ok(Queries(&self.pool).author_standing(&room, &author, upto).await?) }.boxed()
    }

    fn pin(&self, room: RoomId, seq: Option<Seq>) -> BoxFuture<'_, Result<Option<Message>, StoreError>> {
        async move { Ok(Queries(&self.pool).pin(&room, seq).await?) }.boxed()
    }

    fn rooms(&self, search: Option<String>, after: Option<RoomId>, limit: usize) -> BoxFuture<'_, Result<Vec<RoomSummary>, StoreError>> {
        async move { Ok(Queries(&self.pool).rooms(search.as_deref(), after.as_ref(), limit).await?) }.boxed()
    }

    fn author_messages(&self, author: AuthorId, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Queries(&self.pool).author_messages(&author, limit).await?) }.boxed()
    }

    fn bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<BanEntry>, StoreError>> {
        async move { Ok(Queries(&self.pool).bans(now, limit).await?) }.boxed()
    }

    // Every pod prunes; the rows a delete picks are skipped by the others (`Dialect::SKIP_LOCKED`).
    // Commits never wait on pruning: they insert new rows and lock only `rooms`.
    fn prune_older_than(&self, before: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(Queries(&self.pool).prune_older_than(before, limit).await?) }.boxed()
    }

    fn rooms_over(
        &self,
        keep: u64,
        protect: usize,
        after: Option<RoomId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(RoomId, Seq)>, StoreError>> {
        async move { Ok(Queries(&self.pool).rooms_over(keep, protect, after.as_ref(), limit).await?) }.boxed()
    }

    fn prune_room(&self, room: RoomId, upto: Seq, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(Queries(&self.pool).prune_room(&room, upto, limit).await?) }.boxed()
    }

    fn prune_bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(Queries(&self.pool).prune_bans(now, limit).await?) }.boxed()
    }

    fn message_counts(&self, rooms: Vec<RoomId>) -> BoxFuture<'_, Result<Vec<(RoomId, i64)>, StoreError>> {
        async move { Ok(Queries(&self.pool).message_counts(&rooms).await?) }.boxed()
    }

    fn room_state(&self, room: RoomId) -> BoxFuture<'_, Result<Option<RoomState>, StoreError>> {
        async move { Ok(Queries(&self.pool).room_state(&room).await?) }.boxed()
    }

    fn export_page(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<ExportedMessage>, StoreError>> {
        async move { Ok(Queries(&self.pool).export_page(&room, after, limit).await?) }.boxed()
    }

    fn import_room(&self, state: RoomState, messages: Vec<ExportedMessage>) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { Ok(Queries(&self.pool).import_room(&state, &messages).await?) }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(Queries(&self.pool).ping().await?) }.boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move { self.pool.close().await }.boxed()
    }
}
