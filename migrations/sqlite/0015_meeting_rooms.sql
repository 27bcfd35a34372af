-- Meeting rooms (docs/protocol.md §25): group calls that belong to no conversation, their
-- moderators, the invites guests come through (the tokens are signed, never stored), and bars.

CREATE TABLE meeting_rooms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users (id),
    max_publishers INTEGER NOT NULL DEFAULT 0,
    max_participants INTEGER NOT NULL DEFAULT 0,
    empty_timeout_ms INTEGER NOT NULL DEFAULT 0,
    -- 0: never.
    expires_at_ms INTEGER NOT NULL DEFAULT 0,
    lobby INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    -- Since when nobody has been in the room; NULL while someone is.
    empty_since_ms INTEGER,
    closed_at_ms INTEGER,
    close_reason INTEGER
);
CREATE INDEX meeting_rooms_owner ON meeting_rooms (owner_id);
CREATE INDEX meeting_rooms_open ON meeting_rooms (closed_at_ms);

CREATE TABLE meeting_room_moderators (
    room_id TEXT NOT NULL REFERENCES meeting_rooms (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX meeting_room_moderators_user ON meeting_room_moderators (user_id);

CREATE TABLE meeting_room_invites (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES meeting_rooms (id),
    role INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    -- 0: unlimited.
    max_uses INTEGER NOT NULL DEFAULT 0,
    uses INTEGER NOT NULL DEFAULT 0,
    created_by INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX meeting_room_invites_room ON meeting_room_invites (room_id);

-- kind: user (subject: the user id), guest (the guest id) or invite (the invite id).
CREATE TABLE meeting_room_bars (
    room_id TEXT NOT NULL REFERENCES meeting_rooms (id),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (room_id, kind, subject)
);
