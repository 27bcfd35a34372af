-- §12.7, §18: search keys are written by the server with Unicode case folding (NFC, then full
-- case folding), the same on both stores; SQLite's LOWER() folds only ASCII. Display names get a
-- key; titles are re-keyed (their keys were lower-cased, not folded). An empty key with a
-- non-empty name is filled in by the server at start (Store::refold_keys) before it serves.
ALTER TABLE users ADD COLUMN display_name_key TEXT NOT NULL DEFAULT '';
UPDATE conversations SET title_key = '' WHERE title <> '';
-- The rows still to be keyed, found at each start without scanning the tables.
CREATE INDEX users_unkeyed ON users (id) WHERE display_name_key = '' AND display_name <> '';
CREATE INDEX conversations_unkeyed ON conversations (id) WHERE title_key = '' AND title <> '';
