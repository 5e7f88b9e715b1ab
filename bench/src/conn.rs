//! One benchmark client: a TCP socket from a chosen loopback source address, the WebSocket
//! handshake with small buffers, and the join (hello → welcome) in the server's protocol.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::proto::{Incoming, Proto};

pub type Ws = WebSocketStream<TcpStream>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Connect and join give up after this long: a refused or stuck join counts as a failure.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients only ever talk to 127.0.0.0/8, so the benchmark can never load anything else.
pub fn loopback_addr(base: &str) -> Result<SocketAddr, Error> {
    let host_port = base.strip_prefix("ws://").ok_or("server URL must start with ws://")?;
    let host_port = host_port.split('/').next().unwrap_or_default();
    let addr: SocketAddr = host_port.parse().map_err(|_| format!("not an IPv4 address and port: {host_port}"))?;
    match addr {
        SocketAddr::V4(v4) if v4.ip().octets()[0] == 127 => Ok(addr),
        _ => Err(format!("refusing a non-loopback server: {addr}").into()),
    }
}

/// Source addresses 127.0.0.2, 127.0.0.3, ...: each has its own ~28k ephemeral ports, so the
/// clients of one run (and the TIME_WAIT sockets of earlier runs) never run out of them.
#[derive(Clone, Copy)]
pub struct Sources {
    first: u32,
    count: u32,
}

impl Sources {
    /// Enough addresses for `clients` sockets at 10k each; `offset` rotates the range between runs.
    pub fn for_clients(clients: usize, offset: u32) -> Sources {
        Sources { first: 2 + offset % 200, count: 1 + (clients / 10_000) as u32 }
    }

    pub fn pick(&self, client: usize) -> Ipv4Addr {
        let host = self.first + client as u32 % self.count;
        Ipv4Addr::new(127, 0, (host >> 8) as u8, host as u8)
    }
}

fn config() -> WebSocketConfig {
    // Small buffers, as in the engine: the client must not be the memory hog of the machine.
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

pub async fn connect(url: &str, source: Ipv4Addr) -> Result<Ws, Error> {
    let addr = loopback_addr(url)?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config())).await?;
    Ok(ws)
}

/// A joined client and what its welcome said.
pub struct Joined {
    pub ws: Ws,
    pub history: usize,
    pub last_seq: u64,
}

/// Connects and joins `room` within `JOIN_TIMEOUT`.
pub async fn join(proto: Proto, base: &str, room: &str, source: Ipv4Addr, anonymous_id: &str) -> Result<Joined, Error> {
    tokio::time::timeout(JOIN_TIMEOUT, join_inner(proto, base, room, source, anonymous_id)).await.map_err(|_| "join timed out")?
}

async fn join_inner(proto: Proto, base: &str, room: &str, source: Ipv4Addr, anonymous_id: &str) -> Result<Joined, Error> {
    let mut ws = connect(&proto.url(base, room), source).await?;
    let hello = proto.hello(room, anonymous_id, "bench reader");
    if proto != Proto::Socketio {
        ws.send(Message::text(hello.clone())).await?;
    }
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame? else { continue };
        match proto.classify(text.as_bytes()) {
            Incoming::Open => ws.send(Message::text("40")).await?,
            Incoming::Connected => ws.send(Message::text(hello.clone())).await?,
            Incoming::Ping => ws.send(Message::text("3")).await?,
            Incoming::Welcome { history, last_seq } => return Ok(Joined { ws, history, last_seq }),
            Incoming::Error => return Err(format!("join refused: {}", text.as_str()).into()),
            _ => {}
        }
    }
    Err("closed before welcome".into())
}

/// UUID v4 strings unique per run (`nonce`), process and client.
pub fn anonymous_id(nonce: u32, process: usize, client: usize) -> String {
    format!("{nonce:08x}-{:04x}-4000-8000-{client:012x}", process & 0xffff)
}
