//! Protocol hygiene on the open internet: RFC 6455 close codes that reach the client (no reset),
//! random anonymousIds, nicknames that cannot reorder or hide, the widget page's security
//! headers, and metrics on an address of their own.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// A WebSocket client written byte by byte, to send what no library would
// ---------------------------------------------------------------------------------------------

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const FIN: u8 = 0x80;

/// Upgrades a plain TCP connection to `/ws/{room}`, reading the 101 head and nothing more.
async fn raw_socket(addr: SocketAddr, room: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws/{room} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte =
            tokio::time::timeout(FRAME_TIMEOUT, stream.read_u8()).await.expect("upgrade answer in time").expect("read upgrade answer");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    stream
}

/// One frame as a client sends it: `first` is FIN/RSV/opcode; masked unless told otherwise.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend(key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend(payload);
    }
    out
}

fn text(json: &serde_json::Value) -> Vec<u8> {
    frame(FIN | TEXT, json.to_string().as_bytes(), true)
}

/// Reads one server frame: (opcode, payload). Server frames are never masked.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let len = match head[1] & 0x7f {
        126 => stream.read_u16().await? as usize,
        127 => stream.read_u64().await? as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok((head[0] & 0x0f, payload))
}

/// Sends hello and reads up to the welcome.
async fn join(stream: &mut TcpStream, nickname: &str) {
    let hello = Reader::new(nickname).hello_frame(None);
    stream.write_all(&text(&hello)).await.expect("send hello");
    loop {
        let (opcode, payload) =
            tokio::time::timeout(FRAME_TIMEOUT, read_frame(stream)).await.expect("welcome in time").expect("read a frame");
        let frame: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        if opcode == TEXT && frame_type(&frame) == "welcome" {
            return;
        }
    }
}

/// Reads frames until the server's close frame and returns its code, then requires the TCP
/// connection to end cleanly: a reset instead of an end means the client may lose the close.
async fn close_code(stream: &mut TcpStream) -> u16 {
    let code = loop {
        let next = tokio::time::timeout(FRAME_TIMEOUT, read_frame(stream)).await;
        match next {
            Err(_) => panic!("no close frame within {FRAME_TIMEOUT:?}"),
            Ok(Err(e)) => panic!("the connection ended without a close frame: {e}"),
            Ok(Ok((CLOSE, payload))) => {
                assert!(payload.len() >= 2, "close frame without a code");
                break u16::from_be_bytes([payload[0], payload[1]]);
            }
            Ok(Ok(_)) => {}
        }
    };
    let mut rest = [0u8; 1024];
    match tokio::time::timeout(FRAME_TIMEOUT, stream.read(&mut rest)).await {
        Ok(Ok(0)) => code,
        Ok(Ok(n)) => panic!("{n} bytes after the close frame"),
        Ok(Err(e)) => panic!("after close {code} the connection was reset, not ended: {e}"),
        Err(_) => panic!("the server did not end the connection after close {code}"),
    }
}

/// Some ordinary frames after the bad one, which the server has to read and throw away.
async fn more_input(stream: &mut TcpStream) {
    let typing = text(&json!({"type": "typing"}));
    for _ in 0..20 {
        // On a server that gave up early this fails; the read that follows says how.
        if stream.write_all(&typing).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("utf8")).await;
    join(&mut stream, "바이트 손님").await;
    let bad = frame(FIN | TEXT, b"{\"type\":\"typing\",\"x\":\"\xc3\x28\"}", true);
    stream.write_all(&bad).await.unwrap();
    more_input(&mut stream).await;
    assert_eq!(close_code(&mut stream).await, 1007);
}

#[tokio::test]
async fn bad_utf8_before_hello_closes_with_1007() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("utf8")).await;
    stream.write_all(&frame(FIN | TEXT, b"\xff\xfe", true)).await.unwrap();
    more_input(&mut stream).await;
    assert_eq!(close_code(&mut stream).await, 1007);
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("mask")).await;
    join(&mut stream, "가면 없는 손님").await;
    let unmasked = frame(FIN | TEXT, json!({"type": "typing"}).to_string().as_bytes(), false);
    stream.write_all(&unmasked).await.unwrap();
    more_input(&mut stream).await;
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn reserved_bits_close_with_1002() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("rsv")).await;
    join(&mut stream, "압축 손님").await;
    // RSV1 means per-message compression, which was never negotiated.
    let rsv1 = frame(FIN | 0x40 | TEXT, json!({"type": "typing"}).to_string().as_bytes(), true);
    stream.write_all(&rsv1).await.unwrap();
    more_input(&mut stream).await;
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn an_unknown_opcode_closes_with_1002() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("opcode")).await;
    stream.write_all(&frame(FIN | 0x3, b"what is this", true)).await.unwrap();
    more_input(&mut stream).await;
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn a_close_with_an_invalid_code_is_answered_with_1002() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("code")).await;
    join(&mut stream, "엉뚱한 손님").await;
    let mut payload = 999u16.to_be_bytes().to_vec();
    payload.extend(b"bye");
    stream.write_all(&frame(FIN | CLOSE, &payload, true)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn a_frame_over_16_kib_with_more_unread_input_still_gets_its_1009() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("big")).await;
    join(&mut stream, "큰 손님").await;
    let content = "a".repeat(64 * 1024);
    let big = text(&json!({"type": "send", "clientId": new_id(), "content": content}));
    let _ = stream.write_all(&big).await;
    more_input(&mut stream).await;
    assert_eq!(close_code(&mut stream).await, 1009);
}

#[tokio::test]
async fn a_client_close_gets_its_reply() {
    let engine = Engine::start(&[]);
    let mut stream = raw_socket(engine.addr, &room("bye")).await;
    join(&mut stream, "떠나는 손님").await;
    stream.write_all(&frame(FIN | CLOSE, &1000u16.to_be_bytes(), true)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1000);
}

// ---------------------------------------------------------------------------------------------
// Who a reader is
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_id_must_be_a_random_uuid() {
    let engine = Engine::start(&[]);
    let mut client = engine.ws(&room("ids")).await;
    for anonymous_id in [
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        // version 1 (time and MAC address)
        "c232ab00-9414-11ec-b3c8-9f6bdeced846",
    ] {
        let hello = json!({"type": "hello", "anonymousId": anonymous_id, "nickname": "익명의 수달"});
        client.send_json(&hello).await;
        let error = client.expect_error("bad_frame").await;
        assert!(error["message"].as_str().unwrap().contains("anonymousId"), "{error}");
    }
    // The connection stayed open and hello may be sent again.
    client.hello(&Reader::new("익명의 수달"), None).await;
}

#[tokio::test]
async fn nicknames_that_reorder_or_hide_are_refused() {
    let engine = Engine::start(&[]);
    let room = room("names");
    let mut client = engine.ws(&room).await;
    for nickname in [
        "\u{202E}lanimirc",
        "ab\u{2066}cd",
        "수달\u{200F}",
        "\u{200B}\u{200B}\u{200B}",
        "\u{3164}\u{3164}",
        "\u{0301}\u{0301}",
        "\u{2800}\u{2800}",
        "\u{FEFF} \u{200D}",
    ] {
        let mut reader = Reader::new(nickname);
        reader.nickname = nickname.to_string();
        client.send_json(&reader.hello_frame(None)).await;
        client.expect_error("invalid_nickname").await;
    }
    let welcome = client.hello(&Reader::new("Rene\u{0301}e"), None).await;
    assert_eq!(welcome["you"]["nickname"], "Rene\u{0301}e");

    client.send_json(&json!({"type": "rename", "nickname": "\u{200B}\u{3164}", "avatar": "fox"})).await;
    client.expect_error("invalid_nickname").await;
    client.send_json(&json!({"type": "rename", "nickname": "\u{2067}fox\u{2069}", "avatar": "fox"})).await;
    client.expect_error("invalid_nickname").await;
    client.send_json(&json!({"type": "rename", "nickname": "한글 여우", "avatar": "fox"})).await;
    client.next_where("presence with the new name", |f| frame_type(f) == "presence" && f.to_string().contains("한글 여우")).await;
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

fn directive<'a>(csp: &'a str, name: &str) -> &'a str {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in Content-Security-Policy {csp:?}"))
}

#[tokio::test]
async fn the_widget_page_has_a_content_security_policy() {
    let engine = Engine::start(&[]);
    let page = engine.get("/room/post-1?theme=dark").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a Content-Security-Policy");
    assert_eq!(directive(csp, "default-src"), "default-src 'self'");
    let script = directive(csp, "script-src");
    assert!(script.contains("'self'") && script.contains("'sha256-"), "{script}");
    assert!(!script.contains("unsafe") && !script.contains('*'), "{script}");
    assert!(!directive(csp, "style-src").contains("unsafe"), "{csp}");
    let connect = directive(csp, "connect-src");
    for source in ["'self'".to_string(), format!("ws://{}", engine.addr), format!("wss://{}", engine.addr)] {
        assert!(connect.split_whitespace().any(|s| s == source), "{source} missing from {connect}");
    }
    assert_eq!(directive(csp, "base-uri"), "base-uri 'none'");
    assert_eq!(directive(csp, "object-src"), "object-src 'none'");
    assert!(!csp.contains("frame-ancestors"), "no ALLOWED_ORIGINS, any site may embed: {csp}");

    // A Host header that tries to add its own directives is left out of the policy.
    let forged = engine.http("GET", "/room/post-1", &[("Host", "x;script-src *")], None).await;
    let csp = forged.header("content-security-policy").expect("a Content-Security-Policy");
    assert!(!csp.contains("x;") && !csp.contains('*'), "{csp}");
}

#[tokio::test]
async fn every_json_answer_says_nosniff() {
    let engine = Engine::start(&["--admin-token", "secret"]);
    let mut answers = vec![
        engine.get("/healthz").await,
        engine.get("/readyz").await,
        engine.get("/api/rooms/post-1").await,
        engine.get("/api/rooms/post-1/messages").await,
        engine.get("/api/rooms/bad%20id").await,
        engine.get("/no/such/route").await,
    ];
    answers.push(engine.http("DELETE", "/api/rooms/post-1/messages/1", &[], None).await);
    for answer in answers {
        assert!(answer.header("content-type").unwrap_or_default().starts_with("application/json"), "{answer:?}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{answer:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics on their own address
// ---------------------------------------------------------------------------------------------

/// The metrics address the engine logged with its `listening` line.
async fn metrics_addr(engine: &Engine) -> SocketAddr {
    let line = engine.wait_for_log("listening", |l| l.contains("listening")).await;
    let start = line.find("metrics=").expect("metrics= in the listening line") + "metrics=".len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().unwrap_or_else(|e| panic!("metrics address in {line}: {e}"))
}

#[tokio::test]
async fn metrics_bind_moves_metrics_off_the_public_port() {
    let engine = Engine::start(&["--metrics-bind", "127.0.0.1:0"]);
    let metrics = metrics_addr(&engine).await;
    assert_ne!(metrics, engine.addr);

    let scrape = http(metrics, "GET", "/metrics", &[], None).await;
    assert_eq!(scrape.status, 200, "{scrape:?}");
    assert!(scrape.body.contains("chat_connections"), "{}", scrape.body);
    engine.get("/metrics").await.assert_error(404, "not_found");
    // The metrics address serves nothing else.
    for path in ["/healthz", "/room/post-1", "/api/rooms/post-1"] {
        http(metrics, "GET", path, &[], None).await.assert_error(404, "not_found");
    }
    // The public port still serves everything else.
    assert_eq!(engine.get("/healthz").await.status, 200);
    let (mut client, _) = engine.join(&room("m"), &Reader::new("지표 손님")).await;
    client.say("still chatting").await;
    let scrape = http(metrics, "GET", "/metrics", &[], None).await;
    assert!(metric_sum(&scrape.body, "chat_joins_total").unwrap_or(0.0) >= 1.0, "{}", scrape.body);
}

#[tokio::test]
async fn without_metrics_bind_metrics_stay_on_the_main_port() {
    let engine = Engine::start(&[]);
    assert_eq!(metrics_addr(&engine).await, engine.addr);
    let scrape = engine.get("/metrics").await;
    assert_eq!(scrape.status, 200);
    assert!(scrape.body.contains("chat_connections"));
}
