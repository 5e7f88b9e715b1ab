//! The blog owner's seat, engine side: locking and pinning rooms, signing in for a session
//! cookie (with its CSRF defence), and the admin JSON API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "owner-s3cret-token";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn admin(engine: &Engine, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
    let auth = bearer();
    let body = body.map(Value::to_string);
    engine.http(method, path, &[("Authorization", auth.as_str())], body.as_deref()).await
}

async fn ok(engine: &Engine, method: &str, path: &str, body: Option<&Value>) -> Value {
    let response = admin(engine, method, path, body).await;
    assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    response.json()
}

#[tokio::test]
async fn a_locked_room_refuses_sends_until_reopened_and_stays_locked_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("closed");
    {
        let mut engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
        let (mut a, welcome) = engine.join(&room, &Reader::new("독자")).await;
        assert_eq!(welcome["locked"], false, "{welcome}");
        a.say("before the lock").await;

        ok(&engine, "PUT", &format!("/api/rooms/{room}/lock"), None).await;
        let frame = a.next_of_type("room").await;
        assert_eq!(frame, json!({"type": "room", "locked": true, "slowMode": 0}));
        let late = a.send_message("too late").await;
        let refused = a.expect_error("room_locked").await;
        assert_eq!(refused["clientId"], late.as_str(), "{refused}");
        assert_eq!(engine.history(&room, "").await.len(), 1, "not stored");
        engine.kill9();
    }
    let engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
    let (mut a, welcome) = engine.join(&room, &Reader::new("독자")).await;
    assert_eq!(welcome["locked"], true, "the lock survives a restart: {welcome}");
    ok(&engine, "DELETE", &format!("/api/rooms/{room}/lock"), None).await;
    assert_eq!(a.next_of_type("room").await["locked"], false);
    a.say("open again").await;

    // A room nobody wrote in yet can be locked too.
    let empty = common::room("empty");
    ok(&engine, "PUT", &format!("/api/rooms/{empty}/lock"), None).await;
    let (_b, welcome) = engine.join(&empty, &Reader::new("첫 손님")).await;
    assert_eq!(welcome["locked"], true);
}

#[tokio::test]
async fn one_message_is_pinned_for_every_reader_until_unpinned_or_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = room("pinned");
    let (first, second);
    {
        let mut engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
        let (mut a, welcome) = engine.join(&room, &Reader::new("작성자")).await;
        assert!(welcome["pinned"].is_null(), "{welcome}");
        let (mut b, _) = engine.join(&room, &Reader::new("구경꾼")).await;
        first = a.say("read the rules").await.0;
        second = a.say("another one").await.0;

        ok(&engine, "PUT", &format!("/api/rooms/{room}/pin"), Some(&json!({"seq": first}))).await;
        let pinned = b.next_of_type("pinned").await;
        assert_eq!(pinned["message"]["seq"], first, "{pinned}");
        assert_eq!(pinned["message"]["content"], "read the rules");

        admin(&engine, "PUT", &format!("/api/rooms/{room}/pin"), Some(&json!({"seq": 999}))).await.assert_error(404, "not_found");
        for body in [json!({}), json!({"seq": "1"}), json!({"seq": 0}), json!({"seq": -3})] {
            admin(&engine, "PUT", &format!("/api/rooms/{room}/pin"), Some(&body)).await.assert_error(400, "bad_request");
        }
        engine.kill9();
    }
    let engine = Engine::start_in(dir.path(), &["--admin-token", TOKEN]);
    let (mut a, welcome) = engine.join(&room, &Reader::new("돌아온")).await;
    assert_eq!(welcome["pinned"]["seq"], first, "the pin survives a restart: {welcome}");

    // Deleting the pinned message unpins it; a deleted message cannot be pinned.
    ok(&engine, "PUT", &format!("/api/rooms/{room}/pin"), Some(&json!({"seq": second}))).await;
    assert_eq!(a.next_of_type("pinned").await["message"]["seq"], second);
    ok(&engine, "DELETE", &format!("/api/rooms/{room}/messages/{second}"), None).await;
    assert!(a.next_of_type("pinned").await["message"].is_null());
    admin(&engine, "PUT", &format!("/api/rooms/{room}/pin"), Some(&json!({"seq": second}))).await.assert_error(404, "not_found");
    let (_c, welcome) = engine.join(&room, &Reader::new("새 손님")).await;
    assert!(welcome["pinned"].is_null(), "{welcome}");

    ok(&engine, "PUT", &format!("/api/rooms/{room}/pin"), Some(&json!({"seq": first}))).await;
    assert_eq!(a.next_of_type("pinned").await["message"]["seq"], first);
    ok(&engine, "DELETE", &format!("/api/rooms/{room}/pin"), None).await;
    assert!(a.next_of_type("pinned").await["message"].is_null());
}

fn cookie_of(response: &HttpResponse) -> (String, String) {
    let set_cookie = response.header("set-cookie").expect("a cookie").to_string();
    let pair = set_cookie.split(';').next().unwrap().to_string();
    (pair, set_cookie)
}

async fn sign_in(engine: &Engine, extra: &[(&str, &str)]) -> HttpResponse {
    engine.http("POST", "/admin/session", extra, Some(&json!({"token": TOKEN}).to_string())).await
}

#[tokio::test]
async fn signing_in_gives_a_strict_http_only_cookie_and_a_csrf_token() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("session");
    let response = sign_in(&engine, &[]).await;
    assert_eq!(response.status, 200, "{response:?}");
    let (cookie, attributes) = cookie_of(&response);
    assert!(cookie.starts_with("chat_admin="), "{attributes}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(attribute), "{attribute} in {attributes}");
    }
    assert!(!attributes.contains("Secure"), "plain HTTP: {attributes}");
    let csrf = response.json()["csrfToken"].as_str().unwrap().to_string();

    // Reads need only the cookie.
    let rooms = engine.http("GET", "/api/admin/rooms", &[("Cookie", &cookie)], None).await;
    assert_eq!(rooms.status, 200, "{rooms:?}");
    let status = engine.http("GET", "/admin/session", &[("Cookie", &cookie)], None).await;
    assert_eq!(status.json()["csrfToken"], csrf.as_str());

    // Changes need the CSRF token and, when the browser says, the engine's own origin.
    let lock = format!("/api/rooms/{room}/lock");
    let own_origin = format!("http://{}", engine.addr);
    let attempts: [&[(&str, &str)]; 4] = [
        &[("Cookie", &cookie)],
        &[("Cookie", &cookie), ("X-CSRF-Token", "forged")],
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf), ("Origin", "https://evil.example")],
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf), ("Origin", "null")],
    ];
    for headers in attempts {
        engine.http("PUT", &lock, headers, None).await.assert_error(403, "forbidden");
    }
    let (_a, welcome) = engine.join(&room, &Reader::new("독자")).await;
    assert_eq!(welcome["locked"], false, "no attempt locked the room");
    for headers in [
        &[("Cookie", cookie.as_str()), ("X-CSRF-Token", &csrf)][..],
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf), ("Origin", &own_origin)],
    ] {
        let response = engine.http("PUT", &lock, headers, None).await;
        assert_eq!(response.status, 200, "{response:?}");
    }

    // A forged or foreign cookie is no session; a wrong bearer token wins over a good cookie.
    let forged = format!("{cookie}x");
    engine.http("GET", "/api/admin/bans", &[("Cookie", &forged)], None).await.assert_error(403, "forbidden");
    engine
        .http("GET", "/api/admin/bans", &[("Cookie", &cookie), ("Authorization", "Bearer nope")], None)
        .await
        .assert_error(403, "forbidden");

    // Signing out clears the cookie.
    let out = engine.http("DELETE", "/admin/session", &[("Cookie", &cookie)], None).await;
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"), "{out:?}");

    // Signing in from another origin's page is refused.
    sign_in(&engine, &[("Origin", "https://evil.example")]).await.assert_error(403, "forbidden");
}

/// The moderator grant of a fresh session (what the admin page hands to an embedded widget).
async fn grant(engine: &Engine) -> String {
    let response = sign_in(engine, &[]).await;
    assert_eq!(response.status, 200, "{response:?}");
    let (cookie, _) = cookie_of(&response);
    let grant = response.json()["moderatorGrant"].as_str().expect("a grant at sign-in").to_string();
    let status = engine.http("GET", "/admin/session", &[("Cookie", &cookie)], None).await.json();
    assert_eq!(status["moderatorGrant"], grant.as_str(), "a reloaded page gets the same grant");
    grant
}

#[tokio::test]
async fn a_moderator_grant_moderates_without_a_cookie_or_csrf_token_and_nothing_else_does() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("grant");
    let grant = grant(&engine).await;
    let lock = format!("/api/rooms/{room}/lock");
    let auth = format!("Moderator {grant}");
    // What the embedded widget sends: the grant, from the engine's own origin, no cookie.
    let own_origin = format!("http://{}", engine.addr);
    let response = engine.http("PUT", &lock, &[("Authorization", &auth), ("Origin", &own_origin)], None).await;
    assert_eq!(response.status, 200, "{response:?}");
    let (_a, welcome) = engine.join(&room, &Reader::new("독자")).await;
    assert_eq!(welcome["locked"], true);

    // A tampered grant, the cookie's value, or the grant of another token's engine are refused.
    let session = cookie_of(&sign_in(&engine, &[]).await).0.trim_start_matches("chat_admin=").to_string();
    let other = Engine::start(&["--admin-token", "another-token"]);
    let foreign = {
        let response = other.http("POST", "/admin/session", &[], Some(&json!({"token": "another-token"}).to_string())).await;
        response.json()["moderatorGrant"].as_str().unwrap().to_string()
    };
    for bad in [format!("{grant}x"), session, foreign, String::new()] {
        let auth = format!("Moderator {bad}");
        engine.http("DELETE", &lock, &[("Authorization", &auth)], None).await.assert_error(403, "forbidden");
    }
    let (_b, welcome) = engine.join(&room, &Reader::new("독자둘")).await;
    assert_eq!(welcome["locked"], true, "no refused request reopened the room");
}

#[tokio::test]
async fn the_owners_watching_socket_sees_everything_live_without_showing_in_presence() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let room = room("watch");
    let (mut reader, _) = engine.join(&room, &Reader::new("독자")).await;
    let owner = Reader::new("운영자");

    // Watching without a valid grant is refused, and the hello may be sent again.
    let mut watcher = engine.ws(&room).await;
    for bad in [json!(null), json!("forged.grant.value")] {
        let mut hello = owner.hello_frame(None);
        hello["watch"] = json!(true);
        hello["grant"] = bad;
        watcher.send_json(&hello).await;
        watcher.expect_error("forbidden").await;
    }
    let mut hello = owner.hello_frame(None);
    hello["watch"] = json!(true);
    hello["grant"] = json!(grant(&engine).await);
    watcher.send_json(&hello).await;
    let welcome = watcher.next_of_type("welcome").await;
    assert_eq!(welcome["online"], 1, "the watcher is not counted: {welcome}");
    assert_eq!(welcome["watching"], true, "{welcome}");

    // Live: a new message and its deletion reach the watcher as they reach readers.
    let (seq, _) = reader.say("안녕하세요").await;
    assert_eq!(seq_of(&watcher.next_of_type("message").await["message"]), seq);
    reader.send_json(&json!({"type": "delete", "seq": seq})).await;
    assert_eq!(watcher.next_of_type("deleted").await["seq"], seq);

    // It only reads: a send is refused with its clientId and nothing is stored.
    watcher.send_json(&json!({"type": "send", "clientId": new_id(), "content": "from the watcher"})).await;
    watcher.expect_error("forbidden").await;
    watcher.send_json(&json!({"type": "typing"})).await;
    watcher.expect_error("forbidden").await;
    let (_late, late_welcome) = engine.join(&room, &Reader::new("늦은 독자")).await;
    assert_eq!(late_welcome["online"], 2, "two readers, the watcher not among them: {late_welcome}");
    let listed = reader.next_of_type("presence").await;
    let names: Vec<&str> = listed["members"].as_array().unwrap().iter().map(|m| m["nickname"].as_str().unwrap()).collect();
    assert!(!names.contains(&"운영자"), "{listed}");
    assert!(engine.history(&room, "").await.is_empty(), "the watcher stored nothing");
}

#[tokio::test]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_https() {
    let engine = Engine::start(&["--admin-token", TOKEN, "--trusted-proxies", "127.0.0.1"]);
    let (_, attributes) = cookie_of(&sign_in(&engine, &[("X-Forwarded-Proto", "https")]).await);
    assert!(attributes.contains("; Secure"), "{attributes}");
    let untrusted = Engine::start(&["--admin-token", TOKEN]);
    let (_, attributes) = cookie_of(&sign_in(&untrusted, &[("X-Forwarded-Proto", "https")]).await);
    assert!(!attributes.contains("Secure"), "only a trusted proxy is believed: {attributes}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_after_a_delay_that_holds_up_nobody_else() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let started = Instant::now();
    let guess = json!({"token": "guess"}).to_string();
    let wrong = engine.http("POST", "/admin/session", &[], Some(&guess));
    let others = async {
        // Meanwhile the engine answers everyone else at once.
        let health = engine.get("/healthz").await;
        assert_eq!(health.status, 200);
        let at = started.elapsed();
        let good = sign_in(&engine, &[]).await;
        assert_eq!(good.status, 200);
        at
    };
    let (wrong, others_done) = tokio::join!(wrong, others);
    wrong.assert_error(403, "forbidden");
    assert!(wrong.header("set-cookie").is_none());
    assert!(started.elapsed() >= Duration::from_millis(950), "refused after {:?}", started.elapsed());
    assert!(others_done < started.elapsed(), "others were answered before the refusal");

    for body in ["not json", "{}", r#"{"token": 5}"#] {
        engine.http("POST", "/admin/session", &[], Some(body)).await.assert_error(400, "bad_request");
    }
    let no_token = Engine::start(&[]);
    no_token.http("POST", "/admin/session", &[], Some(&json!({"token": ""}).to_string())).await.assert_error(403, "forbidden");
}

#[tokio::test]
async fn admin_routes_refuse_without_the_token() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let routes = [
        ("PUT", "/api/rooms/r/lock"),
        ("DELETE", "/api/rooms/r/lock"),
        ("PUT", "/api/rooms/r/pin"),
        ("DELETE", "/api/rooms/r/pin"),
        ("DELETE", "/api/rooms/r/bans/0123456789abcdef"),
        ("GET", "/api/admin/rooms/active"),
        ("GET", "/api/admin/rooms"),
        ("GET", "/api/admin/authors/0123456789abcdef/messages"),
        ("GET", "/api/admin/bans"),
        ("GET", "/admin/session"),
    ];
    for (method, path) in routes {
        for headers in [&[][..], &[("Authorization", "Bearer wrong")], &[("Cookie", "chat_admin=1.2.3")]] {
            engine.http(method, path, headers, Some("{\"seq\":1}")).await.assert_error(403, "forbidden");
        }
    }
}

#[tokio::test]
async fn the_admin_api_lists_rooms_authors_and_bans_and_unbans() {
    let engine = Engine::start(&["--admin-token", TOKEN]);
    let prefix = new_id()[..8].to_string();
    let rooms: Vec<String> = (0..3).map(|i| format!("adm_{prefix}-{i}")).collect();
    let troll = Reader::new("말썽꾼");
    let mut troll_id = String::new();
    let mut clients = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let (mut t, welcome) = engine.join(room, &troll).await;
        troll_id = welcome["you"]["authorId"].as_str().unwrap().to_string();
        for n in 0..=i {
            t.say(&format!("spam {i}.{n}")).await;
        }
        clients.push(t);
    }

    // Rooms live on this pod, with their readers and recent messages.
    let active = ok(&engine, "GET", "/api/admin/rooms/active", None).await;
    let mine: Vec<&Value> = active["rooms"].as_array().unwrap().iter().filter(|r| r["id"].as_str().unwrap().contains(&prefix)).collect();
    assert_eq!(mine.len(), 3, "{active}");
    assert_eq!((mine[2]["online"].as_u64(), mine[2]["messagesPerMinute"].as_u64()), (Some(1), Some(3)), "{active}");

    // All rooms, searched and paged.
    let page = ok(&engine, "GET", &format!("/api/admin/rooms?search={prefix}&limit=2"), None).await;
    let ids: Vec<&str> = page["rooms"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![rooms[0].as_str(), rooms[1].as_str()], "{page}");
    assert_eq!(page["rooms"][1]["messages"], 2);
    assert!(is_rfc3339_utc(page["rooms"][1]["lastActivity"].as_str().unwrap()), "{page}");
    let next = page["next"].as_str().unwrap();
    let rest = ok(&engine, "GET", &format!("/api/admin/rooms?search={prefix}&after={next}&limit=2"), None).await;
    assert_eq!(rest["rooms"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["rooms"][0]["id"], rooms[2].as_str());
    assert!(rest["next"].is_null());
    // `_` is a literal character, not a LIKE wildcard.
    let literal = ok(&engine, "GET", &format!("/api/admin/rooms?search=ad__{prefix}"), None).await;
    assert!(literal["rooms"].as_array().unwrap().is_empty(), "{literal}");

    // One author's messages across rooms, newest first.
    let messages = ok(&engine, "GET", &format!("/api/admin/authors/{troll_id}/messages?limit=4"), None).await;
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0]["content"], "spam 2.2");
    assert_eq!(messages[0]["roomId"], rooms[2].as_str());

    // Bans listed, lifted (404 once there is none), and the reader back in.
    let body = json!({"authorId": troll_id, "minutes": 5});
    let banned = admin(&engine, "POST", &format!("/api/rooms/{}/bans", rooms[0]), Some(&body)).await;
    assert_eq!(banned.status, 201);
    let bans = ok(&engine, "GET", "/api/admin/bans", None).await;
    let ban = bans["bans"].as_array().unwrap().iter().find(|b| b["room"] == rooms[0].as_str()).expect("listed").clone();
    assert_eq!(ban["authorId"], troll_id.as_str());
    assert!(is_rfc3339_utc(ban["until"].as_str().unwrap()));
    ok(&engine, "DELETE", &format!("/api/rooms/{}/bans/{troll_id}", rooms[0]), None).await;
    admin(&engine, "DELETE", &format!("/api/rooms/{}/bans/{troll_id}", rooms[0]), None).await.assert_error(404, "not_found");
    let bans = ok(&engine, "GET", "/api/admin/bans", None).await;
    assert!(bans["bans"].as_array().unwrap().iter().all(|b| b["room"] != rooms[0].as_str()), "{bans}");
    let (mut back, _) = engine.join(&rooms[0], &troll).await;
    back.say("sorry").await;

    // Bounded, checked inputs.
    for path in [
        "/api/admin/rooms?limit=0".to_string(),
        "/api/admin/rooms?limit=101".to_string(),
        "/api/admin/rooms?search=a%20b".to_string(),
        "/api/admin/rooms?after=%2F".to_string(),
        format!("/api/admin/authors/{troll_id}/messages?limit=101"),
        "/api/admin/authors/not-an-id/messages".to_string(),
        "/api/admin/bans?limit=501".to_string(),
        format!("/api/rooms/{}/bans/NOT-HEX", rooms[0]),
    ] {
        let method = if path.contains("/bans/") { "DELETE" } else { "GET" };
        admin(&engine, method, &path, None).await.assert_error(400, "bad_request");
    }
    admin(&engine, "PUT", "/api/rooms/bad%2Froom/lock", None).await.assert_error(400, "invalid_room_id");
}
