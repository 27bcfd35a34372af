//! The client algorithm of docs/protocol.md §14.6: per-conversation cursors, entries applied
//! only at `cursor + 1`, duplicates ignored, gaps filled by Sync, the user log likewise.
//!
//! Cursors may start at a conversation's head from ListConversations (the client shows the
//! latest page of GetHistory instead of replaying the log, as §14.3 allows); from there every
//! entry is applied exactly once, in order.

use std::collections::BTreeMap;

use confab_protocol::v1::{self, user_update};

/// What to do with a live entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// Apply it: it was exactly the next one.
    Apply,
    /// Already applied (at-least-once delivery): ignore it.
    Duplicate,
    /// Entries are missing before it: catch up with Sync.
    Gap,
}

/// One conversation's position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub member: bool,
    /// The highest seq acknowledged to the server.
    pub acked: u64,
}

/// The answer to one Sync, applied.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// The database changed: local state was dropped; bootstrap again.
    pub reset: bool,
    /// Sync again: more entries wait.
    pub more: bool,
    pub user_updates: Vec<v1::UserUpdate>,
    pub entries: Vec<v1::ConversationEvent>,
}

/// The sync state of one account on this device.
#[derive(Clone, Debug, Default)]
pub struct SyncState {
    pub epoch: i64,
    pub user_seq: u64,
    pub convs: BTreeMap<u64, Cursor>,
}

impl SyncState {
    /// Starts a conversation at `head` (its earlier entries come from GetHistory).
    pub fn seed(&mut self, conversation_id: u64, head: u64) {
        let c = self.convs.entry(conversation_id).or_default();
        c.member = true;
        if head > c.seq {
            c.seq = head;
            c.acked = head;
        }
    }

    pub fn cursor(&self, conversation_id: u64) -> u64 {
        self.convs.get(&conversation_id).map_or(0, |c| c.seq)
    }

    /// The Sync request for the current cursors (every conversation known, member or not).
    pub fn request(&self, limit_per_conversation: u32) -> v1::Sync {
        v1::Sync {
            epoch: self.epoch,
            user_seq: self.user_seq,
            conversations: self
                .convs
                .iter()
                .map(|(id, c)| v1::SyncCursor { conversation_id: *id, seq: c.seq })
                .collect(),
            limit_per_conversation,
        }
    }

    /// Applies a Sync answer (§14.6 step 2) and returns what was applied, in order.
    pub fn apply_sync(&mut self, r: v1::SyncResult) -> SyncOutcome {
        let mut out = SyncOutcome::default();
        if r.resync_required {
            *self = SyncState { epoch: r.epoch, ..Default::default() };
            out.reset = true;
            return out;
        }
        self.epoch = r.epoch;
        out.more = r.has_more_updates;
        for u in r.user_updates {
            if self.live_update(&u) == Live::Apply {
                self.apply_update(&u);
                out.user_updates.push(u);
            } else if u.user_seq > self.user_seq {
                // A hole inside one answer would be a server bug; stop here and sync again.
                out.more = true;
                break;
            }
        }
        for d in r.conversations {
            let mut stopped = false;
            for e in d.events {
                match self.live_event(&e) {
                    Live::Apply => {
                        self.advance(&e);
                        out.entries.push(e);
                    }
                    Live::Duplicate => {}
                    Live::Gap => {
                        stopped = true;
                        break;
                    }
                }
            }
            out.more |= d.has_more || stopped;
        }
        out
    }

    /// Classifies a live conversation entry (§14.6 step 3).
    pub fn live_event(&self, e: &v1::ConversationEvent) -> Live {
        let cursor = self.cursor(e.conversation_id);
        if e.seq <= cursor {
            Live::Duplicate
        } else if e.seq == cursor + 1 {
            Live::Apply
        } else {
            Live::Gap
        }
    }

    /// Moves the cursor past an entry classified [`Live::Apply`].
    pub fn advance(&mut self, e: &v1::ConversationEvent) {
        let c = self.convs.entry(e.conversation_id).or_default();
        debug_assert_eq!(e.seq, c.seq + 1);
        c.seq = e.seq;
    }

    /// Classifies a live user-log entry (§14.6 step 4).
    pub fn live_update(&self, u: &v1::UserUpdate) -> Live {
        if u.user_seq <= self.user_seq {
            Live::Duplicate
        } else if u.user_seq == self.user_seq + 1 {
            Live::Apply
        } else {
            Live::Gap
        }
    }

    /// Applies a user-log entry classified [`Live::Apply`] (§14.6 step 2b).
    pub fn apply_update(&mut self, u: &v1::UserUpdate) {
        self.user_seq = u.user_seq;
        match &u.body {
            Some(user_update::Body::AddedToConversation(a)) => {
                self.convs.entry(a.conversation_id).or_default().member = true;
            }
            Some(user_update::Body::RemovedFromConversation(r)) => {
                if let Some(c) = self.convs.get_mut(&r.conversation_id) {
                    c.member = false;
                }
            }
            _ => {}
        }
    }

    /// Conversations whose cursor moved past what was acknowledged; marks them acknowledged.
    pub fn take_acks(&mut self) -> Vec<(u64, u64)> {
        let mut acks = Vec::new();
        for (id, c) in &mut self.convs {
            if c.member && c.seq > c.acked {
                c.acked = c.seq;
                acks.push((*id, c.seq));
            }
        }
        acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::v1::conversation_event::Body;

    fn entry(conv: u64, seq: u64) -> v1::ConversationEvent {
        v1::ConversationEvent {
            conversation_id: conv,
            seq,
            body: Some(Body::MessagePosted(v1::Message { seq, text: format!("m{seq}"), ..Default::default() })),
            ..Default::default()
        }
    }

    #[test]
    fn live_entries_apply_in_order_once() {
        let mut s = SyncState::default();
        s.seed(1, 3);
        assert_eq!(s.live_event(&entry(1, 3)), Live::Duplicate);
        assert_eq!(s.live_event(&entry(1, 5)), Live::Gap);
        assert_eq!(s.live_event(&entry(1, 4)), Live::Apply);
        s.advance(&entry(1, 4));
        assert_eq!(s.cursor(1), 4);
        assert_eq!(s.live_event(&entry(1, 4)), Live::Duplicate);
        assert_eq!(s.take_acks(), vec![(1, 4)]);
        assert!(s.take_acks().is_empty());
    }

    #[test]
    fn sync_applies_contiguous_entries_and_skips_known_ones() {
        let mut s = SyncState::default();
        s.seed(1, 2);
        let r = v1::SyncResult {
            epoch: 9,
            user_seq: 1,
            user_updates: vec![v1::UserUpdate {
                user_seq: 1,
                body: Some(user_update::Body::AddedToConversation(v1::AddedToConversation { conversation_id: 2 })),
                ..Default::default()
            }],
            conversations: vec![
                v1::ConversationDiff {
                    conversation_id: 1,
                    head_seq: 4,
                    events: vec![entry(1, 2), entry(1, 3), entry(1, 4)],
                    has_more: false,
                },
                v1::ConversationDiff { conversation_id: 2, head_seq: 9, events: vec![entry(2, 1)], has_more: true },
            ],
            ..Default::default()
        };
        let out = s.apply_sync(r);
        assert!(!out.reset);
        assert!(out.more, "conversation 2 has more");
        let seqs: Vec<_> = out.entries.iter().map(|e| (e.conversation_id, e.seq)).collect();
        assert_eq!(seqs, vec![(1, 3), (1, 4), (2, 1)]);
        assert_eq!((s.epoch, s.user_seq, s.cursor(1), s.cursor(2)), (9, 1, 4, 1));
        assert!(s.convs[&2].member);
    }

    #[test]
    fn resync_required_drops_everything() {
        let mut s = SyncState::default();
        s.seed(1, 5);
        s.epoch = 3;
        let out = s.apply_sync(v1::SyncResult { epoch: 4, resync_required: true, ..Default::default() });
        assert!(out.reset);
        assert_eq!((s.epoch, s.convs.len()), (4, 0));
    }

    #[test]
    fn user_log_gaps_are_detected() {
        let mut s = SyncState { user_seq: 2, ..Default::default() };
        let u = |n| v1::UserUpdate { user_seq: n, ..Default::default() };
        assert_eq!(s.live_update(&u(2)), Live::Duplicate);
        assert_eq!(s.live_update(&u(4)), Live::Gap);
        assert_eq!(s.live_update(&u(3)), Live::Apply);
        s.apply_update(&u(3));
        assert_eq!(s.user_seq, 3);
    }
}
