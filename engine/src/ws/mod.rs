//! WebSocket: a connection hyper has upgraded becomes a session (`session.rs`) speaking the
//! contract's frames over tokio-tungstenite. The library's types stay in this module.

mod session;

use std::future::Future;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::app::App;
use crate::chat::RoomId;
use crate::clients::ClientSocket;
use crate::protocol::MAX_FRAME_BYTES;
use crate::room;
use crate::write_deadline::WriteDeadline;

/// Bytes of the read buffer (see `socket_config`).
const READ_BUFFER: usize = 256;

/// Small buffers: an idle reader should cost a few KiB, not tungstenite's 128 KiB default. The
/// read buffer is allocated with the socket and kept for its life; it is also the most one read
/// takes from the kernel, and a reader's frames (hello, send, typing) are a few hundred bytes.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// The `Sec-WebSocket-Accept` answer to a handshake's key.
pub fn accept_key(key: &[u8]) -> String {
    derive_accept_key(key)
}

/// Runs a connection from its upgrade to its end; the slot and the address's count are given back
/// after it. One flat future, with the session as a local: it is what every idle connection holds,
/// and async fns nested by value keep each level's arguments beside the next level's state (the
/// connection task was 2,104 bytes that way, measured with `-Zprint-type-sizes`).
/// (An `async fn` would also copy its arguments into locals beside them, hence the block.)
#[allow(clippy::manual_async_fn)]
pub fn serve(
    app: Arc<App>,
    room: RoomId,
    on_upgrade: OnUpgrade,
    slot: OwnedSemaphorePermit,
    client: ClientSocket,
) -> impl Future<Output = ()> + Send {
    async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return tracing::debug!(error = %err, "upgrade failed"),
        };
        // The socket itself, shared with the room (`room/outbox.rs`): what the server serves.
        // In a block of its own: hyper's read buffer goes with it, not with the connection.
        let (line, io) = match upgraded.downcast::<TokioIo<WriteDeadline<TcpStream>>>() {
            Ok(parts) => room::line(parts.io.into_inner().into_inner(), &parts.read_buf, app.config.outbound_queue),
            Err(_) => return tracing::error!("upgraded connection is not a TCP socket"),
        };
        let io = WriteDeadline::new(io, app.config.write_timeout);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config())).await;
        let mut session = session::Session::new(app, room, ws, line, client.key());
        session.run().await;
        drop(slot);
        drop(client);
    }
}
