//! The chat domain: room ids, readers' public ids, profiles and messages, with the rules
//! PROTOCOL.md puts on each. Everything a client sends is checked here before it reaches a room.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

/// Per-room message number: 1, 2, 3… assigned at commit.
pub type Seq = i64;

pub const NICKNAME_MIN: usize = 2;
pub const NICKNAME_MAX: usize = 15;
pub const CONTENT_MAX: usize = 2000;
pub const AVATAR_MAX: usize = 32;
/// What a reader is told when a nickname breaks [`nickname`]'s rule.
pub const NICKNAME_RULE: &str = "nickname: 2 to 15 characters, some of them visible; no control or bidi characters";

/// A validated room id: 1 to 128 characters from `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    pub fn parse(raw: &str) -> Option<RoomId> {
        let ok = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
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

/// The anonymousId: a random (version 4) UUID, as the widget makes. A constant or time-based id
/// (nil, all ones, v1) would be shared by careless clients, who would then share one identity
/// and one ban.
pub fn anonymous_id(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw).ok().filter(|id| id.get_version() == Some(uuid::Version::Random) && id.get_variant() == uuid::Variant::RFC4122)
}

/// Nickname rule: 2 to 15 Unicode scalar values after trimming, no control or bidi characters,
/// and not only characters that draw nothing. Names are shown next to other people's messages:
/// a bidi control could reorder what follows it, and an invisible name could pass for no one.
pub fn nickname(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    let ok = (NICKNAME_MIN..=NICKNAME_MAX).contains(&chars)
        && !trimmed.chars().any(|c| c.is_control() || is_bidi_control(c))
        && !trimmed.chars().all(draws_nothing);
    ok.then(|| trimmed.to_string())
}

/// Explicit direction marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters with no glyph of their own: whitespace, combining marks (they only decorate the
/// letter before them), zero-width and format characters, and the Hangul and Braille blanks
/// that fonts draw as empty space.
fn draws_nothing(c: char) -> bool {
    c.is_whitespace()
        || is_combining_mark(c)
        || matches!(
            c,
            '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
                | '\u{00AD}'
                | '\u{180E}'
                | '\u{3164}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{FFA0}'
                | '\u{2800}'
                | '\u{E0000}'..='\u{E007F}'
        )
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
    let ok = (1..=CONTENT_MAX).contains(&chars) && !trimmed.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
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
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
    fn nicknames_refuse_bidi_controls() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200E}',
            '\u{200F}', '\u{061C}',
        ] {
            assert!(nickname(&format!("ab{c}cd")).is_none(), "U+{:04X}", c as u32);
            assert!(nickname(&format!("{c}수달")).is_none(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn nicknames_need_something_visible() {
        for name in [
            "\u{200B}\u{200B}",
            "\u{200C}\u{200D}\u{2060}\u{FEFF}",
            "\u{3164}\u{3164}",
            "\u{115F}\u{1160}",
            "\u{FFA0}\u{FFA0}\u{FFA0}",
            "\u{2800}\u{2800}",
            "\u{0301}\u{0301}\u{0301}",
            "\u{20DD}\u{0308}",
            "\u{200B} \u{3164}\u{3000}\u{200B}",
            "\u{E0041}\u{E0042}",
        ] {
            assert!(nickname(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn nicknames_with_letters_and_marks_are_fine() {
        // "é" as e + combining acute, and Korean written as conjoining jamo.
        for name in
            ["Rene\u{0301}e", "\u{1112}\u{1161}\u{11AB}\u{1100}\u{1173}\u{11AF}", "익명의 수달", "a\u{200D}b", "\u{3164}수달", "zoë 🦦"]
        {
            assert_eq!(nickname(name).as_deref(), Some(name), "{name:?}");
        }
    }

    #[test]
    fn anonymous_ids_are_random_uuids() {
        assert!(anonymous_id(&Uuid::new_v4().to_string()).is_some());
        assert!(anonymous_id("3F2504E0-4F89-41D3-9A0C-0305E82C3301").is_some());
        for bad in [
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "c232ab00-9414-11ec-b3c8-9f6bdeced846",
            "3f2504e0-4f89-41d3-ca0c-0305e82c3301",
            "not-a-uuid",
        ] {
            assert!(anonymous_id(bad).is_none(), "{bad}");
        }
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
