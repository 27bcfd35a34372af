//! The permission matrix of groups and channels (docs/protocol.md §12.8): one test per cell,
//! role × action → allowed or PERMISSION_DENIED, with the conversation unchanged when denied.
//! The expectations are written out here, independently of the server's own table.

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{User, expect_code, msg_key, new_user};
use confab_protocol::v1::{self, ErrorCode, MemberRole};

#[derive(Clone, Copy, Debug)]
enum Act {
    AddMembers,
    RemoveMembers,
    ChangeRoles,
    TransferOwnership,
    EditInfo,
    Pin,
    DeleteOthersMessages,
    PostInAnnouncementOnly,
}

/// The matrix as documented: which roles may do what.
fn expected(role: MemberRole, act: Act) -> bool {
    use MemberRole::*;
    match act {
        Act::TransferOwnership => role == Owner,
        Act::AddMembers | Act::RemoveMembers | Act::ChangeRoles | Act::EditInfo | Act::PostInAnnouncementOnly => {
            matches!(role, Owner | Admin)
        }
        Act::Pin | Act::DeleteOthersMessages => matches!(role, Owner | Admin | Moderator),
    }
}

/// Everything a denied action must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    conversation: v1::Conversation,
    members: Vec<v1::Member>,
    history: Vec<v1::Message>,
    pins: Vec<v1::Message>,
}

async fn snapshot(owner: &User, conv: u64) -> anyhow::Result<Snapshot> {
    let mut conversation = call!(owner.client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    conversation.last_activity_ms = 0;
    Ok(Snapshot {
        conversation,
        members: call!(owner.client, ListMembers, v1::ListMembers { conversation_id: conv, ..Default::default() })?
            .members,
        history: call!(owner.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() })?
            .messages,
        pins: call!(owner.client, ListPins, v1::ListPins { conversation_id: conv })?.messages,
    })
}

async fn cell(s: &TestServer, t: Transport, role: MemberRole, act: Act) -> anyhow::Result<()> {
    let owner = new_user(s, t, "own").await?;
    let other = new_user(s, t, "act").await?;
    let target = new_user(s, t, "tgt").await?;
    let newcomer = new_user(s, t, "new").await?;
    let conv = call!(
        owner.client,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Group as i32,
            title: "matrix".into(),
            member_ids: vec![other.id, target.id],
            ..Default::default()
        }
    )?
    .conversation_id;
    let msg = call!(
        target.client,
        SendMessage,
        v1::SendMessage {
            conversation_id: conv,
            client_msg_id: msg_key("target-msg"),
            text: "by the target".into(),
            ..Default::default()
        }
    )?;
    if matches!(act, Act::PostInAnnouncementOnly) {
        call!(
            owner.client,
            UpdateConversation,
            v1::UpdateConversation { conversation_id: conv, announcement_only: Some(true), ..Default::default() }
        )?;
    }
    let actor = if role == MemberRole::Owner {
        &owner
    } else {
        if role != MemberRole::Member {
            call!(owner.client, SetRole, v1::SetRole { conversation_id: conv, user_id: other.id, role: role as i32 })?;
        }
        &other
    };
    let before = snapshot(&owner, conv).await?;
    let c = &actor.client;
    let result: Result<(), confab_protocol::client::ClientError> = match act {
        Act::AddMembers => {
            call!(c, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![newcomer.id] }).map(drop)
        }
        Act::RemoveMembers => {
            call!(c, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: target.id }).map(drop)
        }
        Act::ChangeRoles => call!(
            c,
            SetRole,
            v1::SetRole { conversation_id: conv, user_id: target.id, role: MemberRole::Moderator as i32 }
        )
        .map(drop),
        Act::TransferOwnership => {
            call!(c, TransferOwnership, v1::TransferOwnership { conversation_id: conv, user_id: target.id }).map(drop)
        }
        Act::EditInfo => call!(
            c,
            UpdateConversation,
            v1::UpdateConversation { conversation_id: conv, title: Some("renamed".into()), ..Default::default() }
        )
        .map(drop),
        Act::Pin => {
            call!(c, PinMessage, v1::PinMessage { conversation_id: conv, message_id: msg.message_id }).map(drop)
        }
        Act::DeleteOthersMessages => {
            call!(c, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: msg.message_id }).map(drop)
        }
        Act::PostInAnnouncementOnly => call!(
            c,
            SendMessage,
            v1::SendMessage {
                conversation_id: conv,
                client_msg_id: msg_key("announce"),
                text: "hear ye".into(),
                ..Default::default()
            }
        )
        .map(drop),
    };
    let after = snapshot(&owner, conv).await?;
    if expected(role, act) {
        result.with_context(|| format!("{role:?} should be allowed to {act:?}"))?;
        ensure!(after.conversation.head_seq == before.conversation.head_seq + 1, "{role:?} {act:?}: no log entry");
    } else {
        expect_code(result, ErrorCode::PermissionDenied).with_context(|| format!("{role:?} must not {act:?}"))?;
        ensure!(after == before, "{role:?} {act:?}: denied, yet the conversation changed:\n{before:#?}\n{after:#?}");
    }
    Ok(())
}

macro_rules! cells {
    ($($name:ident: $role:ident, $act:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let s = TestServer::start(StoreKind::Sqlite).await.expect("start");
                cell(&s, Transport::WebSocket, MemberRole::$role, Act::$act).await.expect(stringify!($name));
                s.stop().await.expect("stop");
            }
        )*

        /// The whole matrix again on PostgreSQL over QUIC.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn whole_matrix_on_postgres_over_quic() {
            let s = TestServer::start(StoreKind::Postgres).await.expect("start");
            $( cell(&s, Transport::Quic, MemberRole::$role, Act::$act).await.expect(stringify!($name)); )*
            s.stop().await.expect("stop");
        }
    };
}

cells! {
    owner_may_add_members: Owner, AddMembers;
    admin_may_add_members: Admin, AddMembers;
    moderator_may_not_add_members: Moderator, AddMembers;
    member_may_not_add_members: Member, AddMembers;
    owner_may_remove_members: Owner, RemoveMembers;
    admin_may_remove_members: Admin, RemoveMembers;
    moderator_may_not_remove_members: Moderator, RemoveMembers;
    member_may_not_remove_members: Member, RemoveMembers;
    owner_may_change_roles: Owner, ChangeRoles;
    admin_may_change_roles: Admin, ChangeRoles;
    moderator_may_not_change_roles: Moderator, ChangeRoles;
    member_may_not_change_roles: Member, ChangeRoles;
    owner_may_transfer_ownership: Owner, TransferOwnership;
    admin_may_not_transfer_ownership: Admin, TransferOwnership;
    moderator_may_not_transfer_ownership: Moderator, TransferOwnership;
    member_may_not_transfer_ownership: Member, TransferOwnership;
    owner_may_edit_info: Owner, EditInfo;
    admin_may_edit_info: Admin, EditInfo;
    moderator_may_not_edit_info: Moderator, EditInfo;
    member_may_not_edit_info: Member, EditInfo;
    owner_may_pin: Owner, Pin;
    admin_may_pin: Admin, Pin;
    moderator_may_pin: Moderator, Pin;
    member_may_not_pin: Member, Pin;
    owner_may_delete_others_messages: Owner, DeleteOthersMessages;
    admin_may_delete_others_messages: Admin, DeleteOthersMessages;
    moderator_may_delete_others_messages: Moderator, DeleteOthersMessages;
    member_may_not_delete_others_messages: Member, DeleteOthersMessages;
    owner_may_post_in_announcement_only: Owner, PostInAnnouncementOnly;
    admin_may_post_in_announcement_only: Admin, PostInAnnouncementOnly;
    moderator_may_not_post_in_announcement_only: Moderator, PostInAnnouncementOnly;
    member_may_not_post_in_announcement_only: Member, PostInAnnouncementOnly;
}
