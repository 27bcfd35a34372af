-- The audit log (docs/operations.md "Audit log"): an append-only record of security- and
-- moderation-relevant actions. Each row carries the SHA-256 of its own canonical encoding with
-- the previous row's hash in it (server/src/store/audit_types.rs), so an altered, removed or
-- inserted row breaks the chain (`confab-server audit verify`). Ids are not foreign keys: rows
-- outlive what they name.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    -- NULL: the operator's command line or the server itself.
    actor_id BIGINT,
    action INTEGER NOT NULL,
    target_user_id BIGINT,
    -- A session id, a folded login name, a media id: what the action was on besides a user.
    target TEXT NOT NULL DEFAULT '',
    -- Small JSON of the state before and after, where the action has one.
    before TEXT NOT NULL DEFAULT '',
    after TEXT NOT NULL DEFAULT '',
    client_addr TEXT NOT NULL DEFAULT '',
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_target_user ON audit_log (target_user_id, seq);

-- The chain's head, one row: appending takes it (`UPDATE … RETURNING`), which on PostgreSQL
-- locks it until commit, so appends from several nodes form one line. A transaction takes it
-- last, just before it commits.
CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Server administrators (`confab-server admin grant USER`).
ALTER TABLE users ADD COLUMN server_admin INTEGER NOT NULL DEFAULT 0;
