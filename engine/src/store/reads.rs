//! The reads both stores make, written once. Their SQL is the same on SQLite and Postgres (sqlx
//! binds `$1`, `$2`, ... by number on SQLite too), so only the pool differs. Writes and pruning
//! stay with each store, where the dialects differ: locking, batch commits, `LEAST` vs `MIN`.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::{BanEntry, RoomSnapshot, RoomSummary};
use crate::chat::{now_millis, AuthorId, Message, RoomId, Seq};

/// The columns `message_from` reads, in its order.
const MESSAGE_COLUMNS: &str = "seq, room_id, author_id, nickname, avatar, content, created_at, client_id";

/// A store's read pool. The bounds say that sqlx can bind and read back text and 64-bit integers
/// on the database, which both of ours can.
pub struct Reads<'p, DB: Database>(pub &'p Pool<DB>);

impl<DB> Reads<'_, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// The counter, the newest `recent` messages and the active bans of a room.
    pub async fn load_room(&self, room: &RoomId, recent: usize) -> Result<RoomSnapshot, sqlx::Error> {
        let last_seq = self.last_seq(room).await?;
        let recent = self.history(room, None, recent).await?;
        let bans = sqlx::query("SELECT author_id, until FROM bans WHERE room_id = $1 AND until > $2")
            .bind(room.as_str())
            .bind(now_millis())
            .fetch_all(self.0)
            .await?
            .iter()
            .map(|row| (AuthorId::from_store(row.get(0)), row.get::<i64, _>(1)))
            .collect();
        let (locked, pinned) = self.lock_and_pin(room).await?;
        Ok(RoomSnapshot { last_seq, recent, bans, locked, pinned })
    }

    /// Whether the room is locked, and its pinned message (unless deleted).
    pub async fn lock_and_pin(&self, room: &RoomId) -> Result<(bool, Option<Message>), sqlx::Error> {
        let Some(row) =
            sqlx::query("SELECT locked_at, pinned_seq FROM rooms WHERE id = $1").bind(room.as_str()).fetch_optional(self.0).await?
        else {
            return Ok((false, None));
        };
        let locked = row.get::<Option<i64>, _>(0).is_some();
        let pinned = match row.get::<Option<i64>, _>(1) {
            Some(seq) => self.message(room, seq).await?,
            None => None,
        };
        Ok((locked, pinned))
    }

    /// One message of a room, unless it is deleted.
    pub async fn message(&self, room: &RoomId, seq: Seq) -> Result<Option<Message>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL"))
            .bind(room.as_str())
            .bind(seq)
            .fetch_optional(self.0)
            .await?;
        Ok(row.map(|row| message_from(&row, room)))
    }

    /// See `Store::rooms`. The search matches ids literally (`_` is escaped for `LIKE`).
    pub async fn rooms(&self, search: Option<&str>, after: Option<&RoomId>, limit: usize) -> Result<Vec<RoomSummary>, sqlx::Error> {
        let pattern = format!("%{}%", search.unwrap_or("").replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let rows = sqlx::query(
            "SELECT r.id,
                    (SELECT COUNT(*) FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NULL),
                    (SELECT MAX(m.created_at) FROM messages m WHERE m.room_id = r.id),
                    r.locked_at
             FROM rooms r
             WHERE r.id > $1 AND r.id LIKE $2 ESCAPE '\\'
             ORDER BY r.id LIMIT $3",
        )
        .bind(after.map_or("", RoomId::as_str))
        .bind(pattern.as_str())
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(RoomSummary {
                    id: RoomId::parse(row.get(0))?,
                    messages: row.get(1),
                    last_activity: row.get(2),
                    locked: row.get::<Option<i64>, _>(3).is_some(),
                })
            })
            .collect())
    }

    /// See `Store::author_messages`.
    pub async fn author_messages(&self, author: &AuthorId, limit: usize) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE author_id = $1 AND deleted_at IS NULL
             ORDER BY created_at DESC, room_id, seq DESC LIMIT $2"
        ))
        .bind(author.as_str())
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        Ok(rows.iter().filter_map(|row| Some(message_from(row, &RoomId::parse(row.get(1))?))).collect())
    }

    /// See `Store::bans`.
    pub async fn bans(&self, now: i64, limit: usize) -> Result<Vec<BanEntry>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT room_id, author_id, until FROM bans WHERE until > $1 ORDER BY until DESC, room_id, author_id LIMIT $2")
                .bind(now)
                .bind(limit as i64)
                .fetch_all(self.0)
                .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(BanEntry { room: RoomId::parse(row.get(0))?, author: AuthorId::from_store(row.get(1)), until: row.get(2) })
            })
            .collect())
    }

    /// See `Store::history`.
    pub async fn history(&self, room: &RoomId, before: Option<Seq>, limit: usize) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE room_id = $1 AND seq < $2 AND deleted_at IS NULL
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(room.as_str())
        .bind(before.unwrap_or(Seq::MAX))
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        Ok(rows.iter().rev().map(|row| message_from(row, room)).collect())
    }

    /// See `Store::after`.
    pub async fn after(&self, room: &RoomId, after: Seq, limit: usize) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE room_id = $1 AND seq > $2 AND deleted_at IS NULL
             ORDER BY seq LIMIT $3"
        ))
        .bind(room.as_str())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        Ok(rows.iter().map(|row| message_from(row, room)).collect())
    }

    /// The room's counter; 0 for a room that never stored a message.
    pub async fn last_seq(&self, room: &RoomId) -> Result<Seq, sqlx::Error> {
        let seq =
            sqlx::query_scalar::<_, Seq>("SELECT last_seq FROM rooms WHERE id = $1").bind(room.as_str()).fetch_optional(self.0).await?;
        Ok(seq.unwrap_or(0))
    }
}

/// A `Message` from a row of `MESSAGE_COLUMNS`.
fn message_from<R>(row: &R, room_id: &RoomId) -> Message
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Message {
        seq: row.get(0),
        room_id: room_id.clone(),
        author_id: AuthorId::from_store(row.get(2)),
        nickname: row.get(3),
        avatar: row.get(4),
        content: row.get(5),
        created_at: row.get(6),
        client_id: row.get(7),
    }
}
