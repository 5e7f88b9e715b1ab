//! The room itself, as plain synchronous code: members, presence, the ring of recent messages,
//! seq order with held-back messages and gap repair, send limits, bans and kicks. It never waits
//! on anything. Every event (a command, a store answer, a timer) is a method call; whatever needs
//! I/O (the store, the other pods) leaves as an `Effect`, which the actor loop (`actor.rs`) runs
//! off the room and answers with another event. So a slow store or Redis delays only the
//! operation that needs it, never the room's other sends, acks and broadcasts.

use std::collections::{btree_map, BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::RingUsage;
use super::cluster::PresenceSync;
use super::outbox::{Refused, Unwritten};
use super::presence::{room_wide, Presence};
use super::ring::{Entry, Ring};
use super::{
    Arrival, Command, ConnId, JoinError, JoinRequest, Kick, Outbox, RoomError, RoomInfo, RoomSettings, HISTORY_ON_JOIN, RESUME_MAX,
};
use crate::bus::presence::{Present, HEARTBEAT};
use crate::bus::{Envelope, RoomEvent};
use crate::chat::{now_millis, AuthorId, Emoji, Message, Profile, Reactions, ReplyQuote, RoomId, Seq};
use crate::client_ip::ClientKey;
use crate::metrics::{SendOutcome, METRICS};
use crate::protocol::{self, CloseCode, ErrorCode, Frame, MessageJson, MyReactions};
use crate::rate::TokenBucket;
use crate::store::writer::AppendResult;
use crate::store::{Deletion, Dismissal, Edit, NewMessage, Reaction, Report, RoomSnapshot, StoreError};
use crate::webhooks::Notice;

/// Presence frames go out at most this often per room, whatever the churn.
const PRESENCE_EVERY: Duration = Duration::from_millis(500);
/// And a room sends at most this many presence frames a second in all: in a crowd each reader
/// gets one less often (every 3 s at 6,000 readers). A frame lists up to 100 readers (~9 KB), and a
/// join storm into a room of thousands spent most of its time sending those lists.
const PRESENCE_FRAMES_PER_SECOND: u32 = 2000;
/// A crowd is shown its presence a slice at a time, at that pace: a frame to thousands of readers
/// at once kept both workers writing for tens of milliseconds, and every join waited behind it.
const PRESENCE_SLICE_EVERY: Duration = Duration::from_millis(50);
const PRESENCE_SLICE_READERS: usize = (PRESENCE_FRAMES_PER_SECOND / 20) as usize;
/// A member's typing frames are passed on at most this often.
const TYPING_EVERY: Duration = Duration::from_secs(2);
/// The `reason` label of `chat_spam_refused_total` for a send slow mode refused.
const SLOW_MODE: &str = "slow_mode";
/// Messages of one room in one commit at most.
const ROOM_BATCH: usize = 256;
/// A message that arrives ahead of a missing one waits this long for it before the room reads
/// the gap from the store.
const HOLD_BACK: Duration = Duration::from_millis(150);
/// While the other pods' events do not arrive, rooms read what they stored this often.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// After subscribing, one read of the store covers messages published before the subscription.
const SETTLE: Duration = Duration::from_secs(1);
/// Messages one repair reads at most.
const REPAIR_PAGE: usize = 1000;

/// I/O the room needs done; the actor runs each off the room and reports back with `Done`.
pub(super) enum Effect {
    /// Read the room's recent messages (up to the ring's count), its seq counter and its bans.
    Load {
        recent: usize,
    },
    /// Commit one batch of this room (never more than one at a time, which keeps seq order).
    Commit(Vec<NewMessage>),
    /// Read at most `page` messages stored after `after` (gap repair, or polling while the bus
    /// is down).
    Repair {
        after: Seq,
        page: usize,
    },
    /// Read a parked welcome's history, and the reader's reactions on it.
    History {
        conn: ConnId,
        read: HistoryRead,
        author: AuthorId,
    },
    /// Put a reader's reaction on a message or take it back.
    React {
        conn: ConnId,
        seq: Seq,
        author: AuthorId,
        emoji: Emoji,
        on: bool,
    },
    /// Change an author's message, if still within the edit window.
    Edit {
        conn: ConnId,
        seq: Seq,
        author: AuthorId,
        content: String,
    },
    Delete {
        seq: Seq,
        author: Option<AuthorId>,
        requester: Requester,
    },
    /// Record a reader's report (which may hide the message).
    Report {
        conn: ConnId,
        seq: Seq,
        reporter: AuthorId,
    },
    /// Clear a message's reports and keep it.
    Dismiss {
        seq: Seq,
        reply: oneshot::Sender<Result<bool, RoomError>>,
    },
    Ban {
        author: AuthorId,
        until: i64,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
    Unban {
        author: AuthorId,
        reply: oneshot::Sender<Result<bool, RoomError>>,
    },
    /// Store the room as locked read-only (true) or open.
    SetLock {
        locked: bool,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
    /// Store the room's slow mode (seconds; 0: off).
    SetSlowMode {
        seconds: u32,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
    /// Store the pin (a seq) or its removal (`None`).
    Pin {
        seq: Option<Seq>,
        reply: oneshot::Sender<Result<bool, RoomError>>,
    },
    /// Tell the other pods.
    Publish(RoomEvent),
    /// Tell the owner's webhooks (queued without waiting; only the pod where it happened does).
    Notify(Notice),
    Subscribe,
    /// Write our readers (when given) and read the other pods'; then show presence (`always`: even
    /// when it did not change).
    SyncPresence {
        ours: Option<Vec<Present>>,
        always: bool,
    },
}

/// Which history a welcome needs from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HistoryRead {
    /// Every message after this seq (a resume).
    After(Seq),
    /// The latest `HISTORY_ON_JOIN`.
    Latest,
}

/// A welcome's history read from the store, with the reader's own reactions on it.
pub(super) type WelcomeRead = (Vec<Message>, Vec<(Seq, Emoji)>);

/// The store's (or the cluster's) answer to an `Effect`.
pub(super) enum Done {
    Loaded(Result<RoomSnapshot, StoreError>),
    Committed(AppendResult),
    Repaired(Result<Vec<Message>, StoreError>),
    History {
        conn: ConnId,
        read: HistoryRead,
        result: Result<WelcomeRead, StoreError>,
    },
    Reacted {
        conn: ConnId,
        seq: Seq,
        author: AuthorId,
        emoji: Emoji,
        on: bool,
        outcome: Result<Reaction, StoreError>,
    },
    Edited {
        conn: ConnId,
        seq: Seq,
        outcome: Result<Edit, StoreError>,
    },
    Deleted {
        seq: Seq,
        requester: Requester,
        outcome: Result<Deletion, StoreError>,
    },
    Reported {
        conn: ConnId,
        seq: Seq,
        outcome: Result<Report, StoreError>,
    },
    Dismissed {
        reply: oneshot::Sender<Result<bool, RoomError>>,
        outcome: Result<Dismissal, StoreError>,
    },
    Banned {
        author: AuthorId,
        until: i64,
        reply: oneshot::Sender<Result<(), RoomError>>,
        outcome: Result<(), StoreError>,
    },
    Unbanned {
        author: AuthorId,
        reply: oneshot::Sender<Result<bool, RoomError>>,
        outcome: Result<bool, StoreError>,
    },
    Locked {
        locked: bool,
        reply: oneshot::Sender<Result<(), RoomError>>,
        outcome: Result<(), StoreError>,
    },
    SlowModeSet {
        seconds: u32,
        reply: oneshot::Sender<Result<(), RoomError>>,
        outcome: Result<(), StoreError>,
    },
    /// `unpin`: the pin was removed; otherwise the pinned message, `None` when it did not exist.
    Pinned {
        unpin: bool,
        reply: oneshot::Sender<Result<bool, RoomError>>,
        outcome: Result<Option<Message>, StoreError>,
    },
    PresenceSynced {
        sync: PresenceSync,
        always: bool,
        shared: bool,
    },
}

pub(super) enum Requester {
    Member(ConnId),
    Admin(oneshot::Sender<Result<Deletion, RoomError>>),
}

struct Member {
    profile: Profile,
    /// The owner's live view: not in presence.
    watching: bool,
    /// The address its sends are charged to, across rooms.
    client: ClientKey,
    outbox: Outbox,
    last_typing: Option<Instant>,
}

/// A presence frame on its way to a crowd, a slice at a time.
struct Showing {
    frame: Frame,
    /// The members still to be shown it.
    to: Vec<ConnId>,
    /// When the next slice is.
    next: Instant,
}

enum Waiting {
    Join(JoinRequest),
    Info(oneshot::Sender<Result<RoomInfo, RoomError>>),
}

/// A member whose welcome history is being read from the store. Messages after `upto` reach it
/// as broadcasts, so the store's answer is cut there.
struct Welcoming {
    reply: oneshot::Sender<Result<Frame, JoinError>>,
    profile: Profile,
    upto: Seq,
}

/// The limit that refused a send, which the reader is told about.
#[derive(Debug, Clone, Copy)]
enum SendLimit {
    Author,
    Room,
    Address,
}

impl SendLimit {
    fn message(self) -> &'static str {
        match self {
            SendLimit::Author => "too many messages; slow down",
            SendLimit::Room => "this room is in slow mode (too many messages); wait a moment",
            SendLimit::Address => "too many messages from your network; slow down",
        }
    }
}

struct Pending {
    conn: ConnId,
    author: Profile,
    client_id: String,
    content: String,
    reply_to: Option<Seq>,
    received: Instant,
}

/// Loaded room state; absent until the store has answered once.
struct Loaded {
    ring: Ring,
    last_seq: Seq,
    bans: HashMap<AuthorId, i64>,
    /// Read-only: sends are refused with `room_locked`.
    locked: bool,
    /// Slow mode set by the owner: one message per reader every this many seconds (0: off).
    slow_mode: u32,
    pinned: Option<Entry>,
    /// Who left which reactions (a bit per emoji) on the messages of the ring and the pinned one,
    /// for each reader's welcome (`myReactions`) and to count them whatever order pods' changes
    /// arrive in. A message has an entry once it has reactions; one whose JSON shows reactions
    /// without an entry here (read by a repair) is counted as the store last said.
    reactors: BTreeMap<Seq, HashMap<AuthorId, u8>>,
}

/// A change to the room itself (lock, pin, unban) that landed while the room was loading: the
/// load may have read the state from before it, so it is applied again once loaded.
enum RoomChange {
    Locked(bool),
    SlowMode(u32),
    Pinned(Option<Entry>),
    Unbanned(AuthorId),
}

pub(super) struct RoomCore {
    id: RoomId,
    settings: Arc<RoomSettings>,
    usage: Arc<RingUsage>,
    effects: Vec<Effect>,
    state: Option<Loaded>,
    loading: bool,
    /// Requests that need the loaded state, in arrival order.
    waiting: Vec<Waiting>,
    /// Joins from readers who have seen more than this pod delivered, waiting for a repair.
    behind: Vec<JoinRequest>,
    welcoming: HashMap<ConnId, Welcoming>,
    members: HashMap<ConnId, Member>,
    /// Each author's sends in this room, all its sockets together; kept after it leaves until
    /// refilled, so leaving and coming back buys no fresh burst.
    author_sends: HashMap<AuthorId, TokenBucket>,
    /// The room's ceiling on stored messages, whoever sends them ("slow mode" when empty).
    room_sends: TokenBucket,
    /// Under the owner's slow mode: when each author's last message was accepted here.
    slow_sends: HashMap<AuthorId, Instant>,
    presence: Presence,
    /// Readers of this room on the other pods, as last read.
    remote: Vec<Present>,
    /// Our readers changed since they were last written for the other pods.
    local_dirty: bool,
    presence_due: Option<Instant>,
    last_presence: Instant,
    /// A presence sync is running.
    syncing: bool,
    /// Another sync is due once it is done (`Some(always)`).
    sync_again: Option<bool>,
    heartbeat_at: Instant,
    last_shown: Option<(usize, Vec<Profile>)>,
    /// The presence frame a crowd is being shown (boxed: most rooms are never a crowd).
    showing: Option<Box<Showing>>,
    pending: Vec<Pending>,
    in_flight: Option<Vec<Pending>>,
    /// Messages that arrived ahead of a missing seq, waiting for it (or for a repair).
    held: BTreeMap<Seq, MessageJson>,
    /// When the store is next read for messages the bus did not bring.
    repair_at: Option<Instant>,
    /// A repair is running; the highest held seq when it started (those were committed before
    /// the read, so anything below them that it does not return was deleted).
    repairing: Option<Seq>,
    /// Whether the other pods' events arrive.
    bus_up: bool,
    idle_since: Instant,
    shutting_down: bool,
    /// Room changes that arrived during the load, applied after it.
    after_load: Vec<RoomChange>,
    /// Messages delivered per second (seconds since `started`), the last minute's.
    delivered: VecDeque<(u64, u32)>,
    started: Instant,
    /// Outboxes the room queued a frame into while nothing else waited there: the actor writes
    /// them out (`outbox.rs`).
    unwritten: Vec<Unwritten>,
}

impl RoomCore {
    pub(super) fn new(id: RoomId, settings: Arc<RoomSettings>, usage: Arc<RingUsage>, bus_up: bool) -> RoomCore {
        let now = Instant::now();
        let room_sends = TokenBucket::new(settings.room_send_rate, settings.room_send_burst);
        RoomCore {
            id,
            settings,
            usage,
            effects: Vec::new(),
            state: None,
            loading: false,
            waiting: Vec::new(),
            behind: Vec::new(),
            welcoming: HashMap::new(),
            members: HashMap::new(),
            author_sends: HashMap::new(),
            room_sends,
            slow_sends: HashMap::new(),
            presence: Presence::default(),
            remote: Vec::new(),
            local_dirty: false,
            presence_due: None,
            last_presence: now - PRESENCE_EVERY,
            syncing: false,
            sync_again: None,
            heartbeat_at: now + HEARTBEAT,
            last_shown: None,
            showing: None,
            pending: Vec::new(),
            in_flight: None,
            held: BTreeMap::new(),
            repair_at: None,
            repairing: None,
            bus_up,
            idle_since: now,
            shutting_down: false,
            after_load: Vec::new(),
            delivered: VecDeque::new(),
            started: now,
            unwritten: Vec::new(),
        }
    }

    pub(super) fn id(&self) -> &RoomId {
        &self.id
    }

    /// The I/O asked for since the last call, in order.
    pub(super) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    // --- timers, as the actor loop needs them --------------------------------------------------

    /// The earliest instant something is due (presence, repair, heartbeat), if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let heartbeat = (!self.presence.is_empty()).then_some(self.heartbeat_at);
        let slice = self.showing.as_ref().map(|s| s.next);
        [self.presence_due, self.repair_at, heartbeat, slice].into_iter().flatten().min()
    }

    /// When the room may stop, if it is quiet (no members, nothing pending).
    pub(super) fn idle_until(&self) -> Option<Instant> {
        (self.members.is_empty() && self.is_quiet_but_members() && !self.shutting_down).then(|| self.idle_since + self.settings.idle)
    }

    /// Nothing pending of its own (joins, commits, reads); members may still be connected.
    pub(super) fn is_quiet_but_members(&self) -> bool {
        self.pending.is_empty()
            && self.in_flight.is_none()
            && self.waiting.is_empty()
            && self.behind.is_empty()
            && self.welcoming.is_empty()
            && self.repairing.is_none()
            && !self.loading
            && !self.syncing
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Runs whatever is due at `now`.
    pub(super) fn tick(&mut self, now: Instant) {
        if self.presence_due.is_some_and(|due| due <= now) {
            self.presence_due = None;
            self.last_presence = now;
            self.sync_presence(true);
        }
        if self.repair_at.is_some_and(|due| due <= now) {
            self.repair_at = None;
            self.start_repair();
        }
        if self.showing.as_ref().is_some_and(|s| s.next <= now) {
            self.show_slice(now);
        }
        if !self.presence.is_empty() && self.heartbeat_at <= now {
            // Rewriting our entry refreshes its expiry; reading notices crashed pods' readers.
            self.local_dirty = true;
            self.sync_presence(false);
        }
    }

    /// The other pods' events stopped or started arriving.
    pub(super) fn bus_changed(&mut self, up: bool) {
        tracing::debug!(room = %self.id, up, "bus state changed");
        self.bus_up = up;
        // Back up: read what was missed and share our readers again. Down: start polling.
        self.repair_at = Some(Instant::now());
        if up && !self.presence.is_empty() {
            self.presence_changed();
        }
    }

    // --- commands -------------------------------------------------------------------------------

    pub(super) fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join(request) => self.join(*request),
            Command::Leave { conn } => self.leave(conn),
            Command::Send { conn, client_id, content, reply_to, received } => self.send(conn, client_id, content, reply_to, received),
            Command::React { conn, seq, emoji, on } => self.react(conn, seq, emoji, on),
            Command::Edit { conn, seq, content } => self.edit(conn, seq, content),
            Command::Delete { conn, seq } => {
                if let Some(member) = self.members.get(&conn) {
                    let author = member.profile.author_id.clone();
                    self.effects.push(Effect::Delete { seq, author: Some(author), requester: Requester::Member(conn) });
                }
            }
            Command::Report { conn, seq } => self.report(conn, seq),
            Command::Typing { conn } => self.typing(conn),
            Command::Rename { conn, nickname, avatar } => self.rename(conn, nickname, avatar),
            Command::Info { reply } => match &self.state {
                Some(state) => {
                    let last_seq = state.last_seq;
                    let _ = reply.send(Ok(self.info(last_seq)));
                }
                None => self.wait_for_load(Waiting::Info(reply)),
            },
            Command::AdminDelete { seq, reply } => {
                self.effects.push(Effect::Delete { seq, author: None, requester: Requester::Admin(reply) })
            }
            Command::Ban { author, until, reply } => self.effects.push(Effect::Ban { author, until, reply }),
            Command::Unban { author, reply } => self.effects.push(Effect::Unban { author, reply }),
            Command::Lock { locked, reply } => self.effects.push(Effect::SetLock { locked, reply }),
            Command::SlowMode { seconds, reply } => self.effects.push(Effect::SetSlowMode { seconds, reply }),
            Command::Pin { seq, reply } => self.effects.push(Effect::Pin { seq, reply }),
            Command::Dismiss { seq, reply } => self.effects.push(Effect::Dismiss { seq, reply }),
            Command::Remote(envelope) => self.remote(envelope),
            Command::ShedRing { bytes } => {
                if let Some(state) = self.state.as_mut() {
                    let dropped = state.ring.shed(bytes);
                    METRICS.ring_evictions.inc_by(dropped as u64);
                    state.forget_old_reactors();
                }
            }
            Command::Shutdown => self.shutting_down = true,
        }
    }

    fn wait_for_load(&mut self, waiting: Waiting) {
        self.waiting.push(waiting);
        if !self.loading {
            self.loading = true;
            self.effects.push(Effect::Load { recent: self.settings.ring.count });
        }
    }

    fn join(&mut self, request: JoinRequest) {
        if self.shutting_down {
            let _ = request.reply.send(Err(JoinError::Closed));
            return;
        }
        let Some(state) = &self.state else { return self.wait_for_load(Waiting::Join(request)) };
        if self.is_banned(&request.arrival.profile.author_id) {
            let _ = request.reply.send(Err(JoinError::Banned));
            return;
        }
        // A reader coming from another pod may have seen messages this pod has not delivered yet.
        if request.arrival.last_seq.is_some_and(|seen| seen > state.last_seq) {
            self.behind.push(request);
            if self.repairing.is_none() {
                self.repair_at = None;
                self.start_repair();
            }
            return;
        }
        self.admit(request);
    }

    /// Makes the reader a member and answers with its welcome, from the ring when it can; the
    /// store is read otherwise, and the welcome follows when it answers.
    fn admit(&mut self, request: JoinRequest) {
        let JoinRequest { conn, arrival: Arrival { profile, last_seq, watching }, client, outbox, reply } = request;
        let state = self.state.as_ref().expect("admitted once loaded");
        let upto = state.last_seq;
        let cap = self.settings.welcome_max_bytes;
        let resume = last_seq.filter(|s| *s <= upto && upto - *s <= RESUME_MAX);
        let from_ring = match resume {
            Some(since) => match state.ring.after(since).map(|e| within(e.map(|e| e.json.clone()).collect(), cap, false)) {
                Some(Some(missed)) => Some(Ok((missed, true))),
                // Missed messages that do not fit: the latest, starting over.
                Some(None) => state.ring.latest(HISTORY_ON_JOIN).map(|e| Ok((trim(e, cap), false))),
                // The ring holds only the newest of the missed messages; when even those do not
                // fit, the rest need not be read to know the resume will not either.
                None if state.ring.json_bytes() > cap => state.ring.latest(HISTORY_ON_JOIN).map(|e| Ok((trim(e, cap), false))),
                None => Some(Err(HistoryRead::After(since))),
            },
            None => Some(state.ring.latest(HISTORY_ON_JOIN).map_or(Err(HistoryRead::Latest), |e| Ok((trim(e, cap), false)))),
        };
        if !watching && self.presence.arrive(&profile) {
            self.presence_changed();
        }
        self.usage.touch();
        self.members.insert(conn, Member { profile: profile.clone(), watching, client, outbox, last_typing: None });
        METRICS.joins.inc();
        match from_ring.unwrap_or(Err(HistoryRead::Latest)) {
            Ok((history, resumed)) => {
                let mine = self.my_reactions(&profile.author_id, &history, Vec::new());
                let welcome = self.welcome(conn, &profile, &history, resumed, &mine);
                let _ = reply.send(Ok(welcome));
            }
            Err(read) => {
                let author = profile.author_id.clone();
                self.welcoming.insert(conn, Welcoming { reply, profile, upto });
                self.effects.push(Effect::History { conn, read, author });
            }
        }
    }

    fn history_read(&mut self, conn: ConnId, read: HistoryRead, result: Result<WelcomeRead, StoreError>) {
        let Some(welcoming) = self.welcoming.remove(&conn) else { return };
        if !self.members.contains_key(&conn) {
            // Kicked (banned, too slow) while its history was read: it comes back afresh.
            let _ = welcoming.reply.send(Err(JoinError::Closed));
            return;
        }
        let (messages, stored_mine) = match result {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, "could not read a welcome's history");
                self.forget(conn);
                let _ = welcoming.reply.send(Err(JoinError::Unavailable));
                return;
            }
        };
        let cap = self.settings.welcome_max_bytes;
        let history: Vec<MessageJson> = messages.iter().filter(|m| m.seq <= welcoming.upto).map(|m| Entry::new(m).json).collect();
        let (history, resumed) = match read {
            HistoryRead::After(_) => match within(history, cap, false) {
                Some(missed) => (missed, true),
                None => {
                    // Too much to resume: the latest, starting over.
                    let author = welcoming.profile.author_id.clone();
                    self.welcoming.insert(conn, welcoming);
                    self.effects.push(Effect::History { conn, read: HistoryRead::Latest, author });
                    return;
                }
            },
            HistoryRead::Latest => {
                let skip = history.len().saturating_sub(HISTORY_ON_JOIN);
                (within(history.into_iter().skip(skip).collect(), cap, true).unwrap_or_default(), false)
            }
        };
        let mine = self.my_reactions(&welcoming.profile.author_id, &history, stored_mine);
        let welcome = self.welcome(conn, &welcoming.profile, &history, resumed, &mine);
        let _ = welcoming.reply.send(Ok(welcome));
    }

    /// The reader's own reactions on a welcome's messages and the pinned one: those the room
    /// holds in memory, and `stored` (read with history the ring did not have).
    fn my_reactions(&self, author: &AuthorId, history: &[MessageJson], stored: Vec<(Seq, Emoji)>) -> MyReactions {
        let mut mine: BTreeMap<Seq, u8> = BTreeMap::new();
        for (seq, emoji) in stored {
            *mine.entry(seq).or_default() |= emoji.bit();
        }
        if let Some(state) = &self.state {
            let from = history.first().and_then(|json| seq_of(json)).unwrap_or(Seq::MAX);
            let pinned = state.pinned.as_ref().map(|e| e.seq);
            let held = state.reactors.range(from..).chain(pinned.and_then(|p| state.reactors.get_key_value(&p)));
            for (seq, masks) in held {
                if let Some(mask) = masks.get(author) {
                    *mine.entry(*seq).or_default() |= mask;
                }
            }
        }
        MyReactions(mine.into_iter().filter(|(_, mask)| *mask != 0).collect())
    }

    /// A welcome with the room's online count, lock and pin as they are now (and, for the owner's
    /// live view, that it watches).
    fn welcome(&self, conn: ConnId, profile: &Profile, history: &[MessageJson], resumed: bool, mine: &MyReactions) -> Frame {
        let state = self.state.as_ref();
        let room = protocol::RoomState {
            locked: state.is_some_and(|s| s.locked),
            slow_mode: state.map_or(0, |s| s.slow_mode),
            pinned: state.and_then(|s| s.pinned.as_ref()).map(|e| &*e.json),
            edit_window: self.settings.edit_window.as_secs(),
        };
        let watching = self.members.get(&conn).is_some_and(|m| m.watching);
        protocol::welcome(profile, history, resumed, self.online(), &room, watching, mine)
    }

    fn info(&self, last_seq: Seq) -> RoomInfo {
        RoomInfo {
            online: self.online(),
            last_seq,
            per_minute: self.delivered_last_minute(),
            locked: self.state.as_ref().is_some_and(|s| s.locked),
        }
    }

    fn seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Messages delivered to this room's readers in the last 60 seconds.
    fn delivered_last_minute(&self) -> u32 {
        let now = self.seconds();
        self.delivered.iter().filter(|(at, _)| at + 60 > now).map(|(_, n)| n).sum()
    }

    fn count_delivered(&mut self) {
        let now = self.seconds();
        while self.delivered.front().is_some_and(|(at, _)| at + 60 <= now) {
            self.delivered.pop_front();
        }
        match self.delivered.back_mut() {
            Some((at, n)) if *at == now => *n += 1,
            _ => self.delivered.push_back((now, 1)),
        }
    }

    fn is_banned(&self, author: &AuthorId) -> bool {
        let now = now_millis();
        self.state.as_ref().and_then(|s| s.bans.get(author)).is_some_and(|until| *until > now)
    }

    fn leave(&mut self, conn: ConnId) {
        self.forget(conn);
    }

    /// Removes a member (and its presence), without a word to its session.
    fn forget(&mut self, conn: ConnId) -> Option<Member> {
        let member = self.members.remove(&conn)?;
        if !member.watching && self.presence.leave(&member.profile.author_id) {
            self.presence_changed();
            self.sender_left(&member.profile.author_id);
        }
        if self.members.is_empty() {
            self.idle_since = Instant::now();
        }
        Some(member)
    }

    /// Removes a member and tells its session to close the connection.
    fn kick(&mut self, conn: ConnId, kick: Kick) {
        if let Some(member) = self.forget(conn) {
            member.outbox.close_with(kick);
        }
    }

    /// The outboxes whose frames the actor is to write now, each once.
    pub(super) fn take_unwritten(&mut self) -> Vec<Unwritten> {
        std::mem::take(&mut self.unwritten)
    }

    /// Sends a frame to one member; a member whose queue is full cannot keep up and is closed.
    fn deliver(&mut self, conn: ConnId, frame: Frame) {
        let Some(member) = self.members.get(&conn) else { return };
        match member.outbox.try_send(frame) {
            Ok(unwritten) => {
                METRICS.frames_delivered.inc();
                self.unwritten.extend(unwritten);
            }
            Err(Refused::Full) => self.slow_consumer(conn),
            Err(Refused::Closed) => self.leave(conn),
        }
    }

    /// Sends the same bytes to every member (except one reader's own tabs, for typing).
    fn broadcast(&mut self, frame: &Frame, except: Option<&AuthorId>) {
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        let mut delivered = 0;
        for (conn, member) in &self.members {
            if except.is_some_and(|a| *a == member.profile.author_id) {
                continue;
            }
            match member.outbox.try_send(frame.clone()) {
                Ok(unwritten) => {
                    delivered += 1;
                    self.unwritten.extend(unwritten);
                }
                Err(Refused::Full) => slow.push(*conn),
                Err(Refused::Closed) => gone.push(*conn),
            }
        }
        METRICS.frames_delivered.inc_by(delivered);
        for conn in slow {
            self.slow_consumer(conn);
        }
        for conn in gone {
            self.leave(conn);
        }
    }

    fn slow_consumer(&mut self, conn: ConnId) {
        METRICS.slow_consumer_closes.inc();
        tracing::info!(room = %self.id, conn, "slow consumer closed");
        self.kick(conn, Kick { code: CloseCode::TryAgainLater, reason: "too slow; resume with lastSeq", frame: None });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: &str, client_id: Option<&str>) {
        METRICS.error(code);
        self.deliver(conn, protocol::error(code, message, client_id));
    }

    // --- sends and commits ----------------------------------------------------------------------

    fn send(&mut self, conn: ConnId, client_id: String, content: String, reply_to: Option<Seq>, received: Instant) {
        let Some(member) = self.members.get(&conn) else { return };
        let author = member.profile.clone();
        if self.state.as_ref().is_some_and(|s| s.locked) {
            self.error(conn, ErrorCode::RoomLocked, ErrorCode::RoomLocked.default_message(), Some(&client_id));
            return;
        }
        let now = Instant::now();
        if let Some(wait) = self.slow_mode_wait(&author.author_id, now) {
            METRICS.send(SendOutcome::RateLimited);
            METRICS.error(ErrorCode::RateLimited);
            METRICS.spam_refused.with_label_values(&[SLOW_MODE]).inc();
            let seconds = self.state.as_ref().map_or(0, |s| s.slow_mode);
            let message = format!("slow mode: one message every {seconds} s");
            self.deliver(conn, protocol::rate_limited(&message, &client_id, retry_after_ms(wait)));
            return;
        }
        if let Err((limit, wait)) = self.take_send_token(&author.author_id, member.client) {
            METRICS.send(SendOutcome::RateLimited);
            METRICS.error(ErrorCode::RateLimited);
            self.deliver(conn, protocol::rate_limited(limit.message(), &client_id, retry_after_ms(wait)));
            return;
        }
        self.slow_mode_sent(&author.author_id, now);
        if self.is_banned(&author.author_id) {
            self.kick_banned(&author.author_id);
            return;
        }
        self.pending.push(Pending { conn, author, client_id, content, reply_to, received });
        self.start_commit();
    }

    /// Under slow mode, how long the author must still wait since its last accepted message.
    fn slow_mode_wait(&self, author: &AuthorId, now: Instant) -> Option<Duration> {
        let every = Duration::from_secs(u64::from(self.state.as_ref()?.slow_mode));
        let last = self.slow_sends.get(author)?;
        every.checked_sub(now.duration_since(*last)).filter(|wait| !wait.is_zero())
    }

    /// Records an accepted message for slow mode; entries past their wait are swept when they
    /// outnumber the readers here, so the map stays about the room's size.
    fn slow_mode_sent(&mut self, author: &AuthorId, now: Instant) {
        let every = Duration::from_secs(u64::from(self.state.as_ref().map_or(0, |s| s.slow_mode)));
        if every.is_zero() {
            return;
        }
        self.slow_sends.insert(author.clone(), now);
        if self.slow_sends.len() > 2 * self.members.len() + 64 {
            self.slow_sends.retain(|_, last| now.duration_since(*last) < every);
        }
    }

    /// A reader's report of a message. It takes from the same limits as a send, so reporting
    /// cannot be used to flood the store; the store decides the rest (exists, not the reader's
    /// own, enough reports to hide it).
    fn report(&mut self, conn: ConnId, seq: Seq) {
        let Some(member) = self.members.get(&conn) else { return };
        let (reporter, client) = (member.profile.author_id.clone(), member.client);
        if let Err((limit, wait)) = self.take_send_token(&reporter, client) {
            METRICS.error(ErrorCode::RateLimited);
            self.deliver(conn, protocol::report_error(ErrorCode::RateLimited, limit.message(), seq, Some(retry_after_ms(wait))));
            return;
        }
        if self.is_banned(&reporter) {
            self.kick_banned(&reporter);
            return;
        }
        self.effects.push(Effect::Report { conn, seq, reporter });
    }

    fn reported(&mut self, conn: ConnId, seq: Seq, outcome: Result<Report, StoreError>) {
        let (code, message) = match outcome {
            Ok(Report::Recorded { fresh, reports, hidden, already_hidden }) => {
                if fresh {
                    METRICS.reports.inc();
                    self.effects.push(Effect::Notify(Notice::MessageReported { seq, reports, hidden: hidden || already_hidden }));
                }
                self.deliver(conn, protocol::reported(seq));
                if hidden {
                    METRICS.messages_hidden.inc();
                    tracing::info!(room = %self.id, seq, "message hidden by readers' reports");
                    self.effects.push(Effect::Publish(RoomEvent::Hidden { seq }));
                    self.take_back(seq, protocol::hidden(seq));
                }
                return;
            }
            Ok(Report::NotFound) => (ErrorCode::NotFound, "no such message"),
            Ok(Report::Forbidden) => (ErrorCode::Forbidden, "you cannot report your own message"),
            Err(_) => (ErrorCode::Unavailable, "message store unavailable; try again"),
        };
        METRICS.error(code);
        self.deliver(conn, protocol::report_error(code, message, seq, None));
    }

    // --- reactions and edits --------------------------------------------------------------------

    /// The checks a reaction or an edit shares with a send: not in a locked room, within the send
    /// limits, not banned. The reader is answered about `seq` when refused.
    fn may_change(&mut self, conn: ConnId, seq: Seq) -> Option<AuthorId> {
        let member = self.members.get(&conn)?;
        let (author, client) = (member.profile.author_id.clone(), member.client);
        if self.state.as_ref().is_some_and(|s| s.locked) {
            self.error_about(conn, ErrorCode::RoomLocked, ErrorCode::RoomLocked.default_message(), seq);
            return None;
        }
        if let Err((limit, wait)) = self.take_send_token(&author, client) {
            METRICS.error(ErrorCode::RateLimited);
            self.deliver(conn, protocol::report_error(ErrorCode::RateLimited, limit.message(), seq, Some(retry_after_ms(wait))));
            return None;
        }
        if self.is_banned(&author) {
            self.kick_banned(&author);
            return None;
        }
        Some(author)
    }

    fn error_about(&mut self, conn: ConnId, code: ErrorCode, message: &str, seq: Seq) {
        METRICS.error(code);
        self.deliver(conn, protocol::report_error(code, message, seq, None));
    }

    /// A reader's reaction: stored first, then shown to everyone.
    fn react(&mut self, conn: ConnId, seq: Seq, emoji: Emoji, on: bool) {
        if let Some(author) = self.may_change(conn, seq) {
            self.effects.push(Effect::React { conn, seq, author, emoji, on });
        }
    }

    fn reacted(&mut self, conn: ConnId, seq: Seq, author: AuthorId, emoji: Emoji, on: bool, outcome: Result<Reaction, StoreError>) {
        match outcome {
            Ok(Reaction::Done { changed: true, counts }) => {
                METRICS.reactions.inc();
                self.effects.push(Effect::Publish(RoomEvent::Reaction { seq, author: author.clone(), emoji, on, counts }));
                self.apply_reaction(seq, &author, emoji, on, counts);
            }
            // Already so: only the reader hears, with the counts as they are.
            Ok(Reaction::Done { changed: false, counts }) => self.deliver(conn, protocol::reactions(seq, counts, &author, emoji, on)),
            Ok(Reaction::NotFound) => self.error_about(conn, ErrorCode::NotFound, "no such message", seq),
            Err(_) => self.error_about(conn, ErrorCode::Unavailable, "message store unavailable; try again", seq),
        }
    }

    /// A reaction was put on or taken back (here or on another pod): the message's counts change
    /// in memory and on every reader's screen. For a message the room holds, the counts come from
    /// who reacted, so changes from several pods agree whatever order they arrive in.
    fn apply_reaction(&mut self, seq: Seq, author: &AuthorId, emoji: Emoji, on: bool, counts: Reactions) {
        let Some(state) = self.state.as_mut() else { return };
        let mut counts = counts;
        let held = state.ring.get(seq).or(state.pinned.as_ref().filter(|e| e.seq == seq)).and_then(Entry::message);
        if let Some(mut message) = held {
            if state.reactors.contains_key(&seq) || message.reactions.is_empty() {
                let masks = state.reactors.entry(seq).or_default();
                let mask = masks.entry(author.clone()).or_default();
                if on {
                    *mask |= emoji.bit();
                } else {
                    *mask &= !emoji.bit();
                }
                if *mask == 0 {
                    masks.remove(author);
                }
                counts = Reactions::from_masks(masks.values());
                if masks.is_empty() {
                    state.reactors.remove(&seq);
                }
            }
            message.reactions = counts;
            state.rewrite(&message);
        }
        self.broadcast(&protocol::reactions(seq, counts, author, emoji, on), None);
    }

    /// An author's edit: stored first (the store knows when the message was written), then shown
    /// to everyone.
    fn edit(&mut self, conn: ConnId, seq: Seq, content: String) {
        if let Some(author) = self.may_change(conn, seq) {
            self.effects.push(Effect::Edit { conn, seq, author, content });
        }
    }

    fn edited(&mut self, conn: ConnId, seq: Seq, outcome: Result<Edit, StoreError>) {
        let (code, message) = match outcome {
            Ok(Edit::Edited(message)) => {
                METRICS.edits.inc();
                tracing::debug!(room = %self.id, seq, "message edited");
                let entry = Entry::new(&message);
                self.effects.push(Effect::Publish(RoomEvent::Edited { seq, json: entry.json.clone() }));
                self.apply_edited(entry);
                return;
            }
            // Already so: only the author hears.
            Ok(Edit::Unchanged(message)) => {
                let json = self.state.as_ref().and_then(|s| s.ring.get(seq)).map_or_else(|| Entry::new(&message).json, |e| e.json.clone());
                self.deliver(conn, protocol::edited(&json));
                return;
            }
            Ok(Edit::NotFound) => (ErrorCode::NotFound, "no such message"),
            Ok(Edit::Forbidden) => (ErrorCode::Forbidden, "only the author may edit a message"),
            Ok(Edit::Expired) => (ErrorCode::EditExpired, ErrorCode::EditExpired.default_message()),
            Err(_) => (ErrorCode::Unavailable, "message store unavailable; try again"),
        };
        self.error_about(conn, code, message, seq);
    }

    /// A message was edited (here or on another pod): its new content replaces the old in memory,
    /// in the quotes of replies to it and on every reader's screen. Its reactions stay as this
    /// room counts them.
    fn apply_edited(&mut self, entry: Entry) {
        let Some(state) = self.state.as_mut() else { return };
        let Some(edited) = entry.message() else { return };
        if entry.seq > state.last_seq {
            // Not delivered yet: it goes out edited.
            if let Some(json) = self.held.get_mut(&entry.seq) {
                *json = entry.json;
            }
            return;
        }
        let current = state.ring.get(entry.seq).or(state.pinned.as_ref().filter(|e| e.seq == entry.seq)).and_then(Entry::message);
        let json = match current {
            Some(mut message) => {
                message.content = edited.content.clone();
                message.edited_at = edited.edited_at;
                state.rewrite(&message)
            }
            None => entry.json,
        };
        state.requote(edited.seq, &ReplyQuote::of(&edited));
        self.broadcast(&protocol::edited(&json), None);
    }

    /// The owner kept a message; one that was hidden is shown again.
    fn dismissed(&mut self, reply: oneshot::Sender<Result<bool, RoomError>>, outcome: Result<Dismissal, StoreError>) {
        let answer = match outcome {
            Ok(Dismissal::NoReports) => Ok(false),
            Ok(Dismissal::Kept) => Ok(true),
            Ok(Dismissal::Restored(message)) => {
                let entry = Entry::new(&message);
                self.effects.push(Effect::Publish(RoomEvent::Restored { seq: entry.seq, json: entry.json.clone() }));
                tracing::info!(room = %self.id, seq = entry.seq, "hidden message restored");
                self.apply_restored(entry);
                Ok(true)
            }
            Err(_) => Err(RoomError::Unavailable),
        };
        let _ = reply.send(answer);
    }

    /// A hidden message is back: in the ring at its place and on every reader's screen. One this
    /// pod has not delivered yet simply takes its turn in seq order.
    fn apply_restored(&mut self, entry: Entry) {
        let Some(state) = self.state.as_mut() else { return };
        if entry.seq > state.last_seq {
            self.offer(entry);
            return;
        }
        let frame = protocol::restored(&entry.json);
        if let Some(message) = entry.message() {
            state.requote(entry.seq, &ReplyQuote::of(&message));
        }
        state.ring.restore(entry);
        self.broadcast(&frame, None);
    }

    /// The send limits, in one place: the author's budget in this room, the room's ceiling and the
    /// client address's budget across rooms. A send takes a token from each of them or from none;
    /// refused, it learns the limit that holds it longest and for how long.
    fn take_send_token(&mut self, author: &AuthorId, client: ClientKey) -> Result<(), (SendLimit, Duration)> {
        let now = Instant::now();
        let settings = &self.settings;
        let author_sends =
            self.author_sends.entry(author.clone()).or_insert_with(|| TokenBucket::new(settings.send_rate, settings.send_burst));
        let (author_wait, room_wait) = (author_sends.wait(now), self.room_sends.wait(now));
        let local = if author_wait >= room_wait { (SendLimit::Author, author_wait) } else { (SendLimit::Room, room_wait) };
        if !local.1.is_zero() {
            let address_wait = settings.clients.send_wait(client, now);
            return Err(if address_wait > local.1 { (SendLimit::Address, address_wait) } else { local });
        }
        settings.clients.take_send(client, now).map_err(|wait| (SendLimit::Address, wait))?;
        author_sends.take(now);
        self.room_sends.take(now);
        Ok(())
    }

    /// A reader's last tab left. Its send budget is dropped once refilled; the budgets of others
    /// who left are swept when they outnumber the readers here.
    fn sender_left(&mut self, author: &AuthorId) {
        let now = Instant::now();
        if self.author_sends.get(author).is_some_and(|b| b.is_full(now)) {
            self.author_sends.remove(author);
        }
        if self.author_sends.len() > 2 * self.members.len() + 64 {
            let presence = &self.presence;
            self.author_sends.retain(|a, b| presence.is_here(a) || !b.is_full(now));
        }
    }

    /// Hands the pending sends to the writer unless a batch of this room is already in flight.
    fn start_commit(&mut self) {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        let take = self.pending.len().min(ROOM_BATCH);
        let sends: Vec<Pending> = self.pending.drain(..take).collect();
        let messages = sends
            .iter()
            .map(|p| NewMessage {
                room_id: self.id.clone(),
                author: p.author.clone(),
                content: p.content.clone(),
                client_id: p.client_id.clone(),
                reply_to: p.reply_to,
            })
            .collect();
        self.in_flight = Some(sends);
        self.effects.push(Effect::Commit(messages));
    }

    fn committed(&mut self, result: AppendResult) {
        let Some(sends) = self.in_flight.take() else { return };
        match result {
            Ok(appended) => {
                for (send, stored) in sends.into_iter().zip(appended) {
                    if stored.reply_missing {
                        METRICS.send(SendOutcome::Invalid);
                        self.error(send.conn, ErrorCode::NotFound, "the message replied to does not exist", Some(&send.client_id));
                        continue;
                    }
                    self.deliver(send.conn, protocol::ack(&send.client_id, stored.seq));
                    if !stored.fresh {
                        METRICS.send(SendOutcome::Duplicate);
                        continue;
                    }
                    let message = Message {
                        seq: stored.seq,
                        room_id: self.id.clone(),
                        author_id: send.author.author_id,
                        nickname: send.author.nickname,
                        avatar: send.author.avatar,
                        content: send.content,
                        created_at: stored.created_at,
                        client_id: send.client_id,
                        reactions: Reactions::default(),
                        reply_to: stored.reply,
                        edited_at: None,
                    };
                    let entry = Entry::new(&message);
                    self.effects.push(Effect::Publish(RoomEvent::Message { seq: entry.seq, json: entry.json.clone() }));
                    self.effects.push(Effect::Notify(Notice::MessageCreated {
                        seq: message.seq,
                        author_id: message.author_id,
                        nickname: message.nickname,
                        content: message.content,
                        created_at: message.created_at,
                    }));
                    self.offer(entry);
                    METRICS.send(SendOutcome::Stored);
                    METRICS.send_broadcast_seconds.observe(send.received.elapsed().as_secs_f64());
                    tracing::debug!(room = %self.id, seq = message.seq, "message stored");
                }
            }
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, messages = sends.len(), "sends failed");
                for send in sends {
                    METRICS.send(SendOutcome::Unavailable);
                    self.error(
                        send.conn,
                        ErrorCode::Unavailable,
                        "message store unavailable; retry with the same clientId",
                        Some(&send.client_id),
                    );
                }
            }
        }
        self.start_commit();
    }

    // --- seq order and repair -------------------------------------------------------------------

    /// Takes a committed message (ours, or another pod's from the bus) and delivers every
    /// message that is now next in seq order. Readers see each seq once, in order. One that
    /// arrives ahead of a gap waits for it; a commit whose answer was lost but that landed
    /// after all leaves such a gap too, and the repair reads it.
    fn offer(&mut self, entry: Entry) {
        let Some(last) = self.state.as_ref().map(|s| s.last_seq) else { return };
        if entry.seq <= last {
            return;
        }
        self.held.insert(entry.seq, entry.json);
        self.deliver_ready();
        if !self.held.is_empty() && self.repair_at.is_none() && self.repairing.is_none() {
            self.repair_at = Some(Instant::now() + HOLD_BACK);
        }
    }

    fn deliver_ready(&mut self) {
        while let Some(state) = self.state.as_ref() {
            let next = state.last_seq + 1;
            let Some(json) = self.held.remove(&next) else { break };
            self.broadcast_message(Entry::from_json(next, json));
        }
    }

    fn broadcast_message(&mut self, entry: Entry) {
        let frame = protocol::message(&entry.json);
        self.usage.touch();
        self.count_delivered();
        if let Some(state) = self.state.as_mut() {
            state.last_seq = state.last_seq.max(entry.seq);
            state.ring.push(entry);
            state.forget_old_reactors();
        }
        self.broadcast(&frame, None);
    }

    fn start_repair(&mut self) {
        let Some(last) = self.state.as_ref().map(|s| s.last_seq) else { return };
        if self.repairing.is_some() {
            return;
        }
        self.repairing = Some(self.held.keys().next_back().copied().unwrap_or(last));
        self.effects.push(Effect::Repair { after: last, page: REPAIR_PAGE });
    }

    /// Delivers what the store returned that this room had not. A seq only becomes visible once
    /// every lower seq of its room is committed, so a seq below one known committed before the
    /// read (returned by it, or held when it started) that the read did not return was deleted
    /// (or hidden), and is skipped. Messages delivered while the read ran are simply not delivered twice.
    fn repaired(&mut self, result: Result<Vec<Message>, StoreError>) {
        let Some(held_before) = self.repairing.take() else { return };
        let Some(last) = self.state.as_ref().map(|s| s.last_seq) else { return };
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, "could not read missed messages");
                self.repair_at = Some(Instant::now() + POLL_EVERY);
                self.admit_behind();
                return;
            }
        };
        let more = fetched.len() == REPAIR_PAGE;
        for message in fetched.iter().filter(|m| m.seq > last) {
            if let btree_map::Entry::Vacant(slot) = self.held.entry(message.seq) {
                METRICS.store_repairs.inc();
                slot.insert(Entry::new(message).json);
            }
        }
        // Everything up to the highest seq known committed is known now; what the page did not
        // reach waits for the next one.
        let read_upto = fetched.last().map_or(last, |m| m.seq);
        let known = if more { read_upto } else { read_upto.max(held_before) };
        for seq in last + 1..=known {
            match self.held.remove(&seq) {
                Some(json) => self.broadcast_message(Entry::from_json(seq, json)),
                None => {
                    if let Some(state) = self.state.as_mut() {
                        state.last_seq = seq;
                    }
                }
            }
        }
        self.deliver_ready();
        self.repair_at = if more {
            Some(Instant::now())
        } else if !self.held.is_empty() {
            Some(Instant::now() + HOLD_BACK)
        } else if !self.bus_up {
            Some(Instant::now() + POLL_EVERY)
        } else {
            None
        };
        self.admit_behind();
    }

    /// Joins that waited for a repair are answered with what the room has now.
    fn admit_behind(&mut self) {
        for request in std::mem::take(&mut self.behind) {
            if self.is_banned(&request.arrival.profile.author_id) {
                let _ = request.reply.send(Err(JoinError::Banned));
            } else {
                self.admit(request);
            }
        }
    }

    // --- the store's and the cluster's answers --------------------------------------------------

    pub(super) fn done(&mut self, done: Done) {
        match done {
            Done::Loaded(result) => self.loaded(result),
            Done::Committed(result) => self.committed(result),
            Done::Repaired(result) => self.repaired(result),
            Done::History { conn, read, result } => self.history_read(conn, read, result),
            Done::Reacted { conn, seq, author, emoji, on, outcome } => self.reacted(conn, seq, author, emoji, on, outcome),
            Done::Edited { conn, seq, outcome } => self.edited(conn, seq, outcome),
            Done::Deleted { seq, requester, outcome } => self.deleted(seq, requester, outcome),
            Done::Reported { conn, seq, outcome } => self.reported(conn, seq, outcome),
            Done::Dismissed { reply, outcome } => self.dismissed(reply, outcome),
            Done::Banned { author, until, reply, outcome } => {
                if outcome.is_ok() {
                    self.effects.push(Effect::Publish(RoomEvent::Banned { author: author.clone(), until }));
                    tracing::info!(room = %self.id, author = %author.as_str(), until, "reader banned");
                    self.apply_ban(author, until);
                }
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
            Done::Unbanned { author, reply, outcome } => {
                if outcome.as_ref().is_ok_and(|lifted| *lifted) {
                    self.effects.push(Effect::Publish(RoomEvent::Unbanned { author: author.clone() }));
                    tracing::info!(room = %self.id, author = %author.as_str(), "reader unbanned");
                    self.change(RoomChange::Unbanned(author));
                }
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
            Done::Locked { locked, reply, outcome } => {
                if outcome.is_ok() {
                    self.effects.push(Effect::Publish(RoomEvent::Locked { locked }));
                    self.effects.push(Effect::Notify(Notice::RoomLocked { locked }));
                    tracing::info!(room = %self.id, locked, "room lock changed");
                    self.change(RoomChange::Locked(locked));
                }
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
            Done::SlowModeSet { seconds, reply, outcome } => {
                if outcome.is_ok() {
                    self.effects.push(Effect::Publish(RoomEvent::SlowMode { seconds }));
                    tracing::info!(room = %self.id, seconds, "slow mode changed");
                    self.change(RoomChange::SlowMode(seconds));
                }
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
            Done::Pinned { unpin, reply, outcome } => {
                let answer = match outcome {
                    Ok(pinned) if unpin || pinned.is_some() => {
                        let entry = pinned.as_ref().map(Entry::new);
                        let event = entry.as_ref().map(|e| (e.seq, e.json.clone()));
                        self.effects.push(Effect::Publish(RoomEvent::Pinned { pinned: event }));
                        tracing::info!(room = %self.id, seq = entry.as_ref().map(|e| e.seq), "pin changed");
                        self.change(RoomChange::Pinned(entry));
                        Ok(true)
                    }
                    Ok(_) => Ok(false),
                    Err(_) => Err(RoomError::Unavailable),
                };
                let _ = reply.send(answer);
            }
            Done::PresenceSynced { sync, always, shared } => self.presence_synced(sync, always, shared),
        }
    }

    /// Applies a change to the room itself; during a load it is kept and applied after it.
    fn change(&mut self, change: RoomChange) {
        let Some(state) = self.state.as_mut() else {
            if self.loading {
                self.after_load.push(change);
            }
            return;
        };
        match change {
            RoomChange::Locked(locked) => {
                if state.locked == locked {
                    return;
                }
                state.locked = locked;
                let frame = protocol::room_state(locked, state.slow_mode);
                self.broadcast(&frame, None);
                if locked {
                    // Sends not yet handed to the store are refused like any later one.
                    for send in std::mem::take(&mut self.pending) {
                        self.error(send.conn, ErrorCode::RoomLocked, ErrorCode::RoomLocked.default_message(), Some(&send.client_id));
                    }
                }
            }
            RoomChange::SlowMode(seconds) => {
                if state.slow_mode == seconds {
                    return;
                }
                state.slow_mode = seconds;
                if seconds == 0 {
                    self.slow_sends.clear();
                }
                let frame = protocol::room_state(state.locked, seconds);
                self.broadcast(&frame, None);
            }
            RoomChange::Pinned(entry) => {
                if state.pinned.as_ref().map(|e| e.seq) == entry.as_ref().map(|e| e.seq) {
                    return;
                }
                let frame = protocol::pinned(entry.as_ref().map(|e| &*e.json));
                state.pinned = entry;
                self.broadcast(&frame, None);
            }
            RoomChange::Unbanned(author) => {
                state.bans.remove(&author);
            }
        }
    }

    fn loaded(&mut self, result: Result<crate::store::RoomSnapshot, StoreError>) {
        self.loading = false;
        let waiting = std::mem::take(&mut self.waiting);
        let snapshot = match result {
            Ok(snapshot) => snapshot,
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, "room could not load its history");
                for waiting in waiting {
                    match waiting {
                        Waiting::Join(join) => drop(join.reply.send(Err(JoinError::Unavailable))),
                        Waiting::Info(reply) => drop(reply.send(Err(RoomError::Unavailable))),
                    }
                }
                return;
            }
        };
        let ring = self.settings.ring.clone();
        let complete = snapshot.recent.len() < ring.count;
        // The counter and the messages are read one after the other; with other pods writing,
        // a message may land in between. The ring's newest message is then the truth.
        let last_seq = snapshot.recent.last().map_or(snapshot.last_seq, |m| m.seq.max(snapshot.last_seq));
        self.state = Some(Loaded {
            ring: Ring::new(ring, self.usage.clone(), &snapshot.recent, complete),
            last_seq,
            bans: snapshot.bans.into_iter().collect(),
            locked: snapshot.locked,
            slow_mode: snapshot.slow_mode,
            pinned: snapshot.pinned.as_ref().map(Entry::new),
            reactors: BTreeMap::new(),
        });
        if let Some(state) = self.state.as_mut() {
            for (seq, author, emoji) in snapshot.reactions {
                *state.reactors.entry(seq).or_default().entry(author).or_default() |= emoji.bit();
            }
        }
        for change in std::mem::take(&mut self.after_load) {
            self.change(change);
        }
        self.effects.push(Effect::Subscribe);
        // What other pods published before the subscription took effect is read once.
        self.repair_at = Some(Instant::now() + SETTLE);
        for waiting in waiting {
            match waiting {
                Waiting::Join(join) => self.join(join),
                Waiting::Info(reply) => {
                    let _ = reply.send(Ok(self.info(last_seq)));
                }
            }
        }
    }

    fn deleted(&mut self, seq: Seq, requester: Requester, outcome: Result<Deletion, StoreError>) {
        if outcome.as_ref().is_ok_and(|d| *d == Deletion::Deleted) {
            self.apply_deleted(seq);
            self.effects.push(Effect::Publish(RoomEvent::Deleted { seq }));
            tracing::info!(room = %self.id, seq, "message deleted");
        }
        match requester {
            Requester::Admin(reply) => {
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
            Requester::Member(conn) => match outcome {
                Ok(Deletion::Deleted) => {}
                Ok(Deletion::NotFound) => self.error(conn, ErrorCode::NotFound, "no such message", None),
                Ok(Deletion::Forbidden) => self.error(conn, ErrorCode::Forbidden, "only the author may delete a message", None),
                Err(_) => self.error(conn, ErrorCode::Unavailable, "message store unavailable", None),
            },
        }
    }

    /// An event another pod published for this room.
    fn remote(&mut self, envelope: Envelope) {
        let room_change = matches!(
            envelope.event,
            RoomEvent::Locked { .. } | RoomEvent::SlowMode { .. } | RoomEvent::Pinned { .. } | RoomEvent::Unbanned { .. }
        );
        if self.state.is_none() && !room_change {
            return;
        }
        match envelope.event {
            RoomEvent::Message { seq, json } => self.offer(Entry::from_json(seq, json)),
            RoomEvent::Reaction { seq, author, emoji, on, counts } => self.apply_reaction(seq, &author, emoji, on, counts),
            RoomEvent::Edited { seq, json } => self.apply_edited(Entry::from_json(seq, json)),
            RoomEvent::Deleted { seq } => self.apply_deleted(seq),
            RoomEvent::Hidden { seq } => self.take_back(seq, protocol::hidden(seq)),
            RoomEvent::Restored { seq, json } => self.apply_restored(Entry::from_json(seq, json)),
            RoomEvent::Typing { author, frame } => self.broadcast(&frame, Some(&author)),
            RoomEvent::Banned { author, until } => self.apply_ban(author, until),
            RoomEvent::Unbanned { author } => self.change(RoomChange::Unbanned(author)),
            RoomEvent::Locked { locked } => self.change(RoomChange::Locked(locked)),
            RoomEvent::SlowMode { seconds } => self.change(RoomChange::SlowMode(seconds)),
            RoomEvent::Pinned { pinned } => self.change(RoomChange::Pinned(pinned.map(|(seq, json)| Entry::from_json(seq, json)))),
            RoomEvent::Presence => self.presence_soon(),
        }
    }

    fn apply_deleted(&mut self, seq: Seq) {
        self.take_back(seq, protocol::deleted(seq));
    }

    /// Takes a message out of readers' sight (deleted or hidden) and tells them with `frame`.
    /// Replies to it quote it as gone from now on.
    fn take_back(&mut self, seq: Seq, frame: Frame) {
        if let Some(state) = self.state.as_mut() {
            state.ring.remove(seq);
            state.reactors.remove(&seq);
            state.requote(seq, &ReplyQuote::gone(seq));
        }
        // The store unpinned it in the same transaction.
        if self.state.as_ref().and_then(|s| s.pinned.as_ref()).is_some_and(|e| e.seq == seq) {
            self.change(RoomChange::Pinned(None));
        }
        if self.held.remove(&seq).is_some() {
            // Not delivered yet: readers never saw it, so there is nothing to take back, but the
            // seq still counts as passed.
            return;
        }
        self.broadcast(&frame, None);
    }

    fn apply_ban(&mut self, author: AuthorId, until: i64) {
        if let Some(state) = self.state.as_mut() {
            state.bans.insert(author.clone(), until);
        }
        self.kick_banned(&author);
    }

    fn kick_banned(&mut self, author: &AuthorId) {
        let conns: Vec<ConnId> = self.members.iter().filter(|(_, m)| m.profile.author_id == *author).map(|(c, _)| *c).collect();
        for conn in conns {
            METRICS.error(ErrorCode::Banned);
            let frame = protocol::error(ErrorCode::Banned, "you are banned from this room", None);
            self.kick(conn, Kick { code: CloseCode::Policy, reason: "banned", frame: Some(frame) });
        }
    }

    fn typing(&mut self, conn: ConnId) {
        let now = Instant::now();
        let Some(member) = self.members.get_mut(&conn) else { return };
        if member.last_typing.is_some_and(|t| now.duration_since(t) < TYPING_EVERY) {
            return;
        }
        member.last_typing = Some(now);
        let frame = protocol::typing(&member.profile);
        let author = member.profile.author_id.clone();
        self.effects.push(Effect::Publish(RoomEvent::Typing { author: author.clone(), frame: frame.clone() }));
        self.broadcast(&frame, Some(&author));
    }

    fn rename(&mut self, conn: ConnId, nickname: String, avatar: String) {
        let Some(member) = self.members.get_mut(&conn) else { return };
        member.profile.nickname = nickname;
        member.profile.avatar = avatar;
        let profile = member.profile.clone();
        // Every tab of the reader takes the new name, so its next messages agree with presence.
        for other in self.members.values_mut().filter(|m| m.profile.author_id == profile.author_id) {
            other.profile = profile.clone();
        }
        if self.presence.rename(&profile) {
            self.presence_changed();
        }
    }

    // --- presence -------------------------------------------------------------------------------

    /// Our reader list changed: tell the room (coalesced) and the other pods.
    fn presence_changed(&mut self) {
        self.local_dirty = true;
        self.presence_soon();
    }

    /// Shows the presence once the room's pace allows it (it may be due already).
    fn presence_soon(&mut self) {
        if self.presence_due.is_none() {
            let every = PRESENCE_EVERY.max(Duration::from_secs(1) * self.members.len() as u32 / PRESENCE_FRAMES_PER_SECOND);
            self.presence_due = Some((self.last_presence + every).max(Instant::now()));
        }
    }

    /// Readers online room-wide (ours plus the other pods' as last read).
    fn online(&self) -> usize {
        self.presence.online_with(&self.remote)
    }

    /// Shares our readers (when they changed) and reads the other pods'; `always` shows the
    /// result even when it did not change. One sync at a time: another one due meanwhile follows.
    fn sync_presence(&mut self, always: bool) {
        self.heartbeat_at = Instant::now() + HEARTBEAT;
        if self.syncing {
            self.sync_again = Some(self.sync_again.unwrap_or(false) || always);
            return;
        }
        self.syncing = true;
        let ours = std::mem::take(&mut self.local_dirty).then(|| self.presence.readers());
        self.effects.push(Effect::SyncPresence { ours, always });
    }

    fn presence_synced(&mut self, sync: PresenceSync, always: bool, shared: bool) {
        self.syncing = false;
        if shared && !sync.wrote {
            // Not shared: the next sync tries again.
            self.local_dirty = true;
        }
        if let Some(others) = sync.others {
            self.remote = others;
        }
        self.show_presence(always);
        if let Some(always) = self.sync_again.take() {
            self.sync_presence(always);
        }
    }

    /// Broadcasts the room's presence; `always` false sends it only when it changed.
    fn show_presence(&mut self, always: bool) {
        let (online, listed) = room_wide(self.presence.readers(), &self.remote);
        let shown = Some((online, listed.clone()));
        if !always && self.last_shown == shown {
            return;
        }
        self.last_shown = shown;
        let refs: Vec<&Profile> = listed.iter().collect();
        let frame = protocol::presence(online, &refs);
        if self.members.len() <= PRESENCE_SLICE_READERS {
            return self.broadcast(&frame, None);
        }
        // A newer frame replaces the one being shown, and goes to everybody.
        let to = self.members.keys().copied().collect();
        let now = Instant::now();
        self.showing = Some(Box::new(Showing { frame, to, next: now }));
        self.show_slice(now);
    }

    /// Shows the presence frame to the next slice of the crowd.
    fn show_slice(&mut self, now: Instant) {
        let Some(showing) = self.showing.as_mut() else { return };
        let slice = showing.to.split_off(showing.to.len().saturating_sub(PRESENCE_SLICE_READERS));
        let frame = showing.frame.clone();
        for conn in slice {
            self.deliver(conn, frame.clone());
        }
        match self.showing.as_mut() {
            Some(showing) if !showing.to.is_empty() => showing.next = now + PRESENCE_SLICE_EVERY,
            _ => self.showing = None,
        }
    }
}

impl Loaded {
    /// Writes a changed message into the ring and the pin, where held; answers its new JSON.
    fn rewrite(&mut self, message: &Message) -> MessageJson {
        let entry = Entry::new(message);
        let json = entry.json.clone();
        if self.pinned.as_ref().is_some_and(|e| e.seq == message.seq) {
            self.pinned = Some(Entry::new(message));
        }
        self.ring.replace(entry);
        json
    }

    /// The replies to `seq` the ring holds quote it as `quote` from now on.
    fn requote(&mut self, seq: Seq, quote: &ReplyQuote) {
        for reply in self.ring.replies_to(seq) {
            if let Some(mut message) = self.ring.get(reply).and_then(Entry::message) {
                message.reply_to = Some(quote.clone());
                self.rewrite(&message);
            }
        }
    }

    /// Drops who reacted to messages the ring no longer holds (but the pinned one).
    fn forget_old_reactors(&mut self) {
        let oldest = self.ring.oldest().unwrap_or(self.last_seq + 1);
        let pinned = self.pinned.as_ref().map(|e| e.seq);
        let stale: Vec<Seq> = self.reactors.range(..oldest).map(|(seq, _)| *seq).filter(|seq| Some(*seq) != pinned).collect();
        for seq in stale {
            self.reactors.remove(&seq);
        }
    }
}

/// The seq of a `Message` JSON (its first field).
fn seq_of(json: &str) -> Option<Seq> {
    let digits = json.strip_prefix(r#"{"seq":"#)?;
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

/// A wait as the `retryAfterMs` of a refusal: whole milliseconds, rounded up, at least 1.
fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1)
}

/// The newest of these entries whose JSON fits in `cap` bytes, oldest first.
fn trim<'a>(entries: impl DoubleEndedIterator<Item = &'a Entry>, cap: usize) -> Vec<MessageJson> {
    within(entries.map(|e| e.json.clone()).collect(), cap, true).unwrap_or_default()
}

/// Messages (oldest first) whose JSON fits in `cap` bytes: all of them, or with `trim` the newest
/// that fit; `None` when they do not all fit and `trim` is off.
fn within(mut messages: Vec<MessageJson>, cap: usize, trim: bool) -> Option<Vec<MessageJson>> {
    let mut total = 0;
    let fit = messages.iter().rev().take_while(|m| {
        total += m.len() + 1;
        total <= cap
    });
    let keep = fit.count();
    if keep < messages.len() && !trim {
        return None;
    }
    messages.drain(..messages.len() - keep);
    Some(messages)
}

#[cfg(test)]
mod tests {
    //! The room's rules without processes: events in, frames and effects out.

    use super::*;
    use crate::clients::{ClientLimits, Clients};
    use crate::room::ring::RingLimits;
    use crate::room::RingBudget;
    use crate::store::Appended;

    fn settings(send_burst: u32) -> Arc<RoomSettings> {
        settings_with_ring(send_burst, 500)
    }

    fn settings_with_ring(send_burst: u32, ring: usize) -> Arc<RoomSettings> {
        let limits = ClientLimits { max_sockets: 64, join_rate: 10.0, join_burst: 30, send_rate: 1000.0, send_burst: 1000 };
        Arc::new(RoomSettings {
            send_rate: 0.001,
            send_burst,
            room_send_rate: 1000.0,
            room_send_burst: 1000,
            idle: Duration::from_secs(60),
            welcome_max_bytes: 256 * 1024,
            ring: RingLimits { count: ring, bytes: 1 << 20, budget: Arc::new(RingBudget::new(usize::MAX)) },
            clients: Clients::new(limits),
            auto_hide_reports: 3,
            edit_window: Duration::from_secs(300),
        })
    }

    fn message(seq: Seq) -> Message {
        Message {
            seq,
            room_id: RoomId::parse("r").unwrap(),
            author_id: AuthorId::from_store("0123456789abcdef"),
            nickname: "수달".into(),
            avatar: "otter".into(),
            content: format!("m{seq}"),
            created_at: 0,
            client_id: format!("c{seq}"),
            reactions: Reactions::default(),
            reply_to: None,
            edited_at: None,
        }
    }

    /// A reader's end of the room: its queue (which a kick ends) and its welcome.
    struct Tab {
        frames: crate::room::Line,
        welcome: oneshot::Receiver<Result<Frame, JoinError>>,
    }

    impl Tab {
        fn frames(&mut self) -> Vec<serde_json::Value> {
            std::iter::from_fn(|| self.frames.try_recv()).map(|f| serde_json::from_str(f.as_str()).unwrap()).collect()
        }

        fn of_type(&mut self, ty: &str) -> Vec<serde_json::Value> {
            self.frames().into_iter().filter(|f| f["type"] == ty).collect()
        }

        fn welcome(&mut self) -> serde_json::Value {
            let welcome = self.welcome.try_recv().expect("answered").expect("welcomed");
            serde_json::from_str(welcome.as_str()).unwrap()
        }
    }

    fn profile(name: &str) -> Profile {
        Profile { author_id: AuthorId::derive(&uuid::Uuid::new_v4()), nickname: name.into(), avatar: "otter".into() }
    }

    fn join(core: &mut RoomCore, conn: ConnId, profile: Profile, last_seq: Option<Seq>) -> Tab {
        let (outbox, frames) = crate::room::outbox::detached(8);
        let (reply, welcome) = oneshot::channel();
        let client = ClientKey::of("127.0.0.1".parse().unwrap());
        let arrival = Arrival { profile, last_seq, watching: false };
        core.command(Command::Join(Box::new(JoinRequest { conn, arrival, client, outbox, reply })));
        Tab { frames, welcome }
    }

    /// A room loaded with `recent`, its counter at `last_seq`.
    fn loaded(settings: Arc<RoomSettings>, recent: Vec<Message>, last_seq: Seq) -> RoomCore {
        let mut core = RoomCore::new(RoomId::parse("r").unwrap(), settings, Arc::new(RingUsage::default()), true);
        core.command(Command::Info { reply: oneshot::channel().0 });
        assert!(matches!(core.take_effects().as_slice(), [Effect::Load { .. }]));
        core.done(Done::Loaded(Ok(RoomSnapshot { last_seq, recent, ..RoomSnapshot::default() })));
        // The read that covers what other pods published before the subscription: nothing.
        core.tick(Instant::now() + SETTLE);
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Repair { .. })));
        core.done(Done::Repaired(Ok(Vec::new())));
        core.take_effects();
        core
    }

    fn remote(core: &mut RoomCore, seq: Seq) {
        let entry = Entry::new(&message(seq));
        core.command(Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event: RoomEvent::Message { seq, json: entry.json } }));
    }

    fn seqs(frames: &[serde_json::Value]) -> Vec<i64> {
        frames.iter().map(|f| f["message"]["seq"].as_i64().unwrap()).collect()
    }

    #[test]
    fn joins_wait_for_the_load_and_are_answered_in_order() {
        let mut core = RoomCore::new(RoomId::parse("r").unwrap(), settings(10), Arc::new(RingUsage::default()), true);
        let mut first = join(&mut core, 1, profile("하나"), None);
        let mut second = join(&mut core, 2, profile("둘"), None);
        let effects = core.take_effects();
        assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Load { .. })).count(), 1, "one load for both");
        assert!(first.welcome.try_recv().is_err(), "no welcome before the load");
        core.done(Done::Loaded(Ok(RoomSnapshot { last_seq: 2, recent: vec![message(1), message(2)], ..RoomSnapshot::default() })));
        assert_eq!(
            seqs(&first.welcome()["history"].as_array().unwrap().iter().map(|m| serde_json::json!({ "message": m })).collect::<Vec<_>>()),
            vec![1, 2]
        );
        assert_eq!(second.welcome()["online"], 2);
    }

    #[test]
    fn messages_ahead_of_a_gap_wait_and_the_repair_fills_it_once_in_order() {
        let mut core = loaded(settings(10), vec![message(1)], 1);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        tab.welcome();
        remote(&mut core, 3);
        remote(&mut core, 4);
        assert!(tab.of_type("message").is_empty(), "3 and 4 wait for 2");
        core.tick(Instant::now() + HOLD_BACK);
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Repair { after: 1, .. })));
        // While the store is read, 2 arrives after all, and 5 behind it.
        remote(&mut core, 2);
        remote(&mut core, 5);
        assert_eq!(seqs(&tab.of_type("message")), vec![2, 3, 4, 5]);
        // The read returns 2 and 3 (4 was committed later): nothing is delivered twice.
        core.done(Done::Repaired(Ok(vec![message(2), message(3)])));
        assert!(tab.of_type("message").is_empty());
        remote(&mut core, 5);
        remote(&mut core, 6);
        assert_eq!(seqs(&tab.of_type("message")), vec![6], "duplicates are dropped");
    }

    #[test]
    fn a_seq_the_repair_does_not_return_below_a_known_one_was_deleted() {
        let mut core = loaded(settings(10), vec![message(1)], 1);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        tab.welcome();
        remote(&mut core, 4);
        core.tick(Instant::now() + HOLD_BACK);
        core.take_effects();
        // 5 is published while the read runs; 2 was deleted, 3 is in the store.
        remote(&mut core, 6);
        core.done(Done::Repaired(Ok(vec![message(3), message(4)])));
        assert_eq!(seqs(&tab.of_type("message")), vec![3, 4], "2 skipped as deleted; 6 still waits for 5");
        remote(&mut core, 5);
        assert_eq!(seqs(&tab.of_type("message")), vec![5, 6]);
    }

    #[test]
    fn a_commit_acks_then_broadcasts_and_a_duplicate_only_acks() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let mut tab = join(&mut core, 1, profile("작가"), None);
        tab.welcome();
        core.command(Command::Send { conn: 1, client_id: "a".into(), content: "hi".into(), reply_to: None, received: Instant::now() });
        core.command(Command::Send { conn: 1, client_id: "b".into(), content: "again".into(), reply_to: None, received: Instant::now() });
        let effects = core.take_effects();
        assert!(matches!(effects.as_slice(), [Effect::Commit(batch)] if batch.len() == 1), "one batch in flight at a time");
        core.done(Done::Committed(Ok(vec![Appended::stored(1, 0, true, None)])));
        let effects = core.take_effects();
        assert!(matches!(
            effects.as_slice(),
            [Effect::Publish(_), Effect::Notify(Notice::MessageCreated { seq: 1, .. }), Effect::Commit(batch)] if batch.len() == 1
        ));
        core.done(Done::Committed(Ok(vec![Appended::stored(1, 0, false, None)])));
        assert!(core.take_effects().iter().all(|e| !matches!(e, Effect::Notify(_))), "a resent clientId is not news");
        let frames = tab.frames();
        let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).filter(|t| *t != "presence").collect();
        assert_eq!(kinds, vec!["ack", "message", "ack"]);
    }

    #[test]
    fn sends_over_the_authors_budget_are_refused_with_a_wait() {
        let mut core = loaded(settings(2), Vec::new(), 0);
        let mut tab = join(&mut core, 1, profile("성급한"), None);
        tab.welcome();
        for id in ["a", "b", "c"] {
            core.command(Command::Send { conn: 1, client_id: id.into(), content: "x".into(), reply_to: None, received: Instant::now() });
        }
        let refused = tab.of_type("error");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["code"], "rate_limited");
        assert_eq!(refused[0]["clientId"], "c");
        assert!(refused[0]["retryAfterMs"].as_u64().unwrap() > 0);
    }

    #[test]
    fn deletes_leave_the_ring_so_later_joins_never_see_them() {
        let mut core = loaded(settings(10), vec![message(1), message(2), message(3)], 3);
        core.done(Done::Deleted { seq: 2, requester: Requester::Admin(oneshot::channel().0), outcome: Ok(Deletion::Deleted) });
        let mut tab = join(&mut core, 1, profile("늦은"), None);
        let history = tab.welcome()["history"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(history, vec![1, 3]);
    }

    #[test]
    fn presence_is_coalesced_and_synced_one_at_a_time() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let mut tabs: Vec<Tab> = (0..5).map(|i| join(&mut core, i, profile("손님"), None)).collect();
        let start = Instant::now();
        core.tick(start + PRESENCE_EVERY);
        let syncs = core.take_effects().into_iter().filter(|e| matches!(e, Effect::SyncPresence { .. })).count();
        assert_eq!(syncs, 1, "five arrivals, one sync");
        // More churn while it runs waits for it.
        tabs.push(join(&mut core, 9, profile("또"), None));
        core.tick(start + PRESENCE_EVERY * 3);
        assert!(core.take_effects().iter().all(|e| !matches!(e, Effect::SyncPresence { .. })));
        core.done(Done::PresenceSynced { sync: PresenceSync { wrote: true, others: None }, always: true, shared: true });
        assert!(matches!(core.take_effects().as_slice(), [Effect::SyncPresence { .. }]), "the one that waited");
        let presence = tabs[0].of_type("presence");
        assert_eq!(presence.len(), 1);
        assert_eq!(presence[0]["online"], 6);
    }

    #[test]
    fn a_crowd_gets_its_presence_less_often() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let crowd = 3 * PRESENCE_FRAMES_PER_SECOND as u64;
        let _tabs: Vec<Tab> = (0..crowd).map(|i| join(&mut core, i, profile("손님"), None)).collect();
        let start = Instant::now();
        core.tick(start + PRESENCE_EVERY);
        core.done(Done::PresenceSynced { sync: PresenceSync { wrote: true, others: None }, always: true, shared: true });
        core.take_effects();
        // One more arrives: a room this size shows it three seconds after the last, not half a second.
        let _late = join(&mut core, crowd, profile("늦은"), None);
        let due = core.presence_due.expect("a presence is due");
        assert!(due >= start + PRESENCE_EVERY + Duration::from_secs(3) - Duration::from_millis(50), "due {:?} after start", due - start);
    }

    #[test]
    fn a_crowd_is_shown_its_presence_a_slice_at_a_time() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let crowd = 3 * PRESENCE_SLICE_READERS as u64 + 1;
        let mut tabs: Vec<Tab> = (0..crowd).map(|i| join(&mut core, i, profile("손님"), None)).collect();
        core.tick(Instant::now() + PRESENCE_EVERY);
        let start = Instant::now();
        core.done(Done::PresenceSynced { sync: PresenceSync { wrote: true, others: None }, always: true, shared: true });
        core.take_effects();
        let mut shown = vec![0; tabs.len()];
        let mut count = |tabs: &mut Vec<Tab>| {
            let before: usize = shown.iter().sum();
            for (tab, n) in tabs.iter_mut().zip(shown.iter_mut()) {
                *n += tab.of_type("presence").len();
            }
            shown.iter().sum::<usize>() - before
        };
        assert_eq!(count(&mut tabs), PRESENCE_SLICE_READERS, "the first slice at once");
        let mut slices = 1;
        while let Some(due) = core.showing.as_ref().map(|s| s.next) {
            assert!(due >= start + PRESENCE_SLICE_EVERY * slices, "slices are spaced");
            core.tick(due);
            slices += 1;
            let frames = count(&mut tabs);
            assert!(frames > 0 && frames <= PRESENCE_SLICE_READERS, "slice {slices}: {frames} frames");
        }
        assert_eq!(slices, 4);
        assert!(shown.iter().all(|n| *n == 1), "every reader shown once: {shown:?}");
        assert_eq!(tabs[0].of_type("presence").len(), 0);
    }

    #[test]
    fn a_reader_who_cannot_keep_up_is_kicked_and_the_others_are_not_held_up() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let mut slow = join(&mut core, 1, profile("느린"), None);
        let mut quick = join(&mut core, 2, profile("빠른"), None);
        slow.welcome();
        quick.welcome();
        for seq in 1..=12 {
            remote(&mut core, seq);
            quick.frames();
        }
        let kick = slow.frames.last_word().expect("kicked");
        assert_eq!(kick.code, CloseCode::TryAgainLater);
        assert!(quick.frames.last_word().is_none());
    }

    #[test]
    fn a_banned_reader_is_kicked_and_refused_on_its_next_join() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let troll = profile("트롤");
        let mut tab = join(&mut core, 1, troll.clone(), None);
        tab.welcome();
        let until = now_millis() + 60_000;
        core.done(Done::Banned { author: troll.author_id.clone(), until, reply: oneshot::channel().0, outcome: Ok(()) });
        assert_eq!(tab.frames.last_word().expect("kicked").code, CloseCode::Policy);
        let mut again = join(&mut core, 2, troll, None);
        assert_eq!(again.welcome.try_recv().unwrap().unwrap_err(), JoinError::Banned);
    }

    #[test]
    fn a_welcome_the_ring_cannot_answer_is_read_from_the_store_and_cut_at_the_join() {
        // The ring holds 8..=10 only (the room has 10 messages).
        let mut core = loaded(settings_with_ring(10, 3), vec![message(8), message(9), message(10)], 10);
        let mut tab = join(&mut core, 1, profile("돌아온"), Some(2));
        let effects = core.take_effects();
        assert!(effects.iter().any(|e| matches!(e, Effect::History { conn: 1, read: HistoryRead::After(2), .. })));
        // However long the read takes, the room goes on: another reader's send is committed
        // and acked meanwhile, and message 11 is broadcast (the store already has it too).
        let mut writer = join(&mut core, 2, profile("쓰는"), Some(10));
        writer.welcome();
        core.command(Command::Send {
            conn: 2,
            client_id: "w".into(),
            content: "meanwhile".into(),
            reply_to: None,
            received: Instant::now(),
        });
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Commit(_))));
        core.done(Done::Committed(Ok(vec![Appended::stored(11, 0, true, None)])));
        assert_eq!(writer.of_type("ack").len(), 1);
        core.done(Done::History { conn: 1, read: HistoryRead::After(2), result: Ok(((3..=11).map(message).collect(), Vec::new())) });
        let welcome = tab.welcome();
        assert_eq!(welcome["resumed"], true);
        let history: Vec<i64> = welcome["history"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(history, (3..=10).collect::<Vec<_>>(), "11 comes as a message, not twice");
        assert_eq!(seqs(&tab.of_type("message")), vec![11]);
    }

    #[test]
    fn a_locked_room_refuses_sends_and_says_so_until_reopened() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        assert_eq!(tab.welcome()["locked"], false);
        core.command(Command::Lock { locked: true, reply: oneshot::channel().0 });
        assert!(matches!(core.take_effects().as_slice(), [Effect::SetLock { locked: true, .. }]), "stored first");
        assert!(tab.of_type("room").is_empty(), "nothing changes before the store answers");
        let (reply, answer) = oneshot::channel();
        core.done(Done::Locked { locked: true, reply, outcome: Ok(()) });
        assert_eq!(answer.blocking_recv().unwrap(), Ok(()));
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Publish(RoomEvent::Locked { locked: true }))));
        assert_eq!(tab.of_type("room"), vec![serde_json::json!({"type": "room", "locked": true, "slowMode": 0})]);
        core.command(Command::Send { conn: 1, client_id: "x".into(), content: "hello?".into(), reply_to: None, received: Instant::now() });
        assert!(core.take_effects().iter().all(|e| !matches!(e, Effect::Commit(_))), "not stored");
        let refused = tab.of_type("error");
        assert_eq!((refused[0]["code"].as_str(), refused[0]["clientId"].as_str()), (Some("room_locked"), Some("x")));
        let mut late = join(&mut core, 2, profile("늦은"), None);
        assert_eq!(late.welcome()["locked"], true);
        // Another pod reopens it.
        core.command(Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event: RoomEvent::Locked { locked: false } }));
        assert_eq!(tab.of_type("room")[0]["locked"], false);
        core.command(Command::Send {
            conn: 1,
            client_id: "y".into(),
            content: "open again".into(),
            reply_to: None,
            received: Instant::now(),
        });
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Commit(_))));
    }

    #[test]
    fn a_pin_shows_in_welcomes_and_goes_when_unpinned_or_deleted() {
        let mut core = loaded(settings(10), vec![message(1), message(2)], 2);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        assert!(tab.welcome()["pinned"].is_null());
        let (reply, answer) = oneshot::channel();
        core.done(Done::Pinned { unpin: false, reply, outcome: Ok(Some(message(2))) });
        assert_eq!(answer.blocking_recv().unwrap(), Ok(true));
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Publish(RoomEvent::Pinned { pinned: Some((2, _)) }))));
        assert_eq!(tab.of_type("pinned")[0]["message"]["seq"], 2);
        assert_eq!(join(&mut core, 2, profile("새"), None).welcome()["pinned"]["content"], "m2");
        // A seq that does not exist: nothing changes, nobody is told.
        let (reply, answer) = oneshot::channel();
        core.done(Done::Pinned { unpin: false, reply, outcome: Ok(None) });
        assert_eq!(answer.blocking_recv().unwrap(), Ok(false));
        assert!(core.take_effects().is_empty());
        assert!(tab.of_type("pinned").is_empty());
        // Deleting the pinned message unpins it (the store did in the same transaction).
        core.done(Done::Deleted { seq: 2, requester: Requester::Admin(oneshot::channel().0), outcome: Ok(Deletion::Deleted) });
        let frames = tab.frames();
        assert!(frames.iter().any(|f| f["type"] == "pinned" && f["message"].is_null()), "{frames:?}");
        assert!(join(&mut core, 3, profile("셋"), None).welcome()["pinned"].is_null());
    }

    #[test]
    fn a_change_during_the_load_is_applied_after_it() {
        let mut core = RoomCore::new(RoomId::parse("r").unwrap(), settings(10), Arc::new(RingUsage::default()), true);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        core.take_effects();
        core.command(Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event: RoomEvent::Locked { locked: true } }));
        // The load read the room before the lock.
        core.done(Done::Loaded(Ok(RoomSnapshot::default())));
        assert_eq!(tab.welcome()["locked"], true);
    }

    #[test]
    fn an_unban_lets_the_reader_back_in() {
        let mut core = loaded(settings(10), Vec::new(), 0);
        let troll = profile("트롤");
        core.done(Done::Banned {
            author: troll.author_id.clone(),
            until: now_millis() + 60_000,
            reply: oneshot::channel().0,
            outcome: Ok(()),
        });
        core.done(Done::Unbanned { author: troll.author_id.clone(), reply: oneshot::channel().0, outcome: Ok(true) });
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Publish(RoomEvent::Unbanned { .. }))));
        join(&mut core, 1, troll, None).welcome();
    }

    fn history_seqs(welcome: &serde_json::Value) -> Vec<i64> {
        welcome["history"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    }

    #[test]
    fn a_report_goes_to_the_store_and_its_answer_to_the_reporter_only() {
        let mut core = loaded(settings(10), vec![message(1), message(2)], 2);
        let mut reporter = join(&mut core, 1, profile("신고자"), None);
        let mut other = join(&mut core, 2, profile("구경꾼"), None);
        reporter.welcome();
        other.welcome();
        core.command(Command::Report { conn: 1, seq: 2 });
        let effects = core.take_effects();
        assert!(matches!(effects.as_slice(), [Effect::Report { conn: 1, seq: 2, .. }]), "stored first");
        core.done(Done::Reported {
            conn: 1,
            seq: 2,
            outcome: Ok(Report::Recorded { fresh: true, reports: 1, hidden: false, already_hidden: false }),
        });
        assert_eq!(reporter.frames(), vec![serde_json::json!({"type": "reported", "seq": 2})]);
        assert!(other.frames().iter().all(|f| f["type"] == "presence"), "nobody else hears of it");
        for (outcome, code) in
            [(Ok(Report::NotFound), "not_found"), (Ok(Report::Forbidden), "forbidden"), (Err(StoreError::Timeout), "unavailable")]
        {
            core.done(Done::Reported { conn: 1, seq: 2, outcome });
            let refused = reporter.of_type("error");
            assert_eq!((refused[0]["code"].as_str(), refused[0]["seq"].as_i64()), (Some(code), Some(2)), "{refused:?}");
        }
    }

    #[test]
    fn reports_take_from_the_send_budget() {
        let mut core = loaded(settings(2), vec![message(1)], 1);
        let mut tab = join(&mut core, 1, profile("성급한"), None);
        tab.welcome();
        core.command(Command::Send { conn: 1, client_id: "a".into(), content: "x".into(), reply_to: None, received: Instant::now() });
        core.command(Command::Report { conn: 1, seq: 1 });
        core.command(Command::Report { conn: 1, seq: 1 });
        let reports = core.take_effects().iter().filter(|e| matches!(e, Effect::Report { .. })).count();
        assert_eq!(reports, 1, "the send and one report used the burst of 2");
        let refused = tab.of_type("error");
        assert_eq!((refused[0]["code"].as_str(), refused[0]["seq"].as_i64()), (Some("rate_limited"), Some(1)));
        assert!(refused[0]["retryAfterMs"].as_u64().unwrap() > 0);
    }

    #[test]
    fn a_hidden_message_leaves_every_reader_the_pin_and_later_welcomes() {
        let mut core = loaded(settings(10), vec![message(1), message(2), message(3)], 3);
        let mut reporter = join(&mut core, 1, profile("신고자"), None);
        let mut other = join(&mut core, 2, profile("구경꾼"), None);
        reporter.welcome();
        other.welcome();
        core.done(Done::Pinned { unpin: false, reply: oneshot::channel().0, outcome: Ok(Some(message(2))) });
        core.take_effects();
        other.frames();
        reporter.frames();
        core.done(Done::Reported {
            conn: 1,
            seq: 2,
            outcome: Ok(Report::Recorded { fresh: true, reports: 3, hidden: true, already_hidden: false }),
        });
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Publish(RoomEvent::Hidden { seq: 2 }))), "other pods are told");
        let frames = other.frames();
        assert!(frames.contains(&serde_json::json!({"type": "hidden", "seq": 2})), "{frames:?}");
        assert!(frames.iter().any(|f| f["type"] == "pinned" && f["message"].is_null()), "hiding unpins: {frames:?}");
        let kinds: Vec<_> = reporter.frames().into_iter().filter(|f| f["type"] != "presence").map(|f| f["type"].clone()).collect();
        assert_eq!(kinds, vec!["reported", "pinned", "hidden"]);
        let mut late = join(&mut core, 3, profile("늦은"), None);
        let welcome = late.welcome();
        assert_eq!(history_seqs(&welcome), vec![1, 3]);
        assert!(welcome["pinned"].is_null());
    }

    #[test]
    fn a_kept_message_comes_back_in_place_for_readers_and_welcomes() {
        let mut core = loaded(settings(10), vec![message(1), message(2), message(3)], 3);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        tab.welcome();
        core.command(Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event: RoomEvent::Hidden { seq: 2 } }));
        assert_eq!(tab.of_type("hidden"), vec![serde_json::json!({"type": "hidden", "seq": 2})]);
        let (reply, answer) = oneshot::channel();
        core.command(Command::Dismiss { seq: 2, reply });
        let Some(Effect::Dismiss { seq: 2, reply }) = core.take_effects().pop() else { panic!("stored first") };
        core.done(Done::Dismissed { reply, outcome: Ok(Dismissal::Restored(Box::new(message(2)))) });
        assert_eq!(answer.blocking_recv().unwrap(), Ok(true));
        assert!(core.take_effects().iter().any(|e| matches!(e, Effect::Publish(RoomEvent::Restored { seq: 2, .. }))));
        let restored = tab.of_type("restored");
        assert_eq!((restored.len(), restored[0]["message"]["content"].as_str()), (1, Some("m2")));
        assert_eq!(history_seqs(&join(&mut core, 2, profile("늦은"), None).welcome()), vec![1, 2, 3]);
        let resumed = join(&mut core, 3, profile("돌아온"), Some(1)).welcome();
        assert_eq!((history_seqs(&resumed), resumed["resumed"].as_bool()), (vec![2, 3], Some(true)));
        // Nothing open: the owner hears so and nobody else hears anything.
        let (reply, answer) = oneshot::channel();
        core.done(Done::Dismissed { reply, outcome: Ok(Dismissal::NoReports) });
        assert_eq!(answer.blocking_recv().unwrap(), Ok(false));
        assert!(core.take_effects().is_empty());
        assert!(tab.of_type("restored").is_empty());
    }

    fn reaction(author: &Profile, emoji: &str, on: bool, counts: [u32; 6]) -> Command {
        let emoji = Emoji::parse(emoji).unwrap();
        let event = RoomEvent::Reaction { seq: 1, author: author.author_id.clone(), emoji, on, counts: Reactions(counts) };
        Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event })
    }

    #[test]
    fn reactions_from_other_pods_end_in_the_same_counts_whatever_order_they_arrive_in() {
        let mut core = loaded(settings(10), vec![message(1)], 1);
        let (first, second) = (profile("첫째"), profile("둘째"));
        let mut tab = join(&mut core, 1, first.clone(), None);
        tab.welcome();
        // The second reader's change was stored last (counts 2) but arrives first.
        core.command(reaction(&second, "👍", true, [2, 0, 0, 0, 0, 0]));
        core.command(reaction(&first, "👍", true, [1, 0, 0, 0, 0, 0]));
        let counts: Vec<_> = tab.of_type("reactions").iter().map(|f| f["reactions"]["👍"].clone()).collect();
        assert_eq!(counts, vec![serde_json::json!(1), serde_json::json!(2)], "counted from who reacted, not from stale counts");
        let welcome = join(&mut core, 2, first.clone(), None).welcome();
        assert_eq!(welcome["history"][0]["reactions"], serde_json::json!({"👍": 2}));
        assert_eq!(welcome["myReactions"], serde_json::json!({"1": ["👍"]}));
        assert_eq!(join(&mut core, 3, profile("셋째"), None).welcome()["myReactions"], serde_json::json!({}));
        core.command(reaction(&first, "👍", false, [1, 0, 0, 0, 0, 0]));
        assert_eq!(join(&mut core, 4, first, None).welcome()["myReactions"], serde_json::json!({}));
    }

    #[test]
    fn an_edit_or_a_deletion_of_an_original_changes_the_quotes_of_replies_held_in_memory() {
        let mut reply = message(2);
        reply.reply_to = Some(ReplyQuote::of(&message(1)));
        let mut core = loaded(settings(10), vec![message(1), reply], 2);
        let mut edited = message(1);
        edited.content = "m1, edited".into();
        edited.edited_at = Some(5);
        let json = Entry::new(&edited).json;
        core.command(Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event: RoomEvent::Edited { seq: 1, json } }));
        let welcome = join(&mut core, 1, profile("독자"), None).welcome();
        assert_eq!(welcome["history"][0]["editedAt"], "1970-01-01T00:00:00.005Z");
        assert_eq!(welcome["history"][1]["replyTo"]["excerpt"], "m1, edited");
        core.command(Command::Remote(Envelope { pod: "other".into(), sent_at_ms: 0, event: RoomEvent::Deleted { seq: 1 } }));
        let welcome = join(&mut core, 2, profile("늦은"), None).welcome();
        assert_eq!(welcome["history"][0]["replyTo"], serde_json::json!({"seq": 1, "deleted": true}));
    }

    #[test]
    fn a_message_restored_before_this_pod_delivered_it_arrives_in_order() {
        let mut core = loaded(settings(10), vec![message(1)], 1);
        let mut tab = join(&mut core, 1, profile("독자"), None);
        tab.welcome();
        remote(&mut core, 3);
        let entry = Entry::new(&message(2));
        core.command(Command::Remote(Envelope {
            pod: "other".into(),
            sent_at_ms: 0,
            event: RoomEvent::Restored { seq: 2, json: entry.json },
        }));
        assert_eq!(seqs(&tab.of_type("message")), vec![2, 3]);
    }
}
