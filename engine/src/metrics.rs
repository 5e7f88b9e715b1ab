//! Prometheus metrics, all prefixed `chat_`, registered once in a process-wide registry.
//! Labels carry only bounded, public values (results, error codes): never ids of readers or rooms.

use std::sync::LazyLock;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::protocol::ErrorCode;
pub use crate::webhooks::Outcome as WebhookOutcome;

/// The `event` label values of `chat_webhook_deliveries_total`.
const WEBHOOK_EVENTS: [&str; 3] = ["message.created", "message.reported", "room.locked"];

pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub rooms_active: IntGauge,
    pub joins: IntCounter,
    /// Sends by outcome: `stored`, `duplicate`, `rate_limited`, `unavailable`, `invalid`.
    pub messages: IntCounterVec,
    pub frames_delivered: IntCounter,
    pub slow_consumer_closes: IntCounter,
    /// Error frames and HTTP errors sent, by protocol error code.
    pub errors: IntCounterVec,
    pub store_errors: IntCounter,
    pub commit_seconds: Histogram,
    pub commit_batch_size: Histogram,
    pub send_broadcast_seconds: Histogram,
    /// 1 while the Redis bus is connected; absent meaning (0) on a single pod without Redis.
    pub bus_up: IntGauge,
    pub bus_lag_seconds: Histogram,
    pub bus_dropped: IntCounter,
    /// Messages a room read from the store because the bus did not bring them (gaps, outages).
    pub store_repairs: IntCounter,
    /// Bytes of recent messages all rooms' rings hold (the `--ring-memory` budget counts these).
    pub ring_bytes: IntGauge,
    /// Ring entries dropped to stay within `--ring-memory` (not a room's own rolling cap).
    pub ring_evictions: IntCounter,
    /// Connections (HTTP or WebSocket) closed because the client did not read what was written
    /// to it in time.
    pub write_timeouts: IntCounter,
    /// Messages the retention pruner deleted, by the rule that removed them: `age`, `count`.
    pub messages_pruned: IntCounterVec,
    /// Readers' reports recorded (a reader reporting a message again is not counted).
    pub reports: IntCounter,
    /// Sends refused by the spam defences, by rule.
    pub spam_refused: IntCounterVec,
    /// Messages hidden by readers' reports (counted on the pod that hid them).
    pub messages_hidden: IntCounter,
    /// Reactions put on or taken back (changes only; counted on the pod the reader is on).
    pub reactions: IntCounter,
    /// Messages edited by their authors (changes only).
    pub edits: IntCounter,
    /// Client addresses the per-address limits track (open sockets or budgets still refilling).
    pub client_addresses: IntGauge,
    /// Webhook events by `event` and `outcome` (delivered, failed, dropped), counted per endpoint.
    pub webhook_deliveries: IntCounterVec,
    /// Webhook events waiting in the endpoints' queues.
    pub webhook_queue_depth: IntGauge,
    /// Time of one webhook request, from sending it to its answer (or the timeout).
    pub webhook_delivery_seconds: Histogram,
    /// Webhook requests tried again after a network error, a timeout, a 5xx or a 429.
    pub webhook_retries: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec2(registry: &Registry, name: &str, help: &str, labels: &[&str; 2]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    registry.register(Box::new(h.clone())).expect("unique metric");
    h
}

const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("process metrics");
    let m = Metrics {
        connections: gauge(&r, "chat_connections", "Open WebSocket connections."),
        rooms_active: gauge(&r, "chat_rooms_active", "Rooms with a running actor on this pod."),
        joins: counter(&r, "chat_joins_total", "Readers who joined a room (hello accepted)."),
        messages: counter_vec(&r, "chat_messages_total", "Sends by outcome.", "result"),
        frames_delivered: counter(&r, "chat_frames_delivered_total", "Frames queued to readers."),
        slow_consumer_closes: counter(
            &r,
            "chat_slow_consumer_closes_total",
            "Readers closed (1013) because their outbound queue was full.",
        ),
        errors: counter_vec(&r, "chat_errors_total", "Errors answered to clients, by protocol code.", "code"),
        store_errors: counter(&r, "chat_store_errors_total", "Store operations that failed."),
        commit_seconds: histogram(&r, "chat_commit_seconds", "Time of one group commit.", LATENCY_BUCKETS.to_vec()),
        commit_batch_size: histogram(
            &r,
            "chat_commit_batch_size",
            "Messages per group commit.",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
        ),
        send_broadcast_seconds: histogram(
            &r,
            "chat_send_broadcast_seconds",
            "From a send reaching its room to its broadcast (includes the commit).",
            LATENCY_BUCKETS.to_vec(),
        ),
        bus_up: gauge(&r, "chat_bus_up", "1 while the Redis bus is connected (always 0 without REDIS_URL)."),
        bus_lag_seconds: histogram(
            &r,
            "chat_bus_lag_seconds",
            "From a publication on one pod to its arrival on another.",
            LATENCY_BUCKETS.to_vec(),
        ),
        bus_dropped: counter(&r, "chat_bus_dropped_total", "Bus publications or deliveries dropped (repaired from the store)."),
        store_repairs: counter(&r, "chat_store_repairs_total", "Messages delivered from the store to fill a gap the bus left."),
        ring_bytes: gauge(&r, "chat_ring_bytes", "Bytes of recent messages held in the rooms' rings on this pod."),
        ring_evictions: counter(
            &r,
            "chat_ring_evictions_total",
            "Ring entries dropped from the least recently active rooms to stay within the pod's ring memory budget.",
        ),
        write_timeouts: counter(
            &r,
            "chat_write_timeouts_total",
            "Connections closed because the client did not read what was written to it within WRITE_TIMEOUT.",
        ),
        spam_refused: counter_vec(
            &r,
            "chat_spam_refused_total",
            "Sends refused by the spam defences, by rule (links, blocked_words, repeated: answered `spam`; slow_mode: answered `rate_limited`).",
            "reason",
        ),
        reports: counter(&r, "chat_reports_total", "Readers' reports recorded, each reader counted once per message."),
        messages_hidden: counter(&r, "chat_messages_hidden_total", "Messages hidden because enough readers reported them."),
        reactions: counter(&r, "chat_reactions_total", "Reactions readers put on or took back (changes only)."),
        edits: counter(&r, "chat_edits_total", "Messages their authors edited (changes only)."),
        messages_pruned: counter_vec(
            &r,
            "chat_messages_pruned_total",
            "Messages deleted by retention, by rule (age: --retention-days, count: --max-messages-per-room).",
            "rule",
        ),
        client_addresses: gauge(
            &r,
            "chat_client_addresses",
            "Client addresses (IPv4, IPv6 /64) the per-address limits track: open sockets or budgets still refilling.",
        ),
        webhook_deliveries: counter_vec2(
            &r,
            "chat_webhook_deliveries_total",
            "Webhook events per endpoint by event and outcome (delivered; failed: refused or out of tries; dropped: queue full or pod stopping).",
            &["event", "outcome"],
        ),
        webhook_queue_depth: gauge(&r, "chat_webhook_queue_depth", "Webhook events waiting in the endpoints' queues on this pod."),
        webhook_delivery_seconds: histogram(
            &r,
            "chat_webhook_delivery_seconds",
            "Time of one webhook request, from sending it to its answer or the timeout.",
            LATENCY_BUCKETS.to_vec(),
        ),
        webhook_retries: counter(
            &r,
            "chat_webhook_retries_total",
            "Webhook requests tried again after a network error, a timeout, a 5xx or a 429.",
        ),
        registry: r,
    };
    // Pre-create the label values an operator alerts on, so the series exist before the first event.
    for outcome in SendOutcome::ALL {
        m.messages.with_label_values(&[outcome.as_str()]);
    }
    for code in ErrorCode::ALL {
        m.errors.with_label_values(&[code.as_str()]);
    }
    m.errors.with_label_values(&[FLOOD]);
    for reason in crate::spam::SpamReason::ALL {
        m.spam_refused.with_label_values(&[reason.as_str()]);
    }
    m.spam_refused.with_label_values(&["slow_mode"]);
    for rule in ["age", "count"] {
        m.messages_pruned.with_label_values(&[rule]);
    }
    for event in WEBHOOK_EVENTS {
        for outcome in WebhookOutcome::ALL {
            m.webhook_deliveries.with_label_values(&[event, outcome.as_str()]);
        }
    }
    m
});

/// What became of a send: the `result` label of `chat_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Stored,
    Duplicate,
    RateLimited,
    Unavailable,
    Invalid,
}

impl SendOutcome {
    const ALL: [SendOutcome; 5] =
        [SendOutcome::Stored, SendOutcome::Duplicate, SendOutcome::RateLimited, SendOutcome::Unavailable, SendOutcome::Invalid];

    fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Stored => "stored",
            SendOutcome::Duplicate => "duplicate",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::Unavailable => "unavailable",
            SendOutcome::Invalid => "invalid",
        }
    }
}

/// The `code` label of `chat_errors_total` for a connection closed for flooding (not an error
/// code of the contract: the client gets a close, not an error frame).
const FLOOD: &str = "flood";

impl Metrics {
    /// An error answered to a client, by its contract code.
    pub fn error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    /// A connection closed for flooding.
    pub fn flood(&self) {
        self.errors.with_label_values(&[FLOOD]).inc();
    }

    pub fn send(&self, outcome: SendOutcome) {
        self.messages.with_label_values(&[outcome.as_str()]).inc();
    }

    /// What became of one webhook event at one endpoint.
    pub fn webhook_delivery(&self, event: &str, outcome: WebhookOutcome) {
        self.webhook_deliveries.with_label_values(&[event, outcome.as_str()]).inc();
    }

    /// The text exposition format served at `/metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
