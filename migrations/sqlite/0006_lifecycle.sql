-- Lifecycle consequences (docs/protocol.md §21): deleting a message removes its mention
-- notifications, found by message; leaving or reading retires a user's notifications of a conversation.
CREATE INDEX notifications_message ON notifications (message_id);
CREATE INDEX notifications_user_conversation ON notifications (user_id, conversation_id);
