//! The room actor: the only owner of a room's state. It serves joins from its ring of recent
//! messages, passes sends through the send limits (the author's, the room's, the client
//! address's) into group commit, and only after the commit acks the sender and broadcasts the
//! message, serialized once for every member.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::presence::{room_wide, Presence};
use super::rate::TokenBucket;
use super::registry::Inner;
use super::budget::RingUsage;
use super::ring::{Entry, Ring};
use super::{Command, ConnId, JoinError, Kick, RoomContext, RoomError, RoomInfo, HISTORY_ON_JOIN, RESUME_MAX};
use crate::bus::presence::{self as shared_presence, Present};
use crate::bus::{Envelope, RoomEvent};
use crate::chat::{now_millis, AuthorId, Message, Profile, RoomId, Seq};
use crate::client_ip::ClientKey;
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
/// With several pods, a message that arrives ahead of a missing one waits this long for it
/// before the room reads the gap from the store.
const HOLD_BACK: Duration = Duration::from_millis(150);
/// While the bus is down, rooms read what other pods stored this often.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// After subscribing, one read of the store covers messages published before the subscription.
const SETTLE: Duration = Duration::from_secs(1);

struct Member {
    profile: Profile,
    /// The address its sends are charged to, across rooms.
    client: ClientKey,
    outbox: mpsc::Sender<Utf8Bytes>,
    kick: Option<oneshot::Sender<Kick>>,
    last_typing: Option<Instant>,
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
    /// Each author's sends in this room, all its sockets together; kept after it leaves until
    /// refilled, so leaving and coming back buys no fresh burst.
    author_sends: HashMap<AuthorId, TokenBucket>,
    /// The room's ceiling on stored messages, whoever sends them ("slow mode" when empty).
    room_sends: TokenBucket,
    presence: Presence,
    presence_due: Option<Instant>,
    last_presence: Instant,
    pending: Vec<Pending>,
    in_flight: Option<InFlight>,
    tasks: JoinSet<Done>,
    idle_since: Instant,
    shutting_down: bool,
    /// Messages that arrived ahead of a missing seq, waiting for it (or for a repair).
    held: BTreeMap<Seq, Utf8Bytes>,
    /// When the store is next read for messages the bus did not bring.
    repair_at: Option<Instant>,
    /// Cluster state, present when the pod runs with a bus.
    cluster: Option<Cluster>,
    /// This room's share of the pod's ring budget.
    usage: Arc<RingUsage>,
}

/// What a room needs when several pods share it.
struct Cluster {
    bus: Arc<crate::bus::Bus>,
    up: watch::Receiver<bool>,
    subscribed: bool,
    /// Readers in this room on the other pods, as last read.
    remote: Vec<Present>,
    /// Our readers changed since we last wrote them to Redis.
    local_dirty: bool,
    heartbeat_at: Instant,
    last_presence: Option<(usize, Vec<Profile>)>,
}

impl RoomActor {
    pub(super) fn new(
        id: RoomId,
        generation: u64,
        ctx: Arc<RoomContext>,
        registry: Weak<Inner>,
        rx: mpsc::Receiver<Command>,
        alive: mpsc::Sender<()>,
        usage: Arc<RingUsage>,
    ) -> RoomActor {
        let now = Instant::now();
        let cluster = ctx.bus.as_ref().map(|bus| Cluster {
            bus: bus.clone(),
            up: bus.up(),
            subscribed: false,
            remote: Vec::new(),
            local_dirty: false,
            heartbeat_at: now + shared_presence::HEARTBEAT,
            last_presence: None,
        });
        let room_sends = TokenBucket::new(ctx.settings.room_send_rate, ctx.settings.room_send_burst);
        RoomActor {
            cluster,
            room_sends,
            id,
            generation,
            ctx,
            registry,
            rx,
            _alive: alive,
            state: None,
            members: HashMap::new(),
            author_sends: HashMap::new(),
            presence: Presence::default(),
            presence_due: None,
            last_presence: now - PRESENCE_EVERY,
            pending: Vec::new(),
            in_flight: None,
            tasks: JoinSet::new(),
            idle_since: now,
            shutting_down: false,
            held: BTreeMap::new(),
            repair_at: None,
            usage,
        }
    }

    pub(super) async fn run(mut self) {
        METRICS.rooms_active.inc();
        tracing::debug!(room = %self.id, "room started");
        loop {
            let idle_at = tokio::time::Instant::from_std(self.idle_since + self.ctx.settings.idle);
            let presence_at = tokio::time::Instant::from_std(self.presence_due.unwrap_or(self.idle_since));
            let repair_at = tokio::time::Instant::from_std(self.repair_at.unwrap_or(self.idle_since));
            let heartbeat_at = tokio::time::Instant::from_std(self.cluster.as_ref().map_or(self.idle_since, |c| c.heartbeat_at));
            let beating = self.cluster.is_some() && !self.presence.is_empty();
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
                _ = sleep_until(presence_at), if self.presence_due.is_some() => self.flush_presence().await,
                _ = sleep_until(repair_at), if self.repair_at.is_some() => self.repair().await,
                _ = sleep_until(heartbeat_at), if beating => self.heartbeat().await,
                Some(up) = bus_changed(&mut self.cluster) => {
                    // Back up: read what was missed and share our readers again. Down: start
                    // polling the store.
                    tracing::debug!(room = %self.id, up, "bus state changed");
                    self.repair_at = Some(Instant::now());
                    if up && !self.presence.is_empty() {
                        self.presence_changed();
                    }
                }
                _ = sleep_until(idle_at), if self.is_quiet() && !self.shutting_down => {
                    self.stop().await;
                    break;
                }
            }
            if self.shutting_down && self.is_quiet_but_members() {
                break;
            }
        }
        if let Some(cluster) = self.cluster.as_mut().filter(|c| c.subscribed) {
            cluster.bus.unsubscribe(&self.id);
            cluster.subscribed = false;
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
            Command::Join { conn, profile, client, last_seq, outbox, kick, reply } => {
                let result = self.join(conn, profile, client, last_seq, outbox, kick).await;
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
                let _ = reply.send(last_seq.map(|last_seq| RoomInfo { online: self.online(), last_seq }));
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
            Command::Remote(envelope) => self.remote(envelope).await,
            Command::ShedRing { bytes } => {
                if let Some(state) = self.state.as_mut() {
                    let dropped = state.ring.shed(bytes);
                    METRICS.ring_evictions.inc_by(dropped as u64);
                }
            }
            Command::Shutdown => self.shutting_down = true,
        }
    }

    /// The loaded state, loading it from the store on first use (or after the store failed).
    async fn load(&mut self) -> Result<&mut Loaded, StoreError> {
        if self.state.is_none() {
            let ring = &self.ctx.settings.ring;
            let snapshot = self.ctx.store.load_room(self.id.clone(), ring.count).await?;
            let complete = snapshot.recent.len() < ring.count;
            // The counter and the messages are read one after the other; with other pods writing,
            // a message may land in between. The ring's newest message is then the truth.
            let last_seq = snapshot.recent.last().map_or(snapshot.last_seq, |m| m.seq.max(snapshot.last_seq));
            self.state = Some(Loaded {
                ring: Ring::new(ring.clone(), self.usage.clone(), &snapshot.recent, complete),
                last_seq,
                bans: snapshot.bans.into_iter().collect(),
            });
            if let Some(cluster) = self.cluster.as_mut().filter(|c| !c.subscribed) {
                cluster.bus.subscribe(&self.id);
                cluster.subscribed = true;
                // What other pods published before the subscription took effect is read once.
                self.repair_at = Some(Instant::now() + SETTLE);
            }
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
        client: ClientKey,
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
        // A reader coming from another pod may have seen messages this pod has not delivered yet.
        if last_seq.is_some_and(|seen| self.state.as_ref().is_some_and(|s| seen > s.last_seq)) {
            self.repair().await;
        }
        let (history, resumed) = self.history_for(last_seq).await.map_err(|_| JoinError::Unavailable)?;
        if self.presence.arrive(&profile) {
            self.presence_changed();
        }
        let welcome = protocol::welcome(&profile, &history, resumed, self.online());
        self.usage.touch();
        self.members.insert(conn, Member { profile, client, outbox, kick: Some(kick), last_typing: None });
        METRICS.joins.inc();
        Ok(welcome)
    }

    /// The welcome history: everything after `last_seq` when at most `RESUME_MAX` were missed and
    /// they fit in the welcome's byte cap, otherwise the latest `HISTORY_ON_JOIN` (the newest of
    /// them that fit). From the ring, or the store when the ring is short.
    async fn history_for(&mut self, last_seq: Option<Seq>) -> Result<(Vec<Utf8Bytes>, bool), StoreError> {
        let cap = self.ctx.settings.welcome_max_bytes;
        let state = self.state.as_ref().expect("loaded before join");
        let current = state.last_seq;
        if let Some(since) = last_seq.filter(|s| *s <= current && current - *s <= RESUME_MAX) {
            let missed = match state.ring.after(since) {
                Some(entries) => entries.map(|e| e.json.clone()).collect(),
                None => {
                    let missed = self.ctx.store.after(self.id.clone(), since, RESUME_MAX as usize).await?;
                    missed.iter().map(|m| Entry::new(m).json).collect()
                }
            };
            if let Some(missed) = within(missed, cap, false) {
                return Ok((missed, true));
            }
        }
        let state = self.state.as_ref().expect("loaded before join");
        let latest = match state.ring.latest(HISTORY_ON_JOIN) {
            Some(entries) => entries.map(|e| e.json.clone()).collect(),
            None => {
                let latest = self.ctx.store.history(self.id.clone(), None, HISTORY_ON_JOIN).await?;
                latest.iter().map(|m| Entry::new(m).json).collect()
            }
        };
        Ok((within(latest, cap, true).unwrap_or_default(), false))
    }

    fn leave(&mut self, conn: ConnId) {
        if let Some(member) = self.members.remove(&conn) {
            if self.presence.leave(&member.profile.author_id) {
                self.presence_changed();
                self.sender_left(&member.profile.author_id);
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
                self.sender_left(&member.profile.author_id);
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
        let Some(member) = self.members.get(&conn) else { return };
        let author = member.profile.clone();
        if let Err((limit, wait)) = self.take_send_token(&author.author_id, member.client) {
            METRICS.messages.with_label_values(&["rate_limited"]).inc();
            METRICS.error(ErrorCode::RateLimited.as_str());
            let retry_after_ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1);
            self.deliver(conn, protocol::rate_limited(limit.message(), &client_id, retry_after_ms));
            return;
        }
        if self.is_banned(&author.author_id) {
            self.kick_banned(&author.author_id);
            return;
        }
        self.pending.push(Pending { conn, author, client_id, content, received });
        self.start_commit().await;
    }

    /// The send limits, in one place: the author's budget in this room, the room's ceiling and the
    /// client address's budget across rooms. A send takes a token from each of them or from none;
    /// refused, it learns the limit that holds it longest and for how long.
    fn take_send_token(&mut self, author: &AuthorId, client: ClientKey) -> Result<(), (SendLimit, Duration)> {
        let now = Instant::now();
        let settings = &self.ctx.settings;
        let author_sends =
            self.author_sends.entry(author.clone()).or_insert_with(|| TokenBucket::new(settings.send_rate, settings.send_burst));
        let (author_wait, room_wait) = (author_sends.wait(now), self.room_sends.wait(now));
        let local = if author_wait >= room_wait { (SendLimit::Author, author_wait) } else { (SendLimit::Room, room_wait) };
        if !local.1.is_zero() {
            let address_wait = self.ctx.clients.send_wait(client, now);
            return Err(if address_wait > local.1 { (SendLimit::Address, address_wait) } else { local });
        }
        self.ctx.clients.take_send(client, now).map_err(|wait| (SendLimit::Address, wait))?;
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
                    self.deliver(send.conn, protocol::ack(&send.client_id, stored.seq));
                    if !stored.fresh {
                        METRICS.messages.with_label_values(&["duplicate"]).inc();
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
                    };
                    let entry = Entry::new(&message);
                    if let Some(cluster) = &self.cluster {
                        cluster.bus.publish(&self.id, &RoomEvent::Message { seq: entry.seq, json: entry.json.clone() });
                    }
                    self.offer(entry);
                    METRICS.messages.with_label_values(&["stored"]).inc();
                    METRICS.send_broadcast_seconds.observe(send.received.elapsed().as_secs_f64());
                    tracing::debug!(room = %self.id, seq = message.seq, "message stored");
                }
            }
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, messages = sends.len(), "sends failed");
                for send in sends {
                    METRICS.messages.with_label_values(&["unavailable"]).inc();
                    self.error(send.conn, ErrorCode::Unavailable, "message store unavailable; retry with the same clientId", Some(&send.client_id));
                }
            }
        }
        // A single pod has nobody else to wait for: a gap there means a commit whose answer was
        // lost landed after all, and the store has it now.
        if self.cluster.is_none() && !self.held.is_empty() {
            self.repair().await;
        }
        self.start_commit().await;
    }

    /// Takes a committed message (ours, or another pod's from the bus) and delivers every
    /// message that is now next in seq order. Readers see each seq once, in order.
    fn offer(&mut self, entry: Entry) {
        let Some(last) = self.state.as_ref().map(|s| s.last_seq) else { return };
        if entry.seq <= last {
            return;
        }
        self.held.insert(entry.seq, entry.json);
        self.deliver_ready();
        if !self.held.is_empty() && self.repair_at.is_none() {
            self.repair_at = Some(Instant::now() + HOLD_BACK);
        }
    }

    fn deliver_ready(&mut self) {
        while let Some(state) = self.state.as_ref() {
            let next = state.last_seq + 1;
            let Some(json) = self.held.remove(&next) else { break };
            self.broadcast_message(Entry { seq: next, json });
        }
    }

    fn broadcast_message(&mut self, entry: Entry) {
        let frame = protocol::message(&entry.json);
        self.usage.touch();
        if let Some(state) = self.state.as_mut() {
            state.last_seq = state.last_seq.max(entry.seq);
            state.ring.push(entry);
        }
        self.broadcast(&frame, None);
    }

    /// Reads from the store what this room has not delivered: the messages missing before one
    /// that arrived early, or, while the bus is down, whatever other pods stored. A seq is only
    /// visible once every lower seq of the room is committed, so a seq below a stored one that
    /// the store does not return was deleted, and is skipped.
    async fn repair(&mut self) {
        self.repair_at = None;
        let Some(last) = self.state.as_ref().map(|s| s.last_seq) else { return };
        const PAGE: usize = 1000;
        let fetched = match self.ctx.store.after(self.id.clone(), last, PAGE).await {
            Ok(fetched) => fetched,
            Err(err) => {
                tracing::warn!(room = %self.id, error = %err, "could not read missed messages");
                self.repair_at = Some(Instant::now() + POLL_EVERY);
                return;
            }
        };
        let more = fetched.len() == PAGE;
        for message in &fetched {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.held.entry(message.seq) {
                METRICS.store_repairs.inc();
                slot.insert(Entry::new(message).json);
            }
        }
        // Everything up to the highest seen seq is known now; what the page did not reach waits.
        let known = if more { fetched.last().map_or(last, |m| m.seq) } else { self.held.keys().next_back().copied().unwrap_or(last) };
        for seq in last + 1..=known {
            match self.held.remove(&seq) {
                Some(json) => self.broadcast_message(Entry { seq, json }),
                None => {
                    if let Some(state) = self.state.as_mut() {
                        state.last_seq = seq;
                    }
                }
            }
        }
        self.deliver_ready();
        let polling = self.cluster.as_ref().is_some_and(|c| !*c.up.borrow());
        self.repair_at = if more {
            Some(Instant::now())
        } else if !self.held.is_empty() {
            Some(Instant::now() + HOLD_BACK)
        } else if polling {
            Some(Instant::now() + POLL_EVERY)
        } else {
            None
        };
    }

    /// An event another pod published for this room.
    async fn remote(&mut self, envelope: Envelope) {
        if self.state.is_none() {
            return;
        }
        match envelope.event {
            RoomEvent::Message { seq, json } => self.offer(Entry { seq, json }),
            RoomEvent::Deleted { seq } => self.apply_deleted(seq),
            RoomEvent::Typing { author, frame } => self.broadcast(&frame, Some(&author)),
            RoomEvent::Banned { author, until } => self.apply_ban(author, until),
            RoomEvent::Presence => {
                if self.presence_due.is_none() {
                    self.presence_due = Some((self.last_presence + PRESENCE_EVERY).max(Instant::now()));
                }
            }
        }
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
                    self.apply_deleted(seq);
                    if let Some(cluster) = &self.cluster {
                        cluster.bus.publish(&self.id, &RoomEvent::Deleted { seq });
                    }
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
                    if let Some(cluster) = &self.cluster {
                        cluster.bus.publish(&self.id, &RoomEvent::Banned { author: author.clone(), until });
                    }
                    tracing::info!(room = %self.id, author = %author.as_str(), until, "reader banned");
                    self.apply_ban(author, until);
                }
                let _ = reply.send(outcome.map_err(|_| RoomError::Unavailable));
            }
        }
    }

    fn apply_deleted(&mut self, seq: Seq) {
        if let Some(state) = self.state.as_mut() {
            state.ring.remove(seq);
        }
        if self.held.remove(&seq).is_some() {
            // Not delivered yet: readers never saw it, so there is nothing to take back, but the
            // seq still counts as passed.
            return;
        }
        self.broadcast(&protocol::deleted(seq), None);
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
        if let Some(cluster) = &self.cluster {
            cluster.bus.publish(&self.id, &RoomEvent::Typing { author: author.clone(), frame: frame.clone() });
        }
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

    /// Our reader list changed: tell the room (coalesced) and, with several pods, the others.
    fn presence_changed(&mut self) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.local_dirty = true;
        }
        if self.presence_due.is_none() {
            self.presence_due = Some((self.last_presence + PRESENCE_EVERY).max(Instant::now()));
        }
    }

    /// Readers online room-wide (ours plus the other pods' as last read).
    fn online(&self) -> usize {
        self.presence.online_with(self.cluster.as_ref().map_or(&[], |c| &c.remote[..]))
    }

    /// Shares our readers (when they changed) and reads the other pods'. Best effort: without
    /// Redis the room shows what this pod knows.
    async fn sync_presence(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        cluster.heartbeat_at = Instant::now() + shared_presence::HEARTBEAT;
        let Some(mut conn) = cluster.bus.connection() else { return };
        let pod = cluster.bus.pod().to_string();
        if cluster.local_dirty && shared_presence::write(&mut conn, &self.id, &pod, &self.presence.readers()).await {
            cluster.local_dirty = false;
            cluster.bus.publish(&self.id, &RoomEvent::Presence);
        }
        if let Some(remote) = shared_presence::others(&mut conn, &self.id, &pod).await {
            cluster.remote = remote;
        }
    }

    async fn flush_presence(&mut self) {
        self.presence_due = None;
        self.last_presence = Instant::now();
        self.sync_presence().await;
        self.show_presence(true);
    }

    /// Keeps this pod's entry alive and notices readers of crashed pods expiring.
    async fn heartbeat(&mut self) {
        if let Some(cluster) = self.cluster.as_mut() {
            // Rewriting refreshes the entry's expiry.
            cluster.local_dirty = true;
        }
        self.sync_presence().await;
        self.show_presence(false);
    }

    /// Broadcasts the room's presence; `always` false sends it only when it changed.
    fn show_presence(&mut self, always: bool) {
        let remote = self.cluster.as_ref().map_or(&[][..], |c| &c.remote[..]);
        let (online, listed) = room_wide(self.presence.readers(), remote);
        if let Some(cluster) = self.cluster.as_mut() {
            let shown = Some((online, listed.clone()));
            if !always && cluster.last_presence == shown {
                return;
            }
            cluster.last_presence = shown;
        }
        let refs: Vec<&Profile> = listed.iter().collect();
        let frame = protocol::presence(online, &refs);
        self.broadcast(&frame, None);
    }
}

/// Resolves when the bus goes up or down (never on a single pod).
async fn bus_changed(cluster: &mut Option<Cluster>) -> Option<bool> {
    match cluster.as_mut() {
        Some(c) => {
            c.up.changed().await.ok()?;
            Some(*c.up.borrow_and_update())
        }
        None => std::future::pending().await,
    }
}

async fn wait_commit(in_flight: &mut Option<InFlight>) -> AppendResult {
    match in_flight.as_mut() {
        Some(f) => (&mut f.result).await.unwrap_or_else(|_| Err(Arc::new(StoreError::Timeout))),
        None => std::future::pending().await,
    }
}

/// Messages (oldest first) whose JSON fits in `cap` bytes: all of them, or with `trim` the newest
/// that fit; `None` when they do not all fit and `trim` is off.
fn within(mut messages: Vec<Utf8Bytes>, cap: usize, trim: bool) -> Option<Vec<Utf8Bytes>> {
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
