//! The widget's static files, compiled into the binary: the page at `/room/{roomId}`, its script
//! modules and style under `/assets/`, and `/embed.js` for host pages; likewise the owner's admin
//! page at `/admin` and its own modules (`admin*.js`, `admin.css`). Served with ETags so browsers
//! revalidate cheaply.
//!
//! The script is plain ES modules, one file per job (`widget.js`, the view, imports `client.js`,
//! `storage.js` and `strings.js`), served as they are in the repository: the page has always loaded
//! it with `<script type="module">`, so every browser that runs the widget also resolves static
//! imports, and nothing needs a build step or a bundler. The page preloads the modules
//! (`modulepreload`), so they do not wait for the entry one; all come from `'self'`.

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::{error_response, full, Body};
use crate::app::App;
use crate::chat::RoomId;
use crate::protocol::ErrorCode;

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
static CLIENT_JS: Asset = asset!("client.js", "text/javascript; charset=utf-8", "public, max-age=300");
static STORAGE_JS: Asset = asset!("storage.js", "text/javascript; charset=utf-8", "public, max-age=300");
static STRINGS_JS: Asset = asset!("strings.js", "text/javascript; charset=utf-8", "public, max-age=300");
static MODERATOR_JS: Asset = asset!("moderator.js", "text/javascript; charset=utf-8", "public, max-age=300");
static REACTIONS_JS: Asset = asset!("reactions.js", "text/javascript; charset=utf-8", "public, max-age=300");
static REPLY_JS: Asset = asset!("reply.js", "text/javascript; charset=utf-8", "public, max-age=300");
static WIDGET_CSS: Asset = asset!("widget.css", "text/css; charset=utf-8", "public, max-age=300");
static ADMIN_PAGE: Asset = asset!("admin.html", "text/html; charset=utf-8", "no-cache");
static ADMIN_JS: Asset = asset!("admin.js", "text/javascript; charset=utf-8", "public, max-age=300");
static ADMIN_API_JS: Asset = asset!("admin-api.js", "text/javascript; charset=utf-8", "public, max-age=300");
static ADMIN_DOM_JS: Asset = asset!("admin-dom.js", "text/javascript; charset=utf-8", "public, max-age=300");
static ADMIN_ROOM_JS: Asset = asset!("admin-room.js", "text/javascript; charset=utf-8", "public, max-age=300");
static ADMIN_BAN_JS: Asset = asset!("admin-ban.js", "text/javascript; charset=utf-8", "public, max-age=300");
static ADMIN_STRINGS_JS: Asset = asset!("admin-strings.js", "text/javascript; charset=utf-8", "public, max-age=300");
static ADMIN_CSS: Asset = asset!("admin.css", "text/css; charset=utf-8", "public, max-age=300");
pub static EMBED_JS: Asset = asset!("embed.js", "text/javascript; charset=utf-8", "public, max-age=300");

fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The file at `/assets/{name}`.
fn named(name: &str) -> Option<&'static Asset> {
    match name {
        "widget.js" => Some(&WIDGET_JS),
        "client.js" => Some(&CLIENT_JS),
        "storage.js" => Some(&STORAGE_JS),
        "strings.js" => Some(&STRINGS_JS),
        "moderator.js" => Some(&MODERATOR_JS),
        "reactions.js" => Some(&REACTIONS_JS),
        "reply.js" => Some(&REPLY_JS),
        "widget.css" => Some(&WIDGET_CSS),
        "admin.js" => Some(&ADMIN_JS),
        "admin-api.js" => Some(&ADMIN_API_JS),
        "admin-dom.js" => Some(&ADMIN_DOM_JS),
        "admin-room.js" => Some(&ADMIN_ROOM_JS),
        "admin-ban.js" => Some(&ADMIN_BAN_JS),
        "admin-strings.js" => Some(&ADMIN_STRINGS_JS),
        "admin.css" => Some(&ADMIN_CSS),
        _ => None,
    }
}

pub fn asset(req: &Request<impl Sized>, name: &str) -> Response<Body> {
    match named(name) {
        Some(asset) => serve(req, asset),
        None => error_response(ErrorCode::NotFound, "no such asset"),
    }
}

pub fn serve(req: &Request<impl Sized>, asset: &Asset) -> Response<Body> {
    let etag = asset.etag.as_str();
    let fresh = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        let mut res = Response::new(full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        Response::new(full(asset.body))
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

/// `'sha256-...'` sources for the page's inline scripts (the theme set before first paint), so
/// `script-src` allows them and nothing else inline; computed from the page itself, so an edit
/// to the script cannot leave a stale hash behind.
static INLINE_SCRIPTS: LazyLock<String> = LazyLock::new(|| inline_script_hashes(PAGE.body));
static ADMIN_INLINE_SCRIPTS: LazyLock<String> = LazyLock::new(|| inline_script_hashes(ADMIN_PAGE.body));

fn inline_script_hashes(html: &str) -> String {
    let mut sources = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some((tag, after)) = rest[start..].split_once('>') else { break };
        let Some((script, after)) = after.split_once("</script>") else { break };
        if !tag.contains("src=") {
            let digest = Sha256::digest(script.as_bytes());
            sources.push_str(&format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        }
        rest = after;
    }
    sources
}

/// The widget page, under a Content Security Policy: scripts, styles and connections only from
/// the engine itself, so text that slipped past escaping could still run nothing. `connect-src`
/// names the socket's origin explicitly, as older browsers do not count `ws:` as `'self'`.
/// Embedding is limited to `ALLOWED_ORIGINS` when set (`frame-ancestors`).
pub fn widget_page(app: &Arc<App>, req: &Request<impl Sized>, _room: RoomId) -> Response<Body> {
    let mut policy = page_policy(req, &INLINE_SCRIPTS);
    if let Some(ancestors) = app.frame_ancestors() {
        policy.push_str(&format!("; frame-ancestors {ancestors}"));
    }
    let mut res = serve(req, &PAGE);
    let h = res.headers_mut();
    h.insert("referrer-policy", HeaderValue::from_static("strict-origin-when-cross-origin"));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        h.insert(CONTENT_SECURITY_POLICY, value);
    }
    res
}

/// The policy both pages share: everything from the engine itself, inline only the scripts with
/// these hashes.
fn page_policy(req: &Request<impl Sized>, inline_scripts: &str) -> String {
    let mut policy =
        format!("default-src 'self'; script-src 'self'{inline_scripts}; style-src 'self'; img-src 'self' data:; connect-src 'self'");
    // The Host header is the client's to write: only a plain host[:port] goes into the header.
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')));
    if let Some(host) = host {
        policy.push_str(&format!(" ws://{host} wss://{host}"));
    }
    policy.push_str("; base-uri 'none'; object-src 'none'; form-action 'none'");
    policy
}

/// The owner's admin page: the widget's policy, never framed by anyone (a framed admin page could
/// be clickjacked into deleting or banning), and no referrer leaves it (room ids are in its URLs).
pub fn admin_page(req: &Request<impl Sized>) -> Response<Body> {
    let policy = format!("{}; frame-ancestors 'none'", page_policy(req, &ADMIN_INLINE_SCRIPTS));
    let mut res = serve(req, &ADMIN_PAGE);
    let h = res.headers_mut();
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        h.insert(CONTENT_SECURITY_POLICY, value);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relative module specifiers (`from "./x.js"`) a script imports.
    fn imports(script: &str) -> Vec<&str> {
        script.split("from \"./").skip(1).filter_map(|rest| rest.split_once('"').map(|(name, _)| name)).collect()
    }

    /// Every module a page's entry reaches through imports is served here and preloaded by the
    /// page, and the page preloads nothing else.
    #[test]
    fn every_module_the_page_loads_is_served_and_preloaded() {
        modules_are_served_and_preloaded(&PAGE, "widget.js");
        modules_are_served_and_preloaded(&ADMIN_PAGE, "admin.js");
    }

    fn modules_are_served_and_preloaded(page: &Asset, entry: &'static str) {
        let mut modules = vec![entry];
        let mut i = 0;
        while let Some(&name) = modules.get(i) {
            let script = named(name).unwrap_or_else(|| panic!("{name} is imported but not served"));
            for import in imports(script.body) {
                if !modules.contains(&import) {
                    modules.push(import);
                }
            }
            i += 1;
        }
        assert!(modules.len() > 1, "the entry imports its modules: {modules:?}");
        for name in &modules[1..] {
            assert!(page.body.contains(&format!(r#"<link rel="modulepreload" href="/assets/{name}">"#)), "{name} is not preloaded");
        }
        assert_eq!(page.body.matches(r#"rel="modulepreload""#).count(), modules.len() - 1, "the page preloads a module nothing imports");
        assert!(page.body.contains(&format!(r#"<script type="module" src="/assets/{entry}"></script>"#)), "{entry} is the entry");
    }
}
