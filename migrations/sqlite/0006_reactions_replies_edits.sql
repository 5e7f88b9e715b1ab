-- Replies and edits: reply_to is the seq of the message this one answers (same room; no foreign
-- key, since the original may be pruned first and then reads as gone); edited_at: when its author
-- last changed its content (epoch ms; NULL: never).
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;

-- Readers' reactions: one row per reader, message and emoji, so a reader counts once per emoji.
-- Deleting a message removes its reactions; pruning it removes them with it.
CREATE TABLE reactions (
    room_id    TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    author_id  TEXT    NOT NULL,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, seq, author_id, emoji),
    FOREIGN KEY (room_id, seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
) WITHOUT ROWID;
