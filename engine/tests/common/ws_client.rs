//! The WebSocket client: a reader's identity (`Reader`), one connection to `/ws/{room}`
//! (`Client`) with the reads and sends the protocol tests need, and what a read produced (`Event`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::{frame_type, new_id, seq_of, Engine, FRAME_TIMEOUT};

/// A browser tab's identity: what the widget keeps in `localStorage` plus its display name.
#[derive(Debug, Clone)]
pub struct Reader {
    pub anonymous_id: String,
    pub nickname: String,
    pub avatar: String,
}

impl Reader {
    pub fn new(nickname: &str) -> Reader {
        Reader { anonymous_id: new_id(), nickname: nickname.to_string(), avatar: "otter".to_string() }
    }

    pub fn hello_frame(&self, last_seq: Option<u64>) -> Value {
        let mut frame = json!({
            "type": "hello",
            "anonymousId": self.anonymous_id,
            "nickname": self.nickname,
            "avatar": self.avatar,
        });
        if let Some(last_seq) = last_seq {
            frame["lastSeq"] = json!(last_seq);
        }
        frame
    }
}

/// What the socket produced next.
#[derive(Debug)]
pub enum Event {
    Frame(Value),
    /// A Close frame (with its code, if any), or the end of the connection (`None`).
    Closed(Option<u16>),
    TimedOut,
}

/// With `CHAT_TEST_TRACE=1`, prints every frame a test client sends and receives (to debug a test).
fn trace(room: &str, direction: &str, what: &str) {
    if std::env::var_os("CHAT_TEST_TRACE").is_some() {
        let short: String = what.chars().take(300).collect();
        eprintln!("[ws {room}] {direction} {short}");
    }
}

fn describe(message: &Message) -> String {
    match message {
        Message::Text(text) => text.as_str().to_string(),
        Message::Binary(bytes) => format!("binary {} bytes", bytes.len()),
        Message::Close(close) => format!("close {close:?}"),
        other => format!("{other:?}"),
    }
}

/// Frames that arrive on their own schedule; `next_of_type` skips them unless asked for.
fn is_noise(frame: &Value) -> bool {
    matches!(frame_type(frame), "presence" | "typing")
}

/// One WebSocket connection to `/ws/{room}`.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    /// Frames read while looking for another type, handed out first by later reads.
    pending: VecDeque<Value>,
    pub room: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr, room: &str) -> Client {
        match Client::try_connect(addr, room, None).await {
            Ok(client) => client,
            Err(status) => panic!("WebSocket upgrade to /ws/{room} refused with HTTP {status}"),
        }
    }

    /// Connects with an `Origin` header, like a browser on that origin.
    pub async fn connect_with_origin(addr: SocketAddr, room: &str, origin: &str) -> Result<Client, u16> {
        Client::try_connect(addr, room, Some(origin)).await
    }

    /// `Err(status)` when the server answers the upgrade with an HTTP error.
    pub async fn try_connect(addr: SocketAddr, room: &str, origin: Option<&str>) -> Result<Client, u16> {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        Client::try_connect_with(addr, room, &headers).await
    }

    /// Connects with extra request headers, e.g. `X-Forwarded-For` as a proxy in front would send.
    /// `Err(status)` when the server answers the upgrade with an HTTP error.
    pub async fn try_connect_with(addr: SocketAddr, room: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        let stream = TcpStream::connect(addr).await.expect("TCP connect to the engine");
        Client::handshake(stream, addr, room, headers).await
    }

    /// A reader whose socket takes in only a few KiB and that the test then stops reading.
    pub async fn connect_slow(addr: SocketAddr, room: &str) -> Client {
        let socket = TcpSocket::new_v4().expect("TCP socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("TCP connect to the engine");
        match Client::handshake(stream, addr, room, &[]).await {
            Ok(client) => client,
            Err(status) => panic!("WebSocket upgrade to /ws/{room} refused with HTTP {status}"),
        }
    }

    /// Connects from a loopback source address of the test's choosing (127.0.0.0/8 is all
    /// local), so a crowd can come from several client addresses; `slow` as in `connect_slow`.
    pub async fn connect_from(addr: SocketAddr, room: &str, source: std::net::Ipv4Addr, slow: bool) -> Client {
        let socket = TcpSocket::new_v4().expect("TCP socket");
        socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source address");
        if slow {
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        let stream = socket.connect(addr).await.expect("TCP connect to the engine");
        match Client::handshake(stream, addr, room, &[]).await {
            Ok(client) => client,
            Err(status) => panic!("WebSocket upgrade to /ws/{room} from {source} refused with HTTP {status}"),
        }
    }

    async fn handshake(stream: TcpStream, addr: SocketAddr, room: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        let mut request = format!("ws://{addr}/ws/{room}").into_client_request().expect("WebSocket request");
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
            request.headers_mut().append(name, HeaderValue::from_str(value).expect("header value"));
        }
        let handshake = tokio_tungstenite::client_async(request, stream);
        match tokio::time::timeout(FRAME_TIMEOUT, handshake).await {
            Ok(Ok((ws, _response))) => Ok(Client { ws, pending: VecDeque::new(), room: room.to_string() }),
            Ok(Err(tungstenite::Error::Http(response))) => Err(response.status().as_u16()),
            Ok(Err(e)) => panic!("WebSocket handshake for /ws/{room} failed: {e}"),
            Err(_) => panic!("WebSocket handshake for /ws/{room} timed out"),
        }
    }

    // --- sending --------------------------------------------------------------------------

    pub async fn send_json(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        if let Err(e) = self.try_send(Message::text(text)).await {
            panic!("sending a frame on /ws/{} failed: {e}", self.room);
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.try_send(Message::binary(bytes)).await {
            panic!("sending a binary frame on /ws/{} failed: {e}", self.room);
        }
    }

    pub async fn try_send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        trace(&self.room, "->", &describe(&message));
        self.ws.send(message).await
    }

    /// Queues a frame without flushing (for floods); `flush` sends what was queued.
    pub async fn feed_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.ws.feed(Message::text(text)).await
    }

    pub async fn flush(&mut self) -> Result<(), tungstenite::Error> {
        self.ws.flush().await
    }

    /// Sends `hello` and returns the `welcome`; panics on an `error` or a close instead.
    pub async fn hello(&mut self, reader: &Reader, last_seq: Option<u64>) -> Value {
        self.send_json(&reader.hello_frame(last_seq)).await;
        self.next_of_type("welcome").await
    }

    /// Sends `{"type":"send"}` with a fresh clientId and returns that clientId.
    pub async fn send_message(&mut self, content: &str) -> String {
        let client_id = new_id();
        self.send_with_id(&client_id, content).await;
        client_id
    }

    pub async fn send_with_id(&mut self, client_id: &str, content: &str) {
        self.send_json(&json!({"type": "send", "clientId": client_id, "content": content})).await;
    }

    /// Waits for the `ack` of `client_id` and returns its seq.
    pub async fn ack_for(&mut self, client_id: &str) -> u64 {
        let ack = self.next_where(&format!("ack for clientId {client_id}"), |f| frame_type(f) == "ack" && f["clientId"] == client_id).await;
        seq_of(&ack)
    }

    /// Sends a message, waits for its ack and returns `(seq, clientId)`.
    pub async fn say(&mut self, content: &str) -> (u64, String) {
        let client_id = self.send_message(content).await;
        (self.ack_for(&client_id).await, client_id)
    }

    /// Sends every content with a few sends in flight, reading frames as it goes (so the engine
    /// never sees this client as slow), and returns the acked seqs in send order.
    /// The `message` frames this client receives meanwhile are consumed.
    pub async fn send_many(&mut self, contents: &[String]) -> Vec<u64> {
        self.send_many_windowed(contents, 16).await
    }

    /// `send_many` with at most `window` sends awaiting their ack.
    pub async fn send_many_windowed(&mut self, contents: &[String], window: usize) -> Vec<u64> {
        let client_ids: Vec<String> = contents.iter().map(|_| new_id()).collect();
        let mut seqs: HashMap<String, u64> = HashMap::new();
        let mut sent = 0;
        while seqs.len() < contents.len() {
            while sent < contents.len() && sent - seqs.len() < window {
                self.send_with_id(&client_ids[sent], &contents[sent]).await;
                sent += 1;
            }
            let frame = self.next_frame().await;
            match frame_type(&frame) {
                "ack" => {
                    let id = frame["clientId"].as_str().unwrap_or_default().to_string();
                    assert!(client_ids.contains(&id), "ack for an unknown clientId: {frame}");
                    assert!(seqs.insert(id, seq_of(&frame)).is_none(), "second ack: {frame}");
                }
                "error" => panic!("error while sending {} messages: {frame}", contents.len()),
                _ => {}
            }
        }
        client_ids.iter().map(|id| seqs[id]).collect()
    }

    // --- receiving ------------------------------------------------------------------------

    /// The next frame off the socket (ignoring pending ones), a close, or a timeout.
    pub async fn read_event(&mut self, timeout: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Event::TimedOut,
                Ok(None) => {
                    trace(&self.room, "<-", "end of stream");
                    return Event::Closed(None);
                }
                Ok(Some(Err(e))) => {
                    trace(&self.room, "<-", &format!("error: {e}"));
                    return Event::Closed(None);
                }
                Ok(Some(Ok(message))) => message,
            };
            trace(&self.room, "<-", &describe(&message));
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("server sent a text frame that is not JSON ({e}): {text}"));
                    assert!(frame.is_object(), "server frame is not a JSON object: {frame}");
                    return Event::Frame(frame);
                }
                Message::Close(close) => return Event::Closed(close.map(|c| u16::from(c.code))),
                Message::Binary(bytes) => panic!("server sent a binary frame: {bytes:?}"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next frame of any type; panics after `FRAME_TIMEOUT` or on a close.
    pub async fn next_frame(&mut self) -> Value {
        match self.next_frame_or_close().await {
            Ok(frame) => frame,
            Err(code) => panic!("/ws/{}: connection closed ({code:?}) while waiting for a frame", self.room),
        }
    }

    /// The next frame, or `Err(close code)` when the connection ends first.
    pub async fn next_frame_or_close(&mut self) -> Result<Value, Option<u16>> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        match self.read_event(FRAME_TIMEOUT).await {
            Event::Frame(frame) => Ok(frame),
            Event::Closed(code) => Err(code),
            Event::TimedOut => panic!("/ws/{}: no frame within {FRAME_TIMEOUT:?}", self.room),
        }
    }

    /// The next frame that is not `presence`.
    pub async fn next_non_presence(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame_type(&frame) != "presence" {
                return frame;
            }
        }
    }

    /// The next frame of type `ty`. `presence` and `typing` frames before it are dropped, other
    /// frames are kept for later reads, and an `error` (unless `ty` is "error") fails the test.
    pub async fn next_of_type(&mut self, ty: &str) -> Value {
        self.next_where(&format!("`{ty}` frame"), |f| frame_type(f) == ty).await
    }

    /// The next `error` frame, asserting its code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let error = self.next_of_type("error").await;
        assert_eq!(error["code"], code, "unexpected error frame {error}");
        assert!(error["message"].is_string(), "error frame without a message: {error}");
        error
    }

    /// Like `next_of_type` with any predicate.
    pub async fn next_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.next_where_within(what, FRAME_TIMEOUT, pred).await
    }

    /// `next_where` with its own timeout, for events that take longer than a frame round trip.
    pub async fn next_where_within(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index in range");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_event(left).await {
                Event::Frame(frame) if pred(&frame) => return frame,
                Event::Frame(frame) if frame_type(&frame) == "error" => {
                    panic!("/ws/{}: got {frame} while waiting for {what}", self.room)
                }
                Event::Frame(frame) if is_noise(&frame) => {}
                Event::Frame(frame) => self.pending.push_back(frame),
                Event::Closed(code) => panic!(
                    "/ws/{}: connection closed ({code:?}) while waiting for {what}; frames kept meanwhile: {:?}",
                    self.room, self.pending
                ),
                Event::TimedOut => panic!("/ws/{}: no {what} within {timeout:?}; frames kept meanwhile: {:?}", self.room, self.pending),
            }
        }
    }

    /// Reads (and drops) frames until the connection closes; returns the close code, `None` when
    /// the connection ended without a Close frame. Panics when it is still open after `timeout`.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<u16> {
        self.pending.clear();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = 0usize;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_event(left).await {
                Event::Frame(_) => skipped += 1,
                Event::Closed(code) => return code,
                Event::TimedOut => panic!("/ws/{}: still open after {timeout:?} ({skipped} frames read meanwhile)", self.room),
            }
        }
    }

    /// Every frame still queued for this client, until the connection ends; with the close code.
    pub async fn drain_until_close(&mut self, timeout: Duration) -> (Vec<Value>, Option<u16>) {
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_event(left).await {
                Event::Frame(frame) => frames.push(frame),
                Event::Closed(code) => return (frames, code),
                Event::TimedOut => panic!("/ws/{}: still open after {timeout:?} ({} frames read)", self.room, frames.len()),
            }
        }
    }

    /// Sends a Close frame and waits for the server to finish the closing handshake.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(FRAME_TIMEOUT, async { while let Some(Ok(_)) = self.ws.next().await {} }).await;
    }
}

impl Engine {
    /// A WebSocket connection to `room` that has not said hello yet.
    pub async fn ws(&self, room: &str) -> Client {
        Client::connect(self.addr, room).await
    }

    /// Joins `room` as `reader` and returns the client with the welcome frame.
    pub async fn join(&self, room: &str, reader: &Reader) -> (Client, Value) {
        let mut client = self.ws(room).await;
        let welcome = client.hello(reader, None).await;
        (client, welcome)
    }
}
