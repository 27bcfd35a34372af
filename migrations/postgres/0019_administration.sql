-- Server administration (docs/protocol.md §26) and the audit log's conversation targets (§28).

-- §26.3: a suspended account's sign-ins are refused until it is reactivated.
ALTER TABLE users ADD COLUMN suspended_at_ms BIGINT;

-- §26.8: an administrator's overrides of one account's limits; NULL: the server's value.
CREATE TABLE user_limits (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    media_quota_bytes BIGINT,
    max_pending_uploads INTEGER,
    messages_per_minute INTEGER
);

-- §26.7: nobody may read a quarantined media item; its bytes stay (evidence) and cannot be
-- uploaded again.
ALTER TABLE media ADD COLUMN quarantined_at_ms BIGINT;
ALTER TABLE blobs ADD COLUMN quarantined_at_ms BIGINT;

-- §26.6: a conversation an administrator deleted.
ALTER TABLE conversations ADD COLUMN deleted_at_ms BIGINT;

-- §28.1: what else an entry was on. Not in the hash of entries that leave them NULL, so entries
-- written before this migration verify as they did.
ALTER TABLE audit_log ADD COLUMN target_conversation_id BIGINT;
ALTER TABLE audit_log ADD COLUMN target_message_id BIGINT;
CREATE INDEX audit_log_conversation ON audit_log (target_conversation_id, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
