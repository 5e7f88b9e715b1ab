-- chat_append, cheaper: each room's counter row is read once and written once per batch (the
-- batch holds each room's sends together), instead of an UPDATE per message that rewrote the same
-- row again and again. Same contract as 0001: parallel arrays in, (ord, seq, created_at, fresh)
-- out, rooms locked in id order.
CREATE OR REPLACE FUNCTION chat_append(
    p_room TEXT[], p_author TEXT[], p_nickname TEXT[], p_avatar TEXT[], p_content TEXT[], p_client TEXT[]
) RETURNS TABLE (ord INT, seq BIGINT, created_at BIGINT, fresh BOOLEAN)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ms   BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
    i        INT;
    old_seq  BIGINT;
    old_at   BIGINT;
    cur_room TEXT := NULL;
    cur_seq  BIGINT;
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
        SELECT m.seq, m.created_at INTO old_seq, old_at FROM messages m
            WHERE m.room_id = p_room[i] AND m.author_id = p_author[i] AND m.client_id = p_client[i];
        IF FOUND THEN
            ord := i; seq := old_seq; created_at := old_at; fresh := false;
        ELSE
            cur_seq := cur_seq + 1;
            INSERT INTO messages (room_id, seq, author_id, nickname, avatar, content, created_at, client_id)
                VALUES (p_room[i], cur_seq, p_author[i], p_nickname[i], p_avatar[i], p_content[i], now_ms, p_client[i]);
            ord := i; seq := cur_seq; created_at := now_ms; fresh := true;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF cur_room IS NOT NULL THEN
        UPDATE rooms SET last_seq = cur_seq WHERE rooms.id = cur_room;
    END IF;
END $$;
