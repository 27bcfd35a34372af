-- §13.2: SendMessage is idempotent per (sender, client_msg_id) instead of per session, so a
-- client's outbox survives a new sign-in. Keys written before this were chosen per session (1-64
-- bytes): a later duplicate under the new key is re-keyed to a marker, its session and its old key
-- (at least 80 bytes: no old key, at most 64 bytes, and no new key, a UUID, can equal it; unique
-- because (session, key) was), so the new unique index holds.
CREATE INDEX messages_sender_key_scratch ON messages (sender_id, client_msg_id);
UPDATE messages SET client_msg_id = 'legacy-key-from-before-per-sender-idempotency:' || session_id || ':' || client_msg_id
WHERE EXISTS (
    SELECT 1 FROM messages o
    WHERE o.sender_id = messages.sender_id AND o.client_msg_id = messages.client_msg_id AND o.id < messages.id
);
DROP INDEX messages_sender_key_scratch;
CREATE UNIQUE INDEX messages_sender_idempotency ON messages (sender_id, client_msg_id);
-- SQLite cannot drop the inline per-session constraint without rebuilding the table; it is
-- implied by the new index (a session belongs to one sender) and stays.
