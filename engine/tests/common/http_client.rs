//! The HTTP client: one request per connection through hyper's HTTP/1.1 client, the answer as an
//! `HttpResponse`, and the JSON API and `/metrics` reads the tests make with it. Tests that send
//! malformed or unusual requests on purpose (heads that never end, pipelines that are never read,
//! hand-made WebSocket frames) write their bytes on a `TcpStream` themselves.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::{seq_of, seqs, Engine, FRAME_TIMEOUT};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased; a repeated header keeps its values in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body's bytes as received (`body` is them read as UTF-8, for compressed ones meaningless).
    pub raw: Bytes,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts the status and the protocol's JSON error shape `{error:{code,message}}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected HTTP {status} `{code}`, got {self:?}");
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "error code in {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a human-readable message: {body}");
    }
}

/// One request on a fresh connection. `path` goes on the request line as given (percent-encode it).
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> HttpResponse {
    match try_http(addr, method, path, headers, body).await {
        Ok(response) => response,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// Like `http`, with connection failures, broken answers and timeouts as an `Err`.
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let exchange = async {
        let request = request(addr, method, path, headers, body)?;
        exchange(addr, request).await
    };
    match tokio::time::timeout(FRAME_TIMEOUT, exchange).await {
        Ok(result) => result.map_err(std::io::Error::other),
        Err(_) => Err(std::io::Error::other(format!("no complete answer within {FRAME_TIMEOUT:?}"))),
    }
}

/// The request as a tool would send it. Unless the test sets them itself: `Host` names the
/// engine, the connection closes after the answer, and a body is JSON. The length is always
/// stated, `0` for a POST without a body, as browsers send it.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut request = Request::builder().method(method).uri(path);
    if !given(HOST.as_str()) {
        request = request.header(HOST, addr.to_string());
    }
    if !given(CONNECTION.as_str()) {
        request = request.header(CONNECTION, "close");
    }
    if body.is_some() && !given(CONTENT_TYPE.as_str()) {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    if body.is_some() || matches!(method, "POST" | "PUT" | "PATCH") {
        request = request.header(CONTENT_LENGTH, body.unwrap_or_default().len());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
}

/// Sends `request` on a new connection and reads the whole answer.
async fn exchange(addr: SocketAddr, request: Request<Full<Bytes>>) -> Result<HttpResponse, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let answer = async move {
        let response = sender.send_request(request).await?;
        let (head, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>((head, body))
    };
    // The connection is driven here rather than spawned, so it ends with this call: once the
    // answer is read the sender is gone and hyper closes the socket. A connection error also
    // fails the answer, which is the error reported.
    let (answer, _connection) = tokio::join!(answer, connection);
    let (head, body) = answer?;
    Ok(HttpResponse {
        status: head.status.as_u16(),
        headers: head
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        raw: body,
    })
}

impl Engine {
    pub async fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, &[], None).await
    }

    pub async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> HttpResponse {
        http(self.addr, method, path, headers, body).await
    }

    /// A WebSocket upgrade request sent as plain HTTP, to see the HTTP answer to a refused upgrade
    /// (the WebSocket client only reports its status).
    pub async fn raw_upgrade(&self, path: &str, origin: Option<&str>) -> HttpResponse {
        let origin: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        self.raw_upgrade_with(path, &origin).await
    }

    /// `raw_upgrade` with extra headers (e.g. `X-Forwarded-For`).
    pub async fn raw_upgrade_with(&self, path: &str, extra: &[(&str, &str)]) -> HttpResponse {
        let mut headers = vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        headers.extend_from_slice(extra);
        http(self.addr, "GET", path, &headers, None).await
    }

    /// `GET /api/rooms/{room}` as JSON, asserting 200.
    pub async fn room_info(&self, room: &str) -> Value {
        let response = self.get(&format!("/api/rooms/{room}")).await;
        assert_eq!(response.status, 200, "GET /api/rooms/{room}: {response:?}");
        response.json()
    }

    /// `GET /api/rooms/{room}/messages?{query}` messages, asserting 200.
    pub async fn history(&self, room: &str, query: &str) -> Vec<Value> {
        let path = format!("/api/rooms/{room}/messages{query}");
        let response = self.get(&path).await;
        assert_eq!(response.status, 200, "GET {path}: {response:?}");
        let body = response.json();
        body["messages"].as_array().unwrap_or_else(|| panic!("GET {path}: no `messages` array in {body}")).clone()
    }

    /// The whole stored history of a room, oldest first, paged with `before=` 100 at a time.
    pub async fn full_history(&self, room: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut page = self.history(room, "?limit=100").await;
        while !page.is_empty() {
            let oldest = seq_of(&page[0]);
            if let Some(previous) = all.first() {
                assert!(
                    seqs(&page).iter().all(|&s| s < seq_of(previous)),
                    "a `before=` page holds seqs not before {}: {:?}",
                    seq_of(previous),
                    seqs(&page)
                );
            }
            page.append(&mut all);
            all = page;
            if oldest <= 1 {
                break;
            }
            page = self.history(room, &format!("?limit=100&before={oldest}")).await;
        }
        all
    }

    /// Sum of every sample of the metric `name` on `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "GET /metrics: {response:?}");
        metric_sum(&response.body, name).unwrap_or(0.0)
    }
}

/// Sum of the samples of metric `name` in Prometheus text, `None` when it has none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}
