//! Webhooks: the blog owner's endpoints hear about new messages, readers' reports and lock
//! changes. A room only hands its `Notice` to `Webhooks::notify`, which puts it on each endpoint's
//! bounded queue with `try_send` and never waits: a full queue drops the event and counts it.
//! One delivery worker per endpoint (`delivery`) posts the events in order, with retries, off
//! every room's path; `body` shapes and signs what it posts. An event is raised only on the pod
//! where it happened (the one that committed the message, stored the report or the lock), so a
//! cluster delivers it once.

mod body;
mod delivery;

pub use delivery::Outcome;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::chat::{now_millis, AuthorId, RoomId, Seq};
use crate::metrics::METRICS;

/// What happened in a room, as the room knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A message was committed (by this pod).
    MessageCreated { seq: Seq, author_id: AuthorId, nickname: String, content: String, created_at: i64 },
    /// A reader reported a message for the first time. `reports`: distinct readers so far;
    /// `hidden`: the message is hidden now.
    MessageReported { seq: Seq, reports: i64, hidden: bool },
    /// The owner locked the room read-only (true) or reopened it.
    RoomLocked { locked: bool },
}

impl Notice {
    /// The event name: the body's `event` field, the `X-Chat-Event` header and the metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            Notice::MessageCreated { .. } => "message.created",
            Notice::MessageReported { .. } => "message.reported",
            Notice::RoomLocked { .. } => "room.locked",
        }
    }
}

/// A notice with its room, a unique id (receivers de-duplicate retried deliveries by it) and the
/// time it was raised. The same id goes to every endpoint.
#[derive(Debug)]
pub struct Event {
    pub id: uuid::Uuid,
    pub at: i64,
    pub room: RoomId,
    pub notice: Notice,
}

/// What an endpoint expects in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The engine's event: `{event, id, at, data}`.
    Json,
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// A Discord webhook: `{"content": ..., "allowed_mentions": {"parse": []}}`.
    Discord,
}

/// One endpoint: `https://...`, or `slack:https://...` / `discord:https://...` / `json:https://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: hyper::Uri,
    pub format: Format,
}

impl Target {
    /// Parses a `--webhook-url` value: an http(s) URL, optionally behind a format prefix.
    pub fn parse(raw: &str) -> Result<Target, String> {
        let raw = raw.trim();
        let (format, url) = match raw.split_once(':') {
            Some(("slack", rest)) => (Format::Slack, rest),
            Some(("discord", rest)) => (Format::Discord, rest),
            Some(("json", rest)) => (Format::Json, rest),
            _ => (Format::Json, raw),
        };
        let url: hyper::Uri = url.parse().map_err(|_| format!("`{raw}` is not a URL"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(format!("`{raw}` is not an http:// or https:// URL"));
        }
        Ok(Target { url, format })
    }
}

/// How the workers deliver.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub targets: Vec<Target>,
    /// Key of the `X-Chat-Signature` HMAC; unset: no signature header.
    pub secret: Option<String>,
    /// The engine's public base URL, for the link to a room's widget page.
    pub public_url: Option<String>,
    /// Events waiting per endpoint; more are dropped.
    pub queue: usize,
    /// One request may take this long before it counts as failed (and is retried).
    pub timeout: Duration,
}

struct Queue {
    tx: mpsc::Sender<Arc<Event>>,
}

/// The rooms' side: where notices go. Cheap to clone; with no endpoints it does nothing.
#[derive(Clone, Default)]
pub struct Webhooks {
    queues: Arc<[Queue]>,
}

impl Webhooks {
    /// No endpoints: every notice is ignored.
    pub fn none() -> Webhooks {
        Webhooks::default()
    }

    /// Starts one delivery worker per endpoint.
    pub fn start(settings: WebhookSettings) -> (Webhooks, Flusher) {
        let client = delivery::client();
        let signer = Arc::new(body::Signer::new(settings.secret.as_deref(), settings.public_url.as_deref()));
        let (stop, _) = watch::channel(None);
        let mut workers = JoinSet::new();
        let mut queues = Vec::with_capacity(settings.targets.len());
        for target in settings.targets {
            let (tx, rx) = mpsc::channel(settings.queue.max(1));
            let worker = delivery::Worker::new(target, rx, client.clone(), signer.clone(), settings.timeout, stop.subscribe());
            workers.spawn(worker.run());
            queues.push(Queue { tx });
        }
        (Webhooks { queues: queues.into() }, Flusher { stop, workers })
    }

    /// Queues the notice for every endpoint without waiting; a full queue drops it (counted).
    pub fn notify(&self, room: &RoomId, notice: Notice) {
        if self.queues.is_empty() {
            return;
        }
        let name = notice.name();
        let event = Arc::new(Event { id: uuid::Uuid::new_v4(), at: now_millis(), room: room.clone(), notice });
        for queue in self.queues.iter() {
            match queue.tx.try_send(event.clone()) {
                Ok(()) => METRICS.webhook_queue_depth.inc(),
                Err(_) => {
                    METRICS.webhook_delivery(name, Outcome::Dropped);
                    tracing::warn!(event = name, room = %room, "webhook queue full; event dropped");
                }
            }
        }
    }
}

/// The workers, for the pod's shutdown.
pub struct Flusher {
    stop: watch::Sender<Option<tokio::time::Instant>>,
    workers: JoinSet<()>,
}

impl Flusher {
    /// Delivers what is queued for at most `within` (no retry may wait past it), then drops the
    /// rest (counted). New notices are refused from now on.
    pub async fn flush(mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        self.stop.send_replace(Some(deadline));
        // The workers give up at the deadline themselves; this only guards against a stuck one.
        if tokio::time::timeout_at(deadline + Duration::from_secs(1), async { while self.workers.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("webhook deliveries did not finish in time");
            self.workers.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_an_http_url_with_an_optional_format() {
        let slack = Target::parse("slack:https://hooks.slack.com/services/T/B/X").unwrap();
        assert_eq!((slack.format, slack.url.host()), (Format::Slack, Some("hooks.slack.com")));
        assert_eq!(Target::parse("discord:https://discord.com/api/webhooks/1/a").unwrap().format, Format::Discord);
        let plain = Target::parse("https://example.com/hook").unwrap();
        assert_eq!((plain.format, plain.url.scheme_str()), (Format::Json, Some("https")));
        assert_eq!(Target::parse("json:http://127.0.0.1:9/h").unwrap().format, Format::Json);
        for bad in ["", "example.com/hook", "ftp://example.com/", "slack:", "teams:https://x.test/", "https://"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
