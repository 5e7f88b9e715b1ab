//! WebSocket: a connection hyper has upgraded becomes a session (`session.rs`) speaking the
//! contract's frames over tokio-tungstenite. The library's types stay in this module.

mod session;

use std::sync::Arc;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::app::App;
use crate::chat::RoomId;
use crate::clients::ClientSocket;
use crate::protocol::MAX_FRAME_BYTES;

/// Small buffers: an idle reader should cost a few KiB, not tungstenite's 128 KiB default.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// The `Sec-WebSocket-Accept` answer to a handshake's key.
pub fn accept_key(key: &[u8]) -> String {
    derive_accept_key(key)
}

/// Runs the session of an upgraded connection until it ends.
pub async fn serve(app: Arc<App>, room: RoomId, upgraded: Upgraded, slot: OwnedSemaphorePermit, client: ClientSocket) {
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(socket_config())).await;
    session::run(app, room, ws, slot, client).await;
}
