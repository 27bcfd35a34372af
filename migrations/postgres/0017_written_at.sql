-- When the sender wrote a message, by the sender's clock as the server clamped it
-- (docs/protocol.md §13.2: SendMessage.written_at_ms, no later than created_at_ms and no earlier
-- than created_at_ms - 24 h). 0 when the sender did not say, and for every message stored before this column.
ALTER TABLE messages ADD COLUMN written_at_ms BIGINT NOT NULL DEFAULT 0;
