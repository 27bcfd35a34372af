//! Who may do what in a conversation, and what must hold before a write (docs/protocol.md §12,
//! §13, §18, §21): plain functions over facts the store has read, with no SQL and no I/O. The
//! write path reads the facts inside the batch's transaction, asks the rule, and writes only when
//! the rule allows it; every refusal (its code and message) is decided here. Unit tests:
//! `store/rules/tests.rs`; the §12.8 matrix is also checked end to end by tests/tests/permissions.rs.

pub mod admin;
pub mod push;
pub mod reports;

use super::conv_types::{ConvId, ConvKind, MessageId, OpError, Role};
use super::types::UserId;

/// What a member may try to do in a group or channel (docs/protocol.md §12.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    AddMembers,
    RemoveMembers,
    ChangeRoles,
    TransferOwnership,
    EditInfo,
    Pin,
    DeleteOthersMessages,
    PostInAnnouncementOnly,
}

impl Action {
    /// Every action, in the order of the §12.8 table.
    pub const ALL: [Action; 8] = [
        Action::AddMembers,
        Action::RemoveMembers,
        Action::ChangeRoles,
        Action::TransferOwnership,
        Action::EditInfo,
        Action::Pin,
        Action::DeleteOthersMessages,
        Action::PostInAnnouncementOnly,
    ];
}

/// The permission matrix: whether `role` may do `action` (docs/protocol.md §12.8).
pub fn permits(role: Role, action: Action) -> bool {
    let lowest = match action {
        Action::TransferOwnership => Role::Owner,
        Action::AddMembers | Action::RemoveMembers | Action::ChangeRoles | Action::EditInfo => Role::Admin,
        Action::PostInAnnouncementOnly => Role::Admin,
        Action::Pin | Action::DeleteOthersMessages => Role::Moderator,
    };
    role.at_least(lowest)
}

/// A conversation as one user stands in it; the rules take `Option<ConvFacts>`, `None` meaning
/// there is no such conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvFacts {
    /// The conversation's kind.
    pub kind: ConvKind,
    /// The user's role, `None` when they are not a member.
    pub role: Option<Role>,
    /// The conversation's head seq.
    pub head_seq: i64,
}

/// A message an op is about, as the store found it in the conversation (`None`: not there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageFacts {
    /// Sent by the acting user.
    pub own: bool,
    /// Deleted already.
    pub deleted: bool,
}

/// Whether an allowed op changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write the change.
    Change,
    /// Already so: write nothing and answer with the current state.
    Unchanged,
}

/// The acting user's (kind, role), or the `NOT_FOUND` every non-member gets.
fn member(conv: Option<ConvFacts>) -> Result<(ConvKind, Role), OpError> {
    match conv {
        Some(ConvFacts { kind, role: Some(role), .. }) => Ok((kind, role)),
        _ => Err(OpError::NotFound("no such conversation")),
    }
}

/// §12.2, §18: creating a conversation with `others` (the members named, creator left out and
/// deduplicated). `all_live`: every one of them is a live account; `blocked_by_other`: one of them
/// blocked the creator, which looks like no such user (channels start with the creator alone, so
/// neither blocks nor a member count apply to them).
pub fn create(kind: ConvKind, others: usize, all_live: bool, blocked_by_other: bool) -> Result<(), OpError> {
    if !all_live {
        return Err(OpError::NotFound("no such user"));
    }
    match kind {
        ConvKind::Group if blocked_by_other => Err(OpError::NotFound("no such user")),
        ConvKind::Direct if others != 1 => Err(OpError::Invalid(
            "create_conversation.member_ids",
            "a direct conversation has exactly one other member",
        )),
        ConvKind::Direct if blocked_by_other => Err(OpError::NotFound("no such user")),
        _ => Ok(()),
    }
}

/// Whether the members named at creation join it (a channel starts with its creator alone).
pub fn starts_with_members(kind: ConvKind) -> bool {
    kind != ConvKind::Channel
}

/// The creator's role: OWNER of a group or channel, a plain MEMBER of a direct conversation.
pub fn creator_role(kind: ConvKind) -> Role {
    if kind == ConvKind::Direct { Role::Member } else { Role::Owner }
}

/// §19: whether creating a conversation tells the members added (groups only).
pub fn notifies_added_at_creation(kind: ConvKind) -> bool {
    kind == ConvKind::Group
}

/// §12.4: joining a channel; joining one already joined changes nothing.
pub fn join(conv: Option<ConvFacts>) -> Result<Effect, OpError> {
    match conv {
        Some(ConvFacts { kind: ConvKind::Channel, role, .. }) => {
            Ok(if role.is_some() { Effect::Unchanged } else { Effect::Change })
        }
        _ => Err(OpError::NotFound("no such channel")),
    }
}

/// §12.4, §21: the joiner's role; whoever joins a channel without an owner becomes its OWNER.
pub fn joiner_role(has_owner: bool) -> Role {
    if has_owner { Role::Member } else { Role::Owner }
}

/// §12.4: leaving a group or channel; the leaver's role when allowed.
pub fn leave(conv: Option<ConvFacts>) -> Result<Role, OpError> {
    let (kind, role) = member(conv)?;
    if kind == ConvKind::Direct {
        return Err(OpError::FailedPrecondition("a direct conversation cannot be left"));
    }
    Ok(role)
}

/// §12.4, §21: whether a leaver of `role` first passes ownership on (to the remaining live member
/// with the highest role, then the longest-standing one: a query of the store).
pub fn passes_ownership(role: Role) -> bool {
    role == Role::Owner
}

/// §12.5, §18: adding members. `all_live`: every user named is a live account;
/// `blocked_by_any`: one of them blocked the actor, which looks like no such user.
pub fn add_members(conv: Option<ConvFacts>, all_live: bool, blocked_by_any: bool) -> Result<(), OpError> {
    let (kind, role) = member(conv)?;
    if kind != ConvKind::Group {
        return Err(OpError::FailedPrecondition("members are added to groups only; channels are joined"));
    }
    if !permits(role, Action::AddMembers) {
        return Err(OpError::PermissionDenied("only owners and admins add members"));
    }
    if !all_live || blocked_by_any {
        return Err(OpError::NotFound("no such user"));
    }
    Ok(())
}

/// §12.5, §12.8: removing a member of role `target` (`None`: not a member); only members of a
/// lower role than the actor's can be removed, and nobody removes themselves.
pub fn remove_member(conv: Option<ConvFacts>, actor_is_target: bool, target: Option<Role>) -> Result<(), OpError> {
    let (kind, role) = member(conv)?;
    if kind == ConvKind::Direct {
        return Err(OpError::FailedPrecondition("members are removed from groups and channels only"));
    }
    if !permits(role, Action::RemoveMembers) {
        return Err(OpError::PermissionDenied("only owners and admins remove members"));
    }
    if actor_is_target {
        return Err(OpError::FailedPrecondition("use LeaveConversation to leave"));
    }
    let Some(target) = target else { return Err(OpError::NotFound("not a member")) };
    if !role.outranks(target) {
        return Err(OpError::PermissionDenied("only members of a lower role can be removed"));
    }
    Ok(())
}

/// §12.8: changing the settings (title, description, photo, announcement-only).
pub fn update_settings(conv: Option<ConvFacts>) -> Result<(), OpError> {
    let (kind, role) = member(conv)?;
    if kind == ConvKind::Direct {
        return Err(OpError::FailedPrecondition("direct conversations have no settings"));
    }
    if !permits(role, Action::EditInfo) {
        return Err(OpError::PermissionDenied("only owners and admins change the settings"));
    }
    Ok(())
}

/// §12.8: setting the role of a member of role `target` (`None`: not a member) to `new_role`:
/// only on members below oneself, and only to roles below one's own.
pub fn set_role(conv: Option<ConvFacts>, target: Option<Role>, new_role: Role) -> Result<Effect, OpError> {
    let (kind, role) = member(conv)?;
    if kind == ConvKind::Direct {
        return Err(OpError::FailedPrecondition("direct conversations have no roles"));
    }
    if !permits(role, Action::ChangeRoles) {
        return Err(OpError::PermissionDenied("only owners and admins change roles"));
    }
    let Some(target) = target else { return Err(OpError::NotFound("not a member")) };
    if !role.outranks(target) || !role.outranks(new_role) {
        return Err(OpError::PermissionDenied("roles are set on, and to, lower roles only"));
    }
    Ok(if target == new_role { Effect::Unchanged } else { Effect::Change })
}

/// The role a former owner keeps after transferring ownership.
pub const FORMER_OWNER_ROLE: Role = Role::Admin;

/// §12.8: transferring ownership to another member (`target_is_member`).
pub fn transfer_ownership(
    conv: Option<ConvFacts>,
    actor_is_target: bool,
    target_is_member: bool,
) -> Result<(), OpError> {
    let (kind, role) = member(conv)?;
    if kind == ConvKind::Direct {
        return Err(OpError::FailedPrecondition("direct conversations have no owner"));
    }
    if !permits(role, Action::TransferOwnership) {
        return Err(OpError::PermissionDenied("only the owner transfers ownership"));
    }
    if actor_is_target {
        return Err(OpError::Invalid("transfer_ownership.user_id", "already the owner"));
    }
    if !target_is_member {
        return Err(OpError::NotFound("not a member"));
    }
    Ok(())
}

/// A live message the actor changes: their own, or (when `moderate`) anyone's for moderators and
/// above outside direct conversations.
fn change_message(conv: Option<ConvFacts>, message: Option<MessageFacts>, moderate: bool) -> Result<(), OpError> {
    let (kind, role) = member(conv)?;
    let Some(message) = message.filter(|m| !m.deleted) else { return Err(OpError::NotFound("no such message")) };
    let moderator = moderate && kind != ConvKind::Direct && permits(role, Action::DeleteOthersMessages);
    if !message.own && !moderator {
        return Err(OpError::PermissionDenied("only the sender changes a message"));
    }
    Ok(())
}

/// §13.3: editing a message: the sender's own, live.
pub fn edit(conv: Option<ConvFacts>, message: Option<MessageFacts>) -> Result<(), OpError> {
    change_message(conv, message, false)
}

/// §13.3, §12.8: deleting a live message: one's own, or anyone's for moderators and above in
/// groups and channels.
pub fn delete(conv: Option<ConvFacts>, message: Option<MessageFacts>) -> Result<(), OpError> {
    change_message(conv, message, true)
}

/// §13.6, §12.8: pinning or unpinning a live message: anyone in a direct conversation,
/// moderators and above elsewhere.
pub fn pin(conv: Option<ConvFacts>, message: Option<MessageFacts>) -> Result<(), OpError> {
    let (kind, role) = react(conv, message)?;
    if kind != ConvKind::Direct && !permits(role, Action::Pin) {
        return Err(OpError::PermissionDenied("only moderators and above pin"));
    }
    Ok(())
}

/// §13.5: reacting to a live message (anyone's) of a conversation one is a member of; the
/// actor's (kind, role).
pub fn react(conv: Option<ConvFacts>, message: Option<MessageFacts>) -> Result<(ConvKind, Role), OpError> {
    let member = member(conv)?;
    if message.is_none_or(|m| m.deleted) {
        return Err(OpError::NotFound("no such message"));
    }
    Ok(member)
}

/// §15.1, §14.4: moving a read marker or a device ack (`field` names the request's seq) to `seq`: members
/// only, and never beyond the conversation's head.
pub fn watermark(conv: Option<ConvFacts>, field: &'static str, seq: i64) -> Result<(), OpError> {
    member(conv)?;
    if conv.is_some_and(|c| seq > c.head_seq) {
        return Err(OpError::Invalid(field, "beyond the conversation's head"));
    }
    Ok(())
}

/// §20.2.7: a call record goes into its conversation even when the caller has left since (which
/// is what ended the call); only a missing conversation refuses it.
pub fn call_ended(conv: Option<ConvFacts>) -> Result<(), OpError> {
    match conv {
        Some(_) => Ok(()),
        None => Err(OpError::NotFound("no such conversation")),
    }
}

/// §11.11: deleting an account that exists (deleting it again changes nothing more).
pub fn delete_account(exists: bool) -> Result<(), OpError> {
    if exists { Ok(()) } else { Err(OpError::NotFound("no such user")) }
}

/// A sender as the store found them in the conversation of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poster {
    /// The conversation's kind.
    pub kind: ConvKind,
    /// The sender's role.
    pub role: Role,
    /// The conversation is announcement-only.
    pub announcement_only: bool,
    /// A DIRECT conversation's peer blocked the sender or deleted their account.
    pub peer_blocked: bool,
}

/// What the store knows of one SendMessage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendFacts {
    /// The conversation sent to.
    pub conv: ConvId,
    /// The sender's standing there; `None` when they are not a member (or it does not exist).
    pub poster: Option<Poster>,
    /// The conversation of an earlier send with the same (sender, client_msg_id), stored or
    /// earlier in the same batch.
    pub key_used_in: Option<ConvId>,
    /// The message replied to.
    pub reply_to: Option<MessageId>,
    /// The conversation of that message, if it exists.
    pub parent_conv: Option<ConvId>,
}

/// What a send that is not refused does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendVerdict {
    /// A retry: answer with the earlier send's message, marked duplicate (§13.2).
    Duplicate,
    /// A new message.
    Post,
}

/// §13.2, §12.8, §18: a send: members only; a reused idempotency key answers the first send
/// (refused when that was to another conversation); nobody sends to a DIRECT peer who blocked them
/// or deleted their account; announcement-only conversations take posts from owners and admins;
/// a reply's parent must be in the same conversation.
pub fn send(f: &SendFacts) -> Result<SendVerdict, OpError> {
    let Some(p) = f.poster else { return Err(OpError::NotFound("no such conversation")) };
    if let Some(conv) = f.key_used_in {
        if conv != f.conv {
            return Err(OpError::Invalid("send_message.client_msg_id", "already used for another conversation"));
        }
        return Ok(SendVerdict::Duplicate);
    }
    if p.kind == ConvKind::Direct && p.peer_blocked {
        return Err(OpError::PermissionDenied("you cannot send to this conversation"));
    }
    if p.announcement_only && !permits(p.role, Action::PostInAnnouncementOnly) {
        return Err(OpError::PermissionDenied("only owners and admins post in this conversation"));
    }
    if f.reply_to.is_some() && f.parent_conv != Some(f.conv) {
        return Err(OpError::Invalid("send_message.reply_to_message_id", "no such message in this conversation"));
    }
    Ok(SendVerdict::Post)
}

/// §19, §18, §21: whether mentioning `user` in a message by `sender` notifies them: members other
/// than the sender who have not blocked the sender.
pub fn mention_notifies(user: UserId, sender: UserId, is_member: bool, blocked_sender: bool) -> bool {
    user != sender && is_member && !blocked_sender
}

#[cfg(test)]
mod tests;
