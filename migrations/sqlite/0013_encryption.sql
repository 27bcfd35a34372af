-- Encryption at rest (docs/operations.md "Encryption at rest"): whether this database is
-- encrypted and the data-key generation new contents are sealed under, the data keys (each
-- wrapped by a key-encryption key the operator holds; scope `c<conversation id>`, `media` or
-- `search`), the progress of the re-encryption job, which data key seals each blob and whether
-- an upload's chunks are sealed, and the blind search index (FTS5 over keyed-hash tokens).
CREATE TABLE encryption (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    enabled_at_ms INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    rotated_at_ms INTEGER NOT NULL
);

CREATE TABLE data_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    period INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    CONSTRAINT data_keys_slot UNIQUE (scope, period, generation)
);
CREATE INDEX data_keys_kek ON data_keys (kek_id);

-- One row per table the job walks: rows with a key below `cursor` are done for `generation`.
CREATE TABLE encryption_jobs (
    name TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    cursor TEXT NOT NULL,
    rewritten INTEGER NOT NULL,
    finished_at_ms INTEGER
);

ALTER TABLE blobs ADD COLUMN key_id INTEGER;
-- The generation in the object's name when the re-encryption job wrote a sealed copy under a
-- new one (NULL: the object is named with `id`).
ALTER TABLE blobs ADD COLUMN stored_as INTEGER;
CREATE INDEX blobs_stored_as ON blobs (stored_as) WHERE stored_as IS NOT NULL;
ALTER TABLE uploads ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;

CREATE VIRTUAL TABLE search_blind USING fts5 (
    body,
    tokenize = 'ascii',
    content = '',
    contentless_delete = 1
);
