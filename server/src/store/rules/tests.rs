//! The rules alone: a table of cases per rule, each with the exact refusal the client gets.

use super::*;
use crate::store::conv_types::ConvKind::{Channel, Direct, Group};

const DIRECT: ConvKind = Direct;
const GROUP: ConvKind = Group;
const CHANNEL: ConvKind = Channel;
const OWNER: Role = Role::Owner;
const ADMIN: Role = Role::Admin;
const MODERATOR: Role = Role::Moderator;
const MEMBER: Role = Role::Member;

/// A conversation of `kind` where the actor has `role` (`None`: not a member), head at 10.
fn conv(kind: ConvKind, role: Option<Role>) -> Option<ConvFacts> {
    Some(ConvFacts { kind, role, head_seq: 10 })
}

fn m(kind: ConvKind, role: Role) -> Option<ConvFacts> {
    conv(kind, Some(role))
}

const NO_CONV: Result<(), OpError> = Err(OpError::NotFound("no such conversation"));
const NO_USER: Result<(), OpError> = Err(OpError::NotFound("no such user"));
const NOT_A_MEMBER: Result<(), OpError> = Err(OpError::NotFound("not a member"));
const NO_MESSAGE: Result<(), OpError> = Err(OpError::NotFound("no such message"));

fn denied(msg: &'static str) -> Result<(), OpError> {
    Err(OpError::PermissionDenied(msg))
}

fn precondition(msg: &'static str) -> Result<(), OpError> {
    Err(OpError::FailedPrecondition(msg))
}

#[test]
fn the_permission_matrix() {
    // §12.8, written out: the lowest role allowed per action.
    let lowest = |a: Action| match a {
        Action::TransferOwnership => OWNER,
        Action::Pin | Action::DeleteOthersMessages => MODERATOR,
        _ => ADMIN,
    };
    for a in Action::ALL {
        for role in [OWNER, ADMIN, MODERATOR, MEMBER] {
            assert_eq!(permits(role, a), i32::from(role) <= i32::from(lowest(a)), "{a:?} by role {role:?}");
        }
    }
    // An unknown number is no role at all (the store refuses to read one).
    assert!(Role::try_from(0).is_err() && Role::try_from(5).is_err(), "an unknown role");
    assert_eq!(Role::ALL.map(i32::from), [1, 2, 3, 4], "the wire's MemberRole numbers");
}

#[test]
fn create() {
    let cases = [
        (Group, 2, true, false, Ok(())),
        (Group, 0, true, false, Ok(())),
        (Group, 2, false, false, NO_USER),
        (Group, 2, true, true, NO_USER),
        (Direct, 1, true, false, Ok(())),
        (Direct, 1, false, false, NO_USER),
        (Direct, 1, true, true, NO_USER),
        (
            Direct,
            2,
            true,
            true,
            Err(OpError::Invalid(
                "create_conversation.member_ids",
                "a direct conversation has exactly one other member",
            )),
        ),
        (
            Direct,
            0,
            true,
            false,
            Err(OpError::Invalid(
                "create_conversation.member_ids",
                "a direct conversation has exactly one other member",
            )),
        ),
        (Direct, 2, false, false, NO_USER),
        (Channel, 3, true, true, Ok(())),
        (Channel, 3, false, false, NO_USER),
    ];
    for (kind, others, live, blocked, want) in &cases {
        assert_eq!(super::create(*kind, *others, *live, *blocked), *want, "{kind:?} {others} {live} {blocked}");
    }
    assert_eq!([creator_role(Direct), creator_role(Group), creator_role(Channel)], [MEMBER, OWNER, OWNER]);
    assert_eq!(
        [starts_with_members(Direct), starts_with_members(Group), starts_with_members(Channel)],
        [true, true, false]
    );
    assert_eq!(
        [notifies_added_at_creation(Direct), notifies_added_at_creation(Group), notifies_added_at_creation(Channel)],
        [false, true, false]
    );
}

#[test]
fn join_and_leave() {
    let no_channel = Err(OpError::NotFound("no such channel"));
    let cases = [
        (conv(CHANNEL, None), Ok(Effect::Change)),
        (m(CHANNEL, MEMBER), Ok(Effect::Unchanged)),
        (m(CHANNEL, OWNER), Ok(Effect::Unchanged)),
        (conv(GROUP, None), no_channel.clone()),
        (m(GROUP, MEMBER), no_channel.clone()),
        (conv(DIRECT, None), no_channel.clone()),
        (None, no_channel),
    ];
    for (c, want) in cases {
        assert_eq!(join(c), want, "join {c:?}");
    }
    assert_eq!((joiner_role(true), joiner_role(false)), (MEMBER, OWNER));

    let cases = [
        (m(GROUP, OWNER), Ok(OWNER)),
        (m(CHANNEL, MEMBER), Ok(MEMBER)),
        (m(DIRECT, MEMBER), Err(OpError::FailedPrecondition("a direct conversation cannot be left"))),
        (conv(GROUP, None), Err(OpError::NotFound("no such conversation"))),
        (None, Err(OpError::NotFound("no such conversation"))),
    ];
    for (c, want) in cases {
        assert_eq!(leave(c), want, "leave {c:?}");
    }
    assert_eq!([OWNER, ADMIN, MODERATOR, MEMBER].map(passes_ownership), [true, false, false, false]);
}

#[test]
fn add_members() {
    let cases = [
        (m(GROUP, OWNER), true, false, Ok(())),
        (m(GROUP, ADMIN), true, false, Ok(())),
        (m(GROUP, MODERATOR), true, false, denied("only owners and admins add members")),
        (m(GROUP, MEMBER), false, true, denied("only owners and admins add members")),
        (m(GROUP, ADMIN), false, false, NO_USER),
        (m(GROUP, ADMIN), true, true, NO_USER),
        (m(CHANNEL, OWNER), true, false, precondition("members are added to groups only; channels are joined")),
        (m(DIRECT, MEMBER), true, false, precondition("members are added to groups only; channels are joined")),
        (conv(GROUP, None), true, false, NO_CONV),
        (None, true, false, NO_CONV),
    ];
    for (c, live, blocked, want) in cases {
        assert_eq!(super::add_members(c, live, blocked), want, "{c:?} {live} {blocked}");
    }
}

#[test]
fn remove_member() {
    let lower = denied("only members of a lower role can be removed");
    let cases = [
        (m(GROUP, OWNER), false, Some(ADMIN), Ok(())),
        (m(CHANNEL, ADMIN), false, Some(MODERATOR), Ok(())),
        (m(GROUP, ADMIN), false, Some(MEMBER), Ok(())),
        (m(GROUP, ADMIN), false, Some(ADMIN), lower.clone()),
        (m(GROUP, ADMIN), false, Some(OWNER), lower),
        (m(GROUP, ADMIN), false, None, NOT_A_MEMBER),
        (m(GROUP, OWNER), true, Some(OWNER), precondition("use LeaveConversation to leave")),
        (m(GROUP, MODERATOR), false, Some(MEMBER), denied("only owners and admins remove members")),
        (m(GROUP, MEMBER), true, None, denied("only owners and admins remove members")),
        (m(DIRECT, MEMBER), false, Some(MEMBER), precondition("members are removed from groups and channels only")),
        (conv(GROUP, None), false, Some(MEMBER), NO_CONV),
        (None, false, None, NO_CONV),
    ];
    for (c, itself, target, want) in cases {
        assert_eq!(super::remove_member(c, itself, target), want, "{c:?} {itself} {target:?}");
    }
}

#[test]
fn update_settings() {
    let cases = [
        (m(GROUP, OWNER), Ok(())),
        (m(CHANNEL, ADMIN), Ok(())),
        (m(GROUP, MODERATOR), denied("only owners and admins change the settings")),
        (m(CHANNEL, MEMBER), denied("only owners and admins change the settings")),
        (m(DIRECT, MEMBER), precondition("direct conversations have no settings")),
        (conv(CHANNEL, None), NO_CONV),
        (None, NO_CONV),
    ];
    for (c, want) in cases {
        assert_eq!(super::update_settings(c), want, "{c:?}");
    }
}

#[test]
fn set_role() {
    let lower = Err(OpError::PermissionDenied("roles are set on, and to, lower roles only"));
    let cases = [
        (m(GROUP, OWNER), Some(MEMBER), ADMIN, Ok(Effect::Change)),
        (m(GROUP, OWNER), Some(ADMIN), MEMBER, Ok(Effect::Change)),
        (m(GROUP, OWNER), Some(ADMIN), ADMIN, Ok(Effect::Unchanged)),
        (m(CHANNEL, ADMIN), Some(MEMBER), MODERATOR, Ok(Effect::Change)),
        (m(CHANNEL, ADMIN), Some(MEMBER), MEMBER, Ok(Effect::Unchanged)),
        (m(CHANNEL, ADMIN), Some(MEMBER), ADMIN, lower.clone()),
        (m(CHANNEL, ADMIN), Some(ADMIN), MEMBER, lower.clone()),
        (m(CHANNEL, ADMIN), Some(OWNER), MEMBER, lower.clone()),
        (m(GROUP, OWNER), Some(OWNER), ADMIN, lower),
        (m(GROUP, OWNER), None, ADMIN, Err(OpError::NotFound("not a member"))),
        (
            m(GROUP, MODERATOR),
            Some(MEMBER),
            MEMBER,
            Err(OpError::PermissionDenied("only owners and admins change roles")),
        ),
        (m(GROUP, MEMBER), None, ADMIN, Err(OpError::PermissionDenied("only owners and admins change roles"))),
        (
            m(DIRECT, MEMBER),
            Some(MEMBER),
            ADMIN,
            Err(OpError::FailedPrecondition("direct conversations have no roles")),
        ),
        (conv(GROUP, None), Some(MEMBER), ADMIN, Err(OpError::NotFound("no such conversation"))),
        (None, None, ADMIN, Err(OpError::NotFound("no such conversation"))),
    ];
    for (c, target, new_role, want) in cases {
        assert_eq!(super::set_role(c, target, new_role), want, "{c:?} {target:?} {new_role:?}");
    }
}

#[test]
fn transfer_ownership() {
    let cases = [
        (m(GROUP, OWNER), false, true, Ok(())),
        (m(CHANNEL, OWNER), false, true, Ok(())),
        (m(GROUP, OWNER), false, false, NOT_A_MEMBER),
        (m(GROUP, OWNER), true, true, Err(OpError::Invalid("transfer_ownership.user_id", "already the owner"))),
        (m(GROUP, ADMIN), false, true, denied("only the owner transfers ownership")),
        (m(CHANNEL, MEMBER), true, false, denied("only the owner transfers ownership")),
        (m(DIRECT, MEMBER), false, true, precondition("direct conversations have no owner")),
        (conv(GROUP, None), false, true, NO_CONV),
        (None, false, true, NO_CONV),
    ];
    for (c, itself, member, want) in cases {
        assert_eq!(super::transfer_ownership(c, itself, member), want, "{c:?} {itself} {member}");
    }
    assert_eq!(FORMER_OWNER_ROLE, ADMIN);
}

#[test]
fn edit_and_delete() {
    let own = Some(MessageFacts { own: true, deleted: false });
    let others = Some(MessageFacts { own: false, deleted: false });
    let gone = Some(MessageFacts { own: true, deleted: true });
    let sender_only = denied("only the sender changes a message");
    // (conversation, message, edit, delete)
    let cases = [
        (m(GROUP, MEMBER), own, Ok(()), Ok(())),
        (m(DIRECT, MEMBER), own, Ok(()), Ok(())),
        (m(GROUP, MEMBER), others, sender_only.clone(), sender_only.clone()),
        (m(GROUP, MODERATOR), others, sender_only.clone(), Ok(())),
        (m(CHANNEL, ADMIN), others, sender_only.clone(), Ok(())),
        (m(GROUP, OWNER), others, sender_only.clone(), Ok(())),
        (m(DIRECT, MEMBER), others, sender_only.clone(), sender_only),
        (m(GROUP, OWNER), gone, NO_MESSAGE, NO_MESSAGE),
        (m(GROUP, OWNER), None, NO_MESSAGE, NO_MESSAGE),
        (conv(GROUP, None), own, NO_CONV, NO_CONV),
        (None, own, NO_CONV, NO_CONV),
    ];
    for (c, msg, want_edit, want_delete) in cases {
        assert_eq!(edit(c, msg), want_edit, "edit {c:?} {msg:?}");
        assert_eq!(delete(c, msg), want_delete, "delete {c:?} {msg:?}");
    }
}

#[test]
fn pin_and_react() {
    let mods = denied("only moderators and above pin");
    let anyones = Some(MessageFacts { own: false, deleted: false });
    let own = Some(MessageFacts { own: true, deleted: false });
    let gone = Some(MessageFacts { own: true, deleted: true });
    // (conversation, message, pin, react)
    let cases = [
        (m(GROUP, MODERATOR), anyones, Ok(()), Ok(())),
        (m(CHANNEL, OWNER), anyones, Ok(()), Ok(())),
        (m(DIRECT, MEMBER), anyones, Ok(()), Ok(())),
        (m(GROUP, MEMBER), anyones, mods.clone(), Ok(())),
        (m(CHANNEL, MEMBER), own, mods, Ok(())),
        (m(GROUP, MEMBER), gone, NO_MESSAGE, NO_MESSAGE),
        (m(GROUP, OWNER), None, NO_MESSAGE, NO_MESSAGE),
        (conv(GROUP, None), anyones, NO_CONV, NO_CONV),
        (None, anyones, NO_CONV, NO_CONV),
    ];
    for (c, msg, want_pin, want_react) in cases {
        assert_eq!(pin(c, msg), want_pin, "pin {c:?} {msg:?}");
        assert_eq!(react(c, msg).map(|_| ()), want_react, "react {c:?} {msg:?}");
    }
}

#[test]
fn watermarks_and_records() {
    let beyond = Err(OpError::Invalid("mark_read.seq", "beyond the conversation's head"));
    let cases = [
        (m(GROUP, MEMBER), 0, Ok(())),
        (m(DIRECT, MEMBER), 10, Ok(())),
        (m(CHANNEL, OWNER), 11, beyond),
        (conv(GROUP, None), 1, NO_CONV),
        (None, 1, NO_CONV),
    ];
    for (c, seq, want) in cases {
        assert_eq!(watermark(c, "mark_read.seq", seq), want, "{c:?} {seq}");
    }
    assert_eq!(
        watermark(m(GROUP, MEMBER), "ack.seq", 11),
        Err(OpError::Invalid("ack.seq", "beyond the conversation's head"))
    );

    assert_eq!(call_ended(m(GROUP, MEMBER)), Ok(()));
    assert_eq!(call_ended(conv(DIRECT, None)), Ok(()), "a caller who left still records the call");
    assert_eq!(call_ended(None), NO_CONV);
    assert_eq!((delete_account(true), delete_account(false)), (Ok(()), NO_USER));
}

#[test]
fn send() {
    let poster =
        |kind, role, announcement_only, peer_blocked| Some(Poster { kind, role, announcement_only, peer_blocked });
    let f = |poster, key_used_in, reply_to, parent_conv| SendFacts {
        conv: ConvId(7),
        poster,
        key_used_in,
        reply_to,
        parent_conv,
    };
    let other_conv = Err(OpError::Invalid("send_message.client_msg_id", "already used for another conversation"));
    let no_parent = Err(OpError::Invalid("send_message.reply_to_message_id", "no such message in this conversation"));
    let blocked = Err(OpError::PermissionDenied("you cannot send to this conversation"));
    let announcers = Err(OpError::PermissionDenied("only owners and admins post in this conversation"));
    let cases = [
        (f(poster(GROUP, MEMBER, false, false), None, None, None), Ok(SendVerdict::Post)),
        (f(poster(DIRECT, MEMBER, false, false), None, Some(MessageId(3)), Some(ConvId(7))), Ok(SendVerdict::Post)),
        (f(None, None, None, None), Err(OpError::NotFound("no such conversation"))),
        (f(None, Some(ConvId(7)), None, None), Err(OpError::NotFound("no such conversation"))),
        (f(poster(GROUP, MEMBER, false, false), Some(ConvId(7)), None, None), Ok(SendVerdict::Duplicate)),
        // A retry answers the first send even where a new send would now be refused.
        (f(poster(DIRECT, MEMBER, true, true), Some(ConvId(7)), Some(MessageId(3)), None), Ok(SendVerdict::Duplicate)),
        (f(poster(GROUP, MEMBER, false, false), Some(ConvId(8)), None, None), other_conv),
        (f(poster(DIRECT, MEMBER, false, true), None, None, None), blocked.clone()),
        (f(poster(DIRECT, MEMBER, true, true), None, None, None), blocked),
        // Only a DIRECT peer's block refuses a send.
        (f(poster(GROUP, MEMBER, false, true), None, None, None), Ok(SendVerdict::Post)),
        (f(poster(CHANNEL, MEMBER, true, false), None, None, None), announcers.clone()),
        (f(poster(CHANNEL, MODERATOR, true, false), None, None, None), announcers),
        (f(poster(CHANNEL, ADMIN, true, false), None, None, None), Ok(SendVerdict::Post)),
        (f(poster(GROUP, OWNER, true, false), None, None, None), Ok(SendVerdict::Post)),
        (f(poster(GROUP, MEMBER, false, false), None, Some(MessageId(3)), None), no_parent.clone()),
        (f(poster(GROUP, MEMBER, false, false), None, Some(MessageId(3)), Some(ConvId(8))), no_parent),
    ];
    for (facts, want) in cases {
        assert_eq!(super::send(&facts), want, "{facts:?}");
    }
}

#[test]
fn mentions() {
    // (mentioned, is member, blocked the sender) → notified; the sender is user 1.
    let cases = [(2, true, false, true), (2, false, false, false), (2, true, true, false), (1, true, false, false)];
    for (user, member, blocked, want) in cases {
        assert_eq!(mention_notifies(UserId(user), UserId(1), member, blocked), want, "{user} {member} {blocked}");
    }
}

mod push {
    use crate::store::push_types::{ConvPushSetting, DueDelivery, PushKind, PushLevel, PushProvider, TargetRec};
    use crate::store::rules::push::{Verdict, effective_level, notifies, verdict};
    use crate::store::{ConvId, ConvKind, MessageId, UserId};

    const NOW: i64 = 1_000_000;

    fn own(level: PushLevel, until_ms: i64) -> Option<ConvPushSetting> {
        Some(ConvPushSetting { conversation: ConvId(1), level, until_ms })
    }

    #[test]
    fn a_conversation_level_holds_until_it_ends_then_the_account_level_applies() {
        use PushLevel::*;
        assert_eq!(effective_level(All, own(Nothing, 0), ConvKind::Group, NOW), Nothing);
        assert_eq!(effective_level(All, own(Nothing, NOW + 1), ConvKind::Group, NOW), Nothing);
        assert_eq!(effective_level(Mentions, own(Nothing, NOW), ConvKind::Group, NOW), Mentions);
        assert_eq!(effective_level(DirectAndMentions, None, ConvKind::Direct, NOW), DirectAndMentions);
        // Channels notify mentions only unless they have a level of their own.
        assert_eq!(effective_level(All, None, ConvKind::Channel, NOW), Mentions);
        assert_eq!(effective_level(All, own(All, 0), ConvKind::Channel, NOW), All);
        assert_eq!(effective_level(Nothing, None, ConvKind::Channel, NOW), Nothing);
    }

    #[test]
    fn each_level_lets_through_what_the_table_says() {
        use PushKind::*;
        use PushLevel::*;
        let kinds = [Message, Mention, CallInvite, AddedToConversation];
        let table: [(PushLevel, ConvKind, [bool; 4]); 8] = [
            (All, ConvKind::Group, [true, true, true, true]),
            (All, ConvKind::Direct, [true, true, true, true]),
            (DirectAndMentions, ConvKind::Direct, [true, true, true, true]),
            (DirectAndMentions, ConvKind::Group, [false, true, false, true]),
            (Mentions, ConvKind::Direct, [false, true, false, true]),
            (Mentions, ConvKind::Group, [false, true, false, true]),
            (Nothing, ConvKind::Direct, [false; 4]),
            (Nothing, ConvKind::Group, [false; 4]),
        ];
        for (level, conv, want) in table {
            for (kind, w) in kinds.iter().zip(want) {
                assert_eq!(notifies(level, *kind, conv), w, "{level:?} {kind:?} in {conv:?}");
            }
        }
    }

    fn due() -> DueDelivery {
        DueDelivery {
            id: 1,
            user: UserId(2),
            session: "s".into(),
            target: TargetRec {
                id: 3,
                user: UserId(2),
                session: "s".into(),
                provider: PushProvider::WebPush,
                token: "t".into(),
                app_id: String::new(),
                voip: false,
                created_at_ms: 0,
                disabled_at_ms: None,
                disabled_reason: String::new(),
            },
            conversation: ConvId(4),
            conv_kind: Some(ConvKind::Group),
            seq: 10,
            call_id: String::new(),
            kind: PushKind::Message,
            sender: UserId(5),
            message_id: Some(MessageId(6)),
            attempts: 1,
            created_at_ms: NOW - 10,
            expires_at_ms: NOW + 1000,
            session_ended: false,
            acked_seq: 9,
            member: true,
            message_deleted: false,
            sender_blocked: false,
            unread: 1,
            preview: false,
            account_level: PushLevel::All,
            own_level: None,
            fence: 0,
        }
    }

    #[test]
    fn a_delivery_is_sent_unless_something_made_it_pointless_or_late() {
        assert_eq!(verdict(&due(), NOW), Verdict::Send);
        let mut muted_long_ago = due();
        muted_long_ago.own_level = own(PushLevel::Nothing, NOW - 1);
        assert_eq!(verdict(&muted_long_ago, NOW), Verdict::Send, "a mute that ended");
        type Change = fn(&mut DueDelivery);
        let cases: [(Change, Verdict); 11] = [
            (|d| d.target.session = "other".into(), Verdict::Drop("the token was registered again by another device")),
            (|d| d.target.user = UserId(99), Verdict::Drop("the token was registered again by another device")),
            (|d| d.account_level = PushLevel::Mentions, Verdict::Drop("the settings changed")),
            (|d| d.own_level = own(PushLevel::Nothing, 0), Verdict::Drop("the settings changed")),
            (|d| d.session_ended = true, Verdict::Drop("the device signed out")),
            (|d| d.target.disabled_at_ms = Some(1), Verdict::Drop("the target was disabled")),
            (|d| d.acked_seq = 10, Verdict::Drop("acknowledged by the device")),
            (|d| d.member = false, Verdict::Drop("no longer a member")),
            (|d| d.message_deleted = true, Verdict::Drop("the message was deleted")),
            (|d| d.sender_blocked = true, Verdict::Drop("the sender is blocked")),
            (|d| d.expires_at_ms = NOW, Verdict::Expire),
        ];
        for (change, want) in cases {
            let mut d = due();
            change(&mut d);
            assert_eq!(verdict(&d, NOW), want);
        }
        // A call invite is not about a log entry: acks do not drop it.
        let mut call = due();
        call.kind = PushKind::CallInvite;
        call.seq = 0;
        assert_eq!(verdict(&call, NOW), Verdict::Send);
    }
}
