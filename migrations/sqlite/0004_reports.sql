-- Readers' reports. A message reported by enough distinct readers (--auto-hide-reports) is hidden
-- (hidden_at: when, epoch ms): left out of history and resume like a deleted one, but its content
-- stays for the owner to judge. kept_at: the owner dismissed its reports, so later reports queue it
-- again but never hide it.
ALTER TABLE messages ADD COLUMN hidden_at INTEGER;
ALTER TABLE messages ADD COLUMN kept_at INTEGER;

-- One row per reader and message: a reader's report counts once. Open reports are the rows left;
-- dismissing or deleting the message removes them, pruning it removes them with it.
CREATE TABLE reports (
    room_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    reporter_id TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, seq, reporter_id),
    FOREIGN KEY (room_id, seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
) WITHOUT ROWID;
