//! The JSON-lines format rooms move between stores in (the export route, `chat-engine export`
//! and `chat-engine import`): per room, one line with its state, then its messages oldest first,
//! each in the protocol's Message shape plus `deleted` / `hidden` when the store marks it so and
//! `reactedBy` (who left each reaction, so an import keeps one per reader and emoji).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Store, StoreError};
use std::collections::BTreeMap;

use crate::chat::{AuthorId, Emoji, Message, Reactions, ReplyQuote, RoomId, Seq, EMOJI};

/// Messages read from the store per query when a room is streamed out.
pub const PAGE: usize = 500;

/// A room's state apart from its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomState {
    pub id: RoomId,
    /// The counter: the next message gets `last_seq + 1`, even when the newest ones were pruned.
    pub last_seq: Seq,
    pub locked: bool,
    pub pinned: Option<Seq>,
    /// Active bans: author and the end of the ban (epoch ms).
    pub bans: Vec<(AuthorId, i64)>,
}

/// A stored message with the flags that keep it from readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedMessage {
    pub message: Message,
    pub deleted: bool,
    pub hidden: bool,
    /// Who left which reaction.
    pub reactors: Vec<(Emoji, AuthorId)>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BanLine {
    author_id: String,
    until: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoomLine {
    id: String,
    last_seq: Seq,
    locked: bool,
    pinned: Option<Seq>,
    #[serde(default)]
    bans: Vec<BanLine>,
}

#[derive(Serialize)]
struct RoomHeader<'a> {
    room: &'a RoomLine,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageOut<'a> {
    #[serde(flatten)]
    message: &'a Message,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hidden: bool,
    #[serde(skip_serializing_if = "ReactedBy::is_empty")]
    reacted_by: ReactedBy<'a>,
}

/// `{"👍":["<authorId>",...]}`: each emoji's readers, emoji in their set's order.
struct ReactedBy<'a>(&'a [(Emoji, AuthorId)]);

impl ReactedBy<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ReactedBy<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for emoji in EMOJI.iter().filter_map(|e| Emoji::parse(e)) {
            let authors: Vec<&str> = self.0.iter().filter(|(e, _)| *e == emoji).map(|(_, a)| a.as_str()).collect();
            if !authors.is_empty() {
                map.serialize_entry(emoji.as_str(), &authors)?;
            }
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MessageIn {
    seq: Seq,
    room_id: String,
    author_id: String,
    nickname: String,
    avatar: String,
    content: String,
    created_at: String,
    client_id: String,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    hidden: bool,
    /// Counts only; the import counts `reactedBy`.
    #[serde(default)]
    #[allow(dead_code)]
    reactions: Option<Reactions>,
    #[serde(default)]
    reply_to: Option<ReplyQuote>,
    #[serde(default)]
    edited_at: Option<String>,
    #[serde(default)]
    reacted_by: BTreeMap<String, Vec<String>>,
}

/// The room line, newline included.
pub fn room_line(state: &RoomState) -> String {
    let line = RoomLine {
        id: state.id.as_str().to_string(),
        last_seq: state.last_seq,
        locked: state.locked,
        pinned: state.pinned,
        bans: state.bans.iter().map(|(author, until)| BanLine { author_id: author.as_str().to_string(), until: *until }).collect(),
    };
    let mut out = serde_json::to_string(&RoomHeader { room: &line }).unwrap_or_default();
    out.push('\n');
    out
}

/// A message line, newline included.
pub fn message_line(m: &ExportedMessage) -> String {
    let out = MessageOut { message: &m.message, deleted: m.deleted, hidden: m.hidden, reacted_by: ReactedBy(&m.reactors) };
    let mut out = serde_json::to_string(&out).unwrap_or_default();
    out.push('\n');
    out
}

/// Sends a room's line, then its messages a page at a time, until the last page or until the
/// receiver is gone (which is not an error: the reader stopped reading).
pub async fn stream_room(store: &dyn Store, state: RoomState, tx: mpsc::Sender<Bytes>) -> Result<(), StoreError> {
    let room = state.id.clone();
    if tx.send(Bytes::from(room_line(&state))).await.is_err() {
        return Ok(());
    }
    let mut after = 0;
    loop {
        let page = store.export_page(room.clone(), after, PAGE).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.message.seq;
        let chunk: String = page.iter().map(message_line).collect();
        if tx.send(Bytes::from(chunk)).await.is_err() || page.len() < PAGE {
            return Ok(());
        }
    }
}

/// One line of an export file.
#[derive(Debug)]
pub enum Line {
    Room(RoomState),
    Message(Box<ExportedMessage>),
}

/// Reads one line; the error says what is wrong with it (the caller adds the line number).
pub fn parse_line(text: &str) -> Result<Line, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(room) = value.get("room") {
        let line = RoomLine::deserialize(room).map_err(|e| format!("room line: {e}"))?;
        let id = RoomId::parse(&line.id).ok_or_else(|| format!("room line: invalid room id {:?}", line.id))?;
        let bans = line
            .bans
            .into_iter()
            .map(|ban| {
                AuthorId::parse(&ban.author_id)
                    .map(|a| (a, ban.until))
                    .ok_or_else(|| format!("room line: invalid ban authorId {:?}", ban.author_id))
            })
            .collect::<Result<_, _>>()?;
        if line.last_seq < 0 || line.pinned.is_some_and(|p| p < 1) {
            return Err("room line: lastSeq and pinned must be positive".into());
        }
        return Ok(Line::Room(RoomState { id, last_seq: line.last_seq, locked: line.locked, pinned: line.pinned, bans }));
    }
    let m = MessageIn::deserialize(&value).map_err(|e| format!("message line: {e}"))?;
    let room_id = RoomId::parse(&m.room_id).ok_or_else(|| format!("message line: invalid roomId {:?}", m.room_id))?;
    let author_id = AuthorId::parse(&m.author_id).ok_or_else(|| format!("message line: invalid authorId {:?}", m.author_id))?;
    let created_at = chrono::DateTime::parse_from_rfc3339(&m.created_at)
        .map_err(|e| format!("message line: createdAt {:?}: {e}", m.created_at))?
        .timestamp_millis();
    if m.seq < 1 {
        return Err("message line: seq must be positive".into());
    }
    let edited_at = m
        .edited_at
        .map(|raw| crate::chat::parse_millis(&raw).ok_or_else(|| format!("message line: editedAt {raw:?} is not an RFC 3339 time")))
        .transpose()?;
    let mut reactors = Vec::new();
    let mut reactions = Reactions::default();
    for (emoji, authors) in &m.reacted_by {
        let emoji = Emoji::parse(emoji).ok_or_else(|| format!("message line: unknown reaction {emoji:?}"))?;
        for author in authors {
            let author = AuthorId::parse(author).ok_or_else(|| format!("message line: invalid reactedBy authorId {author:?}"))?;
            reactions.add(emoji);
            reactors.push((emoji, author));
        }
    }
    let message = Message {
        seq: m.seq,
        room_id,
        author_id,
        nickname: m.nickname,
        avatar: m.avatar,
        content: m.content,
        created_at,
        client_id: m.client_id,
        reactions,
        reply_to: m.reply_to,
        edited_at,
    };
    Ok(Line::Message(Box::new(ExportedMessage { message, deleted: m.deleted, hidden: m.hidden, reactors })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written() {
        let state = RoomState {
            id: RoomId::parse("post-1").unwrap(),
            last_seq: 9,
            locked: true,
            pinned: Some(3),
            bans: vec![(AuthorId::parse("0123456789abcdef").unwrap(), 1_900_000_000_000)],
        };
        let Line::Room(back) = parse_line(room_line(&state).trim_end()).unwrap() else { panic!("not a room line") };
        assert_eq!(back, state);
        let message = ExportedMessage {
            message: Message {
                seq: 4,
                room_id: state.id.clone(),
                author_id: AuthorId::parse("fedcba9876543210").unwrap(),
                nickname: "Otter".into(),
                avatar: "otter".into(),
                content: String::new(),
                created_at: 1_764_000_000_123,
                client_id: "c-1".into(),
                reactions: Default::default(),
                reply_to: None,
                edited_at: None,
            },
            deleted: true,
            hidden: false,
            reactors: Vec::new(),
        };
        let text = message_line(&message);
        assert!(text.contains("\"deleted\":true") && !text.contains("hidden"), "{text}");
        let Line::Message(back) = parse_line(text.trim_end()).unwrap() else { panic!("not a message line") };
        assert_eq!(*back, message);
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert!(parse_line("{").unwrap_err().starts_with("not JSON"));
        assert!(parse_line(r#"{"room":{"id":"a/b","lastSeq":1,"locked":false,"pinned":null}}"#).unwrap_err().contains("room id"));
        assert!(parse_line(r#"{"seq":1}"#).unwrap_err().contains("missing field"));
    }
}
