-- When the sender wrote a message, by the sender's clock as the server clamped it
-- (docs/protocol.md §13.2: SendMessage.written_at_ms, at most created_at_ms and at least 24 h
-- before it). 0 when the sender did not say, and for every message stored before this column.
ALTER TABLE messages ADD COLUMN written_at_ms INTEGER NOT NULL DEFAULT 0;
