//! HTTP: the routes of PROTOCOL.md, routed by hand (there are few), plus the JSON error shape
//! every route shares.

mod api;
mod assets;
mod ops;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::chat::RoomId;
use crate::metrics::METRICS;
use crate::ws::protocol::ErrorCode;

pub type Body = Full<Bytes>;

/// One header line may take this much (nginx's `large_client_header_buffers` default); the whole
/// head is capped by `--max-request-head`.
const MAX_HEADER_LINE: usize = 8 * 1024;

/// Routes one request from the TCP peer `peer`. Never fails: every problem becomes a JSON error
/// response.
pub async fn route(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    if req.headers().iter().any(|(name, value)| name.as_str().len() + value.len() > MAX_HEADER_LINE) {
        let res = error_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ErrorCode::BadRequest, "a header line is over 8 KiB");
        return Ok(res);
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let response = match (method, segments.as_slice()) {
        (Method::GET, [""]) => redirect("/room/demo"),
        (Method::GET, ["healthz"]) => ops::healthz(),
        (Method::GET, ["readyz"]) => ops::readyz(&app).await,
        (Method::GET, ["metrics"]) => ops::metrics(),
        (Method::GET, ["embed.js"]) => assets::serve(&req, &assets::EMBED_JS),
        (Method::GET, ["assets", name]) => assets::asset(&req, name),
        (Method::GET, ["room", room]) => with_room(room, |room| assets::widget_page(&app, &req, room)),
        (Method::GET, ["ws", room]) => match RoomId::parse(room) {
            Some(room) => crate::ws::upgrade(&app, room, req, peer),
            None => invalid_room(),
        },
        (Method::GET, ["api", "rooms", room]) => match RoomId::parse(room) {
            Some(room) => api::room_info(&app, room).await,
            None => invalid_room(),
        },
        (Method::GET, ["api", "rooms", room, "messages"]) => match RoomId::parse(room) {
            Some(room) => api::history(&app, room, req.uri().query()).await,
            None => invalid_room(),
        },
        (Method::DELETE, ["api", "rooms", room, "messages", seq]) => match RoomId::parse(room) {
            Some(room) => api::admin_delete(&app, room, seq, &req).await,
            None => invalid_room(),
        },
        (Method::POST, ["api", "rooms", room, "bans"]) => match RoomId::parse(room) {
            Some(room) => api::ban(&app, room, req).await,
            None => invalid_room(),
        },
        (_, ["healthz" | "readyz" | "metrics" | "embed.js"])
        | (_, ["assets" | "room" | "ws", _])
        | (_, ["api", "rooms", _])
        | (_, ["api", "rooms", _, "messages" | "bans"])
        | (_, ["api", "rooms", _, "messages", _]) => {
            error_response(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, "method not allowed on this route")
        }
        _ => error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route"),
    };
    Ok(response)
}

fn with_room(raw: &str, f: impl FnOnce(RoomId) -> Response<Body>) -> Response<Body> {
    RoomId::parse(raw).map(f).unwrap_or_else(invalid_room)
}

fn invalid_room() -> Response<Body> {
    error_response(StatusCode::BAD_REQUEST, ErrorCode::InvalidRoomId, "roomId: 1 to 128 characters from A-Z a-z 0-9 . _ -")
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::FOUND;
    res.headers_mut().insert(hyper::header::LOCATION, HeaderValue::from_static(to));
    res
}

/// `{ "error": { "code", "message" } }` with the given status.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    METRICS.error(code.as_str());
    #[derive(Serialize)]
    struct Inner<'a> {
        code: ErrorCode,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Error<'a> {
        error: Inner<'a>,
    }
    let mut res = json(&Error { error: Inner { code, message } });
    *res.status_mut() = status;
    res
}

pub fn json(value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Body::from(body));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
