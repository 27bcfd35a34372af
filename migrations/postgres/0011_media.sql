-- Media (docs/protocol.md §22): stored blobs (content-addressed: one row per stored copy of some
-- bytes; the id, random, is the generation in the blob's key), media items and their thumbnails,
-- unfinished uploads, the attachments messages carry, avatars, and the leases that let one node
-- at a time run a cluster-wide job (the media collector).
CREATE TABLE blobs (
    id BIGINT PRIMARY KEY,
    sha256 BYTEA NOT NULL CONSTRAINT blobs_sha256 UNIQUE,
    size BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE media (
    id TEXT PRIMARY KEY,
    uploader_id BIGINT NOT NULL REFERENCES users (id),
    purpose BIGINT NOT NULL,
    mime_type TEXT NOT NULL,
    file_name TEXT NOT NULL DEFAULT '',
    blob_id BIGINT NOT NULL REFERENCES blobs (id),
    size BIGINT NOT NULL,
    sha256 BYTEA NOT NULL,
    width BIGINT NOT NULL DEFAULT 0,
    height BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX media_uploader ON media (uploader_id);
CREATE INDEX media_blob ON media (blob_id);
CREATE INDEX media_created ON media (created_at_ms);

CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    blob_id BIGINT NOT NULL REFERENCES blobs (id),
    mime_type TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (media_id, name)
);
CREATE INDEX media_thumbnails_blob ON media_thumbnails (blob_id);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    size BIGINT NOT NULL,
    mime_type TEXT NOT NULL,
    sha256 BYTEA,
    purpose BIGINT NOT NULL,
    file_name TEXT NOT NULL DEFAULT '',
    chunk_size BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    -- Set by FinishUpload: a retried FinishUpload answers with the same media item.
    media_id TEXT,
    -- While a FinishUpload runs (a lease: a crashed one lapses): no chunk is accepted, no second
    -- FinishUpload starts.
    finishing_until_ms BIGINT
);
CREATE INDEX uploads_user ON uploads (user_id);
CREATE INDEX uploads_expiry ON uploads (expires_at_ms);

CREATE TABLE message_attachments (
    message_id BIGINT NOT NULL REFERENCES messages (id),
    position BIGINT NOT NULL,
    media_id TEXT NOT NULL REFERENCES media (id),
    file_name TEXT NOT NULL,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_attachments_media ON message_attachments (media_id);

ALTER TABLE users ADD COLUMN avatar_ref TEXT NOT NULL DEFAULT '';
CREATE INDEX users_avatar ON users (avatar_ref) WHERE avatar_ref <> '';
CREATE INDEX conversations_photo ON conversations (photo_ref) WHERE photo_ref <> '';

CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
