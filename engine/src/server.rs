//! The process's life: open the store, accept connections, and on shutdown drain in order —
//! turn `/readyz` to 503 and refuse new sockets, send every reader `reconnect`, wait for the
//! sockets to close (at most `SHUTDOWN_GRACE`), commit what the rooms still hold, deliver the
//! queued webhook events (at most 5 s), close the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::app::App;
use crate::bus::Bus;
use crate::clients::Clients;
use crate::config::Config;
use crate::room::{Cluster, RedisCluster, RingBudget, RingLimits, RoomContext, RoomSettings, Rooms, SinglePod, RING_CAPACITY};
use crate::spam::SpamGuard;
use crate::store::{self, writer::Writer, StoreError};
use crate::webhooks::Webhooks;
use crate::write_deadline::WriteDeadline;

/// At shutdown, queued webhook events are delivered for at most this long; the rest are dropped.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

/// Slow or idle HTTP clients may take this long to send their request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves on `listener`, and `/metrics` on `metrics` instead when `--metrics-bind` gave one.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError> {
    let store = store::open(&config.database_url, config.store_timeout, config.db_max_connections).await?;
    let (writer, writer_task) = Writer::spawn(store.clone(), config.store_timeout);
    let (bus, deliveries) = match &config.redis_url {
        Some(url) => {
            let pod = config.pod_name.clone().unwrap_or_else(|| format!("pod-{}", uuid::Uuid::new_v4().simple()));
            let (bus, deliveries) = Bus::start(url, pod).map_err(|e| StoreError::Bus(e.to_string()))?;
            (Some(bus), Some(deliveries))
        }
        None => (None, None),
    };
    let clients = Clients::new(config.client_limits());
    clients.spawn_sweeper();
    let settings = RoomSettings {
        send_rate: config.send_rate,
        send_burst: config.send_burst,
        room_send_rate: config.room_send_rate,
        room_send_burst: config.room_send_burst,
        idle: config.room_idle,
        welcome_max_bytes: usize::try_from(config.welcome_max_bytes).unwrap_or(usize::MAX),
        ring: RingLimits {
            count: RING_CAPACITY,
            bytes: usize::try_from(config.room_ring_bytes).unwrap_or(usize::MAX),
            budget: Arc::new(RingBudget::new(usize::try_from(config.ring_memory).unwrap_or(usize::MAX))),
        },
        clients: clients.clone(),
        auto_hide_reports: config.auto_hide_reports,
        edit_window: config.edit_window,
    };
    let cluster: Arc<dyn Cluster> = match &bus {
        Some(bus) => Arc::new(RedisCluster::new(bus.clone())),
        None => Arc::new(SinglePod::new()),
    };
    let (webhooks, webhook_flusher) = match config.webhooks() {
        Some(settings) => {
            let (webhooks, flusher) = Webhooks::start(settings);
            (webhooks, Some(flusher))
        }
        None => (Webhooks::none(), None),
    };
    let rooms = Rooms::new(RoomContext { store: store.clone(), writer, settings: Arc::new(settings), cluster, webhooks });
    if let Some(mut deliveries) = deliveries {
        let rooms = rooms.clone();
        tokio::spawn(async move {
            while let Some((room, envelope)) = deliveries.recv().await {
                rooms.remote(&room, envelope);
            }
        });
    }
    let pruner = store::retention::spawn(
        store.clone(),
        store::retention::Retention {
            max_age: config.retention_days.map(|days| Duration::from_secs(u64::from(days) * 86_400)),
            max_messages: config.max_messages_per_room,
            protect: crate::room::RING_CAPACITY,
            every: config.prune_every,
        },
    );
    let blocked = match &config.blocked_words {
        Some(path) => Some(
            crate::spam::blocked::BlockedWords::load_and_watch(path.clone())
                .await
                .map_err(|e| StoreError::Config(format!("blocked words file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let tracked = usize::try_from(config.spam_repeat_tracked).unwrap_or(usize::MAX);
    let repeats = crate::spam::repeated::RepeatCounter::new(config.spam_repeat_window, tracked, bus.clone());
    let spam = SpamGuard::new(config.spam_rules(), blocked, repeats, store.clone());
    let grace = config.shutdown_grace;
    let app = Arc::new(App::new(config, rooms, store.clone(), clients, spam));

    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let pod = bus.as_ref().map(|b| b.pod().to_string());
    let metrics_addr = match &metrics {
        Some(listener) => listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        None => addr.clone(),
    };
    tracing::info!(addr = %addr, store = %store.kind(), bus = if bus.is_some() { "redis" } else { "none" }, pod = pod.as_deref().unwrap_or("-"), metrics = %metrics_addr, "listening");

    // The listener keeps accepting while the pod drains: probes must see `/readyz` turn 503, and
    // new sockets are refused with 503 by the upgrade itself.
    let accepting = tokio::spawn(accept(app.clone(), listener));
    let releasing = tokio::spawn(crate::heap::release_after_bursts());
    let scrapes = metrics.map(|listener| tokio::spawn(crate::http::metrics_port::serve(listener)));
    shutdown.await;
    // Pruning can wait for the next pod; the store's connections now belong to the last commits.
    pruner.abort();

    tracing::info!(connections = app.open_connections(), grace_s = grace.as_secs_f64(), "draining");
    let deadline = tokio::time::Instant::now() + grace;
    app.start_draining();
    if tokio::time::timeout_at(deadline, app.wait_for_no_connections()).await.is_err() {
        tracing::warn!(connections = app.open_connections(), "grace period over with readers still connected");
    }
    if tokio::time::timeout_at(deadline + Duration::from_secs(5), app.rooms.shutdown()).await.is_err() {
        tracing::warn!("rooms did not finish their commits in time");
    }
    // The last commits are in: their events are queued. Deliver what can be within a short bound.
    if let Some(flusher) = webhook_flusher {
        flusher.flush(WEBHOOK_FLUSH).await;
    }
    accepting.abort();
    releasing.abort();
    if let Some(scrapes) = scrapes {
        scrapes.abort();
    }
    drop(app);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn accept(app: Arc<App>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                // What a client does not read waits in this buffer, which counts against the
                // pod's memory (cgroups charge socket buffers); a fixed size bounds it.
                if app.config.socket_send_buffer > 0 {
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(app.config.socket_send_buffer);
                }
                tokio::spawn(serve_connection(app.clone(), stream, peer));
            }
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one TCP connection; `peer` is its remote address, which every request carries along
/// (the client address, or the proxy it came through).
async fn serve_connection(app: Arc<App>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let write_timeout = app.config.write_timeout;
    let max_head = usize::try_from(app.config.max_request_head).unwrap_or(usize::MAX);
    let service = service_fn(move |req| crate::http::route(app.clone(), req, peer));
    // hyper answers 431 to a head that outgrows its buffer; the cap keeps half-sent heads small.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(max_head)
        .max_buf_size(max_head.max(8192))
        .serve_connection(TokioIo::new(WriteDeadline::new(stream, write_timeout)), service)
        .with_upgrades();
    if let Err(err) = conn.await {
        tracing::debug!(error = %err, "http connection ended with an error");
    }
}
