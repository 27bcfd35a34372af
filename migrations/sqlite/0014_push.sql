-- Push notifications (docs/protocol.md §24): the targets devices register, the users' settings,
-- the ledger of deliveries (one row per target and log entry or call invite, so a retry never
-- makes a second notification), and how far the planner has read each conversation's log.

CREATE TABLE push_targets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    session_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    token TEXT NOT NULL,
    app_id TEXT NOT NULL DEFAULT '',
    voip INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    -- Set when the provider said the token is gone; never used again.
    disabled_at_ms INTEGER,
    disabled_reason TEXT NOT NULL DEFAULT '',
    -- Set once the device was told (PushTargetInvalidated).
    told_at_ms INTEGER,
    CONSTRAINT push_targets_token UNIQUE (provider, token)
);
CREATE INDEX push_targets_user ON push_targets (user_id);
CREATE INDEX push_targets_session ON push_targets (session_id);

-- conversation_id 0: the account's own settings; level: store::PushLevel numbers.
CREATE TABLE push_settings (
    user_id INTEGER NOT NULL REFERENCES users (id),
    conversation_id INTEGER NOT NULL,
    level INTEGER NOT NULL,
    preview INTEGER NOT NULL DEFAULT 0,
    until_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
);

-- state: queued, sent, failed, dropped, expired (store::DeliveryState). seq 0 with a call_id:
-- a call invite; call_id '' with a seq: a log entry.
CREATE TABLE push_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    target_id INTEGER NOT NULL REFERENCES push_targets (id),
    session_id TEXT NOT NULL,
    conversation_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    kind INTEGER NOT NULL,
    sender_id INTEGER NOT NULL,
    message_id INTEGER,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_status INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '',
    provider_ref TEXT,
    receipt_pending INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    due_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER,
    lease_holder TEXT,
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT push_deliveries_once UNIQUE (target_id, conversation_id, seq, call_id)
);
CREATE INDEX push_deliveries_due ON push_deliveries (due_at_ms) WHERE state = 'queued';
CREATE INDEX push_deliveries_receipts ON push_deliveries (sent_at_ms) WHERE receipt_pending = 1 AND state = 'sent';
CREATE INDEX push_deliveries_user ON push_deliveries (user_id, id);

-- The planner reads a conversation's members with push targets: spans by conversation.
CREATE INDEX membership_spans_conversation ON membership_spans (conversation_id, until_seq);

-- How far the planner has read each conversation's log. Conversations that exist now start at
-- their head: nothing written before push existed is pushed.
CREATE TABLE push_progress (
    conversation_id INTEGER PRIMARY KEY,
    planned_seq INTEGER NOT NULL
);
INSERT INTO push_progress (conversation_id, planned_seq) SELECT id, head_seq FROM conversations;
