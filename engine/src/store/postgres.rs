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

use super::reads::Reads;
use super::{Appended, BanEntry, Deletion, NewMessage, RoomSnapshot, RoomSummary, Store, StoreError};
use crate::chat::{now_millis, AuthorId, Message, RoomId, Seq};

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
            for m in batch {
                rooms.push(m.room_id.as_str().to_string());
                authors.push(m.author.author_id.as_str().to_string());
                nicknames.push(m.author.nickname);
                avatars.push(m.author.avatar);
                contents.push(m.content);
                clients.push(m.client_id);
            }
            let rows = sqlx::query("SELECT seq, created_at, fresh FROM chat_append($1, $2, $3, $4, $5, $6) ORDER BY ord")
                .bind(rooms)
                .bind(authors)
                .bind(nicknames)
                .bind(avatars)
                .bind(contents)
                .bind(clients)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(|r| Appended { seq: r.get(0), created_at: r.get(1), fresh: r.get(2) }).collect())
        }
        .boxed()
    }

    fn load_room(&self, room: RoomId, recent: usize) -> BoxFuture<'_, Result<RoomSnapshot, StoreError>> {
        async move { Ok(Reads(&self.pool).load_room(&room, recent).await?) }.boxed()
    }

    fn history(&self, room: RoomId, before: Option<Seq>, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Reads(&self.pool).history(&room, before, limit).await?) }.boxed()
    }

    fn after(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Reads(&self.pool).after(&room, after, limit).await?) }.boxed()
    }

    fn last_seq(&self, room: RoomId) -> BoxFuture<'_, Result<Seq, StoreError>> {
        async move { Ok(Reads(&self.pool).last_seq(&room).await?) }.boxed()
    }

    fn delete(&self, room: RoomId, seq: Seq, author: Option<AuthorId>) -> BoxFuture<'_, Result<Deletion, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            let owner: Option<String> =
                sqlx::query_scalar("SELECT author_id FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL FOR UPDATE")
                    .bind(room.as_str())
                    .bind(seq)
                    .fetch_optional(&mut *tx)
                    .await?;
            let outcome = Deletion::decide(owner.as_deref(), author.as_ref());
            if outcome == Deletion::Deleted {
                sqlx::query("UPDATE messages SET content = '', deleted_at = $1 WHERE room_id = $2 AND seq = $3")
                    .bind(now_millis())
                    .bind(room.as_str())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE rooms SET pinned_seq = NULL WHERE id = $1 AND pinned_seq = $2")
                    .bind(room.as_str())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(outcome)
        }
        .boxed()
    }

    fn ban(&self, room: RoomId, author: AuthorId, until: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            sqlx::query(
                "INSERT INTO bans (room_id, author_id, until, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room_id, author_id) DO UPDATE SET until = excluded.until",
            )
            .bind(room.as_str())
            .bind(author.as_str())
            .bind(until)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn unban(&self, room: RoomId, author: AuthorId) -> BoxFuture<'_, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query("DELETE FROM bans WHERE room_id = $1 AND author_id = $2 AND until > $3")
                .bind(room.as_str())
                .bind(author.as_str())
                .bind(now_millis())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        }
        .boxed()
    }

    fn set_locked(&self, room: RoomId, locked: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let now = now_millis();
            sqlx::query("INSERT INTO rooms (id, last_seq, created_at, locked_at) VALUES ($1, 0, $2, $3) ON CONFLICT (id) DO UPDATE SET locked_at = excluded.locked_at")
                .bind(room.as_str())
                .bind(now)
                .bind(locked.then_some(now))
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn pin(&self, room: RoomId, seq: Option<Seq>) -> BoxFuture<'_, Result<Option<Message>, StoreError>> {
        async move {
            let mut tx = self.pool.begin().await?;
            let Some(seq) = seq else {
                sqlx::query("UPDATE rooms SET pinned_seq = NULL WHERE id = $1").bind(room.as_str()).execute(&mut *tx).await?;
                tx.commit().await?;
                return Ok(None);
            };
            // The message is read and the pin written in one transaction, so a delete cannot
            // slip in between and leave a deleted message pinned.
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL FOR UPDATE")
                    .bind(room.as_str())
                    .bind(seq)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Ok(None);
            }
            sqlx::query("UPDATE rooms SET pinned_seq = $1 WHERE id = $2").bind(seq).bind(room.as_str()).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Reads(&self.pool).message(&room, seq).await?)
        }
        .boxed()
    }

    fn rooms(&self, search: Option<String>, after: Option<RoomId>, limit: usize) -> BoxFuture<'_, Result<Vec<RoomSummary>, StoreError>> {
        async move { Ok(Reads(&self.pool).rooms(search.as_deref(), after.as_ref(), limit).await?) }.boxed()
    }

    fn author_messages(&self, author: AuthorId, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
        async move { Ok(Reads(&self.pool).author_messages(&author, limit).await?) }.boxed()
    }

    fn bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<BanEntry>, StoreError>> {
        async move { Ok(Reads(&self.pool).bans(now, limit).await?) }.boxed()
    }

    // Every pod prunes: the rows a delete picks are locked with SKIP LOCKED, so pods pruning at
    // once share the work instead of waiting on each other, and each row is deleted (and
    // counted) once. Commits never wait either: they insert new rows and lock only `rooms`.
    fn prune_older_than(&self, before: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let done = sqlx::query(
                "DELETE FROM messages WHERE (room_id, seq) IN
                 (SELECT room_id, seq FROM messages WHERE created_at < $1 ORDER BY created_at LIMIT $2
                  FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit as i64)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        }
        .boxed()
    }

    fn rooms_over(
        &self,
        keep: u64,
        protect: usize,
        after: Option<RoomId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(RoomId, Seq)>, StoreError>> {
        async move {
            let rows = sqlx::query(
                "SELECT r.id, LEAST(r.last_seq - $1, COALESCE(
                     (SELECT seq FROM messages WHERE room_id = r.id AND deleted_at IS NULL ORDER BY seq DESC LIMIT 1 OFFSET $2),
                     (SELECT MIN(seq) FROM messages WHERE room_id = r.id AND deleted_at IS NULL),
                     r.last_seq + 1) - 1)
                 FROM rooms r
                 WHERE r.id > $3 AND r.last_seq > $1
                   AND EXISTS (SELECT 1 FROM messages m WHERE m.room_id = r.id AND m.seq <= r.last_seq - $1)
                 ORDER BY r.id LIMIT $4",
            )
            .bind(keep as i64)
            .bind(protect.saturating_sub(1) as i64)
            .bind(after.as_ref().map_or("", RoomId::as_str))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().filter_map(|row| Some((RoomId::parse(row.get(0))?, row.get(1)))).collect())
        }
        .boxed()
    }

    fn prune_room(&self, room: RoomId, upto: Seq, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let done = sqlx::query(
                "DELETE FROM messages WHERE room_id = $1 AND seq IN
                 (SELECT seq FROM messages WHERE room_id = $1 AND seq <= $2 ORDER BY seq LIMIT $3
                  FOR UPDATE SKIP LOCKED)",
            )
            .bind(room.as_str())
            .bind(upto)
            .bind(limit as i64)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        }
        .boxed()
    }

    fn prune_bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let done = sqlx::query(
                "DELETE FROM bans WHERE (room_id, author_id) IN
                 (SELECT room_id, author_id FROM bans WHERE until <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now)
            .bind(limit as i64)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move { self.pool.close().await }.boxed()
    }
}
