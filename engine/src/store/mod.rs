//! Durable message history behind one small trait, so the room actors never know which database
//! holds their messages. The embedded default is a SQLite file; `writer` adds group commit on top.

pub mod postgres;
mod queries;
pub mod retention;
pub mod sqlite;
pub mod transfer;
pub mod writer;

use futures_util::future::BoxFuture;

use crate::chat::{AuthorId, Emoji, Message, Profile, Reactions, ReplyQuote, RoomId, Seq};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("store: migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("store: no answer within the store timeout")]
    Timeout,
    #[error("store: unsupported database url `{0}`")]
    UnsupportedUrl(String),
    #[error("bus: {0}")]
    Bus(String),
    /// A file the configuration names could not be read at start (the blocked words).
    #[error("config: {0}")]
    Config(String),
}

/// A send that passed every check and waits for its commit.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room_id: RoomId,
    pub author: Profile,
    pub content: String,
    pub client_id: String,
    /// The message this one answers (same room).
    pub reply_to: Option<Seq>,
}

/// What the commit made of one `NewMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: Seq,
    pub created_at: i64,
    /// False when the same (room, author, clientId) was stored before: the original seq is
    /// acked again and nothing is broadcast.
    pub fresh: bool,
    /// The quote of the message it answers, read in the same transaction.
    pub reply: Option<ReplyQuote>,
    /// It answers a message that does not exist, or is deleted or hidden: not stored (`seq` 0).
    pub reply_missing: bool,
}

impl Appended {
    pub fn stored(seq: Seq, created_at: i64, fresh: bool, reply: Option<ReplyQuote>) -> Appended {
        Appended { seq, created_at, fresh, reply, reply_missing: false }
    }

    pub fn reply_missing() -> Appended {
        Appended { seq: 0, created_at: 0, fresh: false, reply: None, reply_missing: true }
    }
}

/// What a reader's reaction came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// `changed`: false when the reaction was already on (or already off); `counts`: the message's
    /// reactions after it.
    Done { changed: bool, counts: Reactions },
    /// No such message, or deleted or hidden.
    NotFound,
}

/// What an edit came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Stored: the message as it reads now.
    Edited(Message),
    /// The content was already this: nothing changed.
    Unchanged(Message),
    NotFound,
    /// Someone else's message.
    Forbidden,
    /// Past the edit window.
    Expired,
}

/// What a room actor needs to start serving from memory.
#[derive(Debug, Default)]
pub struct RoomSnapshot {
    pub last_seq: Seq,
    /// The newest messages that are not deleted or hidden, oldest first.
    pub recent: Vec<Message>,
    /// Active bans: author and the end of the ban in epoch milliseconds.
    pub bans: Vec<(AuthorId, i64)>,
    /// Locked read-only: sends are refused.
    pub locked: bool,
    /// The pinned message, when there is one (never a deleted or hidden one).
    pub pinned: Option<Message>,
    /// Slow mode: one message per reader every this many seconds (0: off).
    pub slow_mode: u32,
    /// Who left which reaction on the recent messages and the pinned one.
    pub reactions: Vec<(Seq, AuthorId, Emoji)>,
}

/// One room as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    pub id: RoomId,
    /// Messages stored and not deleted.
    pub messages: i64,
    /// When its newest message was written (epoch ms), if it holds any.
    pub last_activity: Option<i64>,
    pub locked: bool,
}

/// An active ban, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    pub room: RoomId,
    pub author: AuthorId,
    pub until: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    NotFound,
    Forbidden,
}

/// What a reader's report of a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Stored. `fresh`: this reader had not reported the message before; `reports`: distinct
    /// readers who reported it since it was last kept; `hidden`: this report hid it (enough
    /// distinct readers reported it and the owner had not kept it); `already_hidden`: it was
    /// hidden before this report.
    Recorded { fresh: bool, reports: i64, hidden: bool, already_hidden: bool },
    /// No such message (never stored, deleted or pruned).
    NotFound,
    /// The reader's own message.
    Forbidden,
}

/// What dismissing a message's reports came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dismissal {
    /// The message has no open reports (or does not exist): nothing changed.
    NoReports,
    /// Reports cleared and the message kept; it was not hidden.
    Kept,
    /// Reports cleared and the message kept; it had been hidden and is shown again.
    Restored(Box<Message>),
}

/// A message with open reports, as the owner's queue lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedMessage {
    pub message: Message,
    /// Distinct readers who reported it since it was last kept.
    pub reports: i64,
    pub hidden: bool,
    pub last_reported_at: i64,
}

impl Deletion {
    /// What deleting a message owned by `owner` (None: no such message, or already deleted)
    /// comes to, for `author` (None: a moderator).
    pub fn decide(owner: Option<&str>, author: Option<&AuthorId>) -> Deletion {
        match (owner, author) {
            (None, _) => Deletion::NotFound,
            (Some(owner), Some(author)) if owner != author.as_str() => Deletion::Forbidden,
            _ => Deletion::Deleted,
        }
    }
}

pub trait Store: Send + Sync + 'static {
    /// Short name for logs: "sqlite", "postgres".
    fn kind(&self) -> &'static str;

    /// Batches that may commit at the same time: 1 where the database has a single writer.
    fn parallel_commits(&self) -> usize {
        1
    }

    /// Stores a batch in one transaction, assigning each room's next seqs in batch order.
    fn append(&self, batch: Vec<NewMessage>) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>>;

    fn load_room(&self, room: RoomId, recent: usize) -> BoxFuture<'_, Result<RoomSnapshot, StoreError>>;

    /// Messages (not deleted or hidden) with seq below `before` (or the newest), at most `limit`, oldest first.
    fn history(&self, room: RoomId, before: Option<Seq>, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>>;

    /// Messages (not deleted or hidden) with seq above `after`, at most `limit`, oldest first.
    fn after(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>>;

    fn last_seq(&self, room: RoomId) -> BoxFuture<'_, Result<Seq, StoreError>>;

    /// Erases a message's content (and closes its reports). With an author, only that author's
    /// message may go.
    fn delete(&self, room: RoomId, seq: Seq, author: Option<AuthorId>) -> BoxFuture<'_, Result<Deletion, StoreError>>;

    /// Records `reporter`'s report of a message and, once `auto_hide` distinct readers (0: never)
    /// have reported it and the owner has not kept it, hides it (unpinning it) in the same
    /// transaction.
    fn report(&self, room: RoomId, seq: Seq, reporter: AuthorId, auto_hide: u32) -> BoxFuture<'_, Result<Report, StoreError>>;

    /// Puts `author`'s reaction on a message (`on`) or takes it back, in one transaction that
    /// answers the message's counts after it.
    fn react(&self, room: RoomId, seq: Seq, author: AuthorId, emoji: Emoji, on: bool) -> BoxFuture<'_, Result<Reaction, StoreError>>;

    /// Replaces the content of `author`'s message if it was written less than `window_ms` ago.
    fn edit(&self, room: RoomId, seq: Seq, author: AuthorId, content: String, window_ms: i64) -> BoxFuture<'_, Result<Edit, StoreError>>;

    /// `author`'s reactions on the room's messages with seq from `from` to `to`, in seq order.
    fn reactions_by(&self, room: RoomId, author: AuthorId, from: Seq, to: Seq) -> BoxFuture<'_, Result<Vec<(Seq, Emoji)>, StoreError>>;

    /// Clears a message's open reports and marks it kept by the owner, showing it again if hidden.
    fn dismiss(&self, room: RoomId, seq: Seq) -> BoxFuture<'_, Result<Dismissal, StoreError>>;

    /// Messages (not deleted) with open reports, most reported first, then the longest waiting.
    fn reports(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ReportedMessage>, StoreError>>;

    fn ban(&self, room: RoomId, author: AuthorId, until: i64) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Lifts a ban; false when the author had no active ban in the room.
    fn unban(&self, room: RoomId, author: AuthorId) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Locks the room read-only, or reopens it. A room with no message yet is created.
    fn set_locked(&self, room: RoomId, locked: bool) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Sets the room's slow mode (seconds between one reader's messages; 0: off). A room with no
    /// message yet is created.
    fn set_slow_mode(&self, room: RoomId, seconds: u32) -> BoxFuture<'_, Result<(), StoreError>>;

    /// How many messages (not deleted or hidden) the author has in the room, counted up to `upto`,
    /// and when the first of them was written (epoch ms).
    fn author_standing(&self, room: RoomId, author: AuthorId, upto: u32) -> BoxFuture<'_, Result<(u32, Option<i64>), StoreError>>;

    /// Pins a message (`Some`), or unpins (`None`). Pinning answers the pinned message, or
    /// `None` when the seq does not exist or is deleted or hidden (then nothing changes).
    fn pin(&self, room: RoomId, seq: Option<Seq>) -> BoxFuture<'_, Result<Option<Message>, StoreError>>;

    /// Rooms whose id contains `search` (when given) and is above `after`, in id order, at most `limit`.
    fn rooms(&self, search: Option<String>, after: Option<RoomId>, limit: usize) -> BoxFuture<'_, Result<Vec<RoomSummary>, StoreError>>;

    /// One author's newest messages (not deleted) across rooms, newest first, at most `limit`.
    fn author_messages(&self, author: AuthorId, limit: usize) -> BoxFuture<'_, Result<Vec<Message>, StoreError>>;

    /// Bans still running at `now`, longest first, at most `limit`.
    fn bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<Vec<BanEntry>, StoreError>>;

    /// Deletes up to `limit` messages, of any room, created before `before` (epoch ms), oldest
    /// first; returns how many went. Rooms and their counters stay, so no seq is ever reused.
    fn prune_older_than(&self, before: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Up to `limit` rooms with an id above `after`, in id order, that hold messages more than
    /// `keep` seqs below their counter; each with the seq at or below which its messages may go.
    /// That seq stays below the room's newest `protect` messages that are not deleted (what a
    /// live room may hold in memory), so it may be lower than `last_seq - keep`.
    fn rooms_over(
        &self,
        keep: u64,
        protect: usize,
        after: Option<RoomId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(RoomId, Seq)>, StoreError>>;

    /// Deletes up to `limit` of a room's messages with a seq at or below `upto`, oldest first;
    /// returns how many went.
    fn prune_room(&self, room: RoomId, upto: Seq, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Deletes up to `limit` bans that ended before `now` (epoch ms); returns how many went.
    fn prune_bans(&self, now: i64, limit: usize) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// How many messages (not deleted or hidden) each of `rooms` holds; rooms without any are
    /// left out. One query for all of them.
    fn message_counts(&self, rooms: Vec<RoomId>) -> BoxFuture<'_, Result<Vec<(RoomId, i64)>, StoreError>>;

    /// A room's counter, lock, pin and active bans; `None` when the store has no such room.
    fn room_state(&self, room: RoomId) -> BoxFuture<'_, Result<Option<transfer::RoomState>, StoreError>>;

    /// Up to `limit` of a room's stored messages with seq above `after`, deleted and hidden ones
    /// included and flagged, oldest first.
    fn export_page(&self, room: RoomId, after: Seq, limit: usize) -> BoxFuture<'_, Result<Vec<transfer::ExportedMessage>, StoreError>>;

    /// Writes a room, its bans and its messages (with their seqs, authors and times) in one
    /// transaction; messages already stored under their (room, seq) are skipped. Returns how
    /// many were written.
    fn import_room(&self, state: transfer::RoomState, messages: Vec<transfer::ExportedMessage>) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Whether the store answers at all (readiness).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Flushes and closes connections at shutdown.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Opens the store a `DATABASE_URL` names.
pub async fn open(url: &str, timeout: std::time::Duration, pool: u32) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path, timeout).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(postgres::PgStore::open(url, timeout, pool).await?));
    }
    // Only the scheme: the rest of a database URL may hold a password.
    Err(StoreError::UnsupportedUrl(url.split(':').next().unwrap_or_default().to_string()))
}
