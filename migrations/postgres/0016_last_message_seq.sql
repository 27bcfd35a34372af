-- A conversation's last message is named by its seq, which the statement taking a run of sends'
-- seqs knows, so that statement writes it too (one statement less per batch of sends; issue 20).
-- It replaces last_message_id, which needed the messages' ids, known only after their insert.
ALTER TABLE conversations ADD COLUMN last_message_seq BIGINT;
UPDATE conversations c SET last_message_seq = m.seq FROM messages m WHERE m.id = c.last_message_id;
ALTER TABLE conversations DROP COLUMN last_message_id;
