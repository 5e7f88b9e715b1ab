//! The seam between a room and the other pods that share it. A room never asks whether it is
//! alone: it publishes its events, subscribes to its channel and syncs its presence through a
//! `Cluster`, which on a single pod does nothing and with Redis is the bus (`crate::bus`).

use std::sync::Arc;

use futures_util::future::{self, BoxFuture, FutureExt};
use tokio::sync::watch;

use crate::bus::presence::{self as shared_presence, Present};
use crate::bus::{Bus, RoomEvent};
use crate::chat::RoomId;

/// What a presence sync learned.
#[derive(Debug, Default)]
pub struct PresenceSync {
    /// Our readers were written (a single pod has nowhere to write them, so that counts too).
    pub wrote: bool,
    /// The readers of the room on the other pods, when they could be read.
    pub others: Option<Vec<Present>>,
}

pub trait Cluster: Send + Sync {
    /// Whether events from the other pods reach this pod; rooms read the store while they do not.
    fn up(&self) -> watch::Receiver<bool>;
    fn subscribe(&self, room: &RoomId);
    fn unsubscribe(&self, room: &RoomId);
    /// Best effort: a lost publication costs the other pods a read of the store, not a message.
    fn publish(&self, room: &RoomId, event: &RoomEvent);
    /// Writes our readers of the room (when given) and reads the other pods'. Runs off the room's
    /// loop: Redis may be slow.
    fn sync_presence(&self, room: RoomId, ours: Option<Vec<Present>>) -> BoxFuture<'static, PresenceSync>;
    /// Rooms with readers on any pod and their readers room-wide (at most `cap`); `None` on a
    /// single pod (its own rooms are all there is) or when Redis does not answer.
    fn busy_rooms(&self, cap: usize) -> BoxFuture<'static, Option<Vec<(RoomId, usize)>>>;
    /// Readers room-wide in each of `rooms`, from the shared presence; `None` on a single pod or
    /// when Redis does not answer.
    fn online(&self, rooms: Vec<RoomId>) -> BoxFuture<'static, Option<Vec<usize>>>;
}

/// One pod alone: nobody to tell, nobody to hear from.
pub struct SinglePod {
    up: watch::Sender<bool>,
}

impl SinglePod {
    pub fn new() -> SinglePod {
        SinglePod { up: watch::Sender::new(true) }
    }
}

impl Default for SinglePod {
    fn default() -> SinglePod {
        SinglePod::new()
    }
}

impl Cluster for SinglePod {
    fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    fn subscribe(&self, _room: &RoomId) {}

    fn unsubscribe(&self, _room: &RoomId) {}

    fn publish(&self, _room: &RoomId, _event: &RoomEvent) {}

    fn sync_presence(&self, _room: RoomId, _ours: Option<Vec<Present>>) -> BoxFuture<'static, PresenceSync> {
        future::ready(PresenceSync { wrote: true, others: None }).boxed()
    }

    fn busy_rooms(&self, _cap: usize) -> BoxFuture<'static, Option<Vec<(RoomId, usize)>>> {
        future::ready(None).boxed()
    }

    fn online(&self, _rooms: Vec<RoomId>) -> BoxFuture<'static, Option<Vec<usize>>> {
        future::ready(None).boxed()
    }
}

/// Several pods sharing rooms through Redis.
pub struct RedisCluster {
    bus: Arc<Bus>,
}

impl RedisCluster {
    pub fn new(bus: Arc<Bus>) -> RedisCluster {
        RedisCluster { bus }
    }
}

impl Cluster for RedisCluster {
    fn up(&self) -> watch::Receiver<bool> {
        self.bus.up()
    }

    fn subscribe(&self, room: &RoomId) {
        self.bus.subscribe(room);
    }

    fn unsubscribe(&self, room: &RoomId) {
        self.bus.unsubscribe(room);
    }

    fn publish(&self, room: &RoomId, event: &RoomEvent) {
        self.bus.publish(room, event);
    }

    fn sync_presence(&self, room: RoomId, ours: Option<Vec<Present>>) -> BoxFuture<'static, PresenceSync> {
        let bus = self.bus.clone();
        async move {
            let Some(mut conn) = bus.connection() else { return PresenceSync::default() };
            let mut wrote = false;
            if let Some(ours) = ours {
                wrote = shared_presence::write(&mut conn, &room, bus.pod(), &ours).await;
                if wrote {
                    bus.publish(&room, &RoomEvent::Presence);
                }
            }
            let others = shared_presence::others(&mut conn, &room, bus.pod()).await;
            PresenceSync { wrote, others }
        }
        .boxed()
    }

    fn busy_rooms(&self, cap: usize) -> BoxFuture<'static, Option<Vec<(RoomId, usize)>>> {
        let bus = self.bus.clone();
        async move { shared_presence::rooms(&mut bus.connection()?, cap).await }.boxed()
    }

    fn online(&self, rooms: Vec<RoomId>) -> BoxFuture<'static, Option<Vec<usize>>> {
        let bus = self.bus.clone();
        async move { shared_presence::online(&mut bus.connection()?, &rooms).await }.boxed()
    }
}
