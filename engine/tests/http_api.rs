//! The HTTP side: the history and room APIs, errors as JSON, health and readiness, Prometheus
//! metrics, the widget page and `embed.js` with their security headers, and allowed origins.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn history_api_pages_back_with_limit_and_before() {
    let engine = Engine::start(FAST);
    let room = room("post");
    let alice = Reader::new("수다쟁이");
    let (mut a, _) = engine.join(&room, &alice).await;
    let contents: Vec<String> = (1..=120).map(|i| format!("m{i}")).collect();
    assert_consecutive(&a.send_many(&contents).await, 1);

    let latest = engine.history(&room, "").await;
    assert!((1..=100).contains(&latest.len()), "default page of {} messages", latest.len());
    assert_consecutive(&seqs(&latest), 121 - latest.len() as u64);
    for message in &latest {
        assert_message(message, &room, &alice, &format!("m{}", seq_of(message)));
    }

    let page = |query: &'static str| {
        let engine = &engine;
        let room = room.clone();
        async move { seqs(&engine.history(&room, query).await) }
    };
    assert_eq!(page("?limit=5").await, (116..=120).collect::<Vec<_>>());
    assert_eq!(page("?limit=100").await, (21..=120).collect::<Vec<_>>());
    assert_eq!(page("?limit=1").await, vec![120]);
    assert_eq!(page("?before=21&limit=100").await, (1..=20).collect::<Vec<_>>());
    assert_eq!(page("?before=50&limit=10").await, (40..=49).collect::<Vec<_>>());
    assert_eq!(page("?limit=3&before=4").await, vec![1, 2, 3]);
    assert_eq!(page("?before=1").await, Vec::<u64>::new());

    let all = engine.full_history(&room).await;
    assert_consecutive(&seqs(&all), 1);
    assert_eq!(all.len(), 120);

    let unused = common::room("never-used");
    assert!(engine.history(&unused, "").await.is_empty(), "a room nobody used has no history");
}

#[tokio::test]
async fn history_api_rejects_a_bad_query() {
    let engine = Engine::start(&[]);
    let room = room("post");
    for query in ["limit=0", "limit=101", "limit=abc", "limit=-5", "before=-1", "before=abc", "limit=1.5"] {
        engine.get(&format!("/api/rooms/{room}/messages?{query}")).await.assert_error(400, "bad_request");
    }
}

#[tokio::test]
async fn room_info_shows_online_and_last_seq() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let fresh = engine.room_info(&room).await;
    assert_eq!(fresh["id"], room.as_str());
    assert_eq!(fresh["online"], 0);
    assert_eq!(fresh["lastSeq"], 0);

    let (mut a, _) = engine.join(&room, &Reader::new("수다쟁이")).await;
    for content in ["one", "two", "three"] {
        a.say(content).await;
    }
    let info = engine.room_info(&room).await;
    assert_eq!(info["id"], room.as_str());
    assert_eq!(info["online"], 1);
    assert_eq!(info["lastSeq"], 3);
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let engine = Engine::start(&[]);
    for path in ["/nope", "/api/rooms/post-1/nope", "/api", "/nope/deeper.txt"] {
        engine.get(path).await.assert_error(404, "not_found");
    }
}

#[tokio::test]
async fn health_and_readiness_are_200() {
    let engine = Engine::start(&[]);
    assert_eq!(engine.get("/healthz").await.status, 200);
    assert_eq!(engine.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let engine = Engine::start(&[]);
    let (mut a, _) = engine.join(&room("post"), &Reader::new("측정 대상")).await;
    a.say("count me").await;

    let response = engine.get("/metrics").await;
    assert_eq!(response.status, 200, "{response:?}");
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "Content-Type {content_type:?}");
    for name in ["chat_connections", "chat_messages_total", "chat_commit_seconds_bucket"] {
        assert!(metric_sum(&response.body, name).is_some(), "no `{name}` sample in /metrics:\n{}", response.body);
    }
    assert!(metric_sum(&response.body, "chat_connections").unwrap() >= 1.0);
    assert!(metric_sum(&response.body, "chat_messages_total").unwrap() >= 1.0);

    let mut promtool = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("promtool is not on PATH ({e}): run ./scripts/test, which installs it"),
    };
    promtool.stdin.take().expect("promtool stdin").write_all(response.body.as_bytes()).expect("feed promtool");
    let output = promtool.wait_with_output().expect("run promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics ({}):\n{said}", output.status);
}

#[tokio::test]
async fn widget_page_and_embed_script_are_served_safely() {
    let engine = Engine::start(&[]);
    for path in ["/room/post-1", "/room/post-1?theme=dark&lang=en&title=Hello&parentOrigin=https%3A%2F%2Fblog.example"] {
        let page = engine.get(path).await;
        assert_eq!(page.status, 200, "{path}: {page:?}");
        let content_type = page.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("text/html"), "{path}: Content-Type {content_type:?}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(page.header("referrer-policy").is_some_and(|v| !v.is_empty()), "{path}: no Referrer-Policy");
        assert!(page.body.to_ascii_lowercase().contains("<html"), "{path}: not an HTML page");
    }

    let script = engine.get("/embed.js").await;
    assert_eq!(script.status, 200, "{script:?}");
    let content_type = script.header("content-type").unwrap_or_default();
    assert!(content_type.contains("javascript"), "embed.js Content-Type {content_type:?}");
    assert!(
        script.body.contains("data-chat-room") || script.body.contains("chatRoom"),
        "embed.js does not look for data-chat-room elements"
    );
}

#[tokio::test]
async fn allowed_origins_limit_framing_and_sockets() {
    let engine = Engine::start(&["--allowed-origins", "https://blog.example,https://other.example"]);
    let page = engine.get("/room/x").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    let frame_ancestors = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("frame-ancestors"))
        .unwrap_or_else(|| panic!("no frame-ancestors in Content-Security-Policy {csp:?}"));
    for origin in ["https://blog.example", "https://other.example"] {
        assert!(frame_ancestors.contains(origin), "{origin} missing from {frame_ancestors:?}");
    }
    assert!(!frame_ancestors.contains('*'), "{frame_ancestors:?}");

    let room = room("post");
    assert_eq!(
        Client::connect_with_origin(engine.addr, &room, "https://evil.example").await.err(),
        Some(403),
        "a socket from a foreign origin"
    );
    assert_eq!(engine.raw_upgrade(&format!("/ws/{room}"), Some("https://evil.example")).await.status, 403);

    for origin in ["https://blog.example", "https://other.example"] {
        let mut client = Client::connect_with_origin(engine.addr, &room, origin)
            .await
            .unwrap_or_else(|status| panic!("{origin} refused with HTTP {status}"));
        client.hello(&Reader::new("허락된 손님"), None).await;
        client.say("from an allowed origin").await;
    }
    // The widget page itself, served by the engine, opens its socket from the engine's origin.
    let own_origin = format!("http://{}", engine.addr);
    let mut widget = Client::connect_with_origin(engine.addr, &room, &own_origin)
        .await
        .unwrap_or_else(|status| panic!("the engine's own origin refused with HTTP {status}"));
    widget.hello(&Reader::new("위젯 자신"), None).await;
    // Without an Origin header: a non-browser client, allowed.
    let mut tool = engine.ws(&room).await;
    tool.hello(&Reader::new("도구 손님"), None).await;
    tool.say("from a tool").await;
}

#[tokio::test]
async fn any_origin_may_connect_when_none_are_configured() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let mut client = Client::connect_with_origin(engine.addr, &room, "https://evil.example")
        .await
        .unwrap_or_else(|status| panic!("refused with HTTP {status}"));
    client.hello(&Reader::new("아무나 손님"), None).await;
    client.say("anyone may talk").await;
}
