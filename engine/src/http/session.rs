//! Who may moderate: API clients with `Authorization: Bearer <admin token>`, and the owner's
//! browser with the session cookie it got by signing in with that token (`POST /admin/session`).
//!
//! The session is a signed cookie, not a server-side table: `expiry.nonce.mac`, where `mac` is an
//! HMAC-SHA-256 keyed by the admin token. Any pod that knows the token can check it, so no shared
//! session store is needed and a session works on every pod; changing the token ends every session.
//! The cookie is HttpOnly (page scripts never see it), `SameSite=Strict`, `Path=/`, and `Secure`
//! when the request came over HTTPS (said by a trusted proxy).
//!
//! CSRF: a state-changing request authenticated by the cookie must carry `X-CSRF-Token`, which is
//! an HMAC of the cookie value returned at sign-in (and by `GET /admin/session`); a page on another
//! origin can neither read it nor set the header without a CORS preflight the engine never grants.
//! Its `Origin`, when present, must be the engine's own. Bearer requests need neither.
//!
//! Moderator grant: the widget embedded on a blog is a cross-site frame, where browsers send no
//! `SameSite=Strict` cookie (and, increasingly, no third-party cookie at all) and give it storage
//! partitioned away from the engine's own pages. So the owner's session reaches it by hand: the
//! widget opens the admin page in a popup (first-party, the cookie is sent), which hands the
//! session's grant back to the widget with `postMessage` to the engine's own origin. The grant is
//! `expiry.nonce.mac` signed for a different purpose than the cookie, sent as
//! `Authorization: Moderator <grant>`; browsers never attach it by themselves, so it needs no CSRF
//! token. It expires with the session it came from; the owner's watch-mode socket presents it too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use hyper::{Method, Request, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{error_response, json, json_body, Body};
use crate::app::App;
use crate::chat::{format_millis, now_millis};
use crate::protocol::ErrorCode;

pub const COOKIE_NAME: &str = "chat_admin";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The `Authorization` scheme of a moderator grant.
const GRANT_SCHEME: &str = "Moderator ";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a wrong token waits for its refusal (this request only; nothing else waits).
pub const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part);
        mac.update(b"\n");
    }
    mac.finalize().into_bytes().to_vec()
}

fn admin_token(app: &App) -> Option<&str> {
    app.config.admin_token.as_deref().filter(|t| !t.is_empty())
}

/// What a signed value is for: a cookie session, or a grant handed to the embedded widget.
#[derive(Clone, Copy)]
enum Purpose {
    Session,
    Grant,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"session",
            Purpose::Grant => b"grant",
        }
    }
}

/// A new signed value (`expiry.nonce.mac`) for `key`, valid until `expires` (epoch ms).
fn new_signed(key: &str, purpose: Purpose, expires: i64) -> String {
    let nonce = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    signed(key, purpose, &format!("{expires}.{nonce}"))
}

fn signed(key: &str, purpose: Purpose, head: &str) -> String {
    let sig = URL_SAFE_NO_PAD.encode(mac(key, &[purpose.label(), head.as_bytes()]));
    format!("{head}.{sig}")
}

fn new_session(key: &str, expires: i64) -> String {
    new_signed(key, Purpose::Session, expires)
}

/// The expiry of a value signed with `key` for `purpose`, if it is one and has not expired.
fn signed_expiry(key: &str, purpose: Purpose, value: &str, now: i64) -> Option<i64> {
    let (head, sig) = value.rsplit_once('.')?;
    let expires = head.split_once('.').and_then(|(e, _)| e.parse::<i64>().ok())?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let expected = mac(key, &[purpose.label(), head.as_bytes()]);
    (bool::from(sig.ct_eq(&expected)) && expires > now).then_some(expires)
}

fn session_valid(key: &str, value: &str, now: i64) -> bool {
    signed_expiry(key, Purpose::Session, value, now).is_some()
}

/// The grant that goes with a session: same expiry, its own signature.
fn grant_for(key: &str, session: &str) -> Option<String> {
    let expires = signed_expiry(key, Purpose::Session, session, i64::MIN)?;
    let (head, _) = session.rsplit_once('.')?;
    let nonce = head.split_once('.')?.1;
    Some(signed(key, Purpose::Grant, &format!("{expires}.{nonce}")))
}

/// Whether `grant` is a moderator grant the admin token signed and that has not expired (the
/// owner's watch-mode socket shows one in its hello).
pub fn grant_valid(app: &App, grant: &str) -> bool {
    admin_token(app).is_some_and(|key| signed_expiry(key, Purpose::Grant, grant, now_millis()).is_some())
}

/// The CSRF token that goes with a session.
fn csrf_token(key: &str, session: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, &[b"csrf", session.as_bytes()]))
}

fn session_cookie<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// Whether the request's `Origin`, when it has one, is the engine's own (its `Host`).
fn same_origin_or_none<B>(req: &Request<B>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN) else { return true };
    let (Ok(origin), Some(host)) = (origin.to_str(), req.headers().get(HOST).and_then(|h| h.to_str().ok())) else { return false };
    origin
        .split_once("://")
        .is_some_and(|(scheme, authority)| matches!(scheme, "http" | "https") && authority.trim_end_matches('/').eq_ignore_ascii_case(host))
}

/// Why a request may not moderate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No (valid) bearer token or session.
    NotSignedIn,
    /// A session, but a state-changing request without the right CSRF token or from another origin.
    Csrf,
}

impl Denied {
    pub fn response(self) -> Response<Body> {
        match self {
            Denied::NotSignedIn => error_response(ErrorCode::Forbidden, "moderation needs the admin token or a signed-in session"),
            Denied::Csrf => {
                error_response(ErrorCode::Forbidden, "this request needs the session's X-CSRF-Token and the engine's own origin")
            }
        }
    }
}

/// Whether the request may moderate: the bearer token, or a valid session (with the CSRF checks
/// for anything but GET and HEAD). No token configured means nobody may.
pub fn check<B>(app: &App, req: &Request<B>) -> Result<(), Denied> {
    let Some(key) = admin_token(app) else { return Err(Denied::NotSignedIn) };
    if let Some(auth) = req.headers().get(AUTHORIZATION) {
        let auth = auth.to_str().unwrap_or("");
        // A wrong bearer token or grant is refused, whatever cookie comes with it.
        let valid = match auth.strip_prefix(GRANT_SCHEME) {
            Some(grant) => signed_expiry(key, Purpose::Grant, grant, now_millis()).is_some(),
            None => bool::from(auth.strip_prefix("Bearer ").unwrap_or("").as_bytes().ct_eq(key.as_bytes())),
        };
        return if valid { Ok(()) } else { Err(Denied::NotSignedIn) };
    }
    let Some(session) = session_cookie(req).filter(|s| session_valid(key, s, now_millis())) else { return Err(Denied::NotSignedIn) };
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let given = req.headers().get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    let csrf_ok: bool = given.ct_eq(csrf_token(key, session).as_bytes()).into();
    if csrf_ok && same_origin_or_none(req) {
        Ok(())
    } else {
        Err(Denied::Csrf)
    }
}

fn cookie_header(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("chat_admin=; Path=/; Max-Age=0"))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /admin/session` with `{ "token" }`: sets the session cookie and answers the CSRF token.
pub async fn sign_in(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    // A page on another origin has no business signing the browser in (login CSRF).
    if !same_origin_or_none(&req) {
        return Denied::Csrf.response();
    }
    let secure = app.trusted_proxies.came_over_https(peer.ip(), req.headers());
    let request: SignIn = match json_body(req).await {
        Ok(request) => request,
        Err(res) => return res,
    };
    let key = match admin_token(app) {
        Some(key) if bool::from(request.token.as_bytes().ct_eq(key.as_bytes())) => key,
        _ => {
            // Only this request waits; guessing costs a second per try.
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            tracing::info!(peer = %peer, "admin sign-in refused");
            return error_response(ErrorCode::Forbidden, "wrong admin token");
        }
    };
    let expires = now_millis() + SESSION_TTL.as_millis() as i64;
    let session = new_session(key, expires);
    let mut res = json(&json!({
        "csrfToken": csrf_token(key, &session),
        "moderatorGrant": grant_for(key, &session),
        "expiresAt": format_millis(expires),
    }));
    res.headers_mut().insert(SET_COOKIE, cookie_header(&session, SESSION_TTL.as_secs(), secure));
    tracing::info!(peer = %peer, "admin signed in");
    res
}

/// `GET /admin/session`: whether this browser is signed in, its CSRF token and grant (a reloaded
/// page gets them again without the admin token). Only a page of the engine's own origin can read
/// the answer: the engine grants no CORS.
pub fn status(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let key = admin_token(app);
    let session = key.and_then(|key| Some((key, session_cookie(req)?)));
    match session.and_then(|(key, session)| Some((key, session, signed_expiry(key, Purpose::Session, session, now_millis())?))) {
        Some((key, session, expires)) => json(&json!({
            "signedIn": true,
            "csrfToken": csrf_token(key, session),
            "moderatorGrant": grant_for(key, session),
            "expiresAt": format_millis(expires),
        })),
        None => Denied::NotSignedIn.response(),
    }
}

/// `DELETE /admin/session`: clears the cookie.
pub fn sign_out(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let secure = app.trusted_proxies.came_over_https(peer.ip(), req.headers());
    let mut res = json(&json!({ "signedIn": false }));
    res.headers_mut().insert(SET_COOKIE, cookie_header("", 0, secure));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_checked_by_signature_and_expiry() {
        let now = now_millis();
        let session = new_session("key", now + 1000);
        assert!(session_valid("key", &session, now));
        assert!(!session_valid("other key", &session, now), "signed with the token");
        assert!(!session_valid("key", &session, now + 1000), "expired");
        let (head, sig) = session.rsplit_once('.').unwrap();
        let (_, nonce) = head.split_once('.').unwrap();
        let forged = format!("{}.{nonce}.{sig}", now + 10_000_000);
        assert!(!session_valid("key", &forged, now), "the expiry is signed too");
        for junk in ["", ".", "..", "1.2.3", "abc"] {
            assert!(!session_valid("key", junk, now), "{junk:?}");
        }
        assert_ne!(csrf_token("key", &session), csrf_token("key", &new_session("key", now + 1000)));
    }

    #[test]
    fn a_grant_is_not_a_session_and_expires_with_it() {
        let now = now_millis();
        let session = new_session("key", now + 1000);
        let grant = grant_for("key", &session).unwrap();
        assert_eq!(signed_expiry("key", Purpose::Grant, &grant, now), Some(now + 1000));
        assert!(!session_valid("key", &grant, now), "a grant does not pass as a cookie");
        assert!(signed_expiry("key", Purpose::Grant, &session, now).is_none(), "nor a cookie as a grant");
        assert!(signed_expiry("other", Purpose::Grant, &grant, now).is_none());
        assert!(signed_expiry("key", Purpose::Grant, &grant, now + 1000).is_none(), "expired with its session");
        assert!(grant_for("key", "forged.value.sig").is_none());
    }
}
