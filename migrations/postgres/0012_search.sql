-- Message search (docs/protocol.md §23): who could see which part of each conversation's history
-- (membership spans, kept by the write path and built here from the logs), the search documents
-- (one per live message: its folded words, written by the indexer), and how far the indexer has
-- read each conversation's log. pg_trgm is a trusted extension (PostgreSQL 13+): the database's
-- owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- A member sees the messages with from_seq < seq <= until_seq (until_seq NULL: still a member).
CREATE TABLE membership_spans (
    user_id BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL,
    from_seq BIGINT NOT NULL,
    until_seq BIGINT,
    PRIMARY KEY (user_id, conversation_id, from_seq)
);
CREATE INDEX membership_spans_open ON membership_spans (conversation_id, user_id) WHERE until_seq IS NULL;

-- Spans of the history so far: each ConversationCreated (its creator), MembersAdded, MemberJoined
-- opens one, ended by the user's next MemberLeft or MemberRemoved (kinds: store::LogBody::kind).
INSERT INTO membership_spans (user_id, conversation_id, from_seq, until_seq)
SELECT user_id, conversation_id, seq, next_seq
FROM (
    SELECT user_id, conversation_id, seq, opens,
           LEAD(seq) OVER (PARTITION BY conversation_id, user_id ORDER BY seq) AS next_seq
    FROM (
        SELECT actor_id AS user_id, conversation_id, seq, TRUE AS opens FROM conversation_events WHERE kind = 1
        UNION ALL
        SELECT CAST(u AS BIGINT), conversation_id, seq, TRUE
        FROM conversation_events, unnest(string_to_array(user_ids, ',')) AS u WHERE kind = 5 AND user_ids <> ''
        UNION ALL
        SELECT CAST(user_ids AS BIGINT), conversation_id, seq, kind = 6 FROM conversation_events WHERE kind IN (6, 7, 8)
    ) marks
) ordered
WHERE opens
ON CONFLICT DO NOTHING;

-- The spans agree with `members`, whatever older data holds: an open span only for a member, and
-- one for every member (from the head on, when the logs gave none).
UPDATE membership_spans SET until_seq = (SELECT c.head_seq FROM conversations c WHERE c.id = membership_spans.conversation_id)
WHERE until_seq IS NULL AND NOT EXISTS (
    SELECT 1 FROM members m WHERE m.conversation_id = membership_spans.conversation_id AND m.user_id = membership_spans.user_id);
INSERT INTO membership_spans (user_id, conversation_id, from_seq)
SELECT m.user_id, m.conversation_id, c.head_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
WHERE NOT EXISTS (
    SELECT 1 FROM membership_spans s WHERE s.user_id = m.user_id AND s.conversation_id = m.conversation_id AND s.until_seq IS NULL)
ON CONFLICT DO NOTHING;

-- One row per live message the indexer has read: `body` is its text folded for search (lower
-- case, no accents, words separated by single spaces, a space at each end; search::normalize).
CREATE TABLE search_docs (
    message_id BIGINT PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    sent_at_ms BIGINT NOT NULL,
    has_attachment BOOLEAN NOT NULL,
    body TEXT NOT NULL
);
-- Substrings (LIKE '%…%'): trigrams, for rare needles; the caller's conversations, the newest
-- first (a common word is found walking back in time), and a sender's messages.
CREATE INDEX search_docs_trgm ON search_docs USING gin (body gin_trgm_ops);
CREATE INDEX search_docs_conversation ON search_docs (conversation_id, seq);
CREATE INDEX search_docs_time ON search_docs (sent_at_ms);
CREATE INDEX search_docs_sender ON search_docs (sender_id, sent_at_ms);

CREATE TABLE search_progress (
    conversation_id BIGINT PRIMARY KEY,
    indexed_seq BIGINT NOT NULL
);
