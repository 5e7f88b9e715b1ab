//! Rooms: one actor task per live room owns everything about it (members, presence, the ring of
//! recent messages, seq order, rate limits). Sessions and the HTTP API talk to it only through
//! `Command`s on its channel; the `Rooms` registry maps room ids to running actors. The room's
//! rules live in `core` (synchronous, no I/O); `actor` runs the core and its I/O; `cluster` is
//! the seam to the other pods.

mod actor;
mod budget;
mod cluster;
mod core;
mod outbox;
mod presence;
mod queue;
mod registry;
mod ring;

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::chat::{AuthorId, Emoji, Profile, Seq};
use crate::client_ip::ClientKey;
use crate::protocol::Frame;
use crate::store::{writer::Writer, Deletion, Store};

pub use budget::RingBudget;
pub use cluster::{Cluster, RedisCluster, SinglePod};
pub use outbox::{line, Line, LineIo, Outbox};
pub use registry::{Joined, Rooms};
pub use ring::RingLimits;

/// Identifies one WebSocket connection (a reader may have several tabs).
pub type ConnId = u64;

/// How many recent messages a room keeps in memory: enough for a join (50) and for a resume of up
/// to `RESUME_MAX` missed messages.
pub const RING_CAPACITY: usize = 500;
pub const HISTORY_ON_JOIN: usize = 50;
pub const RESUME_MAX: Seq = 500;

/// Settings every room shares.
pub struct RoomSettings {
    /// Sends of one reader in one room, all its sockets together.
    pub send_rate: f64,
    pub send_burst: u32,
    /// Messages the whole room stores; past it the room is in slow mode.
    pub room_send_rate: f64,
    pub room_send_burst: u32,
    pub idle: Duration,
    /// Bytes of history one welcome may carry.
    pub welcome_max_bytes: usize,
    /// Count and byte caps of each room's ring, and the pod-wide budget they share.
    pub ring: RingLimits,
    /// The per-address send budget every room draws from.
    pub clients: std::sync::Arc<crate::clients::Clients>,
    /// Distinct readers whose reports hide a message (0: reports never hide one).
    pub auto_hide_reports: u32,
    /// How long after sending a message its author may edit it.
    pub edit_window: Duration,
}

pub struct RoomContext {
    pub store: std::sync::Arc<dyn Store>,
    pub writer: Writer,
    pub settings: std::sync::Arc<RoomSettings>,
    /// The other pods (none on a single pod).
    pub cluster: std::sync::Arc<dyn Cluster>,
    /// The owner's endpoints, told about what happens in rooms.
    pub webhooks: crate::webhooks::Webhooks,
}

/// Why the room closes a member's connection, with an optional last frame to send first.
#[derive(Debug)]
pub struct Kick {
    pub code: crate::protocol::CloseCode,
    pub reason: &'static str,
    pub frame: Option<Frame>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("you are banned from this room")]
    Banned,
    #[error("the message store is unavailable")]
    Unavailable,
    #[error("the room is shutting down")]
    Closed,
}

impl From<JoinError> for crate::protocol::ErrorCode {
    fn from(err: JoinError) -> Self {
        match err {
            JoinError::Banned => Self::Banned,
            JoinError::Unavailable | JoinError::Closed => Self::Unavailable,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the message store is unavailable")]
    Unavailable,
    #[error("the pod is shutting down")]
    Closed,
}

impl From<RoomError> for crate::protocol::ErrorCode {
    fn from(_: RoomError) -> Self {
        // Either way the room could not answer now; the client may try again.
        Self::Unavailable
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomInfo {
    pub online: usize,
    pub last_seq: Seq,
    /// Messages delivered in the last minute (on this pod: its own and the other pods').
    pub per_minute: u32,
    pub locked: bool,
}

/// Who joins: the reader's profile, the last seq it saw, and whether it only watches (the owner's
/// live view: not in presence, never sends).
#[derive(Debug, Clone)]
pub struct Arrival {
    pub profile: Profile,
    pub last_seq: Option<Seq>,
    pub watching: bool,
}

/// A reader joining: who, its outbox, and where the room answers.
pub struct JoinRequest {
    pub conn: ConnId,
    pub arrival: Arrival,
    pub client: ClientKey,
    pub outbox: Outbox,
    pub reply: oneshot::Sender<Result<Frame, JoinError>>,
}

pub enum Command {
    /// Boxed: the largest command, and rare; the common ones set the size of a room's queued
    /// commands.
    Join(Box<JoinRequest>),
    Leave {
        conn: ConnId,
    },
    Send {
        conn: ConnId,
        client_id: String,
        content: String,
        /// The message it answers.
        reply_to: Option<Seq>,
        received: Instant,
    },
    /// A reader puts a reaction on a message or takes it back.
    React {
        conn: ConnId,
        seq: Seq,
        emoji: Emoji,
        on: bool,
    },
    /// An author edits its own message.
    Edit {
        conn: ConnId,
        seq: Seq,
        content: String,
    },
    Delete {
        conn: ConnId,
        seq: Seq,
    },
    /// A reader reports someone else's message.
    Report {
        conn: ConnId,
        seq: Seq,
    },
    Typing {
        conn: ConnId,
    },
    Rename {
        conn: ConnId,
        nickname: String,
        avatar: String,
    },
    Info {
        reply: oneshot::Sender<Result<RoomInfo, RoomError>>,
    },
    AdminDelete {
        seq: Seq,
        reply: oneshot::Sender<Result<Deletion, RoomError>>,
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
    /// Lock the room read-only (true) or reopen it.
    Lock {
        locked: bool,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
    /// Slow mode: one message per reader every this many seconds (0: off).
    SlowMode {
        seconds: u32,
        reply: oneshot::Sender<Result<(), RoomError>>,
    },
    /// Pin a message (false: no such message), or unpin (`None`).
    Pin {
        seq: Option<Seq>,
        reply: oneshot::Sender<Result<bool, RoomError>>,
    },
    /// The owner keeps a reported message: its reports are cleared and, if it was hidden, it is
    /// shown again (false: it had no open reports).
    Dismiss {
        seq: Seq,
        reply: oneshot::Sender<Result<bool, RoomError>>,
    },
    /// Something another pod published for this room.
    Remote(crate::bus::Envelope),
    /// The pod's ring budget is exceeded: drop about this many bytes of the oldest messages.
    ShedRing {
        bytes: usize,
    },
    /// The pod is going away: commit what is pending, then stop.
    Shutdown,
}

/// The live rooms of this pod: room id → running actor. The registry owns it; an actor removes
/// its own entry when it stops, and the ring budget's shedder reads it.
pub(crate) type LiveRooms = dashmap::DashMap<crate::chat::RoomId, RoomHandle>;

/// Removes a stopping actor's entry, only if it is still its own (a successor may be running).
fn unregister(rooms: &LiveRooms, room: &crate::chat::RoomId, generation: u64) {
    rooms.remove_if(room, |_, h| h.generation == generation);
}

/// A running room actor, as the registry and the sessions hold it.
#[derive(Clone)]
pub struct RoomHandle {
    tx: queue::Sender<Command>,
    generation: u64,
    /// The room's ring bytes and last activity, for the pod's ring budget.
    usage: std::sync::Arc<budget::RingUsage>,
}

impl RoomHandle {
    /// Sends a member's command. Fails only when the actor is gone, which a member outlives only
    /// after being kicked.
    pub async fn send(&self, cmd: Command) -> Result<(), RoomError> {
        self.tx.send(cmd).await.map_err(|_| RoomError::Closed)
    }
}
