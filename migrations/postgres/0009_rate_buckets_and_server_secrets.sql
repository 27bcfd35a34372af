-- State every node sharing this database must see the same (several servers on one PostgreSQL).
--
-- Token buckets of the account rate limits (login, registration, one-time codes): one row per
-- limit and key, holding the theoretical arrival time (Unix µs) at which the bucket is full again
-- (server/src/ratelimit.rs, Gcra). Taking a token is one INSERT … ON CONFLICT DO UPDATE, so takers
-- on several nodes never share the last token. Keys (IP addresses, account names, phone numbers)
-- are stored only as keyed hashes. A row whose tat_us has passed is a full bucket: it carries
-- nothing and is swept.
CREATE TABLE rate_buckets (
    kind TEXT NOT NULL,
    key_hash BYTEA NOT NULL,
    tat_us BIGINT NOT NULL,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX rate_buckets_tat ON rate_buckets (tat_us);

-- Named key material generated once for the whole deployment (the access-token signing key, the
-- one-time code secret): the first node to start inserts it, every node reads what is there.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);
