//! What a webhook request carries: the event as JSON (`{event, id, at, data}`), or the short text
//! Slack and Discord webhooks expect, and the `X-Chat-Signature` over the exact bytes sent.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{Event, Format, Notice};
use crate::chat::format_millis;

/// Discord refuses a `content` longer than this many characters.
const DISCORD_MAX: usize = 2000;

/// Shapes and signs bodies; one per pod, shared by the workers.
pub(super) struct Signer {
    secret: Option<Vec<u8>>,
    public_url: Option<String>,
}

impl Signer {
    pub(super) fn new(secret: Option<&str>, public_url: Option<&str>) -> Signer {
        Signer {
            secret: secret.filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()),
            public_url: public_url.map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()),
        }
    }

    pub(super) fn body(&self, event: &Event, format: Format) -> Bytes {
        let value = match format {
            Format::Json => self.event_json(event),
            Format::Slack => json!({ "text": slack_escape(&self.text(event)) }),
            Format::Discord => {
                // Readers write the content: no @everyone, role or user pings from it.
                json!({ "content": truncate(&self.text(event), DISCORD_MAX), "allowed_mentions": { "parse": [] } })
            }
        };
        Bytes::from(value.to_string())
    }

    /// `sha256=<hex HMAC-SHA256 of body>`, when a secret is set.
    pub(super) fn signature(&self, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        Some(format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
    }

    /// The room's widget page, when the public base URL is known.
    fn room_url(&self, event: &Event) -> Option<String> {
        self.public_url.as_ref().map(|base| format!("{base}/room/{}", event.room.as_str()))
    }

    fn event_json(&self, event: &Event) -> Value {
        let room = event.room.as_str();
        let data = match &event.notice {
            Notice::MessageCreated { seq, author_id, nickname, content, created_at } => {
                let mut data = json!({
                    "room": room,
                    "seq": seq,
                    "authorId": author_id.as_str(),
                    "nickname": nickname,
                    "content": content,
                    "createdAt": format_millis(*created_at),
                });
                if let Some(url) = self.room_url(event) {
                    data["url"] = Value::String(url);
                }
                data
            }
            Notice::MessageReported { seq, reports, hidden } => json!({ "room": room, "seq": seq, "reports": reports, "hidden": hidden }),
            Notice::RoomLocked { locked } => json!({ "room": room, "locked": locked }),
        };
        json!({ "event": event.notice.name(), "id": event.id.to_string(), "at": format_millis(event.at), "data": data })
    }

    /// One line or two for a chat channel.
    fn text(&self, event: &Event) -> String {
        let room = event.room.as_str();
        let line = match &event.notice {
            Notice::MessageCreated { nickname, content, .. } => format!("New message in {room} from {nickname}: {content}"),
            Notice::MessageReported { seq, reports, hidden } => {
                let readers = if *reports == 1 { "reader" } else { "readers" };
                let hidden = if *hidden { "; it is hidden until you keep it" } else { "" };
                format!("Message #{seq} in {room} reported by {reports} {readers}{hidden}")
            }
            Notice::RoomLocked { locked: true } => format!("Room {room} locked (read-only)"),
            Notice::RoomLocked { locked: false } => format!("Room {room} reopened"),
        };
        match self.room_url(event) {
            Some(url) => format!("{line}\n{url}"),
            None => line,
        }
    }
}

/// Slack reads `<...>` as links and mentions (`<!channel>`) and `&` as an entity: escape them.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// At most `max` characters, the last one an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{AuthorId, RoomId};

    fn created(content: &str) -> Event {
        Event {
            id: uuid::Uuid::new_v4(),
            at: 1_795_000_000_000,
            room: RoomId::parse("post-1").unwrap(),
            notice: Notice::MessageCreated {
                seq: 7,
                author_id: AuthorId::parse("0123456789abcdef").unwrap(),
                nickname: "독자".into(),
                content: content.into(),
                created_at: 1_795_000_000_000,
            },
        }
    }

    #[test]
    fn the_json_body_carries_the_event_and_a_link_only_with_a_public_url() {
        let event = created("hi");
        let body: Value = serde_json::from_slice(&Signer::new(None, Some("https://chat.example/")).body(&event, Format::Json)).unwrap();
        assert_eq!(body["event"], "message.created");
        assert_eq!(body["id"], event.id.to_string());
        assert_eq!(body["data"]["url"], "https://chat.example/room/post-1");
        assert_eq!(body["data"]["createdAt"], "2026-11-18T11:06:40.000Z");
        let body: Value = serde_json::from_slice(&Signer::new(None, None).body(&event, Format::Json)).unwrap();
        assert!(body["data"].get("url").is_none());
    }

    #[test]
    fn chat_services_get_text_that_cannot_ping_or_outgrow_their_limit() {
        let signer = Signer::new(None, None);
        let slack: Value = serde_json::from_slice(&signer.body(&created("<!channel> & co"), Format::Slack)).unwrap();
        assert_eq!(slack["text"], "New message in post-1 from 독자: &lt;!channel&gt; &amp; co");
        let discord: Value = serde_json::from_slice(&signer.body(&created(&"가".repeat(2000)), Format::Discord)).unwrap();
        assert_eq!(discord["content"].as_str().unwrap().chars().count(), DISCORD_MAX);
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        // RFC 4231 test case 2.
        let signer = Signer::new(Some("Jefe"), None);
        assert_eq!(
            signer.signature(b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(Signer::new(None, None).signature(b"x"), None);
    }
}
