//! Error codes and close codes: each code of the contract with what it means on HTTP (status)
//! and, where it ends a connection, on a socket (close code), so no other module picks numbers.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidRoomId,
    BadFrame,
    HelloRequired,
    InvalidNickname,
    InvalidContent,
    RateLimited,
    TooManyConnections,
    Banned,
    RoomLocked,
    Spam,
    NotFound,
    Forbidden,
    EditExpired,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidRoomId,
        ErrorCode::BadFrame,
        ErrorCode::HelloRequired,
        ErrorCode::InvalidNickname,
        ErrorCode::InvalidContent,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::Banned,
        ErrorCode::RoomLocked,
        ErrorCode::Spam,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::EditExpired,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidRoomId => "invalid_room_id",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::InvalidNickname => "invalid_nickname",
            ErrorCode::InvalidContent => "invalid_content",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Banned => "banned",
            ErrorCode::RoomLocked => "room_locked",
            ErrorCode::Spam => "spam",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::EditExpired => "edit_expired",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl ErrorCode {
    /// The HTTP status an answer with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidRoomId | ErrorCode::BadFrame | ErrorCode::HelloRequired => 400,
            ErrorCode::InvalidNickname | ErrorCode::InvalidContent => 400,
            // Content the spam rules refuse: well-formed, but not accepted.
            ErrorCode::Spam => 422,
            ErrorCode::Forbidden | ErrorCode::Banned | ErrorCode::EditExpired => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::RoomLocked => 409,
            ErrorCode::RateLimited | ErrorCode::TooManyConnections => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The close code of a socket this error ends (after the `error` frame), for the errors that
    /// end one.
    pub fn close_code(self) -> CloseCode {
        match self {
            ErrorCode::Banned | ErrorCode::Forbidden | ErrorCode::HelloRequired | ErrorCode::RateLimited => CloseCode::Policy,
            ErrorCode::TooManyConnections => CloseCode::TryAgainLater,
            ErrorCode::Unavailable | ErrorCode::Internal => CloseCode::Internal,
            _ => CloseCode::Policy,
        }
    }

    /// The text readers see when nothing more specific is said.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad request",
            ErrorCode::InvalidRoomId => "roomId: 1 to 128 characters from A-Z a-z 0-9 . _ -",
            ErrorCode::BadFrame => "frames are JSON objects of the protocol",
            ErrorCode::HelloRequired => "send hello first",
            ErrorCode::InvalidNickname => "nickname: 2 to 15 characters, no control characters",
            ErrorCode::InvalidContent => "content: 1 to 2000 characters",
            ErrorCode::RateLimited => "too many requests; slow down",
            ErrorCode::TooManyConnections => "too many connections from your address",
            ErrorCode::Banned => "you are banned from this room",
            ErrorCode::RoomLocked => "this discussion is closed",
            ErrorCode::Spam => "refused as spam",
            ErrorCode::NotFound => "not found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::EditExpired => "edit_expired",
            ErrorCode::Unavailable => "message store unavailable; try again",
            ErrorCode::Internal => "internal error",
        }
    }
}

/// WebSocket close codes the engine sends (RFC 6455 section 7.4.1 and the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The pod is going away (drain); the client reconnects.
    GoingAway,
    /// The client broke RFC 6455 (unmasked frame, reserved bits, unknown opcode, bad close code).
    ProtocolError,
    /// A text frame that is not UTF-8.
    InvalidData,
    /// Policy: no hello in time, banned, flooding.
    Policy,
    /// A frame over 16 KiB.
    TooBig,
    /// The engine could not go on (store unavailable at join, the room stopped).
    Internal,
    /// The reader cannot keep up; it resumes with `lastSeq`.
    TryAgainLater,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidData => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::TryAgainLater => 1013,
        }
    }
}
