//! The room actor: the only owner of a room's state. It serves joins from its ring of recent
//! messages, passes sends through the rate limit into group commit, and only after the commit
//! acks the sender and broadcasts the message, serialized once for every member.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::presence::Presence;
use super::rate::TokenBucket;
use super::registry::Inner;
use super::ring::{Entry, Ring};
use super::{Command, ConnId, JoinError, Kick, RoomContext, RoomError, RoomInfo, HISTORY_ON_JOIN, RESUME_MAX, RING_CAPACITY};
use crate::chat::{now_millis, AuthorId, Message, Profile, RoomId, Seq};
use crate::metrics::METRICS;
use crate::store::writer::AppendResult;
use crate::store::{Deletion, NewMessage, StoreError};
use crate::ws::protocol::{self, ErrorCode};

/// Presence frames go out at most this often per room, whatever the churn.
const PRESENCE_EVERY: Duration = Duration::from_millis(500);
/// A member's typing frames are passed on at most this often.
const TYPING_EVERY: Duration = Duration::from_secs(2);
/// Messages of one room in one commit at most.
const ROOM_BATCH: usize = 256;

struct Member {
    profile: Profile,
    outbox: mpsc::Sender<Utf8Bytes>,
    kick: Option<oneshot::Sender<Kick>>,
    sends: TokenBucket,
    last_typing: Option<Instant>,
}

struct Pending {
    conn: ConnId,
    author: Profile,
    client_id: String,
    content: String,
    received: Instant,
}

struct InFlight {
    sends: Vec<Pending>,
    result: oneshot::Receiver<AppendResult>,
}

enum Requester {
    Member(ConnId),
    Admin(oneshot::Sender<Result<Deletion, RoomError>>),
}

/// Store operations the actor started without waiting for them.
enum Done {
    Delete { seq: Seq, requester: Requester, outcome: Result<Deletion, StoreError> },
    Ban { author: AuthorId, until: i64, reply: oneshot::Sender<Result<(), RoomError>>, outcome: Result<(), StoreError> },
}

/// Loaded room state; absent until the store has answered once.
struct Loaded {
    ring: Ring,
    last_seq: Seq,
    bans: HashMap<AuthorId, i64>,
}

pub(super) struct RoomActor {
    id: RoomId,
    generation: u64,
    ctx: Arc<RoomContext>,
    registry: Weak<Inner>,
    rx: mpsc::Receiver<Command>,
    _alive: mpsc::Sender<()>,
    state: Option<Loaded>,
    members: HashMap<ConnId, Member>,
    presence: Presence,
    presence_due: Option<Instant>,
    last_presence: Instant,
    pending: Vec<Pending>,
    in_flight: Option<InFlight>,
    tasks: JoinSet<Done>,
    idle_since: Instant,
    shutting_down: bool,
}

impl RoomActor {
    pub(super) fn new(
        id: RoomId,
        generation: u64,
        ctx: Arc<RoomContext>,
        registry: Weak<Inner>,
        rx: mpsc::Receiver<Command>,
        alive: mpsc::Sender<()>,
    ) -> RoomActor {
        let now = Instant::now();
        RoomActor {
            id,
            generation,
            ctx,
            registry,
            rx,
            _alive: alive,
            state: None,
            members: HashMap::new(),
            presence: Presence::default(),
            presence_due: None,
            last_presence: now - PRESENCE_EVERY,
            pending: Vec::new(),
            in_flight: None,
            tasks: JoinSet::new(),
            idle_since: now,
            shutting_down: false,
        }
    }

    pub(super) async fn run(mut self) {
        METRICS.rooms_active.inc();
        tracing::debug!(room = %self.id, "room started");
        loop {
            let idle_at = tokio::time::Instant::from_std(self.idle_since + self.ctx.settings.idle);
            let presence_at = tokio::time::Instant::from_std(self.presence_due.unwrap_or(self.idle_since));
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                result = wait_commit(&mut self.in_flight), if self.in_flight.is_some() => self.committed(result).await,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(done) = done {
                        self.finished(done);
                    }
                }
                _ = sleep_until(presence_at), if self.presence_due.is_some() => self.flush_presence(),
                _ = sleep_until(idle_at), if self.is_quiet() && !self.shutting_down => {
                    self.stop().await;
                    break;
                }
            }
            if self.shutting_down && self.is_quiet_but_members() {
                break;
            }
        }
        METRICS.rooms_active.dec();
        tracing::debug!(room = %self.id, "room stopped");
    }

    /// No members and no store work outstanding.
    fn is_quiet(&self) -> bool {
        self.members.is_empty() && self.is_quiet_but_members()
    }

    fn is_quiet_but_members(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_none() && self.tasks.is_empty()
    }

    /// Leaves the registry, then answers nothing that was already queued: every waiting request
    /// sees its reply dropped and asks the registry again, which starts a fresh actor.
    async fn stop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(&self.id, self.generation);
        }
        self.rx.close();
        while self.rx.recv().await.is_some() {}
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join { conn, profile, last_seq, outbox, kick, reply } => {
                let result = self.join(conn, profile, last_seq, outbox, kick).await;
                let _ = reply.send(result);
            }
            Command::Leave { conn } => self.leave(conn),
            Command::Send { conn, client_id, content, received } => self.send(conn, client_id, content, received).await,
            Command::Delete { conn, seq } => {
                if let Some(member) = self.members.get(&conn) {
                    let author = member.profile.author_id.clone();
                    self.start_delete(seq, Some(author), Requester::Member(conn));
                }
            }
            Command::Typing { conn } => self.typing(conn),
            Command::Rename { conn, nickname, avatar } => self.rename(conn, nickname, avatar),
            Command::Info { reply } => {
                let last_seq = self.load().await.map(|s| s.last_seq).map_err(|_| RoomError::Unavailable);
                let _ = reply.send(last_seq.map(|last_seq| RoomInfo { online: self.presence.online(), last_seq }));
            }
            Command::AdminDelete { seq, reply } => self.start_delete(seq, None, Requester::Admin(reply)),
            Command::Ban { author, until, reply } => {
                let store = self.ctx.store.clone();
                let room = self.id.clone();
                self.tasks.spawn(async move {
                    let outcome = store.ban(room, author.clone(), until).await;
                    Done::Ban { author, until, reply, outcome }
                });
            }
            Command::Shutdown => self.shutting_down = true,
        }
    }

    /// The loaded state, loading it from the store on first use (or after the store failed).
    async fn load(&mut self) -> Result<&mut Loaded, StoreError> {
        if self.state.is_none() {
            let snapshot = self.ctx.store.load_room(self.id.clone(), RING_CAPACITY).await?;
            let complete = snapshot.recent.len() < RING_CAPACITY;
            self.state = Some(Loaded {
                ring: Ring::new(RING_CAPACITY, &snapshot.recent, complete),
                last_seq: snapshot.last_seq,
                bans: snapshot.bans.into_iter().collect(),
            });
        }
        Ok(self.state.as_mut().expect("loaded above"))
    }

    fn is_banned(&self, author: &AuthorId) -> bool {
        let now = now_millis();
        self.state.as_ref().and_then(|s| s.bans.get(author)).is_some_and(|until| *until > now)
    }

    async fn join(
        &mut self,
        conn: ConnId,
        profile: Profile,
        last_seq: Option<Seq>,
        outbox: mpsc::Sender<Utf8Bytes>,
        kick: oneshot::Sender<Kick>,
    ) -> Result<Utf8Bytes, JoinError> {
        if self.shutting_down {
            return Err(JoinError::Closed);
        }
        if let Err(err) = self.load().await {
            tracing::warn!(room = %self.id, error = %err, "room could not load its history");
            return Err(JoinError::Unavailable);
        }
        if self.is_banned(&profile.author_id) {
            return Err(JoinError::Banned);
        }
        let (history, resumed) = self.history_for(last_seq).await.map_err(|_| JoinError::Unavailable)?;
        if self.presence.arrive(&profile) {
            self.presence_changed();
        }
        let welcome = protocol::welcome(&profile, history.iter().map(|j| j.as_str()), resumed, self.presence.online());
        let sends = TokenBucket::new(self.ctx.settings.send_rate, self.ctx.settings.send_burst);
        self.members.insert(conn, Member { profile, outbox, kick: Some(kick), sends, last_typing: None });
        METRICS.joins.inc();
        Ok(welcome)
    }

    /// The welcome history: everything after `last_seq` when at most `RESUME_MAX` were missed,
    /// otherwise the latest `HISTORY_ON_JOIN`. From the ring, or the store when the ring is short.
    async fn history_for(&mut self, last_seq: Option<Seq>) -> Result<(Vec<Utf8Bytes>, bool), StoreError> {
        let state = self.state.as_ref().expect("loaded before join");
        let current = state.last_seq;
        if let Some(since) = last_seq.filter(|s| *s <= current && current - *s <= RESUME_MAX) {
            if let Some(entries) = state.ring.after(since) {
                return Ok((entries.map(|e| e.json.clone()).collect(), true));
            }
            let missed = self.ctx.store.after(self.id.clone(), since, RESUME_MAX as usize).await?;
            return Ok((missed.iter().map(|m| Entry::new(m).json).collect(), true));
        }
        if let Some(entries) = state.ring.latest(HISTORY_ON_JOIN) {
            return Ok((entries.map(|e| e.json.clone()).collect(), false));
        }
        let latest = self.ctx.store.history(self.id.clone(), None, HISTORY_ON_JOIN).await?;
        Ok((latest.iter().map(|m| Entry::new(m).json).collect(), false))
    }

    fn leave(&mut self, conn: ConnId) {
        if let Some(member) = self.members.remove(&conn) {
            if self.presence.leave(&member.profile.author_id) {
                self.presence_changed();
            }
        }
        if self.members.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    /// Removes a member and tells its session to close the connection.
    fn kick(&mut self, conn: ConnId, kick: Kick) {
        if let Some(mut member) = self.members.remove(&conn) {
            if let Some(tx) = member.kick.take() {
                let _ = tx.send(kick);
            }
            if self.presence.leave(&member.profile.author_id) {
                self.presence_changed();
            }
        }
        if self.members.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    /// Queues a frame for one member; a member whose queue is full cannot keep up and is closed.
    fn deliver(&mut self, conn: ConnId, frame: Utf8Bytes) {
        let Some(member) = self.members.get(&conn) else { return };
        match member.outbox.try_send(frame) {
            Ok(()) => METRICS.frames_delivered.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => self.slow_consumer(conn),
            Err(mpsc::error::TrySendError::Closed(_)) => self.leave(conn),
        }
    }

    /// Queues the same bytes for every member (except one reader's own tabs, for typing).
    fn broadcast(&mut self, frame: &Utf8Bytes, except: Option<&AuthorId>) {
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        let mut delivered = 0;
        for (conn, member) in &self.members {
            if except.is_some_and(|a| *a == member.profile.author_id) {
                continue;
            }
            match member.outbox.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(*conn),
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*conn),
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
        self.kick(conn, Kick { code: 1013, reason: "too slow; resume with lastSeq", frame: None });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: &str, client_id: Option<&str>) {
        METRICS.error(code.as_str());
        self.deliver(conn, protocol::error(code, message, client_id));
    }

    async fn send(&mut self, conn: ConnId, client_id: String, content: String, received: Instant) {
        let Some(member) = self.members.get_mut(&conn) else { return };
        let author = member.profile.clone();
        if !member.sends.take(Instant::now()) {
            METRICS.messages.with_label_values(&["rate_limited"]).inc();
            self.error(conn, ErrorCode::RateLimited, "too many messages; slow down", Some(&client_id));
            return;
        }
        if self.is_banned(&author.author_id) {
            self.kick_banned(&author.author_id);
            return;
        }
        self.pending.push(Pending { conn, author, client_id, content, received });
        self.start_commit().await;
    }

    /// Hands the pending sends to the writer unless a batch of this room is already in flight.
    async fn start_commit(&mut self) {
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
            })
            .collect();
        let result = self.ctx.writer.submit(messages).await;
        self.in_flight = Some(InFlight { sends, result });
    }

    async fn committed(&mut self, result: AppendResult) {
        let Some(InFlight { sends, .. }) = self.in_flight.take() else { return };
        match result {
            Ok(appended) => {
                for (send, stored) in sends.into_iter().zip(appended) {
                    if stored.fresh {
                        self.catch_up(stored.seq - 1).await;
                        self.publish(send, stored.seq, stored.created_at);
                    } else {
                        METRICS.messages.with_label_values(&["duplicate"]).inc();
                        self.deliver(send.conn, protocol::ack(&send.client_id, stored.seq));
                    }
                }
            }
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, messages = sends.len(), "sends failed");
                for send in sends {
                    METRICS.messages.with_label_values(&["unavailable"]).inc();
                    self.error(send.conn, ErrorCode::Unavailable, "message store unavailable; retry with the same clientId", Some(&send.client_id));
                }
                // The failed batch may have committed after all (a timeout is not a rollback);
                // the next commit finds out and delivers what it finds in `catch_up`.
            }
        }
        self.start_commit().await;
    }

    /// Broadcasts messages the store has before `upto` that this room never delivered: a commit
    /// whose answer was lost landed after all. Keeps every reader's stream gap-free.
    async fn catch_up(&mut self, upto: Seq) {
        let Some(state) = self.state.as_ref() else { return };
        if state.last_seq >= upto {
            return;
        }
        let from = state.last_seq;
        match self.ctx.store.after(self.id.clone(), from, (upto - from) as usize).await {
            Ok(missed) => {
                for message in missed.into_iter().filter(|m| m.seq <= upto) {
                    self.remember_and_broadcast(&message);
                }
            }
            Err(err) => tracing::warn!(room = %self.id, error = %err, "could not fetch missed messages"),
        }
        if let Some(state) = self.state.as_mut() {
            state.last_seq = state.last_seq.max(upto);
        }
    }

    fn remember_and_broadcast(&mut self, message: &Message) -> Utf8Bytes {
        let entry = Entry::new(message);
        let frame = protocol::message(&entry.json);
        if let Some(state) = self.state.as_mut() {
            state.last_seq = state.last_seq.max(message.seq);
            state.ring.push(entry);
        }
        self.broadcast(&frame, None);
        frame
    }

    fn publish(&mut self, send: Pending, seq: Seq, created_at: i64) {
        let message = Message {
            seq,
            room_id: self.id.clone(),
            author_id: send.author.author_id.clone(),
            nickname: send.author.nickname.clone(),
            avatar: send.author.avatar.clone(),
            content: send.content,
            created_at,
            client_id: send.client_id,
        };
        self.deliver(send.conn, protocol::ack(&message.client_id, seq));
        self.remember_and_broadcast(&message);
        METRICS.messages.with_label_values(&["stored"]).inc();
        METRICS.send_broadcast_seconds.observe(send.received.elapsed().as_secs_f64());
        tracing::debug!(room = %self.id, seq, "message stored");
    }

    fn start_delete(&mut self, seq: Seq, author: Option<AuthorId>, requester: Requester) {
        let store = self.ctx.store.clone();
        let room = self.id.clone();
        self.tasks.spawn(async move {
            let outcome = store.delete(room, seq, author).await;
            Done::Delete { seq, requester, outcome }
        });
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Delete { seq, requester, outcome } => {
                if outcome.as_ref().is_ok_and(|d| *d == Deletion::Deleted) {
                    if let Some(state) = self.state.as_mut() {
                        state.ring.remove(seq);
                    }
                    self.broadcast(&protocol::deleted(seq), None);
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
            Done::Ban { author, until, reply, outcome } => {
                if outcome.is_ok() {
                    if let Some(state) = self.state.as_mut() {
                        state.bans.insert(author.clone(), until);
                    }
                    self.kick_banned(&author);
                    tracing::info!(room = %self.id, author = %author.as_str(), until, "reader banned");
                }
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
        }
    }

    fn kick_banned(&mut self, author: &AuthorId) {
        let conns: Vec<ConnId> = self.members.iter().filter(|(_, m)| m.profile.author_id == *author).map(|(c, _)| *c).collect();
        for conn in conns {
            METRICS.error(ErrorCode::Banned.as_str());
            let frame = protocol::error(ErrorCode::Banned, "you are banned from this room", None);
            self.kick(conn, Kick { code: 1008, reason: "banned", frame: Some(frame) });
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

    fn presence_changed(&mut self) {
        if self.presence_due.is_none() {
            self.presence_due = Some((self.last_presence + PRESENCE_EVERY).max(Instant::now()));
        }
    }

    fn flush_presence(&mut self) {
        self.presence_due = None;
        self.last_presence = Instant::now();
        let frame = protocol::presence(self.presence.online(), &self.presence.listed());
        self.broadcast(&frame, None);
    }
}

async fn wait_commit(in_flight: &mut Option<InFlight>) -> AppendResult {
    match in_flight.as_mut() {
        Some(f) => (&mut f.result).await.unwrap_or_else(|_| Err(Arc::new(StoreError::Timeout))),
        None => std::future::pending().await,
    }
}
