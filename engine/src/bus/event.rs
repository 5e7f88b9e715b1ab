//! What pods tell each other about a room, and its wire form on the room's Redis channel:
//! `pod \n sent_at_ms \n kind \n payload`. Plain text, so a message's JSON travels unchanged.

use crate::protocol::{Frame, MessageJson};

use crate::chat::{AuthorId, Emoji, Reactions, Seq};

#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A committed message: its seq and its `Message` JSON.
    Message {
        seq: Seq,
        json: MessageJson,
    },
    Deleted {
        seq: Seq,
    },
    /// Readers' reports hid a message.
    Hidden {
        seq: Seq,
    },
    /// The owner kept a hidden message: its seq and `Message` JSON.
    Restored {
        seq: Seq,
        json: MessageJson,
    },
    /// A reader's reaction was put on (`on`) or taken back; `counts`: the message's after it.
    Reaction {
        seq: Seq,
        author: AuthorId,
        emoji: Emoji,
        on: bool,
        counts: Reactions,
    },
    /// A message was edited: its seq and its `Message` JSON as it reads now.
    Edited {
        seq: Seq,
        json: MessageJson,
    },
    /// A typing frame, passed on to the room's readers other than its author.
    Typing {
        author: AuthorId,
        frame: Frame,
    },
    Banned {
        author: AuthorId,
        until: i64,
    },
    Unbanned {
        author: AuthorId,
    },
    /// The room was locked read-only (true) or reopened.
    Locked {
        locked: bool,
    },
    /// The room's slow mode changed (seconds; 0: off).
    SlowMode {
        seconds: u32,
    },
    /// A message was pinned (its seq and `Message` JSON), or the pin removed (`None`).
    Pinned {
        pinned: Option<(Seq, MessageJson)>,
    },
    /// Some pod's reader list for the room changed: re-read the room-wide presence.
    Presence,
}

/// An event as received from another pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub pod: String,
    pub sent_at_ms: i64,
    pub event: RoomEvent,
}

pub fn encode(pod: &str, sent_at_ms: i64, event: &RoomEvent) -> String {
    let (kind, payload) = match event {
        RoomEvent::Message { seq, json } => ("message", format!("{seq}\n{json}")),
        RoomEvent::Deleted { seq } => ("deleted", seq.to_string()),
        RoomEvent::Hidden { seq } => ("hidden", seq.to_string()),
        RoomEvent::Restored { seq, json } => ("restored", format!("{seq}\n{json}")),
        RoomEvent::Reaction { seq, author, emoji, on, counts } => {
            let counts: Vec<String> = counts.0.iter().map(u32::to_string).collect();
            ("reaction", format!("{seq}\n{}\n{}\n{}\n{}", author.as_str(), emoji.index(), u8::from(*on), counts.join(",")))
        }
        RoomEvent::Edited { seq, json } => ("edited", format!("{seq}\n{json}")),
        RoomEvent::Typing { author, frame } => ("typing", format!("{}\n{}", author.as_str(), frame.as_str())),
        RoomEvent::Banned { author, until } => ("banned", format!("{}\n{until}", author.as_str())),
        RoomEvent::Unbanned { author } => ("unbanned", author.as_str().to_string()),
        RoomEvent::Locked { locked } => ("locked", if *locked { "1" } else { "0" }.to_string()),
        RoomEvent::SlowMode { seconds } => ("slow_mode", seconds.to_string()),
        RoomEvent::Pinned { pinned: Some((seq, json)) } => ("pinned", format!("{seq}\n{json}")),
        RoomEvent::Pinned { pinned: None } => ("pinned", String::new()),
        RoomEvent::Presence => ("presence", String::new()),
    };
    format!("{pod}\n{sent_at_ms}\n{kind}\n{payload}")
}

pub fn decode(raw: &str) -> Option<Envelope> {
    let mut parts = raw.splitn(4, '\n');
    let pod = parts.next()?.to_string();
    let sent_at_ms = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let payload = parts.next().unwrap_or("");
    let event = match kind {
        "message" => {
            let (seq, json) = payload.split_once('\n')?;
            RoomEvent::Message { seq: seq.parse().ok()?, json: json.to_string().into() }
        }
        "deleted" => RoomEvent::Deleted { seq: payload.parse().ok()? },
        "hidden" => RoomEvent::Hidden { seq: payload.parse().ok()? },
        "restored" => {
            let (seq, json) = payload.split_once('\n')?;
            RoomEvent::Restored { seq: seq.parse().ok()?, json: json.to_string().into() }
        }
        "reaction" => {
            let mut fields = payload.splitn(5, '\n');
            let seq = fields.next()?.parse().ok()?;
            let author = AuthorId::parse(fields.next()?)?;
            let emoji = Emoji::from_index(fields.next()?.parse().ok()?)?;
            let on = match fields.next()? {
                "1" => true,
                "0" => false,
                _ => return None,
            };
            let mut counts = Reactions::default();
            let mut given = fields.next()?.split(',');
            for n in counts.0.iter_mut() {
                *n = given.next()?.parse().ok()?;
            }
            RoomEvent::Reaction { seq, author, emoji, on, counts }
        }
        "edited" => {
            let (seq, json) = payload.split_once('\n')?;
            RoomEvent::Edited { seq: seq.parse().ok()?, json: json.to_string().into() }
        }
        "typing" => {
            let (author, frame) = payload.split_once('\n')?;
            RoomEvent::Typing { author: AuthorId::parse(author)?, frame: frame.to_string().into() }
        }
        "banned" => {
            let (author, until) = payload.split_once('\n')?;
            RoomEvent::Banned { author: AuthorId::parse(author)?, until: until.parse().ok()? }
        }
        "unbanned" => RoomEvent::Unbanned { author: AuthorId::parse(payload)? },
        "locked" => match payload {
            "1" => RoomEvent::Locked { locked: true },
            "0" => RoomEvent::Locked { locked: false },
            _ => return None,
        },
        "slow_mode" => RoomEvent::SlowMode { seconds: payload.parse().ok()? },
        "pinned" if payload.is_empty() => RoomEvent::Pinned { pinned: None },
        "pinned" => {
            let (seq, json) = payload.split_once('\n')?;
            RoomEvent::Pinned { pinned: Some((seq.parse().ok()?, json.to_string().into())) }
        }
        "presence" => RoomEvent::Presence,
        _ => return None,
    };
    Some(Envelope { pod, sent_at_ms, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_survives_the_wire() {
        let author = AuthorId::parse("0123456789abcdef").unwrap();
        let events = [
            RoomEvent::Message { seq: 7, json: r#"{"seq":7,"content":"two\nlines"}"#.into() },
            RoomEvent::Deleted { seq: 3 },
            RoomEvent::Hidden { seq: 4 },
            RoomEvent::Restored { seq: 4, json: r#"{"seq":4,"content":"x\ny"}"#.into() },
            RoomEvent::Typing { author: author.clone(), frame: r#"{"type":"typing"}"#.to_string().into() },
            RoomEvent::Reaction {
                seq: 9,
                author: author.clone(),
                emoji: Emoji::parse("❤️").unwrap(),
                on: true,
                counts: Reactions([2, 1, 0, 0, 0, 7]),
            },
            RoomEvent::Edited { seq: 9, json: r#"{"seq":9,"content":"fixed\ntext"}"#.into() },
            RoomEvent::Banned { author: author.clone(), until: 1_800_000_000_000 },
            RoomEvent::Unbanned { author },
            RoomEvent::Locked { locked: true },
            RoomEvent::Locked { locked: false },
            RoomEvent::SlowMode { seconds: 30 },
            RoomEvent::SlowMode { seconds: 0 },
            RoomEvent::Pinned { pinned: Some((5, r#"{"seq":5,"content":"a\nb"}"#.into())) },
            RoomEvent::Pinned { pinned: None },
            RoomEvent::Presence,
        ];
        for event in events {
            let decoded = decode(&encode("pod-a", 42, &event)).expect("decodes");
            assert_eq!(decoded, Envelope { pod: "pod-a".into(), sent_at_ms: 42, event });
        }
        assert!(decode("pod\nnot a number\nmessage\n1\n{}").is_none());
        assert!(decode("pod\n1\nunknown\n").is_none());
    }
}
