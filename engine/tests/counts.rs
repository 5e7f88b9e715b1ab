//! `GET /api/rooms?ids=`: the counts a blog's post list shows, read cross-origin by pages of
//! other sites: the numbers, the bounds on ids, CORS, caching and the per-address budget.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn counts_are_stored_visible_messages_and_readers_online_with_cors() {
    let engine = Engine::start(&["--admin-token", "t0ken-for-counts"]);
    let (busy, quiet, never) = (room("busy"), room("quiet"), room("never"));
    let (mut a, _) = engine.join(&busy, &Reader::new("Alice")).await;
    let (_b, _) = engine.join(&busy, &Reader::new("Bobby")).await;
    for text in ["one", "two", "three"] {
        a.say(text).await;
    }
    let response =
        engine.http("DELETE", &format!("/api/rooms/{busy}/messages/2"), &[("Authorization", "Bearer t0ken-for-counts")], None).await;
    assert_eq!(response.status, 200, "{response:?}");
    let (mut q, _) = engine.join(&quiet, &Reader::new("Quinn")).await;
    q.say("hello").await;
    q.close().await;

    let path = format!("/api/rooms?ids={busy},{quiet},{never},{busy}");
    let response = engine.http("GET", &path, &[("Origin", "https://blog.example")], None).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"rooms": {
            busy.as_str(): {"messages": 2, "online": 2},
            quiet.as_str(): {"messages": 1, "online": 0},
            never.as_str(): {"messages": 0, "online": 0},
        }})
    );
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("cache-control"), Some("public, max-age=5"));

    // Only this route answers CORS.
    let info = engine.http("GET", &format!("/api/rooms/{busy}"), &[("Origin", "https://blog.example")], None).await;
    assert_eq!(info.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn ids_are_bounded_and_checked() {
    let engine = Engine::start(&[]);
    let fifty: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let ok = engine.get(&format!("/api/rooms?ids={}", fifty.join(","))).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["rooms"].as_object().unwrap().len(), 50);
    engine.get(&format!("/api/rooms?ids={},r50", fifty.join(","))).await.assert_error(400, "bad_request");
    engine.get("/api/rooms").await.assert_error(400, "bad_request");
    engine.get("/api/rooms?ids=a,b%2Fc").await.assert_error(400, "invalid_room_id");
    engine.http("POST", "/api/rooms?ids=a", &[], None).await.assert_error(405, "bad_request");
}

#[tokio::test]
async fn listed_origins_get_their_origin_back_and_others_none() {
    let engine = Engine::start(&["--allowed-origins", "https://blog.example"]);
    let listed = engine.http("GET", "/api/rooms?ids=a", &[("Origin", "https://blog.example")], None).await;
    assert_eq!(listed.header("access-control-allow-origin"), Some("https://blog.example"));
    assert_eq!(listed.header("vary"), Some("Origin"));
    let other = engine.http("GET", "/api/rooms?ids=a", &[("Origin", "https://elsewhere.example")], None).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None, "a browser on another site cannot read it");
}

#[tokio::test]
async fn each_request_takes_a_join_from_the_address_budget() {
    let engine = Engine::start(&["--joins-per-ip", "0.01", "--join-burst-per-ip", "3"]);
    for _ in 0..3 {
        assert_eq!(engine.get("/api/rooms?ids=a").await.status, 200);
    }
    let refused = engine.get("/api/rooms?ids=a").await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)), "{refused:?}");
}
