-- Media (docs/protocol.md §22): stored blobs (content-addressed: one row per stored copy of some
-- bytes; the id, random, is the generation in the blob's key), media items and their thumbnails,
-- unfinished uploads, the attachments messages carry, avatars, and the leases that let one node
-- at a time run a cluster-wide job (the media collector).
CREATE TABLE blobs (
    id INTEGER PRIMARY KEY,
    sha256 BLOB NOT NULL CONSTRAINT blobs_sha256 UNIQUE,
    size INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE media (
    id TEXT PRIMARY KEY,
    uploader_id INTEGER NOT NULL REFERENCES users (id),
    purpose INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    file_name TEXT NOT NULL DEFAULT '',
    blob_id INTEGER NOT NULL REFERENCES blobs (id),
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX media_uploader ON media (uploader_id);
CREATE INDEX media_blob ON media (blob_id);
CREATE INDEX media_created ON media (created_at_ms);

CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    blob_id INTEGER NOT NULL REFERENCES blobs (id),
    mime_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (media_id, name)
);
CREATE INDEX media_thumbnails_blob ON media_thumbnails (blob_id);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    size INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    sha256 BLOB,
    purpose INTEGER NOT NULL,
    file_name TEXT NOT NULL DEFAULT '',
    chunk_size INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    -- Set by FinishUpload: a retried FinishUpload answers with the same media item.
    media_id TEXT,
    -- While a FinishUpload runs (a lease: a crashed one lapses): no chunk is accepted, no second
    -- FinishUpload starts.
    finishing_until_ms INTEGER
);
CREATE INDEX uploads_user ON uploads (user_id);
CREATE INDEX uploads_expiry ON uploads (expires_at_ms);

CREATE TABLE message_attachments (
    message_id INTEGER NOT NULL REFERENCES messages (id),
    position INTEGER NOT NULL,
    media_id TEXT NOT NULL REFERENCES media (id),
    file_name TEXT NOT NULL,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_attachments_media ON message_attachments (media_id);

ALTER TABLE users ADD COLUMN avatar_ref TEXT NOT NULL DEFAULT '';
CREATE INDEX users_avatar ON users (avatar_ref) WHERE avatar_ref <> '';
CREATE INDEX conversations_photo ON conversations (photo_ref) WHERE photo_ref <> '';

CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
