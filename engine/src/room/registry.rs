//! The room registry: room id → running actor. The first request for a room spawns its actor;
//! an idle actor removes itself and closes its channel, and any request that raced with that stop
//! finds its reply dropped and simply asks again, which spawns a fresh actor. No join is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::actor::RoomActor;
use super::budget::RingUsage;
use super::queue;
use super::{Arrival, Command, ConnId, JoinError, JoinRequest, Line, LiveRooms, RoomContext, RoomError, RoomHandle, RoomInfo};
use crate::chat::{AuthorId, RoomId, Seq};
use crate::client_ip::ClientKey;
use crate::protocol::Frame;
use crate::store::Deletion;

/// A request that meets a stopping actor is retried this often before giving up.
const ATTEMPTS: usize = 5;

/// Commands a room holds before its members' sends wait for it to catch up.
const ROOM_INBOX: usize = 1024;

#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Inner>,
}

struct Inner {
    map: Arc<LiveRooms>,
    ctx: Arc<RoomContext>,
    generations: AtomicU64,
    closing: AtomicBool,
    /// Each actor holds a clone; once all are dropped the receiver learns every room has stopped.
    alive: Mutex<Option<mpsc::Sender<()>>>,
    all_stopped: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// A session's membership in a room.
pub struct Joined {
    pub room: RoomHandle,
    /// The owner's live view (not in presence, never sends).
    pub watching: bool,
}

impl Rooms {
    pub fn new(ctx: RoomContext) -> Rooms {
        let (alive, all_stopped) = mpsc::channel(1);
        let budget = ctx.settings.ring.budget.clone();
        let rooms = Rooms {
            inner: Arc::new(Inner {
                map: Arc::new(LiveRooms::new()),
                ctx: Arc::new(ctx),
                generations: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                alive: Mutex::new(Some(alive)),
                all_stopped: tokio::sync::Mutex::new(all_stopped),
            }),
        };
        tokio::spawn(super::budget::shed_when_over(budget, Arc::downgrade(&rooms.inner.map)));
        rooms
    }

    /// The running actor of a room, spawned if there is none.
    fn handle(&self, room: &RoomId) -> Option<RoomHandle> {
        if self.inner.closing.load(Ordering::Acquire) {
            return None;
        }
        let alive = self.inner.alive.lock().ok()?.clone()?;
        let entry = self.inner.map.entry(room.clone()).or_insert_with(|| {
            let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = queue::bounded(ROOM_INBOX);
            let usage = Arc::new(RingUsage::default());
            let actor =
                RoomActor::new(room.clone(), generation, self.inner.ctx.clone(), Arc::downgrade(&self.inner.map), rx, alive, usage.clone());
            tokio::spawn(actor.run());
            RoomHandle { tx, generation, usage }
        });
        Some(entry.value().clone())
    }

    fn forget(&self, room: &RoomId, generation: u64) {
        super::unregister(&self.inner.map, room, generation);
    }

    /// Sends a request to the room's actor and waits for its answer, asking a fresh actor when
    /// the one it reached was stopping.
    async fn request<T>(&self, room: &RoomId, make: impl Fn(oneshot::Sender<T>) -> Command) -> Result<T, RoomError> {
        for _ in 0..ATTEMPTS {
            let handle = self.handle(room).ok_or(RoomError::Closed)?;
            let (reply, answer) = oneshot::channel();
            if handle.tx.send(make(reply)).await.is_ok() {
                if let Ok(value) = answer.await {
                    return Ok(value);
                }
            }
            self.forget(room, handle.generation);
        }
        Err(RoomError::Closed)
    }

    /// Joins a room; returns the membership and the welcome frame to send first.
    pub async fn join(
        &self,
        room: &RoomId,
        conn: ConnId,
        arrival: Arrival,
        client: ClientKey,
        line: &Line,
    ) -> Result<(Joined, Frame), JoinError> {
        let watching = arrival.watching;
        for _ in 0..ATTEMPTS {
            let handle = self.handle(room).ok_or(JoinError::Closed)?;
            let (reply, answer) = oneshot::channel();
            let cmd = Command::Join(Box::new(JoinRequest { conn, arrival: arrival.clone(), client, outbox: line.outbox(), reply }));
            if handle.tx.send(cmd).await.is_ok() {
                if let Ok(result) = answer.await {
                    return result.map(|welcome| (Joined { room: handle, watching }, welcome));
                }
            }
            self.forget(room, handle.generation);
        }
        Err(JoinError::Closed)
    }

    /// Online count and last seq. A room without a running actor has nobody online, and is
    /// answered from the store without loading it.
    pub async fn info(&self, room: &RoomId) -> Result<RoomInfo, RoomError> {
        if !self.inner.map.contains_key(room) {
            let last_seq = self.inner.ctx.store.last_seq(room.clone()).await.map_err(|_| RoomError::Unavailable)?;
            return Ok(RoomInfo { online: 0, last_seq, per_minute: 0, locked: false });
        }
        self.request(room, |reply| Command::Info { reply }).await?
    }

    pub async fn admin_delete(&self, room: &RoomId, seq: Seq) -> Result<Deletion, RoomError> {
        self.request(room, |reply| Command::AdminDelete { seq, reply }).await?
    }

    pub async fn ban(&self, room: &RoomId, author: &AuthorId, until: i64) -> Result<(), RoomError> {
        self.request(room, |reply| Command::Ban { author: author.clone(), until, reply }).await?
    }

    pub async fn unban(&self, room: &RoomId, author: &AuthorId) -> Result<bool, RoomError> {
        self.request(room, |reply| Command::Unban { author: author.clone(), reply }).await?
    }

    pub async fn set_locked(&self, room: &RoomId, locked: bool) -> Result<(), RoomError> {
        self.request(room, |reply| Command::Lock { locked, reply }).await?
    }

    pub async fn set_slow_mode(&self, room: &RoomId, seconds: u32) -> Result<(), RoomError> {
        self.request(room, |reply| Command::SlowMode { seconds, reply }).await?
    }

    /// Pins `seq` (false: no such message), or unpins (`None`).
    pub async fn pin(&self, room: &RoomId, seq: Option<Seq>) -> Result<bool, RoomError> {
        self.request(room, |reply| Command::Pin { seq, reply }).await?
    }

    /// Dismisses a message's reports (false: it had none open), showing it again if hidden.
    pub async fn dismiss(&self, room: &RoomId, seq: Seq) -> Result<bool, RoomError> {
        self.request(room, |reply| Command::Dismiss { seq, reply }).await?
    }

    /// The rooms live on this pod with their info, in id order. A room that does not answer in
    /// time (stopping, or busy) is left out.
    pub async fn active(&self) -> Vec<(RoomId, RoomInfo)> {
        let handles: Vec<(RoomId, RoomHandle)> = self.inner.map.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        let asks = handles.into_iter().map(|(room, handle)| async move {
            let (reply, answer) = oneshot::channel();
            handle.tx.try_send(Command::Info { reply }).ok()?;
            let info = tokio::time::timeout(std::time::Duration::from_secs(2), answer).await.ok()?.ok()?.ok()?;
            Some((room, info))
        });
        let mut live: Vec<(RoomId, RoomInfo)> = futures_util::future::join_all(asks).await.into_iter().flatten().collect();
        live.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        live
    }

    /// Readers online room-wide in each of `rooms`, in the same order. A room live here answers
    /// from its actor (its count includes the other pods' readers); one that is not live here
    /// (or does not answer in time) is looked up in the shared presence when there are several
    /// pods, and has nobody online on a single pod.
    pub async fn online(&self, rooms: &[RoomId]) -> Vec<usize> {
        let asks = rooms.iter().map(|room| {
            let handle = self.inner.map.get(room).map(|e| e.value().clone());
            async move {
                let (reply, answer) = oneshot::channel();
                handle?.tx.try_send(Command::Info { reply }).ok()?;
                let info = tokio::time::timeout(std::time::Duration::from_secs(2), answer).await.ok()?.ok()?.ok()?;
                Some(info.online)
            }
        });
        let live: Vec<Option<usize>> = futures_util::future::join_all(asks).await;
        let missing: Vec<RoomId> = rooms.iter().zip(&live).filter(|(_, n)| n.is_none()).map(|(r, _)| r.clone()).collect();
        let elsewhere = match missing.is_empty() {
            true => None,
            false => self.inner.ctx.cluster.online(missing).await,
        };
        // Without the shared presence (one pod, or Redis not answering) a room not live here has
        // nobody online.
        let mut elsewhere = elsewhere.unwrap_or_default().into_iter();
        live.into_iter().map(|online| online.unwrap_or_else(|| elsewhere.next().unwrap_or(0))).collect()
    }

    /// Rooms with readers on any pod (through the shared presence), `None` on a single pod.
    pub async fn busy_anywhere(&self, cap: usize) -> Option<Vec<(RoomId, usize)>> {
        self.inner.ctx.cluster.busy_rooms(cap).await
    }

    /// Hands an event from another pod to the room's actor, if the room is live here (it is
    /// subscribed only then). A full queue drops it: the room repairs gaps from the store.
    pub fn remote(&self, room: &RoomId, envelope: crate::bus::Envelope) {
        if let Some(handle) = self.inner.map.get(room) {
            if handle.tx.try_send(Command::Remote(envelope)).is_err() {
                crate::metrics::METRICS.bus_dropped.inc();
            }
        }
    }

    /// Stops every room once its pending messages are committed; returns when all have stopped.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        if let Ok(mut alive) = self.inner.alive.lock() {
            alive.take();
        }
        let handles: Vec<RoomHandle> = self.inner.map.iter().map(|e| e.value().clone()).collect();
        for handle in handles {
            let _ = handle.tx.send(Command::Shutdown).await;
        }
        let _ = self.inner.all_stopped.lock().await.recv().await;
    }
}
