//! Cross-pod fan-out over Redis pub/sub. Each live room is a channel (`chat:room:{id}`); after a
//! commit the room actor publishes the message there and every pod with readers in that room
//! delivers it. One task per pod owns the Redis connections: it multiplexes the subscriptions of
//! the pod's live rooms on one pub/sub connection, pipelines publications, and reconnects with
//! backoff (a pub/sub connection does not reconnect by itself), re-subscribing every live room.
//!
//! Rooms reach it through `room::Cluster` (`RedisCluster`); a single pod uses `SinglePod`, which
//! does nothing.

mod event;
pub mod presence;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};

pub use event::{Envelope, RoomEvent};

use crate::chat::{now_millis, RoomId};
use crate::metrics::METRICS;

/// Publications waiting for Redis; beyond this they are dropped (receivers repair gaps from the
/// store, so a drop costs latency, not messages).
const PUBLISH_QUEUE: usize = 65_536;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

enum Request {
    Publish(RoomId, String),
    Subscribe(RoomId),
    Unsubscribe(RoomId),
}

/// Events from other pods, by room, as the bus receives them.
pub type Deliveries = mpsc::Receiver<(RoomId, Envelope)>;

/// The pod's handle on the bus; cheap to share.
pub struct Bus {
    pod: String,
    requests: mpsc::Sender<Request>,
    /// Subscriptions must never be lost, so they travel on a channel without a bound.
    subscriptions: mpsc::UnboundedSender<Request>,
    up: watch::Receiver<bool>,
    connection: watch::Receiver<Option<MultiplexedConnection>>,
}

fn channel(room: &RoomId) -> String {
    format!("chat:room:{room}")
}

impl Bus {
    /// Starts the bus task. Redis being down at start is fine: the pod serves its own readers and
    /// the rooms poll the store until the bus comes up. Events from other pods arrive on the
    /// returned receiver.
    pub fn start(url: &str, pod: String) -> Result<(Arc<Bus>, Deliveries), redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (requests, request_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (subscriptions, subscription_rx) = mpsc::unbounded_channel();
        let (up_tx, up) = watch::channel(false);
        let (conn_tx, connection) = watch::channel(None);
        let (deliveries, delivery_rx) = mpsc::channel(PUBLISH_QUEUE);
        let task = BusTask { client, pod: pod.clone(), rooms: HashMap::new(), up: up_tx, connection: conn_tx, deliveries };
        tokio::spawn(task.run(request_rx, subscription_rx));
        Ok((Arc::new(Bus { pod, requests, subscriptions, up, connection }), delivery_rx))
    }

    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Whether the pub/sub connection is up; rooms poll the store while it is not.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.clone()
    }

    /// A connection for request/response commands (presence), when Redis is reachable.
    pub fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.borrow().clone()
    }

    pub fn publish(&self, room: &RoomId, event: &RoomEvent) {
        let payload = event::encode(&self.pod, now_millis(), event);
        if self.requests.try_send(Request::Publish(room.clone(), payload)).is_err() {
            METRICS.bus_dropped.inc();
        }
    }

    pub fn subscribe(&self, room: &RoomId) {
        let _ = self.subscriptions.send(Request::Subscribe(room.clone()));
    }

    pub fn unsubscribe(&self, room: &RoomId) {
        let _ = self.subscriptions.send(Request::Unsubscribe(room.clone()));
    }
}

struct BusTask {
    client: redis::Client,
    pod: String,
    /// Live rooms and how many actors asked for each (an actor stopping and its successor
    /// starting may overlap).
    rooms: HashMap<RoomId, usize>,
    up: watch::Sender<bool>,
    connection: watch::Sender<Option<MultiplexedConnection>>,
    deliveries: mpsc::Sender<(RoomId, Envelope)>,
}

impl BusTask {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>, mut subscriptions: mpsc::UnboundedReceiver<Request>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.connect().await {
                Ok((sink, stream, publisher)) => {
                    backoff = BACKOFF_MIN;
                    tracing::info!(rooms = self.rooms.len(), "bus connected");
                    self.serve(sink, stream, publisher, &mut requests, &mut subscriptions).await;
                    tracing::warn!("bus connection lost; rooms poll the store until it is back");
                }
                Err(err) => tracing::warn!(error = %err, "bus unavailable"),
            }
            self.set_up(false, None);
            // Keep the subscription counts current while waiting, and drop publications: the
            // rooms read what they miss from the store.
            let wait = tokio::time::sleep(backoff + Duration::from_millis(fastrand::u64(0..100)));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    Some(req) = subscriptions.recv() => { self.count(&req); }
                    Some(_) = requests.recv() => METRICS.bus_dropped.inc(),
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn set_up(&self, up: bool, connection: Option<MultiplexedConnection>) {
        METRICS.bus_up.set(i64::from(up));
        self.connection.send_replace(connection);
        self.up.send_replace(up);
    }

    /// Updates the counts; returns the Redis command the change needs, if any.
    fn count(&mut self, req: &Request) -> Option<&'static str> {
        match req {
            Request::Subscribe(room) => {
                let n = self.rooms.entry(room.clone()).or_insert(0);
                *n += 1;
                (*n == 1).then_some("SUBSCRIBE")
            }
            Request::Unsubscribe(room) => {
                let n = self.rooms.get_mut(room)?;
                *n -= 1;
                if *n == 0 {
                    self.rooms.remove(room);
                    return Some("UNSUBSCRIBE");
                }
                None
            }
            Request::Publish(..) => None,
        }
    }

    async fn connect(&mut self) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream, MultiplexedConnection), redis::RedisError> {
        let timeout = |_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out"));
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub()).await.map_err(timeout)??;
        let publisher = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_multiplexed_async_connection()).await.map_err(timeout)??;
        let (mut sink, stream) = pubsub.split();
        let channels: Vec<String> = self.rooms.keys().map(channel).collect();
        if !channels.is_empty() {
            sink.subscribe(channels).await?;
        }
        self.set_up(true, Some(publisher.clone()));
        Ok((sink, stream, publisher))
    }

    async fn serve(
        &mut self,
        mut sink: redis::aio::PubSubSink,
        mut stream: redis::aio::PubSubStream,
        mut publisher: MultiplexedConnection,
        requests: &mut mpsc::Receiver<Request>,
        subscriptions: &mut mpsc::UnboundedReceiver<Request>,
    ) {
        loop {
            tokio::select! {
                Some(req) = subscriptions.recv() => {
                    let room = match &req { Request::Subscribe(r) | Request::Unsubscribe(r) => r.clone(), Request::Publish(r, _) => r.clone() };
                    let result = match self.count(&req) {
                        Some("SUBSCRIBE") => sink.subscribe(channel(&room)).await,
                        Some(_) => sink.unsubscribe(channel(&room)).await,
                        None => Ok(()),
                    };
                    if result.is_err() {
                        return;
                    }
                }
                Some(first) = requests.recv() => {
                    // Everything already queued goes out in one pipeline.
                    let mut pipe = redis::pipe();
                    let mut next = Some(first);
                    let mut n = 0;
                    while let Some(Request::Publish(room, payload)) = next {
                        pipe.cmd("PUBLISH").arg(channel(&room)).arg(payload).ignore();
                        n += 1;
                        next = if n < 512 { requests.try_recv().ok() } else { None };
                    }
                    if let Err(err) = pipe.query_async::<()>(&mut publisher).await {
                        tracing::warn!(error = %err, "publish failed");
                        METRICS.bus_dropped.inc_by(n);
                        return;
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    let Some(room) = msg.get_channel_name().strip_prefix("chat:room:").and_then(RoomId::parse) else { continue };
                    let Some(envelope) = std::str::from_utf8(msg.get_payload_bytes()).ok().and_then(event::decode) else { continue };
                    if envelope.pod == self.pod {
                        continue;
                    }
                    METRICS.bus_lag_seconds.observe((now_millis() - envelope.sent_at_ms).max(0) as f64 / 1000.0);
                    if self.deliveries.try_send((room, envelope)).is_err() {
                        METRICS.bus_dropped.inc();
                    }
                }
            }
        }
    }
}
