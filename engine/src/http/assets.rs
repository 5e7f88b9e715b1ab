//! The widget's static files, compiled into the binary: the page at `/room/{roomId}`, its script
//! modules and style under `/assets/`, and `/embed.js` for host pages; likewise the owner's admin
//! page at `/admin` and its own modules (`admin*.js`, `admin.css`).
//!
//! The script is plain ES modules, one file per job (`widget.js`, the view, imports `client.js`,
//! `storage.js` and `strings.js`): the page has always loaded it with `<script type="module">`, so
//! every browser that runs the widget also resolves static imports, and nothing needs a bundler.
//! The build step (`engine/build.rs`) leaves out comments and indentation, names each module and
//! style after its content (`/assets/widget.3f9a1c2e.js`), rewrites the imports and the pages'
//! links to those names, and compresses everything with gzip and brotli. So:
//! - a hashed name never changes meaning: cached for a year, `immutable` (no revalidation);
//! - the pages and `/embed.js` keep their URLs: `no-cache` (the page) or five minutes (`embed.js`),
//!   revalidated by ETag (304);
//! - the plain names (`/assets/widget.js`) still answer, with the files importing plain names and
//!   a short cache, for pages an older release served during a rollout;
//! - each answer is brotli, gzip or identity as `Accept-Encoding` allows (brotli first), with
//!   `Vary: Accept-Encoding` and an ETag of its own per encoding.
//!
//! The page preloads its modules (`modulepreload`), so they do not wait for the entry one; all come
//! from `'self'`.

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH, VARY,
};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::{error_response, full, Body};
use crate::app::App;
use crate::chat::RoomId;
use crate::protocol::ErrorCode;

/// One file as the build step left it.
pub(crate) struct File {
    /// Its name in `embed-widget/`.
    name: &'static str,
    /// The content-hashed name it is served under in `/assets/` (the name itself for the pages and
    /// `embed.js`).
    hashed: &'static str,
    /// Served under `/assets/` (the pages and `embed.js` have their own routes).
    asset: bool,
    content_type: &'static str,
    /// The file as served at its hashed name (and the pages and `embed.js` at theirs).
    served: Encodings,
    /// The file with its imports as named in the repository, when the build renamed them: what its
    /// plain name serves.
    source: Option<Encodings>,
}

/// One body in each encoding the build made (a compressed copy is absent when it was not smaller).
pub(crate) struct Encodings {
    /// Hex digits of the identity body's SHA-256: the ETag's core.
    tag: &'static str,
    identity: &'static [u8],
    gzip: Option<&'static [u8]>,
    br: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The page is per room and must pick up a release at once: revalidated on every load (a 304 costs
/// its headers only).
const PAGE_CACHE: &str = "no-cache";
/// `/embed.js` and the plain asset names: a few minutes, then revalidated.
const SHORT_CACHE: &str = "public, max-age=300";
/// A content-hashed name: the same bytes forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn file(name: &str) -> &'static File {
    FILES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("build.rs lists no {name}"))
}

static PAGE: LazyLock<&File> = LazyLock::new(|| file("index.html"));
static ADMIN_PAGE: LazyLock<&File> = LazyLock::new(|| file("admin.html"));

/// `/embed.js`: host pages name it as it is, so it keeps its URL.
pub fn embed_js(req: &Request<impl Sized>) -> Response<Body> {
    let embed = file("embed.js");
    serve(req, embed.content_type, &embed.served, SHORT_CACHE)
}

/// `/assets/{name}`: a hashed name (immutable), or a plain one (the repository's file, short cache).
/// A hashed name this build does not have (another release's) is 404, never another file.
pub fn asset(req: &Request<impl Sized>, name: &str) -> Response<Body> {
    let assets = || FILES.iter().filter(|f| f.asset);
    if let Some(f) = assets().find(|f| f.hashed == name) {
        return serve(req, f.content_type, &f.served, IMMUTABLE);
    }
    if let Some(f) = assets().find(|f| f.name == name) {
        return serve(req, f.content_type, f.source.as_ref().unwrap_or(&f.served), SHORT_CACHE);
    }
    let mut res = error_response(ErrorCode::NotFound, "no such asset");
    // A release not yet (or no longer) here: nobody should keep this answer.
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A content coding the engine can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Br,
    Gzip,
    Identity,
}

/// The coding to answer with, from `Accept-Encoding` and the copies there are: the compressed one
/// the client weighs highest (brotli on a tie); `q=0` refuses one, also through `*;q=0`. Otherwise
/// identity, also when the client refused it too: an uncompressed answer it may still read beats a
/// 406 it cannot.
fn negotiate(accept: Option<&str>, have_br: bool, have_gzip: bool) -> Coding {
    let Some(accept) = accept else { return Coding::Identity };
    let mut weights: Vec<(&str, f32)> = Vec::new();
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let mut q = 1.0;
        for param in parts {
            if let Some((key, value)) = param.split_once('=') {
                if key.trim().eq_ignore_ascii_case("q") {
                    // An unreadable weight refuses rather than guesses.
                    q = value.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(0.0);
                }
            }
        }
        weights.push((coding, q));
    }
    let weight = |names: &[&str]| {
        let named = weights.iter().find(|(c, _)| names.iter().any(|n| c.eq_ignore_ascii_case(n)));
        let any = weights.iter().find(|(c, _)| *c == "*");
        named.or(any).map_or(0.0, |(_, q)| *q)
    };
    let mut best = (Coding::Identity, 0.0);
    for (coding, have, names) in [(Coding::Gzip, have_gzip, &["gzip", "x-gzip"][..]), (Coding::Br, have_br, &["br"][..])] {
        let q = weight(names);
        if have && q > 0.0 && q >= best.1 {
            best = (coding, q);
        }
    }
    best.0
}

/// One file in the encoding the request accepts, or 304 when the request's `If-None-Match` names
/// what it would get. Every encoding has its own strong ETag (the content's tag plus `-br` /
/// `-gzip`), so a cache never answers a gzip request with a brotli body.
fn serve(req: &Request<impl Sized>, content_type: &'static str, body: &Encodings, cache: &'static str) -> Response<Body> {
    let accept = req.headers().get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    let (coding, bytes) = match negotiate(accept, body.br.is_some(), body.gzip.is_some()) {
        Coding::Br => (Some("br"), body.br.unwrap_or(body.identity)),
        Coding::Gzip => (Some("gzip"), body.gzip.unwrap_or(body.identity)),
        Coding::Identity => (None, body.identity),
    };
    let etag = match coding {
        Some(coding) => format!("\"{}-{coding}\"", body.tag),
        None => format!("\"{}\"", body.tag),
    };
    // Weak comparison, as If-None-Match asks: a `W/` prefix does not matter.
    let fresh = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag));
    let mut res = if fresh {
        let mut res = Response::new(full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        Response::new(full(bytes))
    };
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(coding) = coding {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, value);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

/// `'sha256-...'` sources for the page's inline scripts (the theme set before first paint), so
/// `script-src` allows them and nothing else inline; computed from the page itself, so an edit
/// to the script cannot leave a stale hash behind.
static INLINE_SCRIPTS: LazyLock<String> = LazyLock::new(|| inline_script_hashes(text(PAGE.served.identity)));
static ADMIN_INLINE_SCRIPTS: LazyLock<String> = LazyLock::new(|| inline_script_hashes(text(ADMIN_PAGE.served.identity)));

fn text(bytes: &'static [u8]) -> &'static str {
    std::str::from_utf8(bytes).expect("the pages are UTF-8 (build.rs read them as text)")
}

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
    let mut res = serve(req, PAGE.content_type, &PAGE.served, PAGE_CACHE);
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
    let mut res = serve(req, ADMIN_PAGE.content_type, &ADMIN_PAGE.served, PAGE_CACHE);
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

    /// The modules a script imports: statically (`from "./x.js"`) or, with `lazy`, the ones it
    /// fetches later (`import("./x.js")`).
    fn imports(script: &str, lazy: bool) -> Vec<&str> {
        let prefix = if lazy { "import(\"./" } else { "from \"./" };
        script.split(prefix).skip(1).filter_map(|rest| rest.split_once('"').map(|(name, _)| name)).collect()
    }

    fn by_hashed(name: &str) -> &'static File {
        FILES.iter().find(|f| f.asset && f.hashed == name).unwrap_or_else(|| panic!("{name} is imported but not served"))
    }

    /// Every module a page's entry reaches through static imports is served under its hashed name
    /// and preloaded by the page, and the page preloads nothing else: the modules fetched later
    /// are served under their hashed names and not preloaded (they would load before the socket).
    #[test]
    fn every_module_the_page_loads_is_served_and_preloaded() {
        assert_eq!(modules_are_served_and_preloaded(&PAGE, "widget.js"), ["moderator.js", "reactions.js", "reply.js"]);
        modules_are_served_and_preloaded(&ADMIN_PAGE, "admin.js");
    }

    /// Returns the plain names of the modules fetched later.
    fn modules_are_served_and_preloaded(page: &File, entry: &'static str) -> Vec<&'static str> {
        let body = text(page.served.identity);
        let entry = file(entry).hashed;
        let mut modules = vec![entry];
        let mut later = Vec::new();
        let mut i = 0;
        while let Some(&name) = modules.get(i) {
            let script = text(by_hashed(name).served.identity);
            for import in imports(script, false) {
                if !modules.contains(&import) {
                    modules.push(import);
                }
            }
            for lazy in imports(script, true) {
                later.push(by_hashed(lazy).name);
                assert!(!body.contains(lazy), "{lazy} is fetched later, but the page preloads it");
            }
            i += 1;
        }
        assert!(modules.len() > 1, "the entry imports its modules: {modules:?}");
        for name in &modules[1..] {
            assert!(body.contains(&format!(r#"<link rel="modulepreload" href="/assets/{name}">"#)), "{name} is not preloaded");
        }
        assert_eq!(body.matches(r#"rel="modulepreload""#).count(), modules.len() - 1, "the page preloads a module nothing imports");
        assert!(body.contains(&format!(r#"<script type="module" src="/assets/{entry}"></script>"#)), "{entry} is the entry");
        assert!(!body.contains("/assets/widget.js") && !body.contains("/assets/admin.js"), "a plain name left in the page");
        later
    }

    /// A hashed name is the file's name with the first hex digits of the served bytes' SHA-256,
    /// and the served file is the repository's, stripped (`strip.rs`), with only the import names
    /// changed.
    #[test]
    fn hashed_names_follow_the_served_content() {
        for f in FILES.iter().filter(|f| f.asset) {
            let digest: String = Sha256::digest(f.served.identity).iter().map(|b| format!("{b:02x}")).collect();
            let (stem, ext) = f.name.rsplit_once('.').unwrap();
            assert_eq!(f.hashed, format!("{stem}.{}.{ext}", &digest[..8]));
            assert_eq!(f.served.tag, &digest[..16]);
            let source = text(f.source.as_ref().unwrap_or(&f.served).identity);
            let path = format!("{}/../embed-widget/{}", env!("CARGO_MANIFEST_DIR"), f.name);
            let repository = std::fs::read_to_string(&path).unwrap();
            let stripped =
                if f.name.ends_with(".js") { super::super::strip::js(&repository) } else { super::super::strip::css(&repository) };
            assert_eq!(source, stripped.unwrap(), "{} at its plain name", f.name);
            let served = text(f.served.identity);
            let mut renamed = source.to_string();
            for (lazy, prefix) in [(false, "from \"./"), (true, "import(\"./")] {
                assert_eq!(imports(source, lazy).len(), imports(served, lazy).len(), "{}", f.name);
                for (plain, hashed) in imports(source, lazy).into_iter().zip(imports(served, lazy)) {
                    assert_eq!(file(plain).hashed, hashed, "{} imports {plain}", f.name);
                    renamed = renamed.replace(&format!("{prefix}{plain}\""), &format!("{prefix}{hashed}\""));
                }
            }
            assert_eq!(renamed, served, "{} differs from its source beyond its imports", f.name);
        }
    }

    #[test]
    fn accept_encoding_picks_brotli_then_gzip_and_honours_refusals() {
        let pick = |accept: Option<&str>| negotiate(accept, true, true);
        assert_eq!(pick(None), Coding::Identity);
        assert_eq!(pick(Some("")), Coding::Identity);
        assert_eq!(pick(Some("gzip, deflate, br, zstd")), Coding::Br);
        assert_eq!(pick(Some("gzip, deflate")), Coding::Gzip);
        assert_eq!(pick(Some("x-gzip")), Coding::Gzip);
        assert_eq!(pick(Some("BR;Q=1")), Coding::Br);
        assert_eq!(pick(Some("br;q=0, gzip")), Coding::Gzip);
        assert_eq!(pick(Some("br;q=0.5, gzip;q=0.8")), Coding::Gzip, "the client's weights win");
        assert_eq!(pick(Some("br;q=0, gzip;q=0")), Coding::Identity);
        assert_eq!(pick(Some("*")), Coding::Br);
        assert_eq!(pick(Some("*;q=0, gzip")), Coding::Gzip);
        assert_eq!(pick(Some("identity")), Coding::Identity);
        assert_eq!(pick(Some("br;q=nonsense")), Coding::Identity, "an unreadable weight refuses");
        assert_eq!(pick(Some("br;q=0.001")), Coding::Br);
        assert_eq!(negotiate(Some("br, gzip"), false, true), Coding::Gzip, "no brotli copy");
        assert_eq!(negotiate(Some("br"), false, false), Coding::Identity);
    }
}
