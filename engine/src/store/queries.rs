//! The statements both stores make, written once: every read, and every write but the batch
//! commit. Their SQL is the same on SQLite and Postgres (sqlx binds `$1`, `$2`, ... by number on
//! SQLite too) but for what `Dialect` says: Postgres locks the rows a write is about to change, and
//! spells the two-argument minimum `LEAST`. The batch commit stays with each store (a `chat_append`
//! call on Postgres, statements on one connection on SQLite).

use sqlx::postgres::PgQueryResult;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::transfer::{ExportedMessage, RoomState};
use super::{BanEntry, Deletion, Dismissal, Edit, Reaction, Report, ReportedMessage, RoomSnapshot, RoomSummary};
use crate::chat::{now_millis, AuthorId, Emoji, Message, Reactions, ReplyQuote, RoomId, Seq, EXCERPT_CHARS};

/// What differs between our two databases in the shared statements.
pub trait Dialect: Database {
    /// Ends a `SELECT` of rows a transaction is about to change. Postgres locks them against
    /// another pod's transaction; SQLite has a single writer, so there is nobody to lock out.
    const LOCK_ROWS: &'static str;
    /// Ends a pruning `SELECT`: on Postgres, pods pruning at once skip the rows another is
    /// deleting instead of waiting for them, so each row is deleted (and counted) once.
    const SKIP_LOCKED: &'static str;
    /// The two-argument minimum.
    const LEAST: &'static str;
    /// The two-argument maximum.
    const GREATEST: &'static str;
    /// Joins a group's strings with a separator.
    const STRING_AGG: &'static str;
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

impl Dialect for sqlx::Postgres {
    const LOCK_ROWS: &'static str = "FOR UPDATE";
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    const LEAST: &'static str = "LEAST";
    const GREATEST: &'static str = "GREATEST";
    const STRING_AGG: &'static str = "string_agg";
    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

impl Dialect for sqlx::Sqlite {
    const LOCK_ROWS: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const LEAST: &'static str = "MIN";
    const GREATEST: &'static str = "MAX";
    const STRING_AGG: &'static str = "group_concat";
    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// `SELECT` of the columns `message_from` reads, in its order, from `messages m` joined with the
/// message each one answers (`q`, absent when there is none or it was pruned) and with its
/// reactions' emoji, one per reader and emoji. Statements add their `WHERE` on `m`.
fn select_messages<DB: Dialect>() -> String {
    format!(
        "SELECT m.seq, m.room_id, m.author_id, m.nickname, m.avatar, m.content, m.created_at, m.client_id,
                m.edited_at, m.reply_to, q.author_id, q.nickname, substr(q.content, 1, {EXCERPT_CHARS}), q.deleted_at, q.hidden_at,
                (SELECT {}(r.emoji, ',') FROM reactions r WHERE r.room_id = m.room_id AND r.seq = m.seq)",
        DB::STRING_AGG
    )
}

/// The join `select_messages` reads from.
const MESSAGES_JOINED: &str = "messages m LEFT JOIN messages q ON q.room_id = m.room_id AND q.seq = m.reply_to";
/// Columns `select_messages` reads; a statement's own columns follow.
const MESSAGE_COLUMN_COUNT: usize = 16;

/// A store's pool (on SQLite: the readers for reads, the writer for writes). The bounds say that
/// sqlx can bind and read back text and 64-bit integers on the database, which both of ours can.
pub struct Queries<'p, DB: Database>(pub &'p Pool<DB>);

impl<DB> Queries<'_, DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// The bans of a room still running, by author.
    async fn active_bans(&self, room: &RoomId) -> Result<Vec<(AuthorId, i64)>, sqlx::Error> {
        Ok(sqlx::query("SELECT author_id, until FROM bans WHERE room_id = $1 AND until > $2 ORDER BY author_id")
            .bind(room.as_str())
            .bind(now_millis())
            .fetch_all(self.0)
            .await?
            .iter()
            .map(|row| (AuthorId::from_store(row.get(0)), row.get::<i64, _>(1)))
            .collect())
    }

    /// The counter, the newest `recent` messages and the active bans of a room.
    pub async fn load_room(&self, room: &RoomId, recent: usize) -> Result<RoomSnapshot, sqlx::Error> {
        let last_seq = self.last_seq(room).await?;
        let recent = self.history(room, None, recent).await?;
        let bans = self.active_bans(room).await?;
        let (locked, pinned) = self.lock_and_pin(room).await?;
        let slow_mode = self.slow_mode(room).await?;
        // Who reacted to what, for the messages the room holds in memory: each reader's welcome
        // says which of them are its own.
        let from = recent.first().map_or(Seq::MAX, |m| m.seq);
        let pinned_seq = pinned.as_ref().map_or(0, |m| m.seq);
        let reactions = sqlx::query("SELECT seq, author_id, emoji FROM reactions WHERE room_id = $1 AND (seq >= $2 OR seq = $3)")
            .bind(room.as_str())
            .bind(from)
            .bind(pinned_seq)
            .fetch_all(self.0)
            .await?
            .iter()
            .filter_map(|row| Some((row.get::<i64, _>(0), AuthorId::from_store(row.get(1)), Emoji::parse(row.get(2))?)))
            .collect();
        Ok(RoomSnapshot { last_seq, recent, bans, locked, pinned, slow_mode, reactions })
    }

    /// See `Store::reactions_by`.
    pub async fn reactions_by(&self, room: &RoomId, author: &AuthorId, from: Seq, to: Seq) -> Result<Vec<(Seq, Emoji)>, sqlx::Error> {
        Ok(sqlx::query(
            "SELECT seq, emoji FROM reactions WHERE room_id = $1 AND author_id = $2 AND seq >= $3 AND seq <= $4 ORDER BY seq, emoji",
        )
        .bind(room.as_str())
        .bind(author.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(self.0)
        .await?
        .iter()
        .filter_map(|row| Some((row.get::<i64, _>(0), Emoji::parse(row.get(1))?)))
        .collect())
    }

    /// See `Store::react`. The message row is locked first, so reactions from several pods at
    /// once are counted one after the other.
    pub async fn react(&self, room: &RoomId, seq: Seq, author: &AuthorId, emoji: Emoji, on: bool) -> Result<Reaction, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT seq FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL AND hidden_at IS NULL {}",
            DB::LOCK_ROWS
        ))
        .bind(room.as_str())
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(Reaction::NotFound);
        }
        let done = if on {
            sqlx::query(
                "INSERT INTO reactions (room_id, seq, author_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (room_id, seq, author_id, emoji) DO NOTHING",
            )
            .bind(room.as_str())
            .bind(seq)
            .bind(author.as_str())
            .bind(emoji.as_str())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query("DELETE FROM reactions WHERE room_id = $1 AND seq = $2 AND author_id = $3 AND emoji = $4")
                .bind(room.as_str())
                .bind(seq)
                .bind(author.as_str())
                .bind(emoji.as_str())
                .execute(&mut *tx)
                .await?
        };
        let changed = DB::rows_affected(&done) > 0;
        let emoji_list: Vec<String> = sqlx::query_scalar("SELECT emoji FROM reactions WHERE room_id = $1 AND seq = $2")
            .bind(room.as_str())
            .bind(seq)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut counts = Reactions::default();
        for emoji in emoji_list.iter().filter_map(|e| Emoji::parse(e)) {
            counts.add(emoji);
        }
        Ok(Reaction::Done { changed, counts })
    }

    /// See `Store::edit`: the message is read (and on Postgres locked) and changed in one
    /// transaction, so a delete or another edit cannot slip in between.
    pub async fn edit(&self, room: &RoomId, seq: Seq, author: &AuthorId, content: &str, window_ms: i64) -> Result<Edit, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT author_id, created_at, content FROM messages
             WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL AND hidden_at IS NULL {}",
            DB::LOCK_ROWS
        ))
        .bind(room.as_str())
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(Edit::NotFound) };
        if row.get::<String, _>(0) != author.as_str() {
            return Ok(Edit::Forbidden);
        }
        let now = now_millis();
        if now - row.get::<i64, _>(1) >= window_ms {
            return Ok(Edit::Expired);
        }
        let unchanged = row.get::<String, _>(2) == content;
        if !unchanged {
            sqlx::query("UPDATE messages SET content = $1, edited_at = $2 WHERE room_id = $3 AND seq = $4")
                .bind(content)
                .bind(now)
                .bind(room.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // Deleted since the commit: as if it had been deleted first.
        Ok(match self.message(room, seq).await? {
            None => Edit::NotFound,
            Some(message) if unchanged => Edit::Unchanged(message),
            Some(message) => Edit::Edited(message),
        })
    }

    /// The room's slow mode in seconds (0: off).
    pub async fn slow_mode(&self, room: &RoomId) -> Result<u32, sqlx::Error> {
        let row = sqlx::query("SELECT slow_mode_s FROM rooms WHERE id = $1").bind(room.as_str()).fetch_optional(self.0).await?;
        Ok(row.map_or(0, |row| u32::try_from(row.get::<i64, _>(0)).unwrap_or(0)))
    }

    /// See `Store::author_standing`.
    pub async fn author_standing(&self, room: &RoomId, author: &AuthorId, upto: u32) -> Result<(u32, Option<i64>), sqlx::Error> {
        let rows = sqlx::query(
            "SELECT created_at FROM messages
             WHERE author_id = $1 AND room_id = $2 AND deleted_at IS NULL AND hidden_at IS NULL
             ORDER BY created_at LIMIT $3",
        )
        .bind(author.as_str())
        .bind(room.as_str())
        .bind(i64::from(upto))
        .fetch_all(self.0)
        .await?;
        let first = rows.first().map(|row| row.get::<i64, _>(0));
        Ok((rows.len() as u32, first))
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

    /// One message of a room, unless it is deleted or hidden.
    pub async fn message(&self, room: &RoomId, seq: Seq) -> Result<Option<Message>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "{} FROM {MESSAGES_JOINED} WHERE m.room_id = $1 AND m.seq = $2 AND m.deleted_at IS NULL AND m.hidden_at IS NULL",
            select_messages::<DB>()
        ))
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
            "{} FROM {MESSAGES_JOINED}
             WHERE m.author_id = $1 AND m.deleted_at IS NULL
             ORDER BY m.created_at DESC, m.room_id, m.seq DESC LIMIT $2",
            select_messages::<DB>()
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
            "{} FROM {MESSAGES_JOINED}
             WHERE m.room_id = $1 AND m.seq < $2 AND m.deleted_at IS NULL AND m.hidden_at IS NULL
             ORDER BY m.seq DESC LIMIT $3",
            select_messages::<DB>()
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
            "{} FROM {MESSAGES_JOINED}
             WHERE m.room_id = $1 AND m.seq > $2 AND m.deleted_at IS NULL AND m.hidden_at IS NULL
             ORDER BY m.seq LIMIT $3",
            select_messages::<DB>()
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

    /// See `Store::delete`. The message is read and marked in one transaction; deleting the
    /// pinned message unpins it, and its reports leave the owner's queue.
    pub async fn delete(&self, room: &RoomId, seq: Seq, author: Option<&AuthorId>) -> Result<Deletion, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let owner: Option<String> = sqlx::query_scalar(&format!(
            "SELECT author_id FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL {}",
            DB::LOCK_ROWS
        ))
        .bind(room.as_str())
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = Deletion::decide(owner.as_deref(), author);
        if outcome == Deletion::Deleted {
            sqlx::query("UPDATE messages SET content = '', deleted_at = $1 WHERE room_id = $2 AND seq = $3")
                .bind(now_millis())
                .bind(room.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            self.unpin_in(&mut tx, room, seq).await?;
            sqlx::query("DELETE FROM reports WHERE room_id = $1 AND seq = $2").bind(room.as_str()).bind(seq).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM reactions WHERE room_id = $1 AND seq = $2").bind(room.as_str()).bind(seq).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Removes the pin if it is this message (it is going from readers' sight).
    async fn unpin_in(&self, tx: &mut sqlx::Transaction<'_, DB>, room: &RoomId, seq: Seq) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE rooms SET pinned_seq = NULL WHERE id = $1 AND pinned_seq = $2")
            .bind(room.as_str())
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// See `Store::report`. The message row is locked first, so reports from several pods at
    /// once count one after the other and only one of them hides it.
    pub async fn report(&self, room: &RoomId, seq: Seq, reporter: &AuthorId, auto_hide: u32) -> Result<Report, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT author_id, hidden_at, kept_at FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL {}",
            DB::LOCK_ROWS
        ))
        .bind(room.as_str())
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(Report::NotFound) };
        if row.get::<String, _>(0) == reporter.as_str() {
            return Ok(Report::Forbidden);
        }
        let (hidden, kept) = (row.get::<Option<i64>, _>(1).is_some(), row.get::<Option<i64>, _>(2).is_some());
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO reports (room_id, seq, reporter_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, seq, reporter_id) DO NOTHING",
        )
        .bind(room.as_str())
        .bind(seq)
        .bind(reporter.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let fresh = DB::rows_affected(&inserted) > 0;
        let reports: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE room_id = $1 AND seq = $2")
            .bind(room.as_str())
            .bind(seq)
            .fetch_one(&mut *tx)
            .await?;
        let hide = auto_hide > 0 && reports >= i64::from(auto_hide) && !hidden && !kept;
        if hide {
            sqlx::query("UPDATE messages SET hidden_at = $1 WHERE room_id = $2 AND seq = $3")
                .bind(now)
                .bind(room.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            self.unpin_in(&mut tx, room, seq).await?;
        }
        tx.commit().await?;
        Ok(Report::Recorded { fresh, reports, hidden: hide, already_hidden: hidden })
    }

    /// See `Store::dismiss`.
    pub async fn dismiss(&self, room: &RoomId, seq: Seq) -> Result<Dismissal, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let hidden: Option<Option<i64>> = sqlx::query_scalar(&format!(
            "SELECT hidden_at FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL {}",
            DB::LOCK_ROWS
        ))
        .bind(room.as_str())
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(hidden) = hidden else { return Ok(Dismissal::NoReports) };
        let cleared =
            sqlx::query("DELETE FROM reports WHERE room_id = $1 AND seq = $2").bind(room.as_str()).bind(seq).execute(&mut *tx).await?;
        if DB::rows_affected(&cleared) == 0 {
            return Ok(Dismissal::NoReports);
        }
        sqlx::query("UPDATE messages SET kept_at = $1, hidden_at = NULL WHERE room_id = $2 AND seq = $3")
            .bind(now_millis())
            .bind(room.as_str())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if hidden.is_none() {
            return Ok(Dismissal::Kept);
        }
        // Deleted since the commit: there is nothing to show again.
        Ok(self.message(room, seq).await?.map_or(Dismissal::Kept, |m| Dismissal::Restored(Box::new(m))))
    }

    /// See `Store::reports`. Grouped by the message's key, so its other columns may be selected.
    pub async fn reports(&self, limit: usize) -> Result<Vec<ReportedMessage>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "{}, g.n, g.last_at, m.hidden_at
             FROM (SELECT room_id, seq, COUNT(*) AS n, MAX(created_at) AS last_at, MIN(created_at) AS first_at
                   FROM reports GROUP BY room_id, seq) g
             JOIN messages m ON m.room_id = g.room_id AND m.seq = g.seq
             LEFT JOIN messages q ON q.room_id = m.room_id AND q.seq = m.reply_to
             WHERE m.deleted_at IS NULL
             ORDER BY g.n DESC, g.first_at, m.room_id, m.seq LIMIT $1",
            select_messages::<DB>()
        ))
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(ReportedMessage {
                    message: message_from(row, &RoomId::parse(row.get(1))?),
                    reports: row.get(MESSAGE_COLUMN_COUNT),
                    last_reported_at: row.get(MESSAGE_COLUMN_COUNT + 1),
                    hidden: row.get::<Option<i64>, _>(MESSAGE_COLUMN_COUNT + 2).is_some(),
                })
            })
            .collect())
    }

    /// See `Store::ban`.
    pub async fn ban(&self, room: &RoomId, author: &AuthorId, until: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO bans (room_id, author_id, until, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, author_id) DO UPDATE SET until = excluded.until",
        )
        .bind(room.as_str())
        .bind(author.as_str())
        .bind(until)
        .bind(now_millis())
        .execute(self.0)
        .await?;
        Ok(())
    }

    /// See `Store::unban`.
    pub async fn unban(&self, room: &RoomId, author: &AuthorId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM bans WHERE room_id = $1 AND author_id = $2 AND until > $3")
            .bind(room.as_str())
            .bind(author.as_str())
            .bind(now_millis())
            .execute(self.0)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    /// See `Store::set_locked`. Locking a room nobody wrote in yet creates its row.
    pub async fn set_locked(&self, room: &RoomId, locked: bool) -> Result<(), sqlx::Error> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO rooms (id, last_seq, created_at, locked_at) VALUES ($1, 0, $2, $3)
             ON CONFLICT (id) DO UPDATE SET locked_at = excluded.locked_at",
        )
        .bind(room.as_str())
        .bind(now)
        .bind(locked.then_some(now))
        .execute(self.0)
        .await?;
        Ok(())
    }

    /// See `Store::set_slow_mode`. Like a lock, on a room nobody wrote in yet it creates its row.
    pub async fn set_slow_mode(&self, room: &RoomId, seconds: u32) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO rooms (id, last_seq, created_at, slow_mode_s) VALUES ($1, 0, $2, $3)
             ON CONFLICT (id) DO UPDATE SET slow_mode_s = excluded.slow_mode_s",
        )
        .bind(room.as_str())
        .bind(now_millis())
        .bind(i64::from(seconds))
        .execute(self.0)
        .await?;
        Ok(())
    }

    /// See `Store::pin`. The message is read and the pin written in one transaction, so a delete
    /// cannot slip in between and leave a deleted message pinned.
    pub async fn pin(&self, room: &RoomId, seq: Option<Seq>) -> Result<Option<Message>, sqlx::Error> {
        let mut tx = self.0.begin().await?;
        let Some(seq) = seq else {
            sqlx::query("UPDATE rooms SET pinned_seq = NULL WHERE id = $1").bind(room.as_str()).execute(&mut *tx).await?;
            tx.commit().await?;
            return Ok(None);
        };
        let exists: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT seq FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NULL AND hidden_at IS NULL {}",
            DB::LOCK_ROWS
        ))
        .bind(room.as_str())
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(None);
        }
        sqlx::query("UPDATE rooms SET pinned_seq = $1 WHERE id = $2").bind(seq).bind(room.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        self.message(room, seq).await
    }

    /// See `Store::prune_older_than`.
    pub async fn prune_older_than(&self, before: i64, limit: usize) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(&format!(
            "DELETE FROM messages WHERE (room_id, seq) IN
             (SELECT room_id, seq FROM messages WHERE created_at < $1 ORDER BY created_at LIMIT $2 {})",
            DB::SKIP_LOCKED
        ))
        .bind(before)
        .bind(limit as i64)
        .execute(self.0)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    /// See `Store::rooms_over`.
    pub async fn rooms_over(
        &self,
        keep: u64,
        protect: usize,
        after: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<(RoomId, Seq)>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT r.id, {}(r.last_seq - $1, COALESCE(
                 (SELECT seq FROM messages WHERE room_id = r.id AND deleted_at IS NULL ORDER BY seq DESC LIMIT 1 OFFSET $2),
                 (SELECT MIN(seq) FROM messages WHERE room_id = r.id AND deleted_at IS NULL),
                 r.last_seq + 1) - 1)
             FROM rooms r
             WHERE r.id > $3 AND r.last_seq > $1
               AND EXISTS (SELECT 1 FROM messages m WHERE m.room_id = r.id AND m.seq <= r.last_seq - $1)
             ORDER BY r.id LIMIT $4",
            DB::LEAST
        ))
        .bind(keep as i64)
        .bind(protect.saturating_sub(1) as i64)
        .bind(after.map_or("", RoomId::as_str))
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        Ok(rows.iter().filter_map(|row| Some((RoomId::parse(row.get(0))?, row.get(1)))).collect())
    }

    /// See `Store::prune_room`.
    pub async fn prune_room(&self, room: &RoomId, upto: Seq, limit: usize) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(&format!(
            "DELETE FROM messages WHERE room_id = $1 AND seq IN
             (SELECT seq FROM messages WHERE room_id = $1 AND seq <= $2 ORDER BY seq LIMIT $3 {})",
            DB::SKIP_LOCKED
        ))
        .bind(room.as_str())
        .bind(upto)
        .bind(limit as i64)
        .execute(self.0)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    /// See `Store::prune_bans`.
    pub async fn prune_bans(&self, now: i64, limit: usize) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(&format!(
            "DELETE FROM bans WHERE (room_id, author_id) IN
             (SELECT room_id, author_id FROM bans WHERE until <= $1 LIMIT $2 {})",
            DB::SKIP_LOCKED
        ))
        .bind(now)
        .bind(limit as i64)
        .execute(self.0)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    /// See `Store::message_counts`: one grouped query for every room asked about.
    pub async fn message_counts(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, i64)>, sqlx::Error> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=rooms.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT room_id, COUNT(*) FROM messages
             WHERE room_id IN ({}) AND deleted_at IS NULL AND hidden_at IS NULL
             GROUP BY room_id",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for room in rooms {
            query = query.bind(room.as_str());
        }
        let rows = query.fetch_all(self.0).await?;
        Ok(rows.iter().filter_map(|row| Some((RoomId::parse(row.get(0))?, row.get(1)))).collect())
    }

    /// See `Store::room_state`.
    pub async fn room_state(&self, room: &RoomId) -> Result<Option<RoomState>, sqlx::Error> {
        let Some(row) = sqlx::query("SELECT last_seq, locked_at, pinned_seq FROM rooms WHERE id = $1")
            .bind(room.as_str())
            .fetch_optional(self.0)
            .await?
        else {
            return Ok(None);
        };
        let bans = self.active_bans(room).await?;
        Ok(Some(RoomState {
            id: room.clone(),
            last_seq: row.get(0),
            locked: row.get::<Option<i64>, _>(1).is_some(),
            pinned: row.get(2),
            bans,
        }))
    }

    /// See `Store::export_page`.
    pub async fn export_page(&self, room: &RoomId, after: Seq, limit: usize) -> Result<Vec<ExportedMessage>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "{}, m.deleted_at, m.hidden_at FROM {MESSAGES_JOINED} WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3",
            select_messages::<DB>()
        ))
        .bind(room.as_str())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.0)
        .await?;
        let mut page: Vec<ExportedMessage> = rows
            .iter()
            .map(|row| ExportedMessage {
                message: message_from(row, room),
                deleted: row.get::<Option<i64>, _>(MESSAGE_COLUMN_COUNT).is_some(),
                hidden: row.get::<Option<i64>, _>(MESSAGE_COLUMN_COUNT + 1).is_some(),
                reactors: Vec::new(),
            })
            .collect();
        let (Some(first), Some(last)) = (page.first().map(|m| m.message.seq), page.last().map(|m| m.message.seq)) else {
            return Ok(page);
        };
        // Who reacted, so an import restores each reader's reactions (one per reader and emoji).
        let reactors = sqlx::query(
            "SELECT seq, emoji, author_id FROM reactions WHERE room_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq, author_id, emoji",
        )
        .bind(room.as_str())
        .bind(first)
        .bind(last)
        .fetch_all(self.0)
        .await?;
        let mut at = 0;
        for row in &reactors {
            let seq: Seq = row.get(0);
            let Some(emoji) = Emoji::parse(row.get(1)) else { continue };
            while page.get(at).is_some_and(|m| m.message.seq < seq) {
                at += 1;
            }
            if let Some(m) = page.get_mut(at).filter(|m| m.message.seq == seq) {
                m.reactors.push((emoji, AuthorId::from_store(row.get(2))));
            }
        }
        Ok(page)
    }

    /// See `Store::import_room`: the room, its bans and its messages in one transaction. A
    /// message whose (room, seq) or idempotency key is already stored is skipped, so importing
    /// the same file twice changes nothing; the counter only ever moves up.
    pub async fn import_room(&self, state: &RoomState, messages: &[ExportedMessage]) -> Result<u64, sqlx::Error> {
        let now = now_millis();
        let last_seq = messages.iter().map(|m| m.message.seq).fold(state.last_seq, Seq::max);
        let mut tx = self.0.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO rooms (id, last_seq, created_at, locked_at, pinned_seq) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET last_seq = {}(rooms.last_seq, excluded.last_seq),
                 locked_at = excluded.locked_at, pinned_seq = excluded.pinned_seq",
            DB::GREATEST
        ))
        .bind(state.id.as_str())
        .bind(last_seq)
        .bind(messages.first().map_or(now, |m| m.message.created_at))
        .bind(state.locked.then_some(now))
        .bind(state.pinned)
        .execute(&mut *tx)
        .await?;
        for (author, until) in &state.bans {
            sqlx::query(
                "INSERT INTO bans (room_id, author_id, until, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room_id, author_id) DO UPDATE SET until = excluded.until",
            )
            .bind(state.id.as_str())
            .bind(author.as_str())
            .bind(*until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let mut inserted = 0;
        for m in messages {
            let (msg, gone) = (&m.message, |flag: bool| flag.then_some(now));
            let done = sqlx::query(
                "INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id, deleted_at, hidden_at,
                                       reply_to, edited_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
            )
            .bind(state.id.as_str())
            .bind(msg.seq)
            .bind(msg.author_id.as_str())
            .bind(msg.nickname.as_str())
            .bind(msg.avatar.as_str())
            .bind(msg.content.as_str())
            .bind(msg.created_at)
            .bind(msg.client_id.as_str())
            .bind(gone(m.deleted))
            .bind(gone(m.hidden))
            .bind(msg.reply_to.as_ref().map(|q| q.seq))
            .bind(msg.edited_at)
            .execute(&mut *tx)
            .await?;
            inserted += DB::rows_affected(&done);
            for (emoji, author) in &m.reactors {
                sqlx::query(
                    "INSERT INTO reactions (room_id, seq, author_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (room_id, seq, author_id, emoji) DO NOTHING",
                )
                .bind(state.id.as_str())
                .bind(msg.seq)
                .bind(author.as_str())
                .bind(emoji.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// A round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(self.0).await?;
        Ok(())
    }
}

/// A `Message` from a row of `select_messages`.
fn message_from<R>(row: &R, room_id: &RoomId) -> Message
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    // The original is shown while it exists and is neither deleted nor hidden.
    let reply_to = row.get::<Option<i64>, _>(9).map(|seq| match row.get::<Option<String>, _>(10) {
        Some(author) if row.get::<Option<i64>, _>(13).is_none() && row.get::<Option<i64>, _>(14).is_none() => ReplyQuote::shown(
            seq,
            AuthorId::from_store(&author),
            row.get::<Option<String>, _>(11).unwrap_or_default(),
            &row.get::<Option<String>, _>(12).unwrap_or_default(),
        ),
        _ => ReplyQuote::gone(seq),
    });
    Message {
        seq: row.get(0),
        room_id: room_id.clone(),
        author_id: AuthorId::from_store(row.get(2)),
        nickname: row.get(3),
        avatar: row.get(4),
        content: row.get(5),
        created_at: row.get(6),
        client_id: row.get(7),
        edited_at: row.get(8),
        reply_to,
        reactions: Reactions::from_list(row.get::<Option<&str>, _>(15)),
    }
}
