//! The chat domain: room ids, readers' public ids, profiles and messages, with the rules
//! PROTOCOL.md puts on each. Everything a client sends is checked here before it reaches a room.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Per-room message number: 1, 2, 3… assigned at commit.
pub type Seq = i64;

pub const NICKNAME_MIN: usize = 2;
pub const NICKNAME_MAX: usize = 15;
pub const CONTENT_MAX: usize = 2000;
pub const AVATAR_MAX: usize = 32;

/// A validated room id: 1 to 128 characters from `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    pub fn parse(raw: &str) -> Option<RoomId> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| RoomId(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The public id of a reader: the first 16 hex digits of SHA-256 over a fixed prefix and the
/// anonymousId. One-way, so the anonymousId (the browser's secret) never has to leave the server,
/// and the same on every pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct AuthorId(Arc<str>);

impl TryFrom<String> for AuthorId {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<AuthorId, Self::Error> {
        AuthorId::parse(&raw).ok_or("authorId must be 16 lowercase hex digits")
    }
}

impl From<AuthorId> for String {
    fn from(id: AuthorId) -> String {
        id.0.to_string()
    }
}

impl AuthorId {
    pub fn derive(anonymous_id: &Uuid) -> AuthorId {
        let mut hash = Sha256::new();
        hash.update(b"chat-engine/author/v1:");
        hash.update(anonymous_id.hyphenated().to_string().as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        AuthorId(hex.into())
    }

    /// An authorId as a moderator or the store gives it back: exactly 16 lowercase hex digits.
    pub fn parse(raw: &str) -> Option<AuthorId> {
        let ok = raw.len() == 16 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| AuthorId(raw.into()))
    }

    /// An authorId the store wrote itself, so already checked.
    pub fn from_store(raw: &str) -> AuthorId {
        AuthorId(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a reader shows up in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    #[serde(rename = "authorId")]
    pub author_id: AuthorId,
    pub nickname: String,
    pub avatar: String,
}

/// Nickname rule: 2 to 15 Unicode scalar values after trimming, no control characters.
pub fn nickname(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    let ok = (NICKNAME_MIN..=NICKNAME_MAX).contains(&chars) && !trimmed.chars().any(char::is_control);
    ok.then(|| trimmed.to_string())
}

/// Avatar: a short key of the widget's animal set ("otter"); free-form, but short and printable.
pub fn avatar(raw: Option<&str>) -> Option<String> {
    let raw = raw.unwrap_or("").trim();
    let ok = raw.chars().count() <= AVATAR_MAX && !raw.chars().any(char::is_control);
    ok.then(|| raw.to_string())
}

/// Content rule: 1 to 2000 characters after trimming. Line breaks and tabs are text; other
/// control characters are not.
pub fn content(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    let ok = (1..=CONTENT_MAX).contains(&chars)
        && !trimmed.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    ok.then(|| trimmed.to_string())
}

/// A stored message, as every reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub seq: Seq,
    pub room_id: RoomId,
    pub author_id: AuthorId,
    pub nickname: String,
    pub avatar: String,
    pub content: String,
    #[serde(serialize_with = "serialize_millis")]
    pub created_at: i64,
    pub client_id: String,
}

impl Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Milliseconds since the epoch, as RFC 3339 UTC with milliseconds ("2026-11-24T09:30:00.123Z").
pub fn format_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn serialize_millis<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_millis(*ms))
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_follow_the_charset_and_length() {
        assert!(RoomId::parse("post-1").is_some());
        assert!(RoomId::parse("A.b_c-9").is_some());
        assert!(RoomId::parse(&"a".repeat(128)).is_some());
        assert!(RoomId::parse(&"a".repeat(129)).is_none());
        for bad in ["", "a b", "ü", "a/b", "..%2f", "a\u{0}"] {
            assert!(RoomId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn author_id_is_stable_and_does_not_reveal_the_anonymous_id() {
        let id = Uuid::parse_str("3F2504E0-4F89-41D3-9A0C-0305E82C3301").unwrap();
        let a = AuthorId::derive(&id);
        assert_eq!(a, AuthorId::derive(&Uuid::parse_str("3f2504e0-4f89-41d3-9a0c-0305e82c3301").unwrap()));
        assert_eq!(a.as_str().len(), 16);
        assert!(!id.simple().to_string().contains(a.as_str()));
        assert!(AuthorId::parse(a.as_str()).is_some());
    }

    #[test]
    fn nickname_rules() {
        assert_eq!(nickname("  익명의 수달 ").as_deref(), Some("익명의 수달"));
        assert!(nickname(" a ").is_none());
        assert!(nickname(&"가".repeat(15)).is_some());
        assert!(nickname(&"a".repeat(16)).is_none());
        assert!(nickname("bad\u{7}name").is_none());
    }

    #[test]
    fn content_rules() {
        assert!(content("   ").is_none());
        assert!(content(&"x".repeat(2000)).is_some());
        assert!(content(&"x".repeat(2001)).is_none());
        assert_eq!(content(" two\nlines ").as_deref(), Some("two\nlines"));
        assert!(content("nul\u{0}").is_none());
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        assert_eq!(format_millis(1_795_512_600_123), "2026-11-24T09:30:00.123Z");
    }
}
