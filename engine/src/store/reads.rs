//! The reads both stores make, written once. Their SQL is the same on SQLite and Postgres (sqlx
//! binds `$1`, `$2`, ... by number on SQLite too), so only the pool differs. Writes and pruning
//! stay with each store, where the dialects differ: locking, batch commits, `LEAST` vs `MIN`.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::RoomSnapshot;
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
        Ok(RoomSnapshot { last_seq, recent, bans })
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
