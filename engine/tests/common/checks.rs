//! Assertions and small helpers the test files share: fresh ids and room names, polling for state
//! that has no event, the fields of server frames, and the shape of a Message object.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Reader;

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A room id no other test uses, so failures never mix.
pub fn room(prefix: &str) -> String {
    format!("{prefix}-{}", &new_id()[..8])
}

/// Polls `check` every 50 ms until it holds, for state that has no event to await (an HTTP
/// endpoint, a gauge); panics after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not so after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `type` of a server frame, or "" when it has none.
pub fn frame_type(frame: &Value) -> &str {
    frame["type"].as_str().unwrap_or("")
}

/// `seq` of an `ack`, `deleted` or Message object; panics when it is not a non-negative integer.
pub fn seq_of(value: &Value) -> u64 {
    value["seq"].as_u64().unwrap_or_else(|| panic!("expected an integer `seq` in {value}"))
}

/// Asserts a Message object is complete and matches what was sent.
pub fn assert_message(message: &Value, room: &str, author: &Reader, content: &str) {
    assert_eq!(message["roomId"], room, "roomId of {message}");
    assert_eq!(message["content"], content, "content of {message}");
    assert_eq!(message["nickname"], author.nickname.as_str(), "nickname of {message}");
    assert_eq!(message["avatar"], author.avatar.as_str(), "avatar of {message}");
    assert!(message["seq"].as_u64().is_some_and(|s| s >= 1), "seq of {message}");
    assert_author_id(&message["authorId"], author);
    assert!(message["createdAt"].as_str().is_some_and(is_rfc3339_utc), "createdAt is not an RFC 3339 UTC timestamp in {message}");
    assert!(message["clientId"].is_string(), "clientId missing in {message}");
    assert!(!message.to_string().contains(&author.anonymous_id), "the anonymousId leaked in {message}");
}

/// An authorId is 16 lowercase hex digits and does not reveal the anonymousId.
pub fn assert_author_id(author_id: &Value, author: &Reader) {
    let id = author_id.as_str().unwrap_or_else(|| panic!("authorId is not a string: {author_id}"));
    assert!(id.len() == 16 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "authorId {id:?} is not 16 lowercase hex digits");
    let raw = author.anonymous_id.replace('-', "");
    assert!(
        !author.anonymous_id.contains(id) && !raw.contains(id) && id != author.anonymous_id,
        "authorId {id} is (part of) the anonymousId {}",
        author.anonymous_id
    );
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let Some(rest) = s.get(19..) else {
        return false;
    };
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (rest == "Z"
            || rest
                .strip_prefix('.')
                .and_then(|r| r.strip_suffix('Z'))
                .is_some_and(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit())))
}

/// Asserts `seqs` run `first, first+1, ...` without gap or repeat.
pub fn assert_consecutive(seqs: &[u64], first: u64) {
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(seqs, expected.as_slice(), "seqs are not consecutive from {first}");
}

pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(seq_of).collect()
}
