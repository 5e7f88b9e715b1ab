//! `GET /api/rooms/{id}/export` (moderation): the room as JSON lines (`store::transfer`), streamed
//! page by page from the store so a long history never sits in memory whole. A store failure
//! midway ends the body early; the client sees a truncated download, not a silent success.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use hyper::{Request, Response};
use tokio::sync::mpsc;

use super::{error_response, Body};
use crate::app::App;
use crate::chat::RoomId;
use crate::protocol::ErrorCode;
use crate::store::transfer::{stream_room, RoomState};

pub async fn export(app: &Arc<App>, room: RoomId, req: &Request<impl Sized>) -> Response<Body> {
    if let Err(denied) = super::session::check(app, req) {
        return denied.response();
    }
    let state = match app.store.room_state(room.clone()).await {
        Ok(state) => state.unwrap_or(RoomState { id: room.clone(), last_seq: 0, locked: false, pinned: None, bans: Vec::new() }),
        Err(err) => {
            tracing::warn!(error = %err, "export query failed");
            return error_response(ErrorCode::Unavailable, "message store unavailable");
        }
    };
    // Two pages in flight at most: the store is read as fast as the client downloads.
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    let store = app.store.clone();
    tokio::spawn(async move {
        let room = state.id.clone();
        if let Err(err) = stream_room(store.as_ref(), state, tx).await {
            tracing::warn!(error = %err, room = %room, "export stopped: store query failed");
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|chunk| chunk.map(|c| Ok::<_, Infallible>(Frame::data(c)))));
    let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(name) = HeaderValue::from_str(&format!("attachment; filename=\"{}.jsonl\"", room.as_str())) {
        h.insert(CONTENT_DISPOSITION, name);
    }
    res
}
