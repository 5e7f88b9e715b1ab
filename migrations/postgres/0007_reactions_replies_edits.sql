-- Replies and edits: reply_to is the seq of the message this one answers (same room; no foreign
-- key, since the original may be pruned first and then reads as gone); edited_at: when its author
-- last changed its content (epoch ms; NULL: never).
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;

-- Readers' reactions: one row per reader, message and emoji, so a reader counts once per emoji.
-- Deleting a message removes its reactions; pruning it removes them with it.
CREATE TABLE reactions (
    room_id    TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    author_id  TEXT   NOT NULL,
    emoji      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq, author_id, emoji),
    FOREIGN KEY (room_id, seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
);

-- chat_append with replies: p_reply holds the seq each send answers (0: none). A reply to a
-- message that does not exist, or is deleted or hidden, is not stored (reply_missing); the
-- original's author, nickname and first 100 characters come back for the reply's quote, read in
-- the same transaction. Otherwise as 0002.
DROP FUNCTION chat_append(TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[]);
CREATE FUNCTION chat_append(
    p_room TEXT[], p_author TEXT[], p_nickname TEXT[], p_avatar TEXT[], p_content TEXT[], p_client TEXT[], p_reply BIGINT[]
) RETURNS TABLE (
    ord INT, seq BIGINT, created_at BIGINT, fresh BOOLEAN,
    reply_author TEXT, reply_nickname TEXT, reply_excerpt TEXT, reply_missing BOOLEAN
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ms   BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
    i        INT;
    old_seq  BIGINT;
    old_at   BIGINT;
    cur_room TEXT := NULL;
    cur_seq  BIGINT;
    q_author TEXT;
    q_nick   TEXT;
    q_text   TEXT;
BEGIN
    INSERT INTO rooms (id, last_seq, created_at)
        SELECT DISTINCT r, 0, now_ms FROM unnest(p_room) AS r ORDER BY r
        ON CONFLICT (id) DO NOTHING;
    PERFORM 1 FROM rooms WHERE id = ANY (p_room) ORDER BY id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_room, 1), 0) LOOP
        IF cur_room IS DISTINCT FROM p_room[i] THEN
            IF cur_room IS NOT NULL THEN
                UPDATE rooms SET last_seq = cur_seq WHERE rooms.id = cur_room;
            END IF;
            cur_room := p_room[i];
            SELECT rooms.last_seq INTO cur_seq FROM rooms WHERE rooms.id = cur_room;
        END IF;
        q_author := NULL; q_nick := NULL; q_text := NULL;
        IF p_reply[i] > 0 THEN
            SELECT m.author_id, m.nickname, substr(m.content, 1, 100) INTO q_author, q_nick, q_text FROM messages m
                WHERE m.room_id = p_room[i] AND m.seq = p_reply[i] AND m.deleted_at IS NULL AND m.hidden_at IS NULL;
        END IF;
        reply_author := q_author; reply_nickname := q_nick; reply_excerpt := q_text; reply_missing := false;
        SELECT m.seq, m.created_at INTO old_seq, old_at FROM messages m
            WHERE m.room_id = p_room[i] AND m.author_id = p_author[i] AND m.client_id = p_client[i];
        IF FOUND THEN
            ord := i; seq := old_seq; created_at := old_at; fresh := false;
        ELSIF p_reply[i] > 0 AND q_author IS NULL THEN
            ord := i; seq := 0; created_at := 0; fresh := false; reply_missing := true;
        ELSE
            cur_seq := cur_seq + 1;
            INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id, reply_to)
                VALUES (p_room[i], cur_seq, p_author[i], p_nickname[i], p_avatar[i], p_content[i], now_ms, p_client[i],
                        NULLIF(p_reply[i], 0));
            ord := i; seq := cur_seq; created_at := now_ms; fresh := true;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF cur_room IS NOT NULL THEN
        UPDATE rooms SET last_seq = cur_seq WHERE rooms.id = cur_room;
    END IF;
END $$;
