-- Accounts, sessions (one per device), refresh tokens (hashes only) and one-time codes.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL CONSTRAINT users_username_key UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    email TEXT,
    email_key TEXT CONSTRAINT users_email_key UNIQUE,
    phone TEXT CONSTRAINT users_phone_key UNIQUE,
    password_hash TEXT,
    status_text TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    device_name TEXT NOT NULL,
    client_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    revoked_reason INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at_ms IS NULL;

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE auth_codes (
    purpose INTEGER NOT NULL,
    destination TEXT NOT NULL,
    code_hash BYTEA NOT NULL,
    user_id BIGINT REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    consumed_at_ms BIGINT,
    PRIMARY KEY (purpose, destination)
);
