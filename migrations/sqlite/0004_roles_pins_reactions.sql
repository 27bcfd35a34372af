-- Conversation settings, structured log entry data, pins and reactions.
ALTER TABLE conversations ADD COLUMN photo_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN announcement_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversation_events ADD COLUMN data TEXT;

CREATE TABLE pins (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    message_id INTEGER NOT NULL REFERENCES messages (id),
    pinned_by INTEGER NOT NULL,
    pinned_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);

CREATE TABLE reactions (
    message_id INTEGER NOT NULL REFERENCES messages (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    emoji TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);
