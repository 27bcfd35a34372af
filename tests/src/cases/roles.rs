//! Cases for roles, settings and the permission matrix (docs/protocol.md §12.8): what each role
//! may do in groups, that a denied action answers PERMISSION_DENIED and changes nothing, and that
//! DIRECT conversations have no roles.

use anyhow::ensure;
use confab_protocol::v1::{self, ErrorCode, MemberRole, conversation_event::Body};

use super::Target;
use super::common::*;

fn set_role(conv: u64, user: u64, role: MemberRole) -> v1::SetRole {
    v1::SetRole { conversation_id: conv, user_id: user, role: role as i32 }
}

fn update(conv: u64) -> v1::UpdateConversation {
    v1::UpdateConversation { conversation_id: conv, ..Default::default() }
}

fn pin(conv: u64, message_id: u64) -> v1::PinMessage {
    v1::PinMessage { conversation_id: conv, message_id }
}

fn delete(conv: u64, message_id: u64) -> v1::DeleteMessage {
    v1::DeleteMessage { conversation_id: conv, message_id }
}

/// §12.8: UpdateConversation keeps absent fields and logs ConversationUpdated with every setting;
/// announcement-only stops members posting; SetRole (not to OWNER; the same role writes nothing)
/// An image `a` uploads for a conversation photo (§22.10); its media id.
async fn photo(a: &Account) -> anyhow::Result<String> {
    let spec = confab_protocol::client::media::UploadSpec {
        mime_type: "image/png".into(),
        purpose: v1::MediaPurpose::ConversationPhoto,
        ..Default::default()
    };
    let bytes = crate::media::png(32, 32);
    Ok(a.client.upload(&mut std::io::Cursor::new(bytes), &spec, &mut |_| {}).await?.media_id)
}

/// and TransferOwnership (the old owner becomes ADMIN) are log entries.
pub(super) async fn settings_roles_and_ownership(t: Target) -> anyhow::Result<()> {
    let o = account(&t, "cfstO").await?;
    let mut m = account(&t, "cfstM").await?;
    let conv = group(&o, &[m.id]).await?;
    let c = call!(
        o.client,
        UpdateConversation,
        v1::UpdateConversation { title: Some("Renamed".into()), description: Some("about".into()), ..update(conv) }
    )?;
    ensure!(c.title == "Renamed" && c.description == "about" && !c.announcement_only, "{c:?}");
    let photo = photo(&o).await?;
    let c = call!(
        o.client,
        UpdateConversation,
        v1::UpdateConversation { photo_ref: Some(photo.clone()), announcement_only: Some(true), ..update(conv) }
    )?;
    ensure!(c.title == "Renamed" && c.photo_ref == photo && c.announcement_only, "{c:?}");
    let e = entry(&mut m.events, conv, |b| matches!(b, Body::Updated(u) if u.announcement_only)).await?;
    let want = v1::ConversationUpdated {
        title: "Renamed".into(),
        description: "about".into(),
        photo_ref: photo.clone(),
        announcement_only: true,
    };
    ensure!(e.body == Some(Body::Updated(want)) && e.actor_id == o.id, "{e:?}");
    for (r, field) in [
        (v1::UpdateConversation { title: Some(String::new()), ..update(conv) }, "update_conversation.title"),
        (v1::UpdateConversation { photo_ref: Some("p".repeat(257)), ..update(conv) }, "update_conversation.photo_ref"),
    ] {
        let e = expect_code(call!(o.client, UpdateConversation, r), ErrorCode::InvalidArgument)?;
        ensure!(e.field == field, "{e:?}");
    }
    expect_code(call!(m.client, SendMessage, message(conv, "st1", "may I?")), ErrorCode::PermissionDenied)?;
    send(&o, conv, "st2", "announcement").await?;
    expect_code(call!(o.client, SetRole, set_role(conv, m.id, MemberRole::Owner)), ErrorCode::InvalidArgument)?;
    let r = call!(o.client, SetRole, set_role(conv, m.id, MemberRole::Admin))?;
    let e = entry(&mut m.events, conv, |b| matches!(b, Body::RoleChanged(_))).await?;
    ensure!(e.seq == r.seq, "{e:?}");
    ensure!(
        matches!(e.body, Some(Body::RoleChanged(c)) if c.user_id == m.id && c.role() == MemberRole::Admin),
        "{e:?}"
    );
    send(&m, conv, "st3", "now I may").await?;
    let head = get(&o, conv).await?.head_seq;
    let same = call!(o.client, SetRole, set_role(conv, m.id, MemberRole::Admin))?;
    ensure!(same.seq == head && get(&o, conv).await?.head_seq == head, "the same role wrote an entry");
    let moved = call!(o.client, TransferOwnership, v1::TransferOwnership { conversation_id: conv, user_id: m.id })?;
    let e = entry(&mut m.events, conv, |b| matches!(b, Body::OwnershipTransferred(_))).await?;
    ensure!(e.seq == moved.seq, "{e:?}");
    ensure!(
        matches!(e.body, Some(Body::OwnershipTransferred(x)) if x.from_user_id == o.id && x.to_user_id == m.id),
        "{e:?}"
    );
    ensure!(get(&o, conv).await?.my_role() == MemberRole::Admin && get(&m, conv).await?.my_role() == MemberRole::Owner);
    Ok(())
}

/// §12.8: a MEMBER is refused every action the matrix gives to higher roles, with
/// PERMISSION_DENIED, and nothing changes.
pub(super) async fn member_is_denied_by_the_matrix(t: Target) -> anyhow::Result<()> {
    let o = account(&t, "cfpmO").await?;
    let m = account(&t, "cfpmM").await?;
    let x = account(&t, "cfpmX").await?;
    let y = account(&t, "cfpmY").await?;
    let conv = group(&o, &[m.id, x.id]).await?;
    let own = send(&o, conv, "pm1", "owner's").await?;
    let other = send(&x, conv, "pm2", "another member's").await?;
    let before = (get(&o, conv).await?, members(&o, conv).await?, history(&o, conv).await?);
    let c = &m.client;
    for (what, result) in [
        ("AddMembers", call!(c, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![y.id] }).err()),
        ("RemoveMember", call!(c, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: x.id }).err()),
        ("SetRole", call!(c, SetRole, set_role(conv, x.id, MemberRole::Moderator)).err()),
        (
            "TransferOwnership",
            call!(c, TransferOwnership, v1::TransferOwnership { conversation_id: conv, user_id: x.id }).err(),
        ),
        (
            "UpdateConversation",
            call!(c, UpdateConversation, v1::UpdateConversation { title: Some("mine".into()), ..update(conv) }).err(),
        ),
        ("PinMessage", call!(c, PinMessage, pin(conv, own.message_id)).err()),
        ("DeleteMessage (owner's)", call!(c, DeleteMessage, delete(conv, own.message_id)).err()),
        ("DeleteMessage (member's)", call!(c, DeleteMessage, delete(conv, other.message_id)).err()),
        (
            "EditMessage (member's)",
            call!(
                c,
                EditMessage,
                v1::EditMessage { conversation_id: conv, message_id: other.message_id, text: "changed".into() }
            )
            .err(),
        ),
    ] {
        let code = result.and_then(|e| e.code());
        ensure!(code == Some(ErrorCode::PermissionDenied), "{what} by a MEMBER: {code:?}");
    }
    let after = (get(&o, conv).await?, members(&o, conv).await?, history(&o, conv).await?);
    ensure!(before == after, "a denied action changed something: {before:?} / {after:?}");
    Ok(())
}

/// §12.8: a MODERATOR pins and deletes others' messages but manages nobody; an ADMIN adds,
/// removes and sets roles below their own but cannot transfer ownership or touch the owner.
pub(super) async fn higher_roles_act_as_the_matrix_allows(t: Target) -> anyhow::Result<()> {
    let o = account(&t, "cfprO").await?;
    let ad = account(&t, "cfprA").await?;
    let md = account(&t, "cfprD").await?;
    let m = account(&t, "cfprM").await?;
    let y = account(&t, "cfprY").await?;
    let conv = group(&o, &[ad.id, md.id, m.id]).await?;
    call!(o.client, SetRole, set_role(conv, ad.id, MemberRole::Admin))?;
    call!(o.client, SetRole, set_role(conv, md.id, MemberRole::Moderator))?;
    let owners = send(&o, conv, "pr1", "owner's").await?;
    let members_msg = send(&m, conv, "pr2", "member's").await?;
    // Moderator.
    let c = &md.client;
    call!(c, PinMessage, pin(conv, owners.message_id))?;
    call!(c, UnpinMessage, v1::UnpinMessage { conversation_id: conv, message_id: owners.message_id })?;
    call!(c, DeleteMessage, delete(conv, members_msg.message_id))?;
    let add = |c: &confab_protocol::client::Client| {
        let r = v1::AddMembers { conversation_id: conv, user_ids: vec![y.id] };
        let c = c.clone();
        async move { call!(c, AddMembers, r) }
    };
    for (what, result) in [
        ("AddMembers", add(c).await.err()),
        ("RemoveMember", call!(c, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: m.id }).err()),
        ("SetRole", call!(c, SetRole, set_role(conv, m.id, MemberRole::Member)).err()),
        (
            "UpdateConversation",
            call!(c, UpdateConversation, v1::UpdateConversation { title: Some("mod".into()), ..update(conv) }).err(),
        ),
    ] {
        let code = result.and_then(|e| e.code());
        ensure!(code == Some(ErrorCode::PermissionDenied), "{what} by a MODERATOR: {code:?}");
    }
    // Admin.
    let c = &ad.client;
    add(c).await?;
    call!(c, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: y.id })?;
    call!(c, SetRole, set_role(conv, m.id, MemberRole::Moderator))?;
    call!(c, UpdateConversation, v1::UpdateConversation { title: Some("by admin".into()), ..update(conv) })?;
    for (what, result) in [
        ("SetRole to ADMIN", call!(c, SetRole, set_role(conv, md.id, MemberRole::Admin)).err()),
        (
            "RemoveMember (owner)",
            call!(c, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: o.id }).err(),
        ),
        (
            "TransferOwnership",
            call!(c, TransferOwnership, v1::TransferOwnership { conversation_id: conv, user_id: m.id }).err(),
        ),
    ] {
        let code = result.and_then(|e| e.code());
        ensure!(code == Some(ErrorCode::PermissionDenied), "{what} by an ADMIN: {code:?}");
    }
    ensure!(role_of(&o, conv, m.id).await? == Some(MemberRole::Moderator));
    ensure!(role_of(&o, conv, md.id).await? == Some(MemberRole::Moderator));
    ensure!(role_of(&o, conv, o.id).await? == Some(MemberRole::Owner));
    Ok(())
}

/// §12.8: in a DIRECT conversation both members may pin, and nobody deletes the other's messages.
pub(super) async fn direct_conversations_have_no_roles(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfdrA").await?;
    let b = account(&t, "cfdrB").await?;
    let dm = direct(&a, b.id).await?.conversation_id;
    let from_a = send(&a, dm, "dr1", "from a").await?;
    let from_b = send(&b, dm, "dr2", "from b").await?;
    call!(b.client, PinMessage, pin(dm, from_a.message_id))?;
    call!(a.client, PinMessage, pin(dm, from_b.message_id))?;
    let pins = call!(a.client, ListPins, v1::ListPins { conversation_id: dm })?.messages;
    ensure!(pins.len() == 2 && pins.iter().all(|m| m.pinned), "{pins:?}");
    expect_code(call!(b.client, DeleteMessage, delete(dm, from_a.message_id)), ErrorCode::PermissionDenied)?;
    expect_code(call!(a.client, DeleteMessage, delete(dm, from_b.message_id)), ErrorCode::PermissionDenied)?;
    ensure!(history(&a, dm).await?.iter().all(|m| !m.deleted), "a message was deleted");
    Ok(())
}
