-- Rooms exist once they hold a message; last_seq is the per-room counter that seq comes from.
-- Updating it in the same transaction as the insert makes seq follow commit order on every pod.
CREATE TABLE rooms (
    id         TEXT   PRIMARY KEY,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- One row per stored message. A deleted message keeps its row (its seq and idempotency key stay
-- taken) with the content erased. Times are epoch milliseconds, as in the SQLite schema.
CREATE TABLE messages (
    room_id    TEXT   NOT NULL REFERENCES rooms (id),
    seq        BIGINT NOT NULL,
    author_id  TEXT   NOT NULL,
    nickname   TEXT   NOT NULL,
    avatar     TEXT   NOT NULL,
    content    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    client_id  TEXT   NOT NULL,
    deleted_at BIGINT,
    PRIMARY KEY (room_id, seq)
);

-- Idempotency across pods: one message per (room, author, clientId).
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, author_id, client_id);

CREATE TABLE bans (
    room_id    TEXT   NOT NULL,
    author_id  TEXT   NOT NULL,
    until      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, author_id)
);

-- Group commit in one round trip: stores a batch (parallel arrays, one element per send) and
-- returns for each its seq, its time and whether it is new (false: the same clientId was stored
-- before and its original seq is returned).
CREATE FUNCTION chat_append(
    p_room TEXT[], p_author TEXT[], p_nickname TEXT[], p_avatar TEXT[], p_content TEXT[], p_client TEXT[]
) RETURNS TABLE (ord INT, seq BIGINT, created_at BIGINT, fresh BOOLEAN)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ms   BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
    i        INT;
    old_seq  BIGINT;
    old_at   BIGINT;
    next_seq BIGINT;
BEGIN
    -- Rooms are created and their counters locked in id order, so pods committing batches that
    -- share rooms never wait on each other in a cycle.
    INSERT INTO rooms (id, last_seq, created_at)
        SELECT DISTINCT r, 0, now_ms FROM unnest(p_room) AS r ORDER BY r
        ON CONFLICT (id) DO NOTHING;
    PERFORM 1 FROM rooms WHERE id = ANY (p_room) ORDER BY id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_room, 1), 0) LOOP
        SELECT m.seq, m.created_at INTO old_seq, old_at FROM messages m
            WHERE m.room_id = p_room[i] AND m.author_id = p_author[i] AND m.client_id = p_client[i];
        IF FOUND THEN
            ord := i; seq := old_seq; created_at := old_at; fresh := false;
        ELSE
            UPDATE rooms SET last_seq = rooms.last_seq + 1 WHERE rooms.id = p_room[i]
                RETURNING rooms.last_seq INTO next_seq;
            INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id)
                VALUES (p_room[i], next_seq, p_author[i], p_nickname[i], p_avatar[i], p_content[i], now_ms, p_client[i]);
            ord := i; seq := next_seq; created_at := now_ms; fresh := true;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;
