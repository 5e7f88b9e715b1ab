-- Retention (--retention-days) deletes the oldest messages of every room in small batches; this
-- index finds them without reading the whole table.
CREATE INDEX messages_created_at ON messages (created_at);
