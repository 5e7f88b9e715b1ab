//! The HTTP side of a WebSocket upgrade on `/ws/{roomId}`: the checks that may refuse it (a
//! valid handshake, the origin, a draining pod, the client address's share, the pod's limit),
//! the `101` answer, and handing the connection to `ws` once hyper lets go of it.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, RETRY_AFTER, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::{Request, Response, StatusCode};

use super::{error_response, full, Body};
use crate::app::App;
use crate::chat::RoomId;
use crate::client_ip::ClientKey;
use crate::clients::Refusal;
use crate::protocol::ErrorCode;

/// Answers the upgrade request and, once hyper hands over the connection, runs the session.
pub fn upgrade(app: &Arc<App>, room: RoomId, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = headers.get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY).filter(|_| is_upgrade && version_ok) else {
        return error_response(ErrorCode::BadRequest, "expected a WebSocket upgrade (version 13)");
    };
    if !app.origin_allowed(headers.get(hyper::header::ORIGIN), headers.get(hyper::header::HOST)) {
        return error_response(ErrorCode::Forbidden, "this origin may not open sockets here");
    }
    if app.is_draining() {
        return error_response(ErrorCode::Unavailable, "this pod is shutting down");
    }
    let client = ClientKey::of(app.trusted_proxies.client_ip(peer.ip(), headers));
    let client = match app.clients.open_socket(client) {
        Ok(client) => client,
        Err(refusal) => return refused(refusal),
    };
    let Some(slot) = app.connection_slot() else {
        return error_response(ErrorCode::Unavailable, "this pod is at its connection limit");
    };
    let accept = crate::ws::accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let app = app.clone();
    tokio::spawn(crate::ws::serve(app, room, on_upgrade, slot, client));
    let mut res = Response::new(full(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}

/// HTTP 429 for an address over its socket cap or join rate; `Retry-After` in whole seconds.
fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::TooManySockets => {
            error_response(ErrorCode::TooManyConnections, "too many open connections from your address; close some tabs")
        }
        Refusal::TooManyJoins { retry_after } => {
            let mut res = error_response(ErrorCode::RateLimited, "too many new connections from your address; try again shortly");
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            res
        }
    }
}
