//! What a server administrator may delete through the writer (docs/protocol.md §26.4, §26.6),
//! and which members' actions the audit log records (§28.1): plain functions over facts read in
//! the write's transaction. The gate (`admin::Admin::acting`) checked the flag before the
//! request was read; these rules check it again where the change is made, so an administrator
//! whose flag was revoked in between changes nothing and learns nothing.

use super::{Effect, MessageFacts};
use crate::store::conv_types::OpError;

/// The refusal for a caller who is not (or no longer) a server administrator: the same
/// `NOT_FOUND` the gate gives everyone else (§26.1).
const NOT_ADMIN: OpError = OpError::NotFound("not found");

/// §26.1: the actor is a live server administrator (`is_admin`, read in the transaction).
pub fn acting(is_admin: bool) -> Result<(), OpError> {
    if is_admin { Ok(()) } else { Err(NOT_ADMIN) }
}

/// §26.6 AdminDeleteMessage: any message of any live conversation (`conv_live`: it exists and
/// was not deleted by an administrator), whether or not the administrator is a member; a
/// message deleted already changes nothing.
pub fn delete_message(is_admin: bool, conv_live: bool, message: Option<MessageFacts>) -> Result<Effect, OpError> {
    acting(is_admin)?;
    if !conv_live {
        return Err(OpError::NotFound("no such conversation"));
    }
    match message {
        None => Err(OpError::NotFound("no such message")),
        Some(m) if m.deleted => Ok(Effect::Unchanged),
        Some(_) => Ok(Effect::Change),
    }
}

/// §26.6 AdminDeleteConversation: any live conversation.
pub fn delete_conversation(is_admin: bool, conv_live: bool) -> Result<(), OpError> {
    acting(is_admin)?;
    if conv_live { Ok(()) } else { Err(OpError::NotFound("no such conversation")) }
}

/// An account as an administrator's write finds it: `None` when there is none, else whether it
/// is deleted.
pub type AccountFacts = Option<bool>;

/// §26.4 AdminDeleteUser: a live account other than the administrator's own (`is_self`).
pub fn delete_user(is_admin: bool, account: AccountFacts, is_self: bool) -> Result<(), OpError> {
    acting(is_admin)?;
    if is_self {
        return Err(OpError::FailedPrecondition("an administrator cannot delete their own account"));
    }
    match account {
        Some(false) => Ok(()),
        _ => Err(OpError::NotFound("no such user")),
    }
}

/// §26.4 erase: the messages of an account deleted already (the deletion comes first, so the
/// account sends nothing more while its messages go).
pub fn erase_messages(is_admin: bool, account: AccountFacts) -> Result<(), OpError> {
    acting(is_admin)?;
    match account {
        Some(true) => Ok(()),
        Some(false) => Err(OpError::FailedPrecondition("the account is not deleted")),
        None => Err(OpError::NotFound("no such user")),
    }
}

/// §28.1: whether a member's deletion of a message is audited: when it was someone else's (a
/// moderator's deletion).
pub fn audits_deletion(message: Option<MessageFacts>) -> bool {
    message.is_some_and(|m| !m.own)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Option<MessageFacts> = Some(MessageFacts { own: false, deleted: false });
    const GONE: Option<MessageFacts> = Some(MessageFacts { own: false, deleted: true });

    #[test]
    fn an_administrator_deletes_any_live_message_and_a_deleted_one_changes_nothing() {
        assert_eq!(delete_message(true, true, LIVE), Ok(Effect::Change));
        let own = Some(MessageFacts { own: true, deleted: false });
        assert_eq!(delete_message(true, true, own), Ok(Effect::Change));
        assert_eq!(delete_message(true, true, GONE), Ok(Effect::Unchanged));
        assert_eq!(delete_message(true, true, None), Err(OpError::NotFound("no such message")));
        assert_eq!(delete_message(true, false, LIVE), Err(OpError::NotFound("no such conversation")));
    }

    #[test]
    fn a_revoked_administrator_learns_nothing() {
        // Whatever the facts, the same refusal as the gate's, before any of them is looked at.
        assert_eq!(delete_message(false, true, LIVE), Err(NOT_ADMIN));
        assert_eq!(delete_message(false, false, None), Err(NOT_ADMIN));
        assert_eq!(delete_conversation(false, true), Err(NOT_ADMIN));
        assert_eq!(delete_user(false, Some(false), true), Err(NOT_ADMIN));
        assert_eq!(erase_messages(false, Some(true)), Err(NOT_ADMIN));
    }

    #[test]
    fn conversations_and_accounts_must_be_live() {
        assert_eq!(delete_conversation(true, true), Ok(()));
        assert_eq!(delete_conversation(true, false), Err(OpError::NotFound("no such conversation")));
        assert_eq!(delete_user(true, Some(false), false), Ok(()));
        assert_eq!(delete_user(true, Some(true), false), Err(OpError::NotFound("no such user")));
        assert_eq!(delete_user(true, None, false), Err(OpError::NotFound("no such user")));
        assert!(matches!(delete_user(true, Some(false), true), Err(OpError::FailedPrecondition(_))));
    }

    #[test]
    fn erasing_follows_the_deletion() {
        assert_eq!(erase_messages(true, Some(true)), Ok(()));
        assert!(matches!(erase_messages(true, Some(false)), Err(OpError::FailedPrecondition(_))));
        assert_eq!(erase_messages(true, None), Err(OpError::NotFound("no such user")));
    }

    #[test]
    fn only_deleting_someone_elses_message_is_audited() {
        assert!(audits_deletion(LIVE));
        assert!(!audits_deletion(Some(MessageFacts { own: true, deleted: false })));
        assert!(!audits_deletion(None));
    }
}
