-- Receipts (delivered/read watermarks), privacy, last seen, contacts, blocks, notifications.
ALTER TABLE members ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_updates ADD COLUMN seq INTEGER;
ALTER TABLE users ADD COLUMN read_receipts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN show_last_seen INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN last_seen_at_ms INTEGER;

CREATE TABLE contacts (
    user_id INTEGER NOT NULL REFERENCES users (id),
    contact_id INTEGER NOT NULL REFERENCES users (id),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX contacts_reverse ON contacts (contact_id);

CREATE TABLE blocks (
    user_id INTEGER NOT NULL REFERENCES users (id),
    blocked_id INTEGER NOT NULL REFERENCES users (id),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    kind INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    message_id INTEGER,
    actor_id INTEGER NOT NULL,
    role INTEGER,
    created_at_ms INTEGER NOT NULL,
    read_flag INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX notifications_user ON notifications (user_id, id);
