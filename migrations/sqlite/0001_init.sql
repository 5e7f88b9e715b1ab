-- Rooms exist once they hold a message; last_seq is the per-room counter that seq comes from.
CREATE TABLE rooms (
    id         TEXT    PRIMARY KEY NOT NULL,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- One row per stored message. A deleted message keeps its row (its seq and idempotency key stay
-- taken) with the content erased.
CREATE TABLE messages (
    room_id    TEXT    NOT NULL REFERENCES rooms (id),
    seq        INTEGER NOT NULL,
    author_id  TEXT    NOT NULL,
    nickname   TEXT    NOT NULL,
    avatar     TEXT    NOT NULL,
    content    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    client_id  TEXT    NOT NULL,
    deleted_at INTEGER,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;

-- Idempotency: one message per (room, author, clientId), whichever connection sent it.
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, author_id, client_id);

-- Timed bans per room, keyed by the public authorId.
CREATE TABLE bans (
    room_id    TEXT    NOT NULL,
    author_id  TEXT    NOT NULL,
    until      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, author_id)
) WITHOUT ROWID;
