-- Group-call rooms across nodes (docs/protocol.md §20.3, docs/operations.md "Several nodes"): the
-- node holding each conversation's SFU room, until when (its lease, renewed while the room lives),
-- and a fencing token that grows whenever another node takes the room over.
CREATE TABLE call_rooms (
    conversation_id BIGINT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    fencing BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX call_rooms_node ON call_rooms (node);
