//! The audit log's vocabulary (migration 0018, docs/operations.md "Audit log"): the actions
//! recorded, an entry to append, a stored entry with its chain link, and what checking the
//! chain finds. The chain's arithmetic is `crypto::chain`; each entry's canonical bytes are here.

use super::conv_types::{ConvId, MessageId};
use super::conv_types::{UnknownValue, numbered};
use super::types::UserId;
use crate::crypto::chain::{self, Canonical, HASH_BYTES};

/// What an audit entry records (stored as these numbers; never renumbered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A session opened by a password, a code, or a registration (§11.2-§11.4).
    SignIn = 1,
    /// A password or code that did not match (the target is the login name as folded).
    SignInFailed = 2,
    /// §11.8, by the account itself.
    PasswordChanged = 3,
    /// §11.9, with a code.
    PasswordReset = 4,
    /// `confab-server admin grant`.
    AdminGranted = 5,
    /// `confab-server admin revoke`.
    AdminRevoked = 6,
    /// §11.7 Logout: the account ended its session (the target).
    LoggedOut = 7,
    /// §11.7 RevokeSession: the account ended another of its sessions (the target).
    SessionRevoked = 8,
    /// §11.6: a spent refresh token was presented again; its session (the target) is revoked.
    RefreshReused = 9,
    /// §26.3: an administrator suspended the account; `after` carries the reason.
    AccountSuspended = 10,
    /// §26.3: an administrator lifted the suspension.
    AccountReactivated = 11,
    /// §26.5: an administrator ended every session of the account.
    SessionsRevoked = 12,
    /// §11.11 or §26.4: the account was deleted (by itself, or an administrator).
    AccountDeleted = 13,
    /// §26.4: the account was deleted and its messages erased.
    AccountErased = 14,
    /// A message deleted by someone other than its sender (a moderator, §13.3, or an
    /// administrator, §26.6).
    MessageDeleted = 15,
    /// §26.6: an administrator deleted a conversation.
    ConversationDeleted = 16,
    /// §26.7: an administrator quarantined a media item (the target).
    MediaQuarantined = 17,
    /// §26.8: an administrator changed a user's limits (`before` and `after`).
    LimitsChanged = 18,
    /// §27.3: a report (the target) was resolved.
    ReportResolved = 19,
    /// §12: a member's role changed (`before` and `after`).
    RoleChanged = 20,
    /// §12: a conversation's ownership passed to the target user.
    OwnershipTransferred = 21,
    /// §12: a member was removed by someone else.
    MemberRemoved = 22,
    /// `confab-server keys`: an encryption key was rotated (the target names it).
    KeyRotated = 23,
    /// §26.2, §28.3: an administrator read other users' data (the target names the request).
    AdminViewed = 24,
}

numbered!(
    AuditAction,
    "audit action",
    [
        SignIn,
        SignInFailed,
        PasswordChanged,
        PasswordReset,
        AdminGranted,
        AdminRevoked,
        LoggedOut,
        SessionRevoked,
        RefreshReused,
        AccountSuspended,
        AccountReactivated,
        SessionsRevoked,
        AccountDeleted,
        AccountErased,
        MessageDeleted,
        ConversationDeleted,
        MediaQuarantined,
        LimitsChanged,
        ReportResolved,
        RoleChanged,
        OwnershipTransferred,
        MemberRemoved,
        KeyRotated,
        AdminViewed
    ]
);

impl AuditAction {
    /// The action as one word (the command line's output, the docs' table).
    pub fn name(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in_failed",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::AdminGranted => "admin_granted",
            Self::AdminRevoked => "admin_revoked",
            Self::LoggedOut => "logged_out",
            Self::SessionRevoked => "session_revoked",
            Self::RefreshReused => "refresh_reused",
            Self::AccountSuspended => "account_suspended",
            Self::AccountReactivated => "account_reactivated",
            Self::SessionsRevoked => "sessions_revoked",
            Self::AccountDeleted => "account_deleted",
            Self::AccountErased => "account_erased",
            Self::MessageDeleted => "message_deleted",
            Self::ConversationDeleted => "conversation_deleted",
            Self::MediaQuarantined => "media_quarantined",
            Self::LimitsChanged => "limits_changed",
            Self::ReportResolved => "report_resolved",
            Self::RoleChanged => "role_changed",
            Self::OwnershipTransferred => "ownership_transferred",
            Self::MemberRemoved => "member_removed",
            Self::KeyRotated => "key_rotated",
            Self::AdminViewed => "admin_viewed",
        }
    }

    /// The actions a user reads as their own security events (§28.4).
    pub const SECURITY: [AuditAction; 8] = [
        Self::SignIn,
        Self::SignInFailed,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::LoggedOut,
        Self::SessionRevoked,
        Self::RefreshReused,
        Self::SessionsRevoked,
    ];

    /// Every action, in number order.
    pub fn all() -> impl Iterator<Item = AuditAction> {
        (1..=24).filter_map(|n| Self::try_from(n).ok())
    }
}

/// An entry to append; the store gives it its seq and chain link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAudit {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who acted; `None` for the operator's command line or the server itself.
    pub actor: Option<UserId>,
    pub action: AuditAction,
    pub target_user: Option<UserId>,
    /// The conversation and message the action was on (migration 0019).
    pub target_conversation: Option<ConvId>,
    pub target_message: Option<MessageId>,
    /// What else the action was on: a session id, a folded login name.
    pub target: String,
    /// Small JSON of the state before and after, where the action has one; else empty.
    pub before: String,
    pub after: String,
    /// The client's IP address, `cli` for the command line; empty when unknown.
    pub client_addr: String,
}

impl NewAudit {
    /// An entry of `action` at `at_ms` with no actor, target or address yet.
    pub fn new(action: AuditAction, at_ms: i64) -> Self {
        Self {
            at_ms,
            actor: None,
            action,
            target_user: None,
            target_conversation: None,
            target_message: None,
            target: String::new(),
            before: String::new(),
            after: String::new(),
            client_addr: String::new(),
        }
    }

    /// The bytes its hash covers, at `seq`: every stored field but the hashes. The conversation
    /// and message come last and only when either is set, so an entry without them encodes as
    /// entries did before migration 0019.
    pub fn canonical(&self, seq: i64) -> Vec<u8> {
        let c = Canonical::default()
            .int(seq)
            .int(self.at_ms)
            .opt(self.actor.map(|u| u.0))
            .int(i64::from(i32::from(self.action)))
            .opt(self.target_user.map(|u| u.0))
            .text(&self.target)
            .text(&self.before)
            .text(&self.after)
            .text(&self.client_addr);
        if self.target_conversation.is_none() && self.target_message.is_none() {
            return c.bytes();
        }
        c.opt(self.target_conversation.map(|c| c.0)).opt(self.target_message.map(|m| m.0)).bytes()
    }
}

/// Which entries a page of the log holds (§28.3); `None` and empty do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<UserId>,
    pub target_user: Option<UserId>,
    pub target_conversation: Option<ConvId>,
    pub actions: Vec<AuditAction>,
    /// Entries at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// Entries with a seq below this.
    pub before_seq: Option<i64>,
}

/// A stored entry with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRec {
    pub seq: i64,
    pub entry: NewAudit,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The chain's head: the last entry's seq (0 before any) and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: [u8; HASH_BYTES],
}

/// Where and how a chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The entry's fields are not what its hash covers: it was changed.
    #[error("entry {seq} was altered (its hash does not match its fields)")]
    Altered { seq: i64 },
    /// The entry's link to the one before does not match: an entry before it was removed,
    /// inserted or rewritten.
    #[error("entry {seq} does not follow the entry before it")]
    Unlinked { seq: i64 },
    /// A seq is missing.
    #[error("entry {expected} is missing (the next is {found})")]
    Missing { expected: i64, found: i64 },
    /// The last entry is not the head the database records: entries were cut from the end, or
    /// the head was changed.
    #[error("the chain ends at entry {last} but its head is entry {head}")]
    Head { last: i64, head: i64 },
}

impl ChainBreak {
    /// The first entry that is not as the chain says (every entry before it checked intact).
    pub fn first_bad(&self) -> i64 {
        match self {
            Self::Altered { seq } | Self::Unlinked { seq } => *seq,
            Self::Missing { expected, .. } => *expected,
            Self::Head { last, .. } => last + 1,
        }
    }
}

/// What checking the whole chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries checked intact (up to the break, when there is one).
    pub entries: u64,
    pub head: AuditHead,
    pub broken: Option<ChainBreak>,
}

/// Checks entries in seq order after the link `prev` (seq, hash): each follows the one before,
/// and its hash covers its fields. Returns the new link.
pub fn check_links(
    mut prev: (i64, [u8; HASH_BYTES]),
    recs: &[AuditRec],
) -> Result<(i64, [u8; HASH_BYTES]), ChainBreak> {
    for r in recs {
        if r.seq != prev.0 + 1 {
            return Err(ChainBreak::Missing { expected: prev.0 + 1, found: r.seq });
        }
        if r.prev_hash != prev.1 {
            return Err(ChainBreak::Unlinked { seq: r.seq });
        }
        let hash = chain::link(&prev.1, &r.entry.canonical(r.seq));
        if r.hash != hash {
            return Err(ChainBreak::Altered { seq: r.seq });
        }
        prev = (r.seq, hash);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::chain::GENESIS;

    fn chain_of(n: i64) -> Vec<AuditRec> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut entry = NewAudit::new(AuditAction::SignIn, 1_000 + seq);
                entry.target_user = Some(UserId(seq));
                let hash = chain::link(&prev, &entry.canonical(seq));
                let r = AuditRec { seq, entry, prev_hash: prev.to_vec(), hash: hash.to_vec() };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn a_chain_checks_and_each_kind_of_tampering_is_named() {
        let recs = chain_of(4);
        let end = check_links((0, GENESIS), &recs).expect("intact");
        assert_eq!(end.0, 4);
        let mut altered = recs.clone();
        altered[1].entry.client_addr = "10.0.0.1".into();
        assert_eq!(check_links((0, GENESIS), &altered), Err(ChainBreak::Altered { seq: 2 }));
        let mut removed = recs.clone();
        removed.remove(2);
        assert_eq!(check_links((0, GENESIS), &removed), Err(ChainBreak::Missing { expected: 3, found: 4 }));
        // Removed and renumbered: the link to the entry before gives it away.
        let mut renumbered = removed.clone();
        renumbered[2].seq = 3;
        assert_eq!(check_links((0, GENESIS), &renumbered), Err(ChainBreak::Unlinked { seq: 3 }));
        // Rehashing an altered entry alone breaks the next one's link.
        let mut rehashed = recs.clone();
        rehashed[1].entry.after = "{}".into();
        rehashed[1].hash = chain::link(&hash_of(&recs[0]), &rehashed[1].entry.canonical(2)).to_vec();
        assert_eq!(check_links((0, GENESIS), &rehashed), Err(ChainBreak::Unlinked { seq: 3 }));
    }

    fn hash_of(r: &AuditRec) -> [u8; HASH_BYTES] {
        r.hash.clone().try_into().expect("32 bytes")
    }

    #[test]
    fn actions_keep_their_numbers() {
        for (a, n) in [(AuditAction::SignIn, 1), (AuditAction::SignInFailed, 2), (AuditAction::AdminRevoked, 6)] {
            assert_eq!(i32::from(a), n);
            assert_eq!(AuditAction::try_from(n), Ok(a));
        }
    }
}
