-- Per-room slow mode set by the owner: one message per reader every slow_mode_s seconds (0: off).
ALTER TABLE rooms ADD COLUMN slow_mode_s INTEGER NOT NULL DEFAULT 0;
