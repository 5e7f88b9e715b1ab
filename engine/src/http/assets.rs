//! The widget's static files, compiled into the binary: the page at `/room/{roomId}`, its script
//! and style under `/assets/`, and `/embed.js` for host pages. Served with ETags so browsers
//! revalidate cheaply.

use std::sync::{Arc, LazyLock};

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::{error_response, Body};
use crate::app::App;
use crate::chat::RoomId;
use crate::ws::protocol::ErrorCode;

pub struct Asset {
    body: &'static str,
    content_type: &'static str,
    cache: &'static str,
    etag: LazyLock<String>,
}

macro_rules! asset {
    ($file:literal, $type:literal, $cache:literal) => {
        Asset {
            body: include_str!(concat!("../../../embed-widget/", $file)),
            content_type: $type,
            cache: $cache,
            etag: LazyLock::new(|| etag(include_str!(concat!("../../../embed-widget/", $file)))),
        }
    };
}

// The page is per room and must pick up new releases at once; the files it loads may be cached
// briefly and are revalidated by ETag after that.
static PAGE: Asset = asset!("index.html", "text/html; charset=utf-8", "no-cache");
static WIDGET_JS: Asset = asset!("widget.js", "text/javascript; charset=utf-8", "public, max-age=300");
static WIDGET_CSS: Asset = asset!("widget.css", "text/css; charset=utf-8", "public, max-age=300");
pub static EMBED_JS: Asset = asset!("embed.js", "text/javascript; charset=utf-8", "public, max-age=300");

fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

pub fn asset(req: &Request<impl Sized>, name: &str) -> Response<Body> {
    match name {
        "widget.js" => serve(req, &WIDGET_JS),
        "widget.css" => serve(req, &WIDGET_CSS),
        _ => error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such asset"),
    }
}

pub fn serve(req: &Request<impl Sized>, asset: &Asset) -> Response<Body> {
    let etag = asset.etag.as_str();
    let fresh = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        let mut res = Response::new(Body::default());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        Response::new(Body::from(asset.body))
    };
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(asset.cache));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(ETAG, value);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

/// The widget page. Embedding is limited to `ALLOWED_ORIGINS` when set (`frame-ancestors`).
pub fn widget_page(app: &Arc<App>, req: &Request<impl Sized>, _room: RoomId) -> Response<Body> {
    let mut res = serve(req, &PAGE);
    let h = res.headers_mut();
    h.insert("referrer-policy", HeaderValue::from_static("strict-origin-when-cross-origin"));
    if let Some(ancestors) = app.frame_ancestors() {
        if let Ok(value) = HeaderValue::from_str(&format!("frame-ancestors {ancestors}")) {
            h.insert("content-security-policy", value);
        }
    }
    res
}
