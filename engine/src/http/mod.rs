//! HTTP: the routes of PROTOCOL.md, routed by hand (there are few), plus the JSON error shape
//! every route shares.

mod admin;
mod api;
mod assets;
mod counts;
mod export;
pub mod metrics_port;
mod ops;
pub mod session;
// Used by the build step (build.rs includes the file); its tests run with the library's.
#[cfg(test)]
mod strip;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::chat::RoomId;
use crate::metrics::METRICS;
use crate::protocol::ErrorCode;

/// Response bodies: whole (`full`) for every route but the export, which streams.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A body sent in one piece.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// One header line may take this much (nginx's `large_client_header_buffers` default); the whole
/// head is capped by `--max-request-head`.
const MAX_HEADER_LINE: usize = 8 * 1024;

/// What a request asks for, decided from its method and path alone. Room ids are parsed here,
/// so a handler only ever sees a valid one.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Home,
    Healthz,
    Readyz,
    Metrics,
    EmbedJs,
    Asset(&'a str),
    WidgetPage(RoomId),
    /// The owner's admin page.
    AdminPage,
    Socket(RoomId),
    RoomInfo(RoomId),
    /// Message and online counts of several rooms (`?ids=`), for post lists.
    RoomCounts,
    /// A room's messages as JSON lines (moderation).
    Export(RoomId),
    History(RoomId),
    DeleteMessage(RoomId, &'a str),
    Ban(RoomId),
    /// Lock (true) or reopen (false).
    Lock(RoomId, bool),
    /// `PUT` with `{ "seconds" }`: set slow mode.
    SlowMode(RoomId),
    /// `DELETE`: slow mode off.
    SlowModeOff(RoomId),
    Pin(RoomId),
    Unpin(RoomId),
    Unban(RoomId, &'a str),
    /// The owner keeps a reported message (its seq, unparsed).
    DismissReports(RoomId, &'a str),
    SignIn,
    SessionStatus,
    SignOut,
    ActiveRooms,
    AllRooms,
    AuthorMessages(&'a str),
    Bans,
    Reports,
    InvalidRoom,
    MethodNotAllowed,
    NotFound,
}

/// Matches a request to a route by its path segments. Pure, so it can be checked on any input.
pub fn parse_route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let room = |raw: &str, to: fn(RoomId) -> Route<'a>| RoomId::parse(raw).map_or(Route::InvalidRoom, to);
    match (method, segments.as_slice()) {
        (&Method::GET, [""]) => Route::Home,
        (&Method::GET, ["healthz"]) => Route::Healthz,
        (&Method::GET, ["readyz"]) => Route::Readyz,
        (&Method::GET, ["metrics"]) => Route::Metrics,
        (&Method::GET, ["embed.js"]) => Route::EmbedJs,
        (&Method::GET, ["assets", name]) => Route::Asset(name),
        (&Method::GET, ["room", id]) => room(id, Route::WidgetPage),
        (&Method::GET, ["admin"]) => Route::AdminPage,
        (&Method::GET, ["ws", id]) => room(id, Route::Socket),
        (&Method::GET, ["api", "rooms"]) => Route::RoomCounts,
        (&Method::GET, ["api", "rooms", id]) => room(id, Route::RoomInfo),
        (&Method::GET, ["api", "rooms", id, "export"]) => room(id, Route::Export),
        (&Method::GET, ["api", "rooms", id, "messages"]) => room(id, Route::History),
        (&Method::DELETE, ["api", "rooms", id, "messages", seq]) => {
            RoomId::parse(id).map_or(Route::InvalidRoom, |id| Route::DeleteMessage(id, seq))
        }
        (&Method::POST, ["api", "rooms", id, "bans"]) => room(id, Route::Ban),
        (&Method::DELETE, ["api", "rooms", id, "bans", author]) => {
            RoomId::parse(id).map_or(Route::InvalidRoom, |id| Route::Unban(id, author))
        }
        (&Method::DELETE, ["api", "rooms", id, "reports", seq]) => {
            RoomId::parse(id).map_or(Route::InvalidRoom, |id| Route::DismissReports(id, seq))
        }
        (&Method::PUT, ["api", "rooms", id, "lock"]) => room(id, |id| Route::Lock(id, true)),
        (&Method::DELETE, ["api", "rooms", id, "lock"]) => room(id, |id| Route::Lock(id, false)),
        (&Method::PUT, ["api", "rooms", id, "slow-mode"]) => room(id, Route::SlowMode),
        (&Method::DELETE, ["api", "rooms", id, "slow-mode"]) => room(id, Route::SlowModeOff),
        (&Method::PUT, ["api", "rooms", id, "pin"]) => room(id, Route::Pin),
        (&Method::DELETE, ["api", "rooms", id, "pin"]) => room(id, Route::Unpin),
        (&Method::POST, ["admin", "session"]) => Route::SignIn,
        (&Method::GET, ["admin", "session"]) => Route::SessionStatus,
        (&Method::DELETE, ["admin", "session"]) => Route::SignOut,
        (&Method::GET, ["api", "admin", "rooms", "active"]) => Route::ActiveRooms,
        (&Method::GET, ["api", "admin", "rooms"]) => Route::AllRooms,
        (&Method::GET, ["api", "admin", "authors", author, "messages"]) => Route::AuthorMessages(author),
        (&Method::GET, ["api", "admin", "bans"]) => Route::Bans,
        (&Method::GET, ["api", "admin", "reports"]) => Route::Reports,
        (_, ["healthz" | "readyz" | "metrics" | "embed.js" | "admin"])
        | (_, ["admin", "session"])
        | (_, ["api", "admin", "rooms" | "bans" | "reports"])
        | (_, ["api", "admin", "rooms", "active"])
        | (_, ["api", "admin", "authors", _, "messages"])
        | (_, ["api", "rooms"])
        | (_, ["api", "rooms", _, "lock" | "pin" | "slow-mode" | "export"])
        | (_, ["api", "rooms", _, "bans" | "reports", _])
        | (_, ["assets" | "room" | "ws", _])
        | (_, ["api", "rooms", _])
        | (_, ["api", "rooms", _, "messages" | "bans"])
        | (_, ["api", "rooms", _, "messages", _]) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// Routes one request from the TCP peer `peer`. Never fails: every problem becomes a JSON error
/// response.
pub async fn route(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    if req.headers().iter().any(|(name, value)| name.as_str().len() + value.len() > MAX_HEADER_LINE) {
        let res =
            error_response_with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ErrorCode::BadRequest, "a header line is over 8 KiB");
        return Ok(res);
    }
    let path = req.uri().path().to_string();
    let mut route = parse_route(req.method(), &path);
    // With `--metrics-bind` the metrics live on their own address only.
    if app.config.metrics_bind.is_some() && path == "/metrics" {
        route = Route::NotFound;
    }
    let response = match route {
        Route::Home => redirect("/room/demo"),
        Route::Healthz => ops::healthz(),
        Route::Readyz => ops::readyz(&app).await,
        Route::Metrics => ops::metrics(),
        Route::EmbedJs => assets::embed_js(&req),
        Route::Asset(name) => assets::asset(&req, name),
        Route::WidgetPage(room) => assets::widget_page(&app, &req, room),
        Route::AdminPage => assets::admin_page(&req),
        Route::Socket(room) => upgrade::upgrade(&app, room, req, peer),
        Route::RoomInfo(room) => api::room_info(&app, room).await,
        Route::RoomCounts => counts::counts(&app, &req, peer).await,
        Route::Export(room) => export::export(&app, room, &req).await,
        Route::History(room) => api::history(&app, room, req.uri().query()).await,
        Route::DeleteMessage(room, seq) => api::admin_delete(&app, room, seq, &req).await,
        Route::Ban(room) => api::ban(&app, room, req).await,
        Route::Lock(room, locked) => admin::lock(&app, room, locked, &req).await,
        Route::SlowMode(room) => admin::slow_mode(&app, room, req).await,
        Route::SlowModeOff(room) => admin::slow_mode_off(&app, room, &req).await,
        Route::Pin(room) => admin::pin(&app, room, req).await,
        Route::Unpin(room) => admin::unpin(&app, room, &req).await,
        Route::Unban(room, author) => admin::unban(&app, room, author, &req).await,
        Route::DismissReports(room, seq) => admin::dismiss(&app, room, seq, &req).await,
        Route::SignIn => session::sign_in(&app, req, peer).await,
        Route::SessionStatus => session::status(&app, &req),
        Route::SignOut => session::sign_out(&app, &req, peer),
        Route::ActiveRooms => admin::active_rooms(&app, &req).await,
        Route::AllRooms => admin::rooms(&app, &req).await,
        Route::AuthorMessages(author) => admin::author_messages(&app, author, &req).await,
        Route::Bans => admin::bans(&app, &req).await,
        Route::Reports => admin::reports(&app, &req).await,
        Route::InvalidRoom => invalid_room(),
        Route::MethodNotAllowed => {
            error_response_with_status(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, "method not allowed on this route")
        }
        Route::NotFound => not_found(),
    };
    Ok(response)
}

pub fn not_found() -> Response<Body> {
    error_response(ErrorCode::NotFound, "no such route")
}

fn invalid_room() -> Response<Body> {
    error_response(ErrorCode::InvalidRoomId, "roomId: 1 to 128 characters from A-Z a-z 0-9 . _ -")
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut res = Response::new(full(Bytes::new()));
    *res.status_mut() = StatusCode::FOUND;
    res.headers_mut().insert(hyper::header::LOCATION, HeaderValue::from_static(to));
    res
}

/// `{ "error": { "code", "message" } }` with the code's own status (`ErrorCode::http_status`).
pub fn error_response(code: ErrorCode, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_response_with_status(status, code, message)
}

/// The error shape with a status the code does not imply (431, 405).
pub fn error_response_with_status(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    METRICS.error(code);
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

/// The query pairs of a request, undecoded (every value the routes take is plain ASCII).
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query.unwrap_or("").split('&').filter(|p| !p.is_empty()).map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// A `limit` value: 1 to `max`.
pub fn parse_limit(value: &str, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("limit must be 1 to {max}")),
    }
}

/// The `limit` of a query that takes nothing else: `default` when absent.
pub fn limit_param(query: Option<&str>, default: usize, max: usize) -> Result<usize, String> {
    query_pairs(query).filter(|(key, _)| *key == "limit").try_fold(default, |_, (_, value)| parse_limit(value, max))
}

/// Request bodies (moderation, sign-in) are tiny; anything larger is refused unread.
const BODY_MAX: usize = 4096;

/// A request's JSON body as `T`, or the `bad_request` answer to send instead.
pub async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let body = match Limited::new(req.into_body(), BODY_MAX).collect().await {
        Ok(body) => body.aggregate(),
        Err(_) => return Err(error_response(ErrorCode::BadRequest, "body missing or larger than 4 KiB")),
    };
    serde_json::from_reader(body.reader()).map_err(|err| error_response(ErrorCode::BadRequest, &format!("body: {err}")))
}

pub fn json(value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(full(body));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Never let a browser read an answer as anything but JSON (it may quote client input).
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn method() -> impl Strategy<Value = Method> {
        prop::sample::select(vec![Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::HEAD, Method::OPTIONS, Method::PATCH])
    }

    /// Paths made of route words and room-id-like, percent-encoded or arbitrary segments.
    fn path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            prop::sample::select(vec![
                "",
                "room",
                "ws",
                "api",
                "rooms",
                "messages",
                "bans",
                "assets",
                "metrics",
                "healthz",
                "readyz",
                "embed.js",
                "..",
                ".",
                "admin",
                "session",
                "lock",
                "pin",
                "active",
                "authors",
                "reports",
                "export",
                "slow-mode"
            ])
            .prop_map(str::to_string),
            "[A-Za-z0-9._-]{1,130}",
            "[A-Za-z0-9._%~:@!$&'()*+,;=-]{0,20}",
            any::<String>(),
        ];
        prop_oneof![prop::collection::vec(segment, 0..7).prop_map(|segments| format!("/{}", segments.join("/"))), any::<String>(),]
    }

    fn room_of<'a>(route: &'a Route<'_>) -> Option<&'a RoomId> {
        match route {
            Route::WidgetPage(room) | Route::Socket(room) | Route::RoomInfo(room) | Route::History(room) | Route::Ban(room) => Some(room),
            Route::DeleteMessage(room, _) | Route::Unban(room, _) | Route::Lock(room, _) | Route::DismissReports(room, _) => Some(room),
            Route::Pin(room) | Route::Unpin(room) | Route::Export(room) | Route::SlowMode(room) | Route::SlowModeOff(room) => Some(room),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn only_valid_room_ids_reach_a_room(method in method(), path in path()) {
            let route = parse_route(&method, &path);
            if let Some(room) = room_of(&route) {
                let id = room.as_str();
                prop_assert!((1..=128).contains(&id.len()), "{id:?}");
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')), "{id:?}");
                prop_assert!(path.split('/').any(|segment| segment == id), "{id:?} is not a segment of {path:?}");
            }
        }

        #[test]
        fn every_valid_room_id_has_its_page_and_socket(id in "[A-Za-z0-9._-]{1,128}") {
            let (page, socket) = (format!("/room/{id}"), format!("/ws/{id}"));
            prop_assert_eq!(parse_route(&Method::GET, &page), Route::WidgetPage(RoomId::parse(&id).unwrap()));
            prop_assert_eq!(parse_route(&Method::GET, &socket), Route::Socket(RoomId::parse(&id).unwrap()));
        }

        #[test]
        fn ids_outside_the_charset_are_invalid_rooms(id in "[^/]{1,40}") {
            prop_assume!(RoomId::parse(&id).is_none());
            let (info, bans) = (format!("/api/rooms/{id}"), format!("/api/rooms/{id}/bans"));
            prop_assert_eq!(parse_route(&Method::GET, &info), Route::InvalidRoom);
            prop_assert_eq!(parse_route(&Method::POST, &bans), Route::InvalidRoom);
        }
    }

    #[test]
    fn routes() {
        assert_eq!(parse_route(&Method::GET, "/"), Route::Home);
        assert_eq!(parse_route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(parse_route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::GET, "/assets/widget.js"), Route::Asset("widget.js"));
        assert_eq!(parse_route(&Method::GET, "/assets/client.js"), Route::Asset("client.js"));
        assert_eq!(parse_route(&Method::GET, "/assets/x/client.js"), Route::NotFound);
        assert_eq!(parse_route(&Method::GET, "/room/a%2Fb"), Route::InvalidRoom);
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/p/messages/7"), Route::DeleteMessage(RoomId::parse("p").unwrap(), "7"));
        assert_eq!(parse_route(&Method::GET, "/room/a/b"), Route::NotFound);
        let p = || RoomId::parse("p").unwrap();
        assert_eq!(parse_route(&Method::PUT, "/api/rooms/p/lock"), Route::Lock(p(), true));
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/p/lock"), Route::Lock(p(), false));
        assert_eq!(parse_route(&Method::POST, "/api/rooms/p/lock"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::PUT, "/api/rooms/p/slow-mode"), Route::SlowMode(p()));
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/p/slow-mode"), Route::SlowModeOff(p()));
        assert_eq!(parse_route(&Method::GET, "/api/rooms/p/slow-mode"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::PUT, "/api/rooms/p/pin"), Route::Pin(p()));
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/p/pin"), Route::Unpin(p()));
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/p/bans/0123456789abcdef"), Route::Unban(p(), "0123456789abcdef"));
        assert_eq!(parse_route(&Method::GET, "/api/rooms/p/bans/0123456789abcdef"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::PUT, "/api/rooms/a%2Fb/lock"), Route::InvalidRoom);
        assert_eq!(parse_route(&Method::POST, "/admin/session"), Route::SignIn);
        assert_eq!(parse_route(&Method::GET, "/admin/session"), Route::SessionStatus);
        assert_eq!(parse_route(&Method::DELETE, "/admin/session"), Route::SignOut);
        assert_eq!(parse_route(&Method::PUT, "/admin/session"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::GET, "/api/admin/rooms/active"), Route::ActiveRooms);
        assert_eq!(parse_route(&Method::GET, "/api/admin/rooms"), Route::AllRooms);
        assert_eq!(parse_route(&Method::GET, "/api/admin/bans"), Route::Bans);
        assert_eq!(parse_route(&Method::DELETE, "/api/admin/bans"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::GET, "/api/admin/authors/x/messages"), Route::AuthorMessages("x"));
        assert_eq!(parse_route(&Method::GET, "/api/admin/other"), Route::NotFound);
        assert_eq!(parse_route(&Method::GET, "/admin"), Route::AdminPage);
        assert_eq!(parse_route(&Method::POST, "/admin"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::GET, "/admin/x"), Route::NotFound);
        assert_eq!(parse_route(&Method::GET, "/assets/admin.js"), Route::Asset("admin.js"));
        assert_eq!(parse_route(&Method::GET, "/api/admin/reports"), Route::Reports);
        assert_eq!(parse_route(&Method::POST, "/api/admin/reports"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/p/reports/7"), Route::DismissReports(p(), "7"));
        assert_eq!(parse_route(&Method::GET, "/api/rooms/p/reports/7"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::DELETE, "/api/rooms/a%2Fb/reports/7"), Route::InvalidRoom);
        assert_eq!(parse_route(&Method::GET, "/api/rooms"), Route::RoomCounts);
        assert_eq!(parse_route(&Method::POST, "/api/rooms"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::GET, "/api/rooms/p/export"), Route::Export(p()));
        assert_eq!(parse_route(&Method::POST, "/api/rooms/p/export"), Route::MethodNotAllowed);
        assert_eq!(parse_route(&Method::GET, "/api/rooms/a%2Fb/export"), Route::InvalidRoom);
    }
}
