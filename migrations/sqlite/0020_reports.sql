-- Reports of messages (docs/protocol.md §27): a member reports a message; the conversation's
-- moderators and the server's administrators list and resolve reports. Ids are not foreign
-- keys: a report is evidence and outlives the message, the conversation and the accounts it names.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    reporter_id INTEGER NOT NULL,
    -- The reported message's sender.
    sender_id INTEGER NOT NULL,
    -- ReportReason (1 spam, 2 abuse, 3 illegal, 4 other).
    reason INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    -- ReportState (1 open, 2 resolved).
    state INTEGER NOT NULL DEFAULT 1,
    resolved_by INTEGER,
    resolved_at_ms INTEGER,
    -- ReportAction (1 dismiss, 2 delete the message, 3 remove the sender); NULL while open.
    action INTEGER,
    resolution_note TEXT NOT NULL DEFAULT '',
    -- §27.1: reporting the same message again answers the same report.
    CONSTRAINT reports_once UNIQUE (reporter_id, message_id)
);
-- ListReports (§27.3): one conversation's, or every conversation's, by state, newest first.
CREATE INDEX reports_conversation ON reports (conversation_id, state, id);
CREATE INDEX reports_state ON reports (state, id);

-- §19: REPORTED and REPORT_RESOLVED notifications name their report and, once resolved, the action.
ALTER TABLE notifications ADD COLUMN report_id INTEGER;
ALTER TABLE notifications ADD COLUMN report_action INTEGER;
