//! The wire contract (docs/PROTOCOL.md) in one place: the frames clients send (parsed strictly,
//! unknown fields ignored, then checked by `inbound`), the frames the server sends (serialized
//! once, shared as `Frame` bytes by every reader), and the error codes and close codes with
//! what each means on HTTP and on a socket (`error`). Everything above it (rooms, HTTP, the
//! WebSocket session) speaks these types; none of it depends on the WebSocket library.

mod error;
pub mod inbound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use error::{CloseCode, ErrorCode};

use crate::chat::{AuthorId, Emoji, Profile, Reactions, Seq};

/// One server frame, serialized: UTF-8 JSON text, shared (not copied) by every reader it goes to.
/// Only this module builds frames, from strings, so the bytes are always valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        // Built from `String`s only (see `From<String>`); a failure here would be a bug, and
        // shows as an empty frame rather than a crash.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Frame {
        Frame(Bytes::from(text))
    }
}

/// A stored message as JSON (the `Message` object of the contract), serialized once when it is
/// stored or loaded and shared by every welcome, history answer and `message` frame.
pub type MessageJson = std::sync::Arc<str>;

/// Largest frame a client may send (PROTOCOL.md: 16 KiB, else close 1009).
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Hello {
        #[serde(rename = "anonymousId")]
        anonymous_id: String,
        nickname: String,
        avatar: Option<String>,
        #[serde(rename = "lastSeq")]
        last_seq: Option<u64>,
        /// The owner's live view: joins without showing in presence, with `grant`.
        #[serde(default)]
        watch: bool,
        grant: Option<String>,
    },
    Send {
        #[serde(rename = "clientId")]
        client_id: String,
        content: String,
        /// The seq of the message this one answers.
        #[serde(rename = "replyTo")]
        reply_to: Option<u64>,
    },
    /// A reader puts a reaction on a message (`on`) or takes it back.
    React {
        seq: u64,
        emoji: String,
        on: bool,
    },
    /// An author changes the content of its own recent message.
    Edit {
        seq: u64,
        content: String,
    },
    Delete {
        seq: u64,
    },
    /// A reader reports someone else's message to the owner.
    Report {
        seq: u64,
    },
    Typing {},
    Rename {
        nickname: String,
        avatar: Option<String>,
    },
}

/// Just the clientId (or seq) of a frame that failed to parse, so its error can still name the
/// send (or the message a react or edit was about).
#[derive(Deserialize)]
struct ClientIdOnly {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
    seq: Option<serde_json::Value>,
}

/// Just the type of a frame, to tell "not hello yet" from "not a frame at all".
#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: String,
}

pub fn frame_type(text: &str) -> Option<String> {
    serde_json::from_str::<TypeOnly>(text).ok().map(|t| t.kind)
}

pub enum Parsed {
    Frame(ClientFrame),
    /// `seq`: the frame's seq when it is a positive integer (a react or edit names its message).
    Bad {
        reason: String,
        client_id: Option<String>,
        seq: Option<Seq>,
    },
}

pub fn parse(text: &str) -> Parsed {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => Parsed::Frame(frame),
        Err(err) => {
            let named = serde_json::from_str::<ClientIdOnly>(text).ok();
            let seq = named.as_ref().and_then(|c| c.seq.as_ref()).and_then(|s| s.as_i64()).filter(|s| *s >= 1);
            let client_id = named.and_then(|c| c.client_id);
            Parsed::Bad { reason: err.to_string(), client_id, seq }
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ServerFrame<'a> {
    Ack {
        #[serde(rename = "clientId")]
        client_id: &'a str,
        seq: Seq,
    },
    Deleted {
        seq: Seq,
    },
    Presence {
        online: usize,
        members: &'a [&'a Profile],
    },
    Typing {
        #[serde(rename = "authorId")]
        author_id: &'a str,
        nickname: &'a str,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "clientId", skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        /// On a refused report: the message it was about.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<Seq>,
        /// On a `spam` refusal: which rule refused the send.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        /// On a refused send or report: milliseconds until the limit that refused it lets a send through.
        #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Reconnect {
        #[serde(rename = "afterMs")]
        after_ms: u64,
    },
    /// The room's state changed: locked read-only (true) or reopened, slow mode (seconds, 0: off).
    Room {
        locked: bool,
        #[serde(rename = "slowMode")]
        slow_mode: u32,
    },
    /// The reader's report of this message is recorded.
    Reported {
        seq: Seq,
    },
    /// Readers' reports hid this message: it leaves the conversation as a deleted one does.
    Hidden {
        seq: Seq,
    },
    /// A message's reactions after one reader's change.
    Reactions {
        seq: Seq,
        reactions: Reactions,
        #[serde(rename = "authorId")]
        author_id: &'a str,
        emoji: &'a str,
        on: bool,
    },
}

fn encode(frame: &ServerFrame<'_>) -> Frame {
    // These frames hold only strings and numbers, which always serialize.
    serde_json::to_string(frame).unwrap_or_default().into()
}

pub fn ack(client_id: &str, seq: Seq) -> Frame {
    encode(&ServerFrame::Ack { client_id, seq })
}

pub fn deleted(seq: Seq) -> Frame {
    encode(&ServerFrame::Deleted { seq })
}

pub fn presence(online: usize, members: &[&Profile]) -> Frame {
    encode(&ServerFrame::Presence { online, members })
}

pub fn typing(author: &Profile) -> Frame {
    encode(&ServerFrame::Typing { author_id: author.author_id.as_str(), nickname: &author.nickname })
}

pub fn error(code: ErrorCode, message: &str, client_id: Option<&str>) -> Frame {
    encode(&ServerFrame::Error { code, message, client_id, seq: None, reason: None, retry_after_ms: None })
}

/// `spam` for a refused send, with the rule that refused it.
pub fn spam(reason: &str, message: &str, client_id: &str) -> Frame {
    let client_id = Some(client_id);
    encode(&ServerFrame::Error { code: ErrorCode::Spam, message, client_id, seq: None, reason: Some(reason), retry_after_ms: None })
}

/// An `error` about a report, a reaction or an edit, naming the message; `rate_limited` also
/// says when to try again.
pub fn report_error(code: ErrorCode, message: &str, seq: Seq, retry_after_ms: Option<u64>) -> Frame {
    encode(&ServerFrame::Error { code, message, client_id: None, seq: Some(seq), reason: None, retry_after_ms })
}

/// `spam` for a refused edit, naming the message and the rule that refused it.
pub fn edit_spam(reason: &str, message: &str, seq: Seq) -> Frame {
    encode(&ServerFrame::Error {
        code: ErrorCode::Spam,
        message,
        client_id: None,
        seq: Some(seq),
        reason: Some(reason),
        retry_after_ms: None,
    })
}

/// `reactions` frame: a message's counts after `author`'s reaction was put on or taken back.
pub fn reactions(seq: Seq, reactions: Reactions, author: &AuthorId, emoji: Emoji, on: bool) -> Frame {
    encode(&ServerFrame::Reactions { seq, reactions, author_id: author.as_str(), emoji: emoji.as_str(), on })
}

/// `edited` frame around the edited message's JSON.
pub fn edited(message_json: &str) -> Frame {
    format!(r#"{{"type":"edited","message":{message_json}}}"#).into()
}

pub fn reported(seq: Seq) -> Frame {
    encode(&ServerFrame::Reported { seq })
}

pub fn hidden(seq: Seq) -> Frame {
    encode(&ServerFrame::Hidden { seq })
}

/// `restored` frame around a message that was hidden and that the owner kept.
pub fn restored(message_json: &str) -> Frame {
    format!(r#"{{"type":"restored","message":{message_json}}}"#).into()
}

/// `rate_limited` for a send, with when to try again.
pub fn rate_limited(message: &str, client_id: &str, retry_after_ms: u64) -> Frame {
    let client_id = Some(client_id);
    encode(&ServerFrame::Error {
        code: ErrorCode::RateLimited,
        message,
        client_id,
        seq: None,
        reason: None,
        retry_after_ms: Some(retry_after_ms),
    })
}

/// `room` frame: the room was locked read-only or reopened, or its slow mode changed.
pub fn room_state(locked: bool, slow_mode: u32) -> Frame {
    encode(&ServerFrame::Room { locked, slow_mode })
}

/// `pinned` frame around the pinned message's JSON, or `null` when the pin was removed.
pub fn pinned(message_json: Option<&str>) -> Frame {
    format!(r#"{{"type":"pinned","message":{}}}"#, message_json.unwrap_or("null")).into()
}

pub fn reconnect(after_ms: u64) -> Frame {
    encode(&ServerFrame::Reconnect { after_ms })
}

/// `message` frame around a message already serialized to JSON (see `room::ring`).
pub fn message(message_json: &str) -> Frame {
    format!(r#"{{"type":"message","message":{message_json}}}"#).into()
}

/// `welcome` frame; the history entries are message JSON serialized when they were stored.
/// Sized up front: a welcome can be large, and a grown buffer would be kept until it is written.
pub fn welcome(
    you: &Profile,
    history: &[MessageJson],
    resumed: bool,
    online: usize,
    room: &RoomState<'_>,
    watching: bool,
    mine: &MyReactions,
) -> Frame {
    let you = serde_json::to_string(you).unwrap_or_default();
    let mine = serde_json::to_string(mine).unwrap_or_default();
    let pinned = room.pinned.unwrap_or("null");
    let size = 160 + you.len() + pinned.len() + mine.len() + history.iter().map(|m| m.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(size);
    out.push_str(r#"{"type":"welcome","you":"#);
    out.push_str(&you);
    out.push_str(r#","history":["#);
    for (i, json) in history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(json);
    }
    out.push_str(r#"],"resumed":"#);
    out.push_str(if resumed { "true" } else { "false" });
    out.push_str(r#","online":"#);
    out.push_str(&online.to_string());
    out.push_str(r#","locked":"#);
    out.push_str(if room.locked { "true" } else { "false" });
    out.push_str(r#","slowMode":"#);
    out.push_str(&room.slow_mode.to_string());
    out.push_str(r#","pinned":"#);
    out.push_str(pinned);
    out.push_str(r#","myReactions":"#);
    out.push_str(&mine);
    out.push_str(r#","editWindow":"#);
    out.push_str(&room.edit_window.to_string());
    if watching {
        out.push_str(r#","watching":true"#);
    }
    out.push('}');
    out.into()
}

/// The joining reader's own reactions on the messages of its welcome: `{"57":["👍"]}`.
#[derive(Debug, Default)]
pub struct MyReactions(pub Vec<(Seq, u8)>);

impl Serialize for MyReactions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (seq, mask) in &self.0 {
            let emoji: Vec<&str> =
                (0..crate::chat::EMOJI.len()).filter(|i| mask >> i & 1 == 1).filter_map(Emoji::from_index).map(Emoji::as_str).collect();
            map.serialize_entry(&seq.to_string(), &emoji)?;
        }
        map.end()
    }
}

/// What a welcome says about the room itself: locked or not, and its pinned message's JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomState<'a> {
    pub locked: bool,
    /// Slow mode in seconds (0: off).
    pub slow_mode: u32,
    pub pinned: Option<&'a str>,
    /// Seconds after sending during which an author may edit a message.
    pub edit_window: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_frame() {
        assert!(matches!(parse(r#"{"type":"typing"}"#), Parsed::Frame(ClientFrame::Typing {})));
        assert!(matches!(parse(r#"{"type":"delete","seq":57}"#), Parsed::Frame(ClientFrame::Delete { seq: 57 })));
        assert!(matches!(parse(r#"{"type":"report","seq":57}"#), Parsed::Frame(ClientFrame::Report { seq: 57 })));
        assert!(matches!(
            parse(r#"{"type":"hello","anonymousId":"x","nickname":"n","lastSeq":41,"extra":1}"#),
            Parsed::Frame(ClientFrame::Hello { last_seq: Some(41), .. })
        ));
    }

    #[test]
    fn bad_frames_keep_their_client_id() {
        match parse(r#"{"type":"send","clientId":"c-1","content":5}"#) {
            Parsed::Bad { client_id, .. } => assert_eq!(client_id.as_deref(), Some("c-1")),
            Parsed::Frame(_) => panic!("content must be a string"),
        }
        assert!(matches!(parse("not json"), Parsed::Bad { client_id: None, .. }));
        assert!(matches!(parse(r#"{"type":"dance"}"#), Parsed::Bad { .. }));
        assert!(matches!(parse(r#"{"type":"delete","seq":-1}"#), Parsed::Bad { .. }));
        assert!(matches!(parse(r#"{"type":"report","seq":"57"}"#), Parsed::Bad { .. }));
    }
}
