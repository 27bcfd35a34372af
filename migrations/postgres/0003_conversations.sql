-- Conversations, members, the per-conversation event log (gapless seq), current message state,
-- the per-user update log (gapless user_seq) and per-device acks.
CREATE TABLE conversations (
    id BIGSERIAL PRIMARY KEY,
    kind INTEGER NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    title_key TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    direct_key TEXT CONSTRAINT conversations_direct_key UNIQUE,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    head_seq BIGINT NOT NULL DEFAULT 0,
    last_activity_ms BIGINT NOT NULL,
    member_count INTEGER NOT NULL DEFAULT 0,
    last_message_id BIGINT
);
CREATE INDEX conversations_discover ON conversations (kind, title_key, id);

CREATE TABLE members (
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    role INTEGER NOT NULL,
    joined_at_ms BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE conversation_events (
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    seq BIGINT NOT NULL,
    kind INTEGER NOT NULL,
    actor_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    message_id BIGINT,
    text TEXT,
    user_ids TEXT,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    seq BIGINT NOT NULL,
    sender_id BIGINT NOT NULL REFERENCES users (id),
    session_id TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    text TEXT NOT NULL,
    reply_to BIGINT,
    mentions TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    edited_at_ms BIGINT,
    deleted_at_ms BIGINT,
    CONSTRAINT messages_idempotency UNIQUE (session_id, client_msg_id)
);
CREATE INDEX messages_conversation_seq ON messages (conversation_id, seq);

CREATE TABLE user_updates (
    user_id BIGINT NOT NULL REFERENCES users (id),
    user_seq BIGINT NOT NULL,
    kind INTEGER NOT NULL,
    conversation_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, user_seq)
);

ALTER TABLE users ADD COLUMN update_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE device_acks (
    session_id TEXT NOT NULL,
    conversation_id BIGINT NOT NULL,
    acked_seq BIGINT NOT NULL,
    PRIMARY KEY (session_id, conversation_id)
);
