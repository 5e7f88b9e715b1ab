//! `GET /api/rooms?ids=a,b,c`: message and online counts of up to 50 rooms at once, for the
//! "12 messages · 3 online" line of a blog's post list. Public and read from other origins, so it
//! answers CORS; one store query for all the rooms, and each request costs the client address one
//! join from its `--joins-per-ip` budget, so a page (or a script) cannot ask faster than it could
//! open sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, ORIGIN, RETRY_AFTER, VARY};
use hyper::{Request, Response};
use serde_json::{json, Map};

use super::{error_response, json, query_pairs, Body};
use crate::app::App;
use crate::chat::RoomId;
use crate::client_ip::ClientKey;
use crate::protocol::ErrorCode;

/// Rooms one request may ask about (a page of a post list).
pub const IDS_MAX: usize = 50;

/// The distinct room ids of `?ids=` (commas may come percent-encoded), in first-seen order.
fn parse_ids(query: Option<&str>) -> Result<Vec<RoomId>, (ErrorCode, String)> {
    let raw = query_pairs(query).find(|(key, _)| *key == "ids").map(|(_, v)| v).unwrap_or("");
    if raw.is_empty() {
        return Err((ErrorCode::BadRequest, "ids: 1 to 50 comma-separated room ids".into()));
    }
    let mut ids: Vec<RoomId> = Vec::new();
    for part in raw.replace("%2C", ",").replace("%2c", ",").split(',') {
        let Some(id) = RoomId::parse(part) else {
            return Err((ErrorCode::InvalidRoomId, "ids: each roomId 1 to 128 characters from A-Z a-z 0-9 . _ -".into()));
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
        if ids.len() > IDS_MAX {
            return Err((ErrorCode::BadRequest, format!("ids: at most {IDS_MAX} rooms per request")));
        }
    }
    Ok(ids)
}

pub async fn counts(app: &Arc<App>, req: &Request<impl Sized>, peer: SocketAddr) -> Response<Body> {
    let mut res = answer(app, req, peer).await;
    let h = res.headers_mut();
    // Every answer, errors included, so the reading page sees the status and code.
    if let Some(origin) = app.cors_origin(req.headers().get(ORIGIN)) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if !app.config.allowed_origins.is_empty() {
        h.insert(VARY, HeaderValue::from_static("Origin"));
    }
    res
}

async fn answer(app: &Arc<App>, req: &Request<impl Sized>, peer: SocketAddr) -> Response<Body> {
    let ids = match parse_ids(req.uri().query()) {
        Ok(ids) => ids,
        Err((code, message)) => return error_response(code, &message),
    };
    let client = ClientKey::of(app.trusted_proxies.client_ip(peer.ip(), req.headers()));
    if let Err(wait) = app.clients.take_join(client, Instant::now()) {
        let mut res = error_response(ErrorCode::RateLimited, "too many requests from your address; try again shortly");
        res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64));
        return res;
    }
    let (stored, online) = tokio::join!(app.store.message_counts(ids.clone()), app.rooms.online(&ids));
    let stored = match stored {
        Ok(stored) => stored,
        Err(err) => {
            tracing::warn!(error = %err, "counts query failed");
            return error_response(ErrorCode::Unavailable, "message store unavailable");
        }
    };
    let rooms: Map<String, serde_json::Value> = ids
        .iter()
        .zip(online)
        .map(|(id, online)| {
            let messages = stored.iter().find(|(room, _)| room == id).map_or(0, |(_, n)| *n);
            (id.as_str().to_string(), json!({ "messages": messages, "online": online }))
        })
        .collect();
    let mut res = json(&json!({ "rooms": rooms }));
    // Counts a few seconds old are fine under a post title, and a popular list page then costs
    // one request per reader per 5 s at most, fewer where a shared cache (CDN, proxy) sits in front.
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=5"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_valid_and_distinct() {
        let ids = parse_ids(Some("ids=a,b%2Ca,c")).unwrap();
        assert_eq!(ids.iter().map(RoomId::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
        let fifty: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
        assert_eq!(parse_ids(Some(&format!("ids={},r0", fifty.join(",")))).unwrap().len(), 50);
        assert_eq!(parse_ids(Some(&format!("ids={},r50", fifty.join(",")))).unwrap_err().0, ErrorCode::BadRequest);
        assert_eq!(parse_ids(None).unwrap_err().0, ErrorCode::BadRequest);
        assert_eq!(parse_ids(Some("ids=")).unwrap_err().0, ErrorCode::BadRequest);
        assert_eq!(parse_ids(Some("ids=a,,b")).unwrap_err().0, ErrorCode::InvalidRoomId);
        assert_eq!(parse_ids(Some("ids=a%2Fb")).unwrap_err().0, ErrorCode::InvalidRoomId);
    }
}
