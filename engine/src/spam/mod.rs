//! Spam defences that look at a send's content before it reaches its room: links from readers new
//! to the room, blocked words, and the same content posted too often across rooms and authors.
//! They run in the reader's session, off the room actor, since two of them may wait (the store for
//! whether a reader is new, Redis for the shared count). A refused send is answered with `spam`
//! and its reason, and is never stored. (Per-room slow mode is the room's own rule: `room::core`.)

pub mod blocked;
pub mod links;
pub mod normalise;
pub mod repeated;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chat::{AuthorId, RoomId};
use crate::metrics::METRICS;
use crate::store::Store;
use blocked::BlockedWords;
use repeated::RepeatCounter;

/// Why a send was refused as spam: the `reason` of the `spam` error and of
/// `chat_spam_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamReason {
    Links,
    BlockedWords,
    Repeated,
}

impl SpamReason {
    pub const ALL: [SpamReason; 3] = [SpamReason::Links, SpamReason::BlockedWords, SpamReason::Repeated];

    pub fn as_str(self) -> &'static str {
        match self {
            SpamReason::Links => "links",
            SpamReason::BlockedWords => "blocked_words",
            SpamReason::Repeated => "repeated",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            SpamReason::Links => "new readers cannot post links yet",
            SpamReason::BlockedWords => "this message contains a blocked word",
            SpamReason::Repeated => "this message was posted too many times",
        }
    }
}

/// The rules' settings.
#[derive(Debug, Clone)]
pub struct SpamRules {
    /// A reader is new to a room (no links) until it has this many messages there (0: never new)...
    pub link_messages: u32,
    /// ... or this long has passed since it was first seen there, whichever comes first.
    pub link_after: Duration,
    /// Postings of the same content allowed in a window (0: not counted).
    pub repeat_max: u64,
    pub repeat_window: Duration,
    /// Content shorter than this (characters other than spaces) is not counted: "thanks!" is no spam.
    pub repeat_min_chars: usize,
}

/// The spam checks every session shares.
pub struct SpamGuard {
    rules: SpamRules,
    blocked: Option<Arc<BlockedWords>>,
    repeats: RepeatCounter,
    store: Arc<dyn Store>,
}

/// What the link rule knows of one reader in one room (a session's).
pub struct Newcomer {
    /// When this connection joined: the reader was in the room at least since then.
    joined: Instant,
    /// Known not new any more; the store need not be asked again.
    trusted: bool,
}

impl Newcomer {
    pub fn new() -> Newcomer {
        Newcomer { joined: Instant::now(), trusted: false }
    }
}

impl Default for Newcomer {
    fn default() -> Self {
        Newcomer::new()
    }
}

impl SpamGuard {
    pub fn new(rules: SpamRules, blocked: Option<Arc<BlockedWords>>, repeats: RepeatCounter, store: Arc<dyn Store>) -> SpamGuard {
        SpamGuard { rules, blocked, repeats, store }
    }

    /// Checks a send; refused, the reason is counted and returned. Cheapest first; the repeat count
    /// last, so that content refused for another reason does not count.
    pub async fn check(&self, room: &RoomId, author: &AuthorId, newcomer: &mut Newcomer, content: &str) -> Result<(), SpamReason> {
        let verdict = self.verdict(room, author, newcomer, content).await;
        if let Err(reason) = verdict {
            METRICS.spam_refused.with_label_values(&[reason.as_str()]).inc();
        }
        verdict
    }

    async fn verdict(&self, room: &RoomId, author: &AuthorId, newcomer: &mut Newcomer, content: &str) -> Result<(), SpamReason> {
        // Normalising costs more than every other check together (a 2,000-character message is
        // folded character by character), so it is done only when a rule needs it.
        let blocked = self.blocked.as_ref().map(|b| b.current()).filter(|words| !words.is_empty());
        let counts_repeats =
            self.rules.repeat_max > 0 && content.chars().filter(|c| !c.is_whitespace()).count() >= self.rules.repeat_min_chars;
        let normalised = (blocked.is_some() || counts_repeats).then(|| normalise::normalise(content));
        if let (Some(words), Some(normalised)) = (&blocked, &normalised) {
            if words.matches(normalised) {
                return Err(SpamReason::BlockedWords);
            }
        }
        if self.rules.link_messages > 0 && links::has_link(content) && !self.trusted(room, author, newcomer).await {
            return Err(SpamReason::Links);
        }
        if let Some(normalised) = normalised.filter(|_| counts_repeats) {
            if self.repeats.count(repeated::hash(&normalised)).await > self.rules.repeat_max {
                return Err(SpamReason::Repeated);
            }
        }
        Ok(())
    }

    /// Whether the reader is past its first messages or minutes in the room. The store knows its
    /// messages there (this session's and earlier ones'); it is asked only when a reader not yet
    /// known to be trusted posts a link. A store that does not answer lets the link through: the
    /// send itself will then most likely fail, with a clearer error.
    async fn trusted(&self, room: &RoomId, author: &AuthorId, newcomer: &mut Newcomer) -> bool {
        if newcomer.trusted || newcomer.joined.elapsed() >= self.rules.link_after {
            newcomer.trusted = true;
            return true;
        }
        let standing = self.store.author_standing(room.clone(), author.clone(), self.rules.link_messages).await;
        let (messages, first_at) = match standing {
            Ok(standing) => standing,
            Err(err) => {
                tracing::debug!(error = %err, "could not read the author's standing; link let through");
                return true;
            }
        };
        let since_first = first_at.map(|at| Duration::from_millis(u64::try_from(crate::chat::now_millis() - at).unwrap_or(0)));
        newcomer.trusted = messages >= self.rules.link_messages || since_first.is_some_and(|d| d >= self.rules.link_after);
        newcomer.trusted
    }
}
