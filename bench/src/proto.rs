//! Protocol adapters: how each server under test is addressed, joined and spoken to.
//!
//! `Ours` is the engine's wire contract. The `ws` peer speaks the same JSON frames (it is a minimal
//! server for that contract), so it shares the adapter. `SocketIo` speaks engine.io v4 framing over
//! the very same WebSocket client: `0{..}` open, `40` namespace connect, `42[..]` events, `43<id>[..]`
//! acknowledgements and `2`/`3` ping/pong. No polling transport is involved, so every server gets
//! one TCP socket per client, the same client code and the same frame parser.
//!
//! Incoming frames are classified by scanning bytes rather than by a full JSON parse: at hundreds
//! of thousands of frames per second the client must stay cheap next to the server it measures.

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Ours,
    Socketio,
    Ws,
}

/// What the client needs to know about one incoming frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// engine.io open packet: answer with the namespace connect.
    Open,
    /// Namespace connected (Socket.IO): now send `hello`.
    Connected,
    /// Joined; `history` messages came with it, the newest with seq `last_seq` (0 when none).
    Welcome { history: usize, last_seq: u64 },
    /// A chat message: its seq, and the send time (ns since the epoch) and sender's pod that the
    /// benchmark carries in its content (`t=<ns> p=<pod> ...`).
    Message { seq: u64, sent_ns: Option<u64>, pod: Option<u64> },
    /// The server stored our send number `id` (see `send_frame`) as `seq`.
    Ack { id: Option<u64>, seq: u64 },
    /// engine.io ping: answer `3`.
    Ping,
    /// A protocol error from the server (rate limit, bad frame, ...).
    Error,
    /// Presence, typing and anything else the benchmark ignores.
    Other,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::Ours => "ours",
            Proto::Socketio => "socketio",
            Proto::Ws => "ws",
        }
    }

    /// The WebSocket URL of a room on the server at `base` (`ws://127.0.0.1:port`).
    pub fn url(self, base: &str, room: &str) -> String {
        match self {
            Proto::Ours | Proto::Ws => format!("{base}/ws/{room}"),
            Proto::Socketio => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    /// The hello frame. Socket.IO has no room in its URL, so the room travels in the event.
    pub fn hello(self, room: &str, anonymous_id: &str, nickname: &str) -> String {
        match self {
            Proto::Ours | Proto::Ws => {
                format!(r#"{{"type":"hello","anonymousId":"{anonymous_id}","nickname":"{nickname}","avatar":"otter"}}"#)
            }
            Proto::Socketio => {
                format!(r#"42["hello",{{"room":"{room}","anonymousId":"{anonymous_id}","nickname":"{nickname}","avatar":"otter"}}]"#)
            }
        }
    }

    /// A send whose clientId encodes `id`, so the ack can be matched without a lookup table.
    pub fn send_frame(self, id: u64, content: &str) -> String {
        let client_id = client_id(id);
        match self {
            Proto::Ours | Proto::Ws => format!(r#"{{"type":"send","clientId":"{client_id}","content":"{content}"}}"#),
            // A Socket.IO acknowledgement (the callback of `socket.emit("send", .., cb)`).
            Proto::Socketio => format!(r#"42{id}["send",{{"clientId":"{client_id}","content":"{content}"}}]"#),
        }
    }

    pub fn classify(self, frame: &[u8]) -> Incoming {
        match self {
            Proto::Ours | Proto::Ws => classify_json(frame, type_of(frame)),
            Proto::Socketio => classify_engine_io(frame),
        }
    }
}

fn classify_engine_io(frame: &[u8]) -> Incoming {
    match frame {
        [b'2', ..] if frame.len() == 1 => Incoming::Ping,
        [b'0', b'{', ..] => Incoming::Open,
        [b'4', b'0', ..] => Incoming::Connected,
        [b'4', b'3', ..] => ack(frame),
        [b'4', b'4', ..] => Incoming::Error,
        [b'4', b'2', b'[', b'"', rest @ ..] => {
            let event = rest.split(|&b| b == b'"').next().unwrap_or_default();
            classify_json(frame, event)
        }
        _ => Incoming::Other,
    }
}

fn classify_json(frame: &[u8], kind: &[u8]) -> Incoming {
    match kind {
        b"message" => Incoming::Message {
            seq: number_after(frame, b"\"seq\":").unwrap_or(0),
            sent_ns: number_after(frame, b"\"t="),
            pod: number_after(frame, b" p="),
        },
        b"welcome" => {
            let history = count(frame, b"\"seq\":");
            let last_seq = last_number_after(frame, b"\"seq\":").unwrap_or(0);
            Incoming::Welcome { history, last_seq }
        }
        b"ack" => ack(frame),
        b"error" => Incoming::Error,
        _ => Incoming::Other,
    }
}

fn ack(frame: &[u8]) -> Incoming {
    Incoming::Ack { id: client_id_of(frame), seq: number_after(frame, b"\"seq\":").unwrap_or(0) }
}

/// The value of the first `"type":"..."` in a frame.
fn type_of(frame: &[u8]) -> &[u8] {
    let Some(at) = find(frame, b"\"type\":\"") else { return b"" };
    let rest = &frame[at + 8..];
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
    &rest[..end]
}

/// clientIds are UUID v4 strings whose last 12 hex digits carry the send's number.
pub fn client_id(id: u64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", id & 0xffff_ffff_ffff)
}

fn client_id_of(frame: &[u8]) -> Option<u64> {
    let at = find(frame, b"-4000-8000-")? + 11;
    let hex = frame.get(at..at + 12)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn digits(bytes: &[u8]) -> Option<u64> {
    let end = bytes.iter().position(|b| !b.is_ascii_digit()).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).ok()?.parse().ok()
}

fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    digits(&hay[find(hay, key)? + key.len()..])
}

fn last_number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let at = hay.windows(key.len()).rposition(|w| w == key)?;
    digits(&hay[at + key.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_frames() {
        let msg = br#"{"type":"message","message":{"seq":58,"roomId":"r","content":"t=123 x","clientId":"c"}}"#;
        assert_eq!(Proto::Ours.classify(msg), Incoming::Message { seq: 58, sent_ns: Some(123), pod: None });
        let ack = format!(r#"{{"type":"ack","clientId":"{}","seq":3}}"#, client_id(77));
        assert_eq!(Proto::Ours.classify(ack.as_bytes()), Incoming::Ack { id: Some(77), seq: 3 });
        let welcome = br#"{"type":"welcome","you":{},"history":[{"seq":1},{"seq":2}],"online":1}"#;
        assert_eq!(Proto::Ours.classify(welcome), Incoming::Welcome { history: 2, last_seq: 2 });
        assert_eq!(Proto::Ours.classify(br#"{"type":"presence","online":3}"#), Incoming::Other);
    }

    #[test]
    fn socketio_frames() {
        let p = Proto::Socketio;
        assert_eq!(p.classify(b"2"), Incoming::Ping);
        assert_eq!(p.classify(br#"0{"sid":"x"}"#), Incoming::Open);
        assert_eq!(p.classify(br#"40{"sid":"y"}"#), Incoming::Connected);
        let msg = br#"42["message",{"seq":9,"content":"t=5 p=2 y"}]"#;
        assert_eq!(p.classify(msg), Incoming::Message { seq: 9, sent_ns: Some(5), pod: Some(2) });
        let ack = format!(r#"437[{{"clientId":"{}","seq":9}}]"#, client_id(7));
        assert_eq!(p.classify(ack.as_bytes()), Incoming::Ack { id: Some(7), seq: 9 });
        assert_eq!(p.classify(br#"42["welcome",{"history":[]}]"#), Incoming::Welcome { history: 0, last_seq: 0 });
    }
}
