//! Who may report a message, who is told, who may list and resolve reports, and what a
//! resolution may do (docs/protocol.md §27): plain functions over facts the store has read.

use super::{Action, ConvFacts, Effect, MessageFacts, member, permits};
use crate::store::conv_types::{ConvKind, OpError, Role};
use crate::store::report_types::{ReportAction, ReportState};
use crate::store::types::UserId;

/// The lowest conversation role that moderates reports (§27.2): the role that deletes others'
/// messages (§12.8).
pub const LOWEST_MODERATOR: Role = Role::Moderator;

/// §27.2: whether a member of `role` in a conversation of `kind` moderates its reports: moderators
/// and above of groups and channels (a DIRECT conversation has none).
pub fn moderates(kind: ConvKind, role: Role) -> bool {
    kind != ConvKind::Direct && role.at_least(LOWEST_MODERATOR)
}

/// §27.3: whether someone standing in a conversation as `conv` says (`None`: no such
/// conversation), and a server administrator or not, may list and resolve its reports.
pub fn may_act(conv: Option<ConvFacts>, server_admin: bool) -> bool {
    match conv {
        None => false,
        Some(_) if server_admin => true,
        Some(ConvFacts { kind, role: Some(role), .. }) => moderates(kind, role),
        Some(_) => false,
    }
}

/// What reporting a message does, when it is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportVerdict {
    /// A new report.
    New,
    /// The reporter reported this message before: answer that report, tell nobody again.
    Repeat,
}

/// §27.1: a member reports a live message of the conversation, not their own; a repeat (the
/// reporter's earlier report of it exists) answers the earlier report even when the message was
/// deleted since. A non-member, a missing message and a message of another conversation are
/// `NOT_FOUND`, as for a conversation or message that does not exist (§12.1).
pub fn report(
    conv: Option<ConvFacts>,
    message: Option<MessageFacts>,
    reported_before: bool,
) -> Result<ReportVerdict, OpError> {
    member(conv)?;
    if reported_before {
        return Ok(ReportVerdict::Repeat);
    }
    let Some(message) = message.filter(|m| !m.deleted) else { return Err(OpError::NotFound("no such message")) };
    if message.own {
        return Err(OpError::Invalid("report_message.message_id", "you cannot report your own message"));
    }
    Ok(ReportVerdict::New)
}

/// §27.2: who is told of a new report: `moderators` (the conversation's members with their roles)
/// who moderate it, and every live server administrator (`admins`), never the reporter; each
/// once, in id order.
pub fn report_recipients(
    kind: ConvKind,
    moderators: &[(UserId, Role)],
    admins: &[UserId],
    reporter: UserId,
) -> Vec<UserId> {
    let mut out: Vec<UserId> = moderators
        .iter()
        .filter(|(_, role)| moderates(kind, *role))
        .map(|(u, _)| *u)
        .chain(admins.iter().copied())
        .filter(|u| *u != reporter)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// §27.3: resolving a report, as the store found it (`state`: `None` when there is no such
/// report), by someone who may act on it or not (`may_act`). A report the resolver may not act on
/// is `NOT_FOUND`, exactly as one that does not exist; a resolved one is `FAILED_PRECONDITION`.
pub fn resolve(state: Option<ReportState>, may_act: bool) -> Result<(), OpError> {
    match state {
        Some(_) if !may_act => Err(OpError::NotFound("no such report")),
        None => Err(OpError::NotFound("no such report")),
        Some(ReportState::Resolved) => Err(OpError::FailedPrecondition("the report is already resolved")),
        Some(ReportState::Open) => Ok(()),
    }
}

/// §27.3: whether a resolution with `action` deletes the message (when it is still live).
pub fn deletes_message(action: ReportAction) -> bool {
    matches!(action, ReportAction::DeleteMessage | ReportAction::RemoveSender)
}

/// §27.3, §12.5: `REMOVE_SENDER` removes the sender (of role `sender`, `None` when no longer a
/// member: nothing to remove) from a conversation of `kind`, as RemoveMember would. A server
/// administrator (`server_admin`) removes anyone but the owner; a member of role `resolver`
/// only those RemoveMember lets them remove. `Unchanged`: the sender is gone already.
pub fn remove_sender(
    kind: ConvKind,
    resolver: Option<Role>,
    server_admin: bool,
    resolver_is_sender: bool,
    sender: Option<Role>,
) -> Result<Effect, OpError> {
    if kind == ConvKind::Direct {
        return Err(OpError::FailedPrecondition("members are removed from groups and channels only"));
    }
    if resolver_is_sender {
        return Err(OpError::FailedPrecondition("use LeaveConversation to leave"));
    }
    let Some(sender) = sender else { return Ok(Effect::Unchanged) };
    if sender == Role::Owner {
        return Err(OpError::FailedPrecondition("the owner cannot be removed"));
    }
    if server_admin {
        return Ok(Effect::Change);
    }
    let Some(role) = resolver else { return Err(OpError::NotFound("no such report")) };
    if !permits(role, Action::RemoveMembers) {
        return Err(OpError::PermissionDenied("only owners and admins remove members"));
    }
    if !role.outranks(sender) {
        return Err(OpError::PermissionDenied("only members of a lower role can be removed"));
    }
    Ok(Effect::Change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conv_types::ConvKind::{Channel, Direct, Group};

    fn conv(kind: ConvKind, role: Option<Role>) -> Option<ConvFacts> {
        Some(ConvFacts { kind, role, head_seq: 10 })
    }

    const OTHERS: Option<MessageFacts> = Some(MessageFacts { own: false, deleted: false });

    #[test]
    fn who_moderates_reports() {
        for kind in [Group, Channel] {
            assert!(moderates(kind, Role::Owner) && moderates(kind, Role::Admin) && moderates(kind, Role::Moderator));
            assert!(!moderates(kind, Role::Member));
        }
        assert!(Role::ALL.iter().all(|r| !moderates(Direct, *r)), "a DIRECT conversation has no moderators");
        assert!(may_act(conv(Group, Some(Role::Moderator)), false));
        assert!(!may_act(conv(Group, Some(Role::Member)), false));
        assert!(!may_act(conv(Group, None), false));
        assert!(may_act(conv(Group, None), true), "a server administrator, member or not");
        assert!(may_act(conv(Direct, None), true));
        assert!(!may_act(conv(Direct, Some(Role::Member)), false));
        assert!(!may_act(None, true), "no conversation");
    }

    #[test]
    fn reporting() {
        let no_conv = Err(OpError::NotFound("no such conversation"));
        let no_message = Err(OpError::NotFound("no such message"));
        assert_eq!(report(conv(Group, Some(Role::Member)), OTHERS, false), Ok(ReportVerdict::New));
        assert_eq!(report(conv(Direct, Some(Role::Member)), OTHERS, false), Ok(ReportVerdict::New));
        assert_eq!(report(conv(Group, None), OTHERS, false), no_conv, "a non-member");
        assert_eq!(report(conv(Channel, None), OTHERS, true), no_conv, "a former member's repeat");
        assert_eq!(report(None, OTHERS, false), no_conv);
        assert_eq!(report(conv(Group, Some(Role::Member)), None, false), no_message);
        let deleted = Some(MessageFacts { own: false, deleted: true });
        assert_eq!(report(conv(Group, Some(Role::Member)), deleted, false), no_message);
        assert_eq!(report(conv(Group, Some(Role::Member)), deleted, true), Ok(ReportVerdict::Repeat));
        let own = Some(MessageFacts { own: true, deleted: false });
        assert_eq!(
            report(conv(Group, Some(Role::Owner)), own, false),
            Err(OpError::Invalid("report_message.message_id", "you cannot report your own message"))
        );
    }

    #[test]
    fn recipients_are_moderators_and_administrators_but_never_the_reporter() {
        let (owner, admin, moder, member, server_admin) = (UserId(1), UserId(2), UserId(3), UserId(4), UserId(9));
        let members = [(owner, Role::Owner), (admin, Role::Admin), (moder, Role::Moderator), (member, Role::Member)];
        assert_eq!(report_recipients(Group, &members, &[server_admin], member), [owner, admin, moder, server_admin]);
        assert_eq!(
            report_recipients(Channel, &members, &[owner], moder),
            [owner, admin],
            "each once, never the reporter"
        );
        let direct = [(UserId(5), Role::Member), (UserId(6), Role::Member)];
        assert_eq!(report_recipients(Direct, &direct, &[server_admin], UserId(5)), [server_admin], "admins only");
        assert!(report_recipients(Direct, &direct, &[], UserId(5)).is_empty());
    }

    #[test]
    fn resolving() {
        assert_eq!(resolve(Some(ReportState::Open), true), Ok(()));
        assert_eq!(resolve(Some(ReportState::Open), false), Err(OpError::NotFound("no such report")));
        assert_eq!(resolve(Some(ReportState::Resolved), false), Err(OpError::NotFound("no such report")));
        assert_eq!(resolve(None, true), Err(OpError::NotFound("no such report")));
        assert_eq!(
            resolve(Some(ReportState::Resolved), true),
            Err(OpError::FailedPrecondition("the report is already resolved"))
        );
        assert!(!deletes_message(ReportAction::Dismiss));
        assert!(deletes_message(ReportAction::DeleteMessage) && deletes_message(ReportAction::RemoveSender));
    }

    #[test]
    fn removing_the_sender() {
        let change = Ok(Effect::Change);
        let owner = Err(OpError::FailedPrecondition("the owner cannot be removed"));
        assert_eq!(remove_sender(Group, Some(Role::Owner), false, false, Some(Role::Member)), change);
        assert_eq!(remove_sender(Group, Some(Role::Admin), false, false, Some(Role::Moderator)), change);
        assert_eq!(remove_sender(Group, None, true, false, Some(Role::Admin)), change, "a server administrator");
        assert_eq!(remove_sender(Channel, Some(Role::Member), true, false, Some(Role::Admin)), change);
        assert_eq!(remove_sender(Group, None, true, false, Some(Role::Owner)), owner);
        assert_eq!(remove_sender(Group, Some(Role::Admin), false, false, Some(Role::Owner)), owner);
        assert_eq!(remove_sender(Group, None, true, false, None), Ok(Effect::Unchanged), "gone already");
        assert_eq!(
            remove_sender(Group, Some(Role::Moderator), false, false, Some(Role::Member)),
            Err(OpError::PermissionDenied("only owners and admins remove members"))
        );
        assert_eq!(
            remove_sender(Group, Some(Role::Admin), false, false, Some(Role::Admin)),
            Err(OpError::PermissionDenied("only members of a lower role can be removed"))
        );
        assert_eq!(
            remove_sender(Direct, None, true, false, Some(Role::Member)),
            Err(OpError::FailedPrecondition("members are removed from groups and channels only"))
        );
        assert_eq!(
            remove_sender(Group, Some(Role::Owner), false, true, Some(Role::Owner)),
            Err(OpError::FailedPrecondition("use LeaveConversation to leave"))
        );
    }
}
