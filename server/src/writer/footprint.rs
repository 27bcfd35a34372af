//! What a write may lock: the conversations, users and media whose rows it reads for update or
//! writes (rows keyed by a conversation include its members, messages, log and receipts). Two
//! batches with disjoint footprints share no row, so on PostgreSQL they run at once without
//! waiting for, or deadlocking on, each other, and each key still sees its writes in order.

use std::collections::HashSet;

use crate::store::{ConvId, MediaId, UserId, WriteOp};

/// One thing a write may lock.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Conversation(ConvId),
    User(UserId),
    Media(MediaId),
}

/// The keys of some writes; `exclusive` for a write whose rows are not known before it runs
/// (account deletion leaves every group of the account): it shares with nothing.
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    keys: HashSet<Key>,
    exclusive: bool,
}

impl Footprint {
    /// The footprint of one write.
    pub fn of(op: &WriteOp) -> Self {
        let mut f = Self::default();
        let conv = |f: &mut Self, c: ConvId| {
            f.keys.insert(Key::Conversation(c));
        };
        let user = |f: &mut Self, u: UserId| {
            f.keys.insert(Key::User(u));
        };
        match op {
            WriteOp::Create { creator, members, .. } => {
                user(&mut f, *creator);
                members.iter().for_each(|u| user(&mut f, *u));
            }
            WriteOp::Join { conversation_id, user: u, .. }
            | WriteOp::Leave { conversation_id, user: u, .. }
            | WriteOp::MarkRead { conversation_id, user: u, .. }
            | WriteOp::Ack { conversation_id, user: u, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *u);
            }
            WriteOp::AddMembers { conversation_id, actor, users, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *actor);
                users.iter().for_each(|u| user(&mut f, *u));
            }
            WriteOp::RemoveMember { conversation_id, actor, user: u, .. }
            | WriteOp::SetRole { conversation_id, actor, user: u, .. }
            | WriteOp::TransferOwnership { conversation_id, actor, user: u, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *actor);
                user(&mut f, *u);
            }
            WriteOp::Send { conversation_id, sender, mentions, attachments, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *sender);
                mentions.iter().for_each(|u| user(&mut f, *u));
                for a in attachments {
                    f.keys.insert(Key::Media(a.media_id.clone()));
                }
            }
            WriteOp::Edit { conversation_id, actor, .. }
            | WriteOp::Delete { conversation_id, actor, .. }
            | WriteOp::Update { conversation_id, actor, .. }
            | WriteOp::Pin { conversation_id, actor, .. }
            | WriteOp::React { conversation_id, actor, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *actor);
            }
            WriteOp::CallEnded { conversation_id, caller, missed_by, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *caller);
                missed_by.iter().for_each(|u| user(&mut f, *u));
            }
            WriteOp::ReportMessage { conversation_id, reporter, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, *reporter);
            }
            WriteOp::ResolveReport { conversation_id, sender, reporter, actor, .. } => {
                conv(&mut f, *conversation_id);
                [sender, reporter, actor].into_iter().for_each(|u| user(&mut f, *u));
            }
            WriteOp::DeleteAccount { user: u, .. } => {
                user(&mut f, *u);
                f.exclusive = true;
            }
            WriteOp::AdminDeleteMessage { conversation_id, by, .. } => {
                conv(&mut f, *conversation_id);
                user(&mut f, by.admin);
            }
            // Every member's row and log, and messages in conversations not known before it
            // runs: like account deletion, they share with nothing.
            WriteOp::AdminDeleteConversation { by, .. } | WriteOp::EraseMessages { by, .. } => {
                user(&mut f, by.admin);
                f.exclusive = true;
            }
        }
        f
    }

    /// Whether the two may lock a row in common.
    pub fn overlaps(&self, other: &Self) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        if self.exclusive || other.exclusive {
            return true;
        }
        let (small, large) = if self.keys.len() <= other.keys.len() { (self, other) } else { (other, self) };
        small.keys.iter().any(|k| large.keys.contains(k))
    }

    /// Adds `other`'s keys.
    pub fn extend(&mut self, other: &Self) {
        self.exclusive |= other.exclusive;
        self.keys.extend(other.keys.iter().cloned());
    }

    /// Nothing in it (no write).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && !self.exclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(conv: i64, sender: i64, mentions: &[i64]) -> WriteOp {
        WriteOp::Send {
            conversation_id: ConvId(conv),
            sender: UserId(sender),
            session_id: "s".into(),
            client_msg_id: "m".into(),
            text: "t".into(),
            reply_to: None,
            mentions: mentions.iter().map(|u| UserId(*u)).collect(),
            attachments: vec![],
            written_at_ms: 0,
            now_ms: 0,
        }
    }

    #[test]
    fn sends_in_other_conversations_by_other_users_share_nothing() {
        assert!(!Footprint::of(&send(1, 10, &[])).overlaps(&Footprint::of(&send(2, 20, &[]))));
    }

    #[test]
    fn a_shared_conversation_sender_or_mentioned_user_overlaps() {
        let a = Footprint::of(&send(1, 10, &[30]));
        assert!(a.overlaps(&Footprint::of(&send(1, 20, &[]))), "same conversation");
        assert!(a.overlaps(&Footprint::of(&send(2, 10, &[]))), "same sender (its client_msg_id)");
        assert!(a.overlaps(&Footprint::of(&send(2, 30, &[]))), "the mentioned user sends elsewhere");
        let join = WriteOp::Join { conversation_id: ConvId(5), user: UserId(30), now_ms: 0 };
        assert!(a.overlaps(&Footprint::of(&join)), "the mentioned user joins elsewhere");
    }

    #[test]
    fn an_administrators_conversation_deletion_and_erase_share_with_nothing() {
        let by = crate::store::AdminOrigin { admin: UserId(1), client_addr: String::new() };
        let conv = WriteOp::AdminDeleteConversation { conversation_id: ConvId(7), by: by.clone(), now_ms: 0 };
        let erase = WriteOp::EraseMessages { user: UserId(9), after: None, limit: 500, by: by.clone(), now_ms: 0 };
        for op in [conv, erase] {
            assert!(Footprint::of(&op).overlaps(&Footprint::of(&send(2, 20, &[]))), "{op:?}");
        }
        let msg = WriteOp::AdminDeleteMessage {
            conversation_id: ConvId(7),
            message_id: crate::store::MessageId(3),
            by,
            now_ms: 0,
        };
        assert!(Footprint::of(&msg).overlaps(&Footprint::of(&send(7, 20, &[]))));
        assert!(!Footprint::of(&msg).overlaps(&Footprint::of(&send(8, 20, &[]))));
    }

    #[test]
    fn account_deletion_overlaps_everything_and_an_empty_footprint_nothing() {
        let del = Footprint::of(&WriteOp::DeleteAccount { user: UserId(99), now_ms: 0, by: None });
        assert!(del.overlaps(&Footprint::of(&send(1, 10, &[]))));
        assert!(Footprint::of(&send(1, 10, &[])).overlaps(&del));
        assert!(!Footprint::default().overlaps(&del));
        let mut batch = Footprint::default();
        batch.extend(&Footprint::of(&send(1, 10, &[])));
        batch.extend(&Footprint::of(&send(2, 20, &[])));
        assert!(batch.overlaps(&Footprint::of(&send(2, 21, &[]))));
        assert!(!batch.overlaps(&Footprint::of(&send(3, 30, &[]))));
    }
}
