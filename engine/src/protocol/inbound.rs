//! One client frame, from text to a checked request: the JSON decoding of `protocol::parse` and
//! every rule of `chat` that needs no room state. A refusal carries the contract's error code,
//! so the session only has to answer it.

use uuid::Uuid;

use super::{self as protocol, ClientFrame, ErrorCode, Parsed};
use crate::chat::{self, Emoji, Seq};

/// A client frame that passed every check a room does not need to make.
#[derive(Debug)]
pub enum Inbound {
    /// `watch`: the grant of a hello that asks to watch (checked by the session, which knows the key).
    Hello {
        anonymous_id: Uuid,
        nickname: String,
        avatar: String,
        last_seq: Option<Seq>,
        watch: Option<String>,
    },
    Send {
        client_id: String,
        content: String,
        reply_to: Option<Seq>,
    },
    React {
        seq: Seq,
        emoji: Emoji,
        on: bool,
    },
    Edit {
        seq: Seq,
        content: String,
    },
    Delete {
        seq: Seq,
    },
    Report {
        seq: Seq,
    },
    Typing,
    Rename {
        nickname: String,
        avatar: String,
    },
}

/// Why a frame was refused: the `error` frame the client gets.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// The send's clientId, when the frame carried one, so the client knows which send failed.
    pub client_id: Option<String>,
    /// The message a report, reaction or edit was about, so the client knows which one failed.
    pub seq: Option<Seq>,
}

fn refuse(code: ErrorCode, message: &str) -> Refusal {
    Refusal { code, message: message.to_string(), client_id: None, seq: None }
}

const AVATAR_RULE: &str = "avatar: at most 32 printable characters";
const EMOJI_RULE: &str = "emoji: one of 👍 ❤️ 😂 😮 😢 🙏";

/// The seq a report, reaction or edit names: 0 names no message ever (bad_frame); past
/// i64::MAX none can exist yet (not_found).
fn message_seq(seq: u64) -> Result<Seq, Refusal> {
    match Seq::try_from(seq) {
        Ok(0) => Err(Refusal { seq: Some(0), ..refuse(ErrorCode::BadFrame, "seq must be a positive integer") }),
        Ok(seq) => Ok(seq),
        Err(_) => Err(refuse(ErrorCode::NotFound, "no such message")),
    }
}

pub fn check(text: &str) -> Result<Inbound, Refusal> {
    let frame = match protocol::parse(text) {
        Parsed::Frame(frame) => frame,
        Parsed::Bad { reason, client_id, seq } => return Err(Refusal { code: ErrorCode::BadFrame, message: reason, client_id, seq }),
    };
    match frame {
        ClientFrame::Hello { anonymous_id, nickname, avatar, last_seq, watch, grant } => {
            let anonymous_id = chat::anonymous_id(&anonymous_id)
                .ok_or_else(|| refuse(ErrorCode::BadFrame, "anonymousId must be a random UUID (version 4)"))?;
            let nickname = chat::nickname(&nickname).ok_or_else(|| refuse(ErrorCode::InvalidNickname, chat::NICKNAME_RULE))?;
            let avatar = chat::avatar(avatar.as_deref()).ok_or_else(|| refuse(ErrorCode::BadFrame, AVATAR_RULE))?;
            // A lastSeq past every seq there can be asks for nothing missed.
            let last_seq = last_seq.map(|s| Seq::try_from(s).unwrap_or(Seq::MAX));
            let watch = watch.then(|| grant.unwrap_or_default());
            Ok(Inbound::Hello { anonymous_id, nickname, avatar, last_seq, watch })
        }
        ClientFrame::Send { client_id, content, reply_to } => {
            if Uuid::parse_str(&client_id).is_err() {
                return Err(Refusal { client_id: Some(client_id), ..refuse(ErrorCode::BadFrame, "clientId must be a UUID") });
            }
            let reply_to = match reply_to.map(Seq::try_from) {
                None => None,
                Some(Ok(0)) => {
                    return Err(Refusal { client_id: Some(client_id), ..refuse(ErrorCode::BadFrame, "replyTo must be a positive integer") })
                }
                Some(Ok(seq)) => Some(seq),
                // Past every seq there can be: no such message.
                Some(Err(_)) => return Err(Refusal { client_id: Some(client_id), ..refuse(ErrorCode::NotFound, "no such message") }),
            };
            match chat::content(&content) {
                Some(content) => Ok(Inbound::Send { client_id, content, reply_to }),
                None => Err(Refusal { client_id: Some(client_id), ..refuse(ErrorCode::InvalidContent, "content: 1 to 2000 characters") }),
            }
        }
        ClientFrame::React { seq, emoji, on } => {
            let seq = message_seq(seq)?;
            let emoji = Emoji::parse(&emoji).ok_or_else(|| Refusal { seq: Some(seq), ..refuse(ErrorCode::BadFrame, EMOJI_RULE) })?;
            Ok(Inbound::React { seq, emoji, on })
        }
        ClientFrame::Edit { seq, content } => {
            let seq = message_seq(seq)?;
            match chat::content(&content) {
                Some(content) => Ok(Inbound::Edit { seq, content }),
                None => Err(Refusal { seq: Some(seq), ..refuse(ErrorCode::InvalidContent, "content: 1 to 2000 characters") }),
            }
        }
        // No message has a seq past i64::MAX.
        ClientFrame::Delete { seq } => {
            Seq::try_from(seq).map(|seq| Inbound::Delete { seq }).map_err(|_| refuse(ErrorCode::NotFound, "no such message"))
        }
        ClientFrame::Report { seq } => message_seq(seq).map(|seq| Inbound::Report { seq }),
        ClientFrame::Typing {} => Ok(Inbound::Typing),
        ClientFrame::Rename { nickname, avatar } => {
            let nickname = chat::nickname(&nickname).ok_or_else(|| refuse(ErrorCode::InvalidNickname, chat::NICKNAME_RULE))?;
            let avatar = chat::avatar(avatar.as_deref()).ok_or_else(|| refuse(ErrorCode::BadFrame, AVATAR_RULE))?;
            Ok(Inbound::Rename { nickname, avatar })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;

    /// The codes a frame can be refused with; each is one of the contract's (`ErrorCode::ALL`).
    const FRAME_CODES: [ErrorCode; 4] = [ErrorCode::BadFrame, ErrorCode::InvalidNickname, ErrorCode::InvalidContent, ErrorCode::NotFound];

    /// Strings that break one rule or another, mixed with arbitrary ones.
    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z가-힣 ]{0,20}",
            "[\\x00-\\x1f\u{200b}-\u{200f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{3164}\u{0300}-\u{036f}a-c]{0,18}",
            Just(uuid::Uuid::new_v4().to_string()),
            Just("00000000-0000-0000-0000-000000000000".to_string()),
            Just("x".repeat(2001)),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            tricky_string().prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Objects shaped like client frames: a known or unknown type, known fields with any values.
    fn frame_like() -> impl Strategy<Value = Value> {
        let kind = prop_oneof![
            Just(json!("hello")),
            Just(json!("send")),
            Just(json!("delete")),
            Just(json!("report")),
            Just(json!("react")),
            Just(json!("edit")),
            Just(json!("typing")),
            Just(json!("rename")),
            json_value(),
        ];
        let field = prop::sample::select(vec![
            "anonymousId",
            "nickname",
            "avatar",
            "lastSeq",
            "clientId",
            "content",
            "seq",
            "replyTo",
            "emoji",
            "on",
            "extra",
        ]);
        (kind, prop::collection::vec((field, json_value()), 0..6)).prop_map(|(kind, fields)| {
            let mut frame = Map::new();
            frame.insert("type".into(), kind);
            for (name, value) in fields {
                frame.insert(name.into(), value);
            }
            Value::Object(frame)
        })
    }

    fn holds_up(text: &str) -> Result<(), TestCaseError> {
        match check(text) {
            Err(refusal) => {
                prop_assert!(FRAME_CODES.contains(&refusal.code), "{:?}", refusal.code);
                prop_assert!(ErrorCode::ALL.contains(&refusal.code));
                prop_assert!(!refusal.message.is_empty());
            }
            Ok(Inbound::Hello { anonymous_id, nickname, avatar, .. }) => {
                prop_assert_eq!(anonymous_id.get_version_num(), 4);
                prop_assert_eq!(chat::nickname(&nickname), Some(nickname.clone()));
                prop_assert_eq!(chat::avatar(Some(&avatar)), Some(avatar.clone()));
            }
            Ok(Inbound::Send { client_id, content, reply_to }) => {
                prop_assert!(Uuid::parse_str(&client_id).is_ok());
                prop_assert_eq!(chat::content(&content), Some(content.clone()));
                prop_assert!(reply_to.is_none_or(|seq| seq >= 1));
            }
            Ok(Inbound::React { seq, .. }) => prop_assert!(seq >= 1),
            Ok(Inbound::Edit { seq, content }) => {
                prop_assert!(seq >= 1);
                prop_assert_eq!(chat::content(&content), Some(content.clone()));
            }
            Ok(Inbound::Rename { nickname, .. }) => prop_assert_eq!(chat::nickname(&nickname), Some(nickname.clone())),
            Ok(Inbound::Delete { seq }) => prop_assert!(seq >= 0),
            Ok(Inbound::Report { seq }) => prop_assert!(seq >= 1),
            Ok(Inbound::Typing) => {}
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_is_checked_or_refused_with_a_contract_code(text in any::<String>()) {
            holds_up(&text)?;
        }

        #[test]
        fn any_frame_like_object_is_checked_or_refused_with_a_contract_code(frame in frame_like()) {
            holds_up(&frame.to_string())?;
        }

        #[test]
        fn a_refused_send_names_its_client_id(client_id in tricky_string(), content in tricky_string()) {
            let text = json!({"type": "send", "clientId": client_id, "content": content}).to_string();
            if let Err(refusal) = check(&text) {
                prop_assert_eq!(refusal.client_id, Some(client_id));
            }
        }
    }

    #[test]
    fn each_rule_has_its_code() {
        let id = uuid::Uuid::new_v4().to_string();
        let code = |frame: Value| check(&frame.to_string()).err().map(|r| r.code);
        assert_eq!(code(json!({"type": "hello", "anonymousId": id, "nickname": "수달"})), None);
        assert_eq!(code(json!({"type": "hello", "anonymousId": "x", "nickname": "수달"})), Some(ErrorCode::BadFrame));
        assert_eq!(code(json!({"type": "hello", "anonymousId": id, "nickname": "\u{202e}ab"})), Some(ErrorCode::InvalidNickname));
        assert_eq!(code(json!({"type": "send", "clientId": id, "content": " "})), Some(ErrorCode::InvalidContent));
        assert_eq!(code(json!({"type": "delete", "seq": u64::MAX})), Some(ErrorCode::NotFound));
        assert_eq!(code(json!({"type": "report", "seq": 57})), None);
        for bad in [json!(0), json!(-1), json!(1.5), json!("57"), json!(null)] {
            assert_eq!(code(json!({"type": "report", "seq": bad})), Some(ErrorCode::BadFrame), "{bad}");
        }
        assert_eq!(code(json!({"type": "dance"})), Some(ErrorCode::BadFrame));
    }

    #[test]
    fn reactions_edits_and_replies_have_their_rules() {
        let id = uuid::Uuid::new_v4().to_string();
        let refusal = |frame: Value| check(&frame.to_string()).err().map(|r| (r.code, r.seq, r.client_id));
        assert_eq!(refusal(json!({"type": "react", "seq": 5, "emoji": "👍", "on": true})), None);
        assert_eq!(refusal(json!({"type": "react", "seq": 5, "emoji": "❤️", "on": false})), None);
        for emoji in [json!("❤"), json!("🦦"), json!(""), json!(1)] {
            assert_eq!(refusal(json!({"type": "react", "seq": 5, "emoji": emoji, "on": true})), Some((ErrorCode::BadFrame, Some(5), None)));
        }
        assert_eq!(
            refusal(json!({"type": "react", "seq": 5, "emoji": "👍"})),
            Some((ErrorCode::BadFrame, Some(5), None)),
            "on is required"
        );
        assert_eq!(refusal(json!({"type": "react", "seq": 0, "emoji": "👍", "on": true})), Some((ErrorCode::BadFrame, Some(0), None)));
        assert_eq!(refusal(json!({"type": "edit", "seq": 5, "content": "fixed"})), None);
        assert_eq!(refusal(json!({"type": "edit", "seq": 5, "content": "  "})), Some((ErrorCode::InvalidContent, Some(5), None)));
        assert_eq!(refusal(json!({"type": "edit", "seq": u64::MAX, "content": "x"})).map(|r| r.0), Some(ErrorCode::NotFound));
        assert_eq!(refusal(json!({"type": "send", "clientId": id, "content": "hi", "replyTo": 41})), None);
        for bad in [json!(0), json!(-1), json!(1.5), json!("41")] {
            assert_eq!(
                refusal(json!({"type": "send", "clientId": id, "content": "hi", "replyTo": bad})),
                Some((ErrorCode::BadFrame, None, Some(id.clone()))),
                "{bad}"
            );
        }
    }
}
