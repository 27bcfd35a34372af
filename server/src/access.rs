//! Access checks every service shares: request id fields and "is a member", answered so a
//! non-member learns nothing (the same `NOT_FOUND` as for a missing conversation, §12.1).

use crate::error::ServerError;
use crate::store::{ConvId, ConvView, Store, UserId};

/// The one refusal for a conversation the caller may not see, and for one that does not exist.
pub fn not_found() -> ServerError {
    ServerError::NotFound("no such conversation".into())
}

/// A required positive id field (`field` names it in the error, e.g.
/// `send_message.conversation_id`).
///
/// # Errors
/// `INVALID_ARGUMENT` for 0 or a value above `i64::MAX`.
pub fn id<T: From<i64>>(field: &'static str, v: u64) -> Result<T, ServerError> {
    i64::try_from(v).ok().filter(|v| *v > 0).map(T::from).ok_or_else(|| ServerError::invalid(field, "required"))
}

/// The conversation as `user` sees it, if `user` is a member.
///
/// # Errors
/// `NOT_FOUND` (`no such conversation`) for anyone else, exactly as for a missing id (§12.1);
/// store errors as they are.
pub async fn member_view(store: &dyn Store, user: UserId, conv: ConvId) -> Result<ConvView, ServerError> {
    match store.conversation(user, conv).await? {
        Some(v) if v.my_role.is_some() => Ok(v),
        _ => Err(not_found()),
    }
}
