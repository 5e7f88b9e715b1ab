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

/// The reactions a reader may leave on a message, in the order they are shown.
pub const EMOJI: [&str; 6] = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
/// Characters of the original a reply's quote shows.
pub const EXCERPT_CHARS: usize = 100;

/// One of [`EMOJI`], by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Emoji(u8);

impl Emoji {
    pub fn parse(raw: &str) -> Option<Emoji> {
        EMOJI.iter().position(|e| *e == raw).map(|i| Emoji(i as u8))
    }

    pub fn from_index(index: usize) -> Option<Emoji> {
        (index < EMOJI.len()).then_some(Emoji(index as u8))
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn as_str(self) -> &'static str {
        EMOJI[self.index()]
    }

    /// This emoji as one bit of a reader's set of reactions on a message.
    pub fn bit(self) -> u8 {
        1 << self.0
    }
}

/// How many readers left each emoji on a message. Serialized as `{"👍":3}`, counts above zero
/// only, in the order of [`EMOJI`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reactions(pub [u32; EMOJI.len()]);

impl Reactions {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }

    /// Counts from readers' sets of reactions (bit masks of [`Emoji::bit`]).
    pub fn from_masks<'a>(masks: impl IntoIterator<Item = &'a u8>) -> Reactions {
        let mut counts = Reactions::default();
        for mask in masks {
            for (i, n) in counts.0.iter_mut().enumerate() {
                *n += u32::from(mask >> i & 1);
            }
        }
        counts
    }

    /// Counts from the store's list of a message's reactions, one emoji per reader and emoji,
    /// comma-separated; unknown emoji are left out.
    pub fn from_list(raw: Option<&str>) -> Reactions {
        let mut counts = Reactions::default();
        for emoji in raw.unwrap_or("").split(',').filter_map(Emoji::parse) {
            counts.0[emoji.index()] += 1;
        }
        counts
    }

    pub fn add(&mut self, emoji: Emoji) {
        self.0[emoji.index()] += 1;
    }
}

impl Serialize for Reactions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (emoji, n) in EMOJI.iter().zip(self.0) {
            if n > 0 {
                map.serialize_entry(emoji, &n)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Reactions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reactions, D::Error> {
        let raw = std::collections::BTreeMap::<String, u32>::deserialize(d)?;
        let mut counts = Reactions::default();
        for (emoji, n) in raw {
            let emoji = Emoji::parse(&emoji).ok_or_else(|| serde::de::Error::custom(format!("unknown reaction {emoji:?}")))?;
            counts.0[emoji.index()] = n;
        }
        Ok(counts)
    }
}

/// What a reply shows of the message it answers: its author and first characters, or only that
/// it is gone (deleted, hidden or pruned), so a deleted message's text never lives on in quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyQuote {
    pub seq: Seq,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<AuthorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl ReplyQuote {
    pub fn of(original: &Message) -> ReplyQuote {
        ReplyQuote::shown(original.seq, original.author_id.clone(), original.nickname.clone(), &original.content)
    }

    pub fn shown(seq: Seq, author_id: AuthorId, nickname: String, content: &str) -> ReplyQuote {
        let excerpt = content.chars().take(EXCERPT_CHARS).collect();
        ReplyQuote { seq, author_id: Some(author_id), nickname: Some(nickname), excerpt: Some(excerpt), deleted: false }
    }

    pub fn gone(seq: Seq) -> ReplyQuote {
        ReplyQuote { seq, author_id: None, nickname: None, excerpt: None, deleted: true }
    }
}

/// A stored message, as every reader sees it. `reactions`, `replyTo` and `editedAt` are left out
/// when they do not apply, so clients that do not know them see the message as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub seq: Seq,
    pub room_id: RoomId,
    pub author_id: AuthorId,
    pub nickname: String,
    pub avatar: String,
    pub content: String,
    #[serde(serialize_with = "serialize_millis", deserialize_with = "deserialize_millis")]
    pub created_at: i64,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Reactions::is_empty")]
    pub reactions: Reactions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyQuote>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_millis",
        deserialize_with = "deserialize_opt_millis"
    )]
    pub edited_at: Option<i64>,
}

impl Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RoomId, D::Error> {
        let raw = String::deserialize(d)?;
        RoomId::parse(&raw).ok_or_else(|| serde::de::Error::custom("invalid room id"))
    }
}

/// RFC 3339 as written by [`format_millis`] (any offset accepted), back to epoch milliseconds.
pub fn parse_millis(raw: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(raw).ok().map(|t| t.timestamp_millis())
}

fn deserialize_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let raw = String::deserialize(d)?;
    parse_millis(&raw).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {raw:?}")))
}

fn deserialize_opt_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| parse_millis(&raw).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {raw:?}"))))
        .transpose()
}

fn serialize_opt_millis<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => serialize_millis(ms, s),
        None => s.serialize_none(),
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
