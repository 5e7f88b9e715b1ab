//! The JSON API: room info, older history, and the moderation routes behind the admin token.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{error_response, json, json_body, parse_limit, query_pairs, Body};
use crate::app::App;
use crate::chat::{now_millis, AuthorId, RoomId, Seq};
use crate::protocol::ErrorCode;
use crate::room::{RoomError, HISTORY_ON_JOIN};
use crate::store::Deletion;

/// Largest page of the history API.
const HISTORY_MAX: usize = 100;
/// Longest ban: ten years.
const BAN_MAX_MINUTES: u64 = 10 * 365 * 24 * 60;

fn unavailable() -> Response<Body> {
    error_response(ErrorCode::Unavailable, "message store unavailable")
}

fn room_error(err: RoomError) -> Response<Body> {
    let message = match err {
        RoomError::Unavailable => "message store unavailable",
        RoomError::Closed => "this pod is shutting down",
    };
    error_response(ErrorCode::from(err), message)
}

/// `{ id, online, lastSeq }`. A room nobody has written in yet is simply empty.
pub async fn room_info(app: &Arc<App>, room: RoomId) -> Response<Body> {
    match app.rooms.info(&room).await {
        Ok(info) => json(&json!({ "id": room.as_str(), "online": info.online, "lastSeq": info.last_seq })),
        Err(err) => room_error(err),
    }
}

struct HistoryQuery {
    before: Option<Seq>,
    limit: usize,
    /// The reader whose own reactions on the page come back as `myReactions`.
    author: Option<AuthorId>,
}

fn parse_history_query(query: Option<&str>) -> Result<HistoryQuery, String> {
    let mut parsed = HistoryQuery { before: None, limit: HISTORY_ON_JOIN, author: None };
    for (key, value) in query_pairs(query) {
        match key {
            "before" => match value.parse::<Seq>() {
                Ok(seq) if seq >= 1 => parsed.before = Some(seq),
                _ => return Err("before must be a positive seq".into()),
            },
            "limit" => parsed.limit = parse_limit(value, HISTORY_MAX)?,
            "authorId" => parsed.author = Some(AuthorId::parse(value).ok_or("authorId must be 16 lowercase hex digits")?),
            _ => {}
        }
    }
    Ok(parsed)
}

/// Older messages, newest last: `?before={seq}&limit={n}`, with `&authorId={id}` that reader's
/// own reactions on them as `myReactions` (as a welcome has them).
pub async fn history(app: &Arc<App>, room: RoomId, query: Option<&str>) -> Response<Body> {
    let query = match parse_history_query(query) {
        Ok(q) => q,
        Err(message) => return error_response(ErrorCode::BadRequest, &message),
    };
    let read = async {
        let messages = app.store.history(room.clone(), query.before, query.limit).await?;
        let mine = match (&query.author, messages.first(), messages.last()) {
            (Some(author), Some(first), Some(last)) => Some(app.store.reactions_by(room, author.clone(), first.seq, last.seq).await?),
            (Some(_), _, _) => Some(Vec::new()),
            _ => None,
        };
        Ok::<_, crate::store::StoreError>((messages, mine))
    };
    match read.await {
        Ok((messages, None)) => json(&json!({ "messages": messages })),
        Ok((messages, Some(mine))) => {
            let mut masks: Vec<(Seq, u8)> = Vec::new();
            for (seq, emoji) in mine {
                match masks.last_mut() {
                    Some((last, mask)) if *last == seq => *mask |= emoji.bit(),
                    _ => masks.push((seq, emoji.bit())),
                }
            }
            json(&json!({ "messages": messages, "myReactions": crate::protocol::MyReactions(masks) }))
        }
        Err(err) => {
            tracing::warn!(error = %err, "history query failed");
            unavailable()
        }
    }
}

/// The refusal for a request that may not moderate, if it may not.
fn refused(app: &App, req: &Request<impl Sized>) -> Option<Response<Body>> {
    super::session::check(app, req).err().map(|denied| denied.response())
}

pub async fn admin_delete(app: &Arc<App>, room: RoomId, seq: &str, req: &Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, req) {
        return res;
    }
    let Some(seq) = seq.parse::<Seq>().ok().filter(|s| *s >= 1) else {
        return error_response(ErrorCode::BadRequest, "seq must be a positive integer");
    };
    match app.rooms.admin_delete(&room, seq).await {
        Ok(Deletion::Deleted) => {
            tracing::info!(room = %room, seq, "message deleted by a moderator");
            json(&json!({ "deleted": seq }))
        }
        Ok(_) => error_response(ErrorCode::NotFound, "no such message"),
        Err(err) => room_error(err),
    }
}

#[derive(Deserialize)]
struct BanRequest {
    #[serde(rename = "authorId")]
    author_id: String,
    minutes: u64,
}

pub async fn ban(app: &Arc<App>, room: RoomId, req: Request<Incoming>) -> Response<Body> {
    if let Some(res) = refused(app, &req) {
        return res;
    }
    let request: BanRequest = match json_body(req).await {
        Ok(request) => request,
        Err(res) => return res,
    };
    let Some(author) = AuthorId::parse(&request.author_id) else {
        return error_response(ErrorCode::BadRequest, "authorId must be 16 lowercase hex digits");
    };
    if !(1..=BAN_MAX_MINUTES).contains(&request.minutes) {
        return error_response(ErrorCode::BadRequest, "minutes must be 1 to 5256000");
    }
    let until = now_millis() + (request.minutes as i64) * 60_000;
    match app.rooms.ban(&room, &author, until).await {
        Ok(()) => {
            let mut res = json(&json!({ "authorId": author.as_str(), "until": crate::chat::format_millis(until) }));
            *res.status_mut() = StatusCode::CREATED;
            res
        }
        Err(err) => room_error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_query_is_validated() {
        let q = parse_history_query(Some("before=10&limit=100")).unwrap();
        assert_eq!((q.before, q.limit), (Some(10), 100));
        assert_eq!(parse_history_query(None).unwrap().limit, HISTORY_ON_JOIN);
        for bad in ["limit=0", "limit=101", "limit=abc", "before=-1", "before=", "limit=", "authorId=x"] {
            assert!(parse_history_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
