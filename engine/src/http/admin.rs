//! The owner's routes: lock, slow down and pin a room, lift a ban, keep a reported message, and the JSON the
//! admin page reads (rooms live here, all rooms, one author's messages, active bans, reports). All of them need the admin token or
//! a signed-in session (`session.rs`); inputs are bounded, errors are the shared JSON shape.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::{error_response, json, json_body, limit_param, parse_limit, query_pairs, Body};
use crate::app::App;
use crate::chat::{format_millis, now_millis, AuthorId, Message, RoomId, Seq};
use crate::protocol::ErrorCode;
use crate::room::RoomError;

/// Page sizes: default and largest.
pub const ROOMS_DEFAULT: usize = 50;
pub const ROOMS_MAX: usize = 100;
pub const AUTHOR_DEFAULT: usize = 20;
pub const AUTHOR_MAX: usize = 100;
pub const BANS_DEFAULT: usize = 100;
pub const BANS_MAX: usize = 500;
/// Rooms read from the shared presence for the active list.
pub const ACTIVE_MAX: usize = 500;
pub const REPORTS_DEFAULT: usize = 50;
pub const REPORTS_MAX: usize = 100;

/// The refusal for a request that may not moderate, if it may not.
fn refused(app: &App, req: &Request<impl Sized>) -> Option<Response<Body>> {
    super::session::check(app, req).err().map(|denied| denied.response())
}

fn room_error(err: RoomError) -> Response<Body> {
    let message = match err {
        RoomError::Unavailable => "message store unavailable",
        RoomError::Closed => "this pod is shutting down",
    };
    error_response(ErrorCode::from(err), message)
}

fn unavailable(err: impl std::fmt::Display) -> Response<Body> {
    tracing::warn!(error = %err, "admin query failed");
    error_response(ErrorCode::Unavailable, "message store unavailable")
}

/// `PUT` (lock) or `DELETE` (reopen) `/api/rooms/{id}/lock`.
pub async fn lock(app: &Arc<App>, room: RoomId, locked: bool, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    match app.rooms.set_locked(&room, locked).await {
        Ok(()) => json(&json!({ "id": room.as_str(), "locked": locked })),
        Err(err) => room_error(err),
    }
}

/// Longest slow mode the owner may set, in seconds (one message an hour).
pub const SLOW_MODE_MAX: u32 = 3600;

#[derive(Deserialize)]
struct SlowModeRequest {
    seconds: u32,
}

/// `PUT /api/rooms/{id}/slow-mode` with `{ "seconds": N }`: 1 to 3600, or 0 to turn it off.
pub async fn slow_mode(app: &Arc<App>, room: RoomId, req: Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, &req) {
        return res;
    }
    let request: SlowModeRequest = match json_body(req).await {
        Ok(request) => request,
        Err(res) => return res,
    };
    if request.seconds > SLOW_MODE_MAX {
        return error_response(ErrorCode::BadRequest, "seconds must be 0 (off) to 3600");
    }
    set_slow_mode(app, room, request.seconds).await
}

/// `DELETE /api/rooms/{id}/slow-mode`: slow mode off.
pub async fn slow_mode_off(app: &Arc<App>, room: RoomId, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    set_slow_mode(app, room, 0).await
}

async fn set_slow_mode(app: &Arc<App>, room: RoomId, seconds: u32) -> Response<Body> {
    match app.rooms.set_slow_mode(&room, seconds).await {
        Ok(()) => json(&json!({ "id": room.as_str(), "slowMode": seconds })),
        Err(err) => room_error(err),
    }
}

#[derive(Deserialize)]
struct PinRequest {
    seq: Seq,
}

/// `PUT /api/rooms/{id}/pin` with `{ "seq" }`.
pub async fn pin(app: &Arc<App>, room: RoomId, req: Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, &req) {
        return res;
    }
    let request: PinRequest = match json_body(req).await {
        Ok(request) => request,
        Err(res) => return res,
    };
    if request.seq < 1 {
        return error_response(ErrorCode::BadRequest, "seq must be a positive integer");
    }
    match app.rooms.pin(&room, Some(request.seq)).await {
        Ok(true) => json(&json!({ "id": room.as_str(), "pinned": request.seq })),
        Ok(false) => error_response(ErrorCode::NotFound, "no such message"),
        Err(err) => room_error(err),
    }
}

/// `DELETE /api/rooms/{id}/pin`.
pub async fn unpin(app: &Arc<App>, room: RoomId, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    match app.rooms.pin(&room, None).await {
        Ok(_) => json(&json!({ "id": room.as_str(), "pinned": null })),
        Err(err) => room_error(err),
    }
}

/// `DELETE /api/rooms/{id}/bans/{authorId}`: 404 when the author has no active ban there.
pub async fn unban(app: &Arc<App>, room: RoomId, author: &str, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let Some(author) = AuthorId::parse(author) else {
        return error_response(ErrorCode::BadRequest, "authorId must be 16 lowercase hex digits");
    };
    match app.rooms.unban(&room, &author).await {
        Ok(true) => json(&json!({ "id": room.as_str(), "unbanned": author.as_str() })),
        Ok(false) => error_response(ErrorCode::NotFound, "no active ban for this author in this room"),
        Err(err) => room_error(err),
    }
}

/// `DELETE /api/rooms/{id}/reports/{seq}`: the owner keeps the message. 404 when it has no open
/// reports.
pub async fn dismiss(app: &Arc<App>, room: RoomId, seq: &str, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let Some(seq) = seq.parse::<Seq>().ok().filter(|s| *s >= 1) else {
        return error_response(ErrorCode::BadRequest, "seq must be a positive integer");
    };
    match app.rooms.dismiss(&room, seq).await {
        Ok(true) => json(&json!({ "id": room.as_str(), "seq": seq, "dismissed": true })),
        Ok(false) => error_response(ErrorCode::NotFound, "no open reports for this message"),
        Err(err) => room_error(err),
    }
}

/// `GET /api/admin/reports?limit=`: messages with open reports, most reported first, then the
/// longest waiting.
pub async fn reports(app: &Arc<App>, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let limit = match limit_param(req.uri().query(), REPORTS_DEFAULT, REPORTS_MAX) {
        Ok(limit) => limit,
        Err(message) => return error_response(ErrorCode::BadRequest, &message),
    };
    match app.store.reports(limit).await {
        Ok(reported) => {
            let reports: Vec<_> = reported
                .iter()
                .map(|r| {
                    json!({
                        "room": r.message.room_id.as_str(),
                        "seq": r.message.seq,
                        "reports": r.reports,
                        "hidden": r.hidden,
                        "lastReportedAt": format_millis(r.last_reported_at),
                        "message": r.message,
                    })
                })
                .collect();
            json(&json!({ "reports": reports }))
        }
        Err(err) => unavailable(err),
    }
}

/// `GET /api/admin/rooms/active`: the rooms live on this pod and, with several pods, the rooms
/// with readers on the others (known only by their readers).
pub async fn active_rooms(app: &Arc<App>, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let (here, anywhere) = tokio::join!(app.rooms.active(), app.rooms.busy_anywhere(ACTIVE_MAX));
    let mut rooms: Vec<_> = here
        .iter()
        .map(|(id, info)| {
            json!({ "id": id.as_str(), "online": info.online, "messagesPerMinute": info.per_minute, "lastSeq": info.last_seq, "locked": info.locked, "here": true })
        })
        .collect();
    let elsewhere = anywhere.unwrap_or_default().into_iter().filter(|(id, _)| !here.iter().any(|(h, _)| h == id));
    rooms.extend(elsewhere.map(|(id, online)| {
        json!({ "id": id.as_str(), "online": online, "messagesPerMinute": null, "lastSeq": null, "locked": null, "here": false })
    }));
    rooms.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    json(&json!({ "rooms": rooms }))
}

#[derive(Debug, PartialEq, Eq)]
pub struct RoomsQuery {
    pub search: Option<String>,
    pub after: Option<RoomId>,
    pub limit: usize,
}

pub fn parse_rooms_query(query: Option<&str>) -> Result<RoomsQuery, String> {
    let mut parsed = RoomsQuery { search: None, after: None, limit: ROOMS_DEFAULT };
    for (key, value) in query_pairs(query) {
        match key {
            // Room ids are plain ASCII, so a search for part of one needs no decoding.
            "search" if value.is_empty() => parsed.search = None,
            "search" => match RoomId::parse(value) {
                Some(_) => parsed.search = Some(value.to_string()),
                None => return Err("search: up to 128 characters from A-Z a-z 0-9 . _ -".into()),
            },
            "after" if value.is_empty() => parsed.after = None,
            "after" => parsed.after = Some(RoomId::parse(value).ok_or("after must be a room id")?),
            "limit" => parsed.limit = parse_limit(value, ROOMS_MAX)?,
            _ => {}
        }
    }
    Ok(parsed)
}

/// `GET /api/admin/rooms?search=&after=&limit=`: every room, in id order, paged by `after`
/// (the last id of the previous page, also answered as `next` while there may be more).
pub async fn rooms(app: &Arc<App>, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let query = match parse_rooms_query(req.uri().query()) {
        Ok(q) => q,
        Err(message) => return error_response(ErrorCode::BadRequest, &message),
    };
    match app.store.rooms(query.search, query.after, query.limit).await {
        Ok(rooms) => {
            let next = (rooms.len() == query.limit).then(|| rooms.last().map(|r| r.id.as_str().to_string())).flatten();
            let rooms: Vec<_> = rooms
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id.as_str(),
                        "messages": r.messages,
                        "lastActivity": r.last_activity.map(format_millis),
                        "locked": r.locked,
                    })
                })
                .collect();
            json(&json!({ "rooms": rooms, "next": next }))
        }
        Err(err) => unavailable(err),
    }
}

/// `GET /api/admin/authors/{authorId}/messages?limit=`: newest first, across rooms.
pub async fn author_messages(app: &Arc<App>, author: &str, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let Some(author) = AuthorId::parse(author) else {
        return error_response(ErrorCode::BadRequest, "authorId must be 16 lowercase hex digits");
    };
    let limit = match limit_param(req.uri().query(), AUTHOR_DEFAULT, AUTHOR_MAX) {
        Ok(limit) => limit,
        Err(message) => return error_response(ErrorCode::BadRequest, &message),
    };
    match app.store.author_messages(author, limit).await {
        Ok(messages) => json(&json!({ "messages": messages as Vec<Message> })),
        Err(err) => unavailable(err),
    }
}

/// `GET /api/admin/bans?limit=`: bans still running, longest first.
pub async fn bans(app: &Arc<App>, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let limit = match limit_param(req.uri().query(), BANS_DEFAULT, BANS_MAX) {
        Ok(limit) => limit,
        Err(message) => return error_response(ErrorCode::BadRequest, &message),
    };
    match app.store.bans(now_millis(), limit).await {
        Ok(bans) => {
            let bans: Vec<_> = bans
                .iter()
                .map(|b| json!({ "room": b.room.as_str(), "authorId": b.author.as_str(), "until": format_millis(b.until) }))
                .collect();
            json(&json!({ "bans": bans }))
        }
        Err(err) => unavailable(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_query_is_bounded() {
        let q = parse_rooms_query(Some("search=post_1&after=post-0&limit=100")).unwrap();
        assert_eq!(q, RoomsQuery { search: Some("post_1".into()), after: RoomId::parse("post-0"), limit: 100 });
        assert_eq!(parse_rooms_query(None).unwrap().limit, ROOMS_DEFAULT);
        assert_eq!(parse_rooms_query(Some("search=&after=")).unwrap().search, None);
        for bad in ["limit=0", "limit=101", "limit=x", "search=a%25b", "search=a b", "after=%2F", &format!("search={}", "a".repeat(129))] {
            assert!(parse_rooms_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
