-- A room locked read-only (locked_at: when, epoch ms; NULL: open) and its pinned message (a seq of
-- the room; cleared when that message is deleted). A room locked before its first message gets
-- its row then.
ALTER TABLE rooms ADD COLUMN locked_at BIGINT;
ALTER TABLE rooms ADD COLUMN pinned_seq BIGINT;

-- The admin API lists one author's recent messages across rooms.
CREATE INDEX messages_by_author ON messages (author_id, created_at);
