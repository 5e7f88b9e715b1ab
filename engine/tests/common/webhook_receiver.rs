//! A webhook endpoint on a local port, for the tests of the engine's webhooks: it reports each
//! request on a channel as soon as it has read it, answers when the test lets it, with the status
//! the test scripted, and checks signatures.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How long a test waits for a webhook request: long enough for one retry after a refused
/// connection (the first backoff is 1 to 3 s).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(20);

/// One request the receiver got.
pub struct Hook {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// The statuses to answer with, in order, each with an optional `Retry-After`.
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// A webhook endpoint on a local port: reports each request on a channel as soon as it has read
/// it, then answers once its gate is open, with the next scripted status (200 when none is left).
pub struct Receiver {
    pub addr: SocketAddr,
    hooks: mpsc::UnboundedReceiver<Hook>,
    gate: watch::Sender<bool>,
    script: Script,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").await.expect("bind receiver"))
    }

    pub fn on(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().expect("receiver address");
        let (tx, hooks) = mpsc::unbounded_channel();
        let (gate, open) = watch::channel(true);
        let script: Script = Arc::default();
        let answers = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, open, answers) = (tx.clone(), open.clone(), answers.clone());
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (tx, mut open, answers) = (tx.clone(), open.clone(), answers.clone());
                    async move {
                        let headers = request.headers().clone();
                        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let _ = tx.send(Hook { headers, body });
                        let _ = open.wait_for(|open| *open).await;
                        let (status, retry_after) = answers.lock().unwrap().pop_front().unwrap_or((200, None));
                        let mut response = Response::builder().status(status);
                        if let Some(after) = retry_after {
                            response = response.header("Retry-After", after);
                        }
                        Ok::<_, Infallible>(response.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
                    }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service));
            }
        });
        Receiver { addr, hooks, gate, script }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer(&self, statuses: &[(u16, Option<&'static str>)]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }

    /// Requests wait for an answer until `release`.
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    pub async fn next(&mut self) -> Hook {
        tokio::time::timeout(HOOK_TIMEOUT, self.hooks.recv())
            .await
            .unwrap_or_else(|_| panic!("no webhook request within {HOOK_TIMEOUT:?}"))
            .expect("receiver running")
    }

    /// The next request of `event`, skipping others.
    pub async fn next_of(&mut self, event: &str) -> Hook {
        loop {
            let hook = self.next().await;
            if hook.header("X-Chat-Event") == event {
                return hook;
            }
        }
    }

    /// No request is waiting to be read.
    pub fn none_waiting(&mut self) -> bool {
        self.hooks.try_recv().is_err()
    }
}

/// Asserts `X-Chat-Signature` is the HMAC-SHA256 of the body with `secret`, and the content type.
pub fn assert_signed(hook: &Hook, secret: &str) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&hook.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hook.header("X-Chat-Signature"), format!("sha256={expected}"), "signature of {:?}", hook.body);
    assert_eq!(hook.header("Content-Type"), "application/json");
}

/// An engine's sample of `chat_webhook_deliveries_total{event, outcome}`.
pub async fn webhook_deliveries(engine: &super::Engine, event: &str, outcome: &str) -> f64 {
    let text = engine.get("/metrics").await.body;
    let series = format!("chat_webhook_deliveries_total{{event=\"{event}\",outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.trim().parse().expect("a number"))
}
