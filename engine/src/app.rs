//! The state every connection and request shares: configuration, the room registry, the store,
//! the drain switch, the connection limit, the per-client limits and the spam checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::header::HeaderValue;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::client_ip::TrustedProxies;
use crate::clients::Clients;
use crate::config::Config;
use crate::room::{ConnId, Rooms};
use crate::spam::SpamGuard;
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub rooms: Rooms,
    pub store: Arc<dyn Store>,
    pub clients: Arc<Clients>,
    pub spam: SpamGuard,
    pub trusted_proxies: TrustedProxies,
    origins: Vec<String>,
    draining: watch::Sender<bool>,
    connections: Arc<Semaphore>,
    next_conn: AtomicU64,
}

impl App {
    pub fn new(config: Config, rooms: Rooms, store: Arc<dyn Store>, clients: Arc<Clients>, spam: SpamGuard) -> App {
        let origins = config.origins();
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let trusted_proxies = TrustedProxies::new(&config.trusted_proxies);
        App {
            config,
            rooms,
            store,
            clients,
            spam,
            trusted_proxies,
            origins,
            draining: watch::Sender::new(false),
            connections,
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A place under the connection limit, held for the life of the socket.
    pub fn connection_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.connections.clone().try_acquire_owned().ok()
    }

    /// Sockets open right now.
    pub fn open_connections(&self) -> usize {
        self.config.max_connections - self.connections.available_permits()
    }

    /// Browsers always send `Origin`; a request without one is a non-browser client and allowed.
    /// The engine's own origin (the widget page, whose script opens the socket) always is; other
    /// origins only when listed in `ALLOWED_ORIGINS` (or when that is unset).
    pub fn origin_allowed(&self, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
        if self.origins.is_empty() {
            return true;
        }
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else { return true };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let same_origin = match (origin.split_once("://"), host.and_then(|h| h.to_str().ok())) {
            (Some((_, authority)), Some(host)) => authority.eq_ignore_ascii_case(host),
            _ => false,
        };
        same_origin || self.origins.contains(&origin)
    }

    /// The `Access-Control-Allow-Origin` for a cross-origin read of public counts: any origin
    /// (`*`) when `ALLOWED_ORIGINS` is unset, else the request's origin when listed, else none.
    pub fn cors_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.origins.is_empty() {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = origin?;
        let listed = origin.to_str().ok()?.trim_end_matches('/').to_ascii_lowercase();
        self.origins.contains(&listed).then(|| origin.clone())
    }

    /// The `frame-ancestors` sources for the widget page, when embedding is restricted.
    pub fn frame_ancestors(&self) -> Option<String> {
        (!self.origins.is_empty()).then(|| self.origins.join(" "))
    }

    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// A jittered reconnect delay, so a draining pod's readers do not all come back at once.
    /// Spread over a third of the grace period (at most 5 s), leaving time for the last commits.
    pub fn reconnect_after_ms(&self) -> u64 {
        let spread = (self.config.shutdown_grace.as_millis() as u64 / 3).clamp(1, 5_000);
        250 + fastrand::u64(0..spread)
    }
}

impl App {
    /// Resolves once every socket has closed (all connection slots are free again).
    pub async fn wait_for_no_connections(&self) {
        let all = u32::try_from(self.config.max_connections).unwrap_or(u32::MAX);
        let _ = self.connections.acquire_many(all).await;
    }
}
