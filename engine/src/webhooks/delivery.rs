//! One endpoint's delivery worker: takes its queue's events in order and POSTs each, retrying
//! network errors, timeouts, 5xx and 429 (after `Retry-After` when given) with exponential
//! backoff and jitter; any other answer is final. A slow or dead endpoint holds up only its own
//! queue, never a room or another endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};

use super::body::Signer;
use super::{Event, Target};
use crate::metrics::METRICS;

/// Tries per event, the first included.
const ATTEMPTS: u32 = 5;
/// The wait after the first failed try; each next one is four times longer (2, 8, 32, 128 s,
/// each between half and one and a half times that): about three minutes in all.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Bytes of an answer's body read (and thrown away) so the connection can be reused.
const ANSWER_MAX: usize = 64 * 1024;

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One client per pod: https (Mozilla's roots, built in) and plain http, HTTP/1.1, pooled.
pub(super) fn client() -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// The `outcome` label of `chat_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Refused (4xx) or still failing after the last try.
    Failed,
    /// Never tried: the queue was full, or the pod stopped first.
    Dropped,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Failed, Outcome::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// What one try came to.
enum Try {
    Delivered,
    /// Worth another try, after at least this long when the endpoint said so.
    Again {
        after: Option<Duration>,
        why: String,
    },
    Refused(StatusCode),
}

pub(super) struct Worker {
    target: Target,
    rx: mpsc::Receiver<Arc<Event>>,
    client: HttpClient,
    signer: Arc<Signer>,
    timeout: Duration,
    /// Set when the pod stops: the time by which the worker must be done.
    stop: watch::Receiver<Option<tokio::time::Instant>>,
}

impl Worker {
    pub(super) fn new(
        target: Target,
        rx: mpsc::Receiver<Arc<Event>>,
        client: HttpClient,
        signer: Arc<Signer>,
        timeout: Duration,
        stop: watch::Receiver<Option<tokio::time::Instant>>,
    ) -> Worker {
        Worker { target, rx, client, signer, timeout, stop }
    }

    pub(super) async fn run(mut self) {
        loop {
            let event = tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                // Stopping: refuse new events, deliver what is queued (recv ends when it is empty).
                Ok(()) = self.stop.changed() => {
                    self.rx.close();
                    continue;
                }
            };
            METRICS.webhook_queue_depth.dec();
            let outcome = self.deliver(&event).await;
            METRICS.webhook_delivery(event.notice.name(), outcome);
        }
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        *self.stop.borrow()
    }

    async fn deliver(&self, event: &Event) -> Outcome {
        let name = event.notice.name();
        let body = self.signer.body(event, self.target.format);
        let signature = self.signer.signature(&body);
        let host = self.target.url.host().unwrap_or_default();
        for attempt in 1..=ATTEMPTS {
            if self.deadline().is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Outcome::Dropped;
            }
            let why = match self.try_once(name, body.clone(), signature.as_deref()).await {
                Try::Delivered => return Outcome::Delivered,
                Try::Refused(status) => {
                    tracing::warn!(event = name, id = %event.id, host, status = status.as_u16(), "webhook refused");
                    return Outcome::Failed;
                }
                Try::Again { after, why } if attempt < ATTEMPTS => {
                    let wait = backoff(attempt).max(after.unwrap_or_default().min(MAX_RETRY_AFTER));
                    let at = tokio::time::Instant::now() + wait;
                    if self.deadline().is_some_and(|d| at > d) {
                        why
                    } else {
                        tracing::debug!(event = name, id = %event.id, host, attempt, wait_s = wait.as_secs_f64(), error = %why, "webhook will retry");
                        METRICS.webhook_retries.inc();
                        self.sleep_until(at).await;
                        continue;
                    }
                }
                Try::Again { why, .. } => why,
            };
            tracing::warn!(event = name, id = %event.id, host, attempts = attempt, error = %why, "webhook delivery failed");
            return Outcome::Failed;
        }
        Outcome::Failed
    }

    /// Sleeps until `at`, or less when the pod starts stopping and its deadline comes first
    /// (the next try then sees the deadline and gives up).
    async fn sleep_until(&self, at: tokio::time::Instant) {
        let mut stop = self.stop.clone();
        loop {
            let until = self.deadline().map_or(at, |d| d.min(at));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                changed = stop.changed() => if changed.is_err() { tokio::time::sleep_until(until).await; return },
            }
        }
    }

    async fn try_once(&self, name: &'static str, body: Bytes, signature: Option<&str>) -> Try {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.target.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("chat-engine/", env!("CARGO_PKG_VERSION")))
            .header("X-Chat-Event", name);
        if let Some(signature) = signature {
            request = request.header("X-Chat-Signature", signature);
        }
        let Ok(request) = request.body(Full::new(body)) else {
            return Try::Refused(StatusCode::BAD_REQUEST);
        };
        let timeout = match self.deadline() {
            Some(d) => self.timeout.min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => self.timeout,
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response.headers().get(RETRY_AFTER).and_then(retry_after);
            // Read a little of the answer so the pooled connection can carry the next request.
            let _ = http_body_util::Limited::new(response.into_body(), ANSWER_MAX).collect().await;
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after))
        })
        .await;
        METRICS.webhook_delivery_seconds.observe(started.elapsed().as_secs_f64());
        match answer {
            Err(_) => Try::Again { after: None, why: format!("no answer within {timeout:?}") },
            Ok(Err(err)) => Try::Again { after: None, why: error_chain(&err) },
            Ok(Ok((status, _))) if status.is_success() => Try::Delivered,
            Ok(Ok((status, after))) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                Try::Again { after, why: format!("HTTP {}", status.as_u16()) }
            }
            Ok(Ok((status, _))) => Try::Refused(status),
        }
    }
}

/// The wait after failed try `attempt` (1-based): 2 s times 4^(attempt-1), jittered by ±50% so
/// pods that failed together do not retry together.
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(4u32.saturating_pow(attempt - 1)).mul_f64(0.5 + fastrand::f64())
}

/// `Retry-After` in seconds (the HTTP-date form is not used by webhook services; it falls back
/// to the backoff).
fn retry_after(value: &HeaderValue) -> Option<Duration> {
    value.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error and its causes, e.g. "client error (Connect): tcp connect error: Connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_fourfold_with_jitter() {
        for attempt in 1..ATTEMPTS {
            let nominal = FIRST_BACKOFF.as_secs_f64() * 4f64.powi(attempt as i32 - 1);
            let wait = backoff(attempt).as_secs_f64();
            assert!((nominal * 0.5..nominal * 1.5).contains(&wait), "attempt {attempt}: {wait}");
        }
    }

    #[test]
    fn retry_after_takes_seconds() {
        assert_eq!(retry_after(&HeaderValue::from_static("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }
}
