-- §13.2: SendMessage is idempotent per (sender, client_msg_id) instead of per session, so a
-- client's outbox survives a new sign-in. Keys written before this were chosen per session: a
-- later duplicate under the new key gets its session prefixed (it can never equal a new key,
-- which must be a UUID), so the new unique index holds.
UPDATE messages SET client_msg_id = session_id || ':' || client_msg_id
WHERE EXISTS (
    SELECT 1 FROM messages o
    WHERE o.sender_id = messages.sender_id AND o.client_msg_id = messages.client_msg_id AND o.id < messages.id
);
CREATE UNIQUE INDEX messages_sender_idempotency ON messages (sender_id, client_msg_id);
-- The per-session constraint is now implied (a session belongs to one sender) and only costs writes.
ALTER TABLE messages DROP CONSTRAINT messages_idempotency;
