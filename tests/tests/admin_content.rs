//! An administrator's deletions (docs/protocol.md §26.4, §26.6) and the audit entries of the
//! members' moderation (§28.1), on both stores and both transports: a message deleted in a
//! conversation the administrator is not in reaches its members as any deletion; a deleted
//! conversation leaves its members' lists and answers NOT_FOUND to every read; a deleted account's
//! sessions close, and with erase its messages go, in steps; each of these, and a moderator's
//! deletion, a role change, a removal and an ownership transfer, is one audit entry; the chain
//! stays intact.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestFn, TestServer, Transport};
use confab_conformance::util::{
    User, direct, expect_code, group, new_user, next_matching, second_device, send, unique,
};
use confab_protocol::v1::{
    self, ErrorCode, MemberRole, SessionRevokedReason, client_frame::Request, conversation_event::Body, event,
    response::Result as R, user_update,
};
use confab_server::store::{
    AttachmentFilter, AuditAction, AuditRec, ConvId, IndexKind, MessageId, SearchOrder, SearchSpec, UserId,
};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    an_administrator_deletes_a_message_anywhere,
    an_administrator_deletes_a_conversation,
    an_administrator_deletes_an_account,
    an_administrator_erases_an_account,
    members_moderation_is_audited_once_each,
];

confab_conformance::matrix_tests!(TESTS);

const WAIT: Duration = Duration::from_secs(5);

/// A new server administrator (the flag set as the command line sets it).
async fn admin(s: &TestServer, t: Transport) -> anyhow::Result<User> {
    let a = new_user(s, t, "adm").await?;
    s.grant_server_admin(a.id).await?;
    Ok(a)
}

/// The audit entries after `after` (a seq) whose `pick` holds.
async fn audited(s: &TestServer, after: i64, pick: impl Fn(&AuditRec) -> bool) -> anyhow::Result<Vec<AuditRec>> {
    Ok(s.store().audit_after(after, 10_000).await?.into_iter().filter(|r| pick(r)).collect())
}

async fn head(s: &TestServer) -> anyhow::Result<i64> {
    Ok(s.store().audit_head().await?.seq)
}

async fn chain_intact(s: &TestServer) -> anyhow::Result<()> {
    let report = s.store().verify_audit().await?;
    ensure!(report.broken.is_none() && report.entries == report.head.seq as u64, "{report:?}");
    Ok(())
}

/// The next live entry of `conv` whose body `pick` accepts.
async fn entry(u: &mut User, conv: u64, pick: impl Fn(&Body) -> bool) -> anyhow::Result<v1::ConversationEvent> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::ConversationEvent(c) if c.conversation_id == conv && c.body.as_ref().is_some_and(&pick) => {
            Some(c.clone())
        }
        _ => None,
    })
    .await
}

/// The messages of `conv` as the store keeps them (deleted ones included).
async fn stored(s: &TestServer, conv: u64, viewer: u64) -> anyhow::Result<Vec<confab_server::store::MessageRec>> {
    Ok(s.store().history(ConvId(conv as i64), UserId(viewer as i64), None, Some(0), 1_000).await?)
}

/// How many messages of `conv` the search index holds within `user`'s spans (§23.1), as the
/// store finds them before a search drops those it cannot show.
async fn indexed(s: &TestServer, user: u64, conv: u64) -> anyhow::Result<usize> {
    let spec = SearchSpec {
        user: UserId(user as i64),
        index: IndexKind::Folded,
        matching: None,
        scored: Vec::new(),
        conversations: vec![ConvId(conv as i64)],
        senders: Vec::new(),
        sent_after_ms: None,
        sent_before_ms: None,
        attachments: AttachmentFilter::Either,
        order: SearchOrder::Newest,
        after: None,
        limit: 100,
    };
    Ok(s.store().search(&spec).await?.len())
}

fn delete_message(conv: u64, message: u64) -> Request {
    Request::AdminDeleteMessage(v1::AdminDeleteMessage { conversation_id: conv, message_id: message })
}

/// §26.6: a message of a group the administrator is not in: its members get MessageDeleted
/// (actor: the administrator) live and in history, its pin goes; again: seq 0; a missing message
/// or conversation, or a caller who is not an administrator: NOT_FOUND. One audit entry.
async fn an_administrator_deletes_a_message_anywhere(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let mut alice = new_user(s, t, "amA").await?;
    let bob = new_user(s, t, "amB").await?;
    let conv = call!(alice.client, CreateConversation, group("moderated", &[bob.id]))?.conversation_id;
    let bad = call!(bob.client, SendMessage, send(conv, "am1", "something unlawful"))?;
    let kept = call!(bob.client, SendMessage, send(conv, "am2", "something fine"))?;
    call!(alice.client, PinMessage, v1::PinMessage { conversation_id: conv, message_id: bad.message_id })?;
    let before = head(s).await?;
    let r = adm.client.request(delete_message(conv, bad.message_id)).await?;
    let R::AdminDeleteMessage(done) = r else { bail!("got {r:?}") };
    let live = entry(&mut alice, conv, |b| matches!(b, Body::MessageDeleted(_))).await?;
    ensure!(live.seq == done.seq && live.actor_id == adm.id, "{live:?} {done:?}");
    ensure!(matches!(&live.body, Some(Body::MessageDeleted(d)) if d.message_id == bad.message_id), "{live:?}");
    let unpinned = entry(&mut alice, conv, |b| matches!(b, Body::MessageUnpinned(_))).await?;
    ensure!(unpinned.seq == done.seq + 1 && unpinned.actor_id == adm.id, "{unpinned:?}");
    let h = call!(bob.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 50, ..Default::default() })?;
    let gone = h.messages.iter().find(|m| m.message_id == bad.message_id).context("the tombstone")?;
    ensure!(gone.deleted && gone.text.is_empty(), "{gone:?}");
    let k = h.messages.iter().find(|m| m.message_id == kept.message_id).context("the other one")?;
    ensure!(!k.deleted && k.text == "something fine", "{k:?}");
    // The administrator is still no member: the conversation stays hidden from them.
    let get = call!(adm.client, GetConversation, v1::GetConversation { conversation_id: conv });
    expect_code(get, ErrorCode::NotFound)?;
    // Again: nothing more, seq 0.
    let r = adm.client.request(delete_message(conv, bad.message_id)).await?;
    ensure!(matches!(r, R::AdminDeleteMessage(v1::AdminDeleteMessageResult { seq: 0 })), "{r:?}");
    for (c, m) in [(conv, 1 << 40), (1 << 40, kept.message_id)] {
        let e = adm.client.request(delete_message(c, m)).await;
        expect_code(e, ErrorCode::NotFound)?;
    }
    // Someone else's message of another conversation is not in this one.
    let other = call!(alice.client, CreateConversation, group("other", &[bob.id]))?.conversation_id;
    expect_code(adm.client.request(delete_message(other, kept.message_id)).await, ErrorCode::NotFound)?;
    // A member, even the owner, is no administrator.
    expect_code(alice.client.request(delete_message(conv, kept.message_id)).await, ErrorCode::NotFound)?;
    let log = audited(s, before, |r| r.entry.action == AuditAction::MessageDeleted).await?;
    ensure!(log.len() == 1, "{log:?}");
    let e = &log[0].entry;
    ensure!(
        e.actor == Some(UserId(adm.id as i64))
            && e.target_user == Some(UserId(bob.id as i64))
            && e.target_conversation == Some(ConvId(conv as i64))
            && e.target_message == Some(MessageId(bad.message_id as i64))
            && e.client_addr == "127.0.0.1",
        "{e:?}"
    );
    chain_intact(s).await
}

/// Waits for `u`'s user-log entry that removes it from `conv`.
async fn removed_from(u: &mut User, conv: u64) -> anyhow::Result<()> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::UserUpdate(v1::UserUpdate {
            body: Some(user_update::Body::RemovedFromConversation(r)), ..
        }) if r.conversation_id == conv => Some(()),
        _ => None,
    })
    .await
}

/// §26.6: a channel and a direct conversation deleted: each member gets its own MemberRemoved
/// and RemovedFromConversation live; every read answers NOT_FOUND or leaves it out; its
/// messages are deleted; a new direct conversation of the pair is a new one. One audit entry.
async fn an_administrator_deletes_a_conversation(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let mut alice = new_user(s, t, "acA").await?;
    let mut bob = new_user(s, t, "acB").await?;
    let title = unique("doomed");
    let channel = v1::CreateConversation {
        kind: v1::ConversationKind::Channel as i32,
        title: title.clone(),
        ..Default::default()
    };
    let conv = call!(alice.client, CreateConversation, channel)?.conversation_id;
    call!(bob.client, JoinChannel, v1::JoinChannel { conversation_id: conv })?;
    for (i, u) in [&alice, &bob, &alice].into_iter().enumerate() {
        call!(u.client, SendMessage, send(conv, &format!("ac{i}"), "soon gone"))?;
    }
    // Searched once, so the index holds the three (a search waits for the index, §23.6).
    let q = v1::SearchMessages { query: "soon".into(), conversation_ids: vec![conv], ..Default::default() };
    ensure!(call!(alice.client, SearchMessages, q)?.hits.len() == 3, "indexed");
    ensure!(indexed(s, alice.id, conv).await? == 3, "the index holds them");
    let before = head(s).await?;
    let r = adm
        .client
        .request(Request::AdminDeleteConversation(v1::AdminDeleteConversation { conversation_id: conv }))
        .await?;
    let R::AdminDeleteConversation(done) = r else { bail!("got {r:?}") };
    ensure!(done.members_removed == 2 && done.messages_deleted == 3, "{done:?}");
    for (u, id) in [(&mut alice, 0), (&mut bob, 1)] {
        let me = u.id;
        let gone = entry(u, conv, |b| matches!(b, Body::MemberRemoved(_))).await?;
        ensure!(
            gone.actor_id == adm.id && matches!(&gone.body, Some(Body::MemberRemoved(m)) if m.user_id == me),
            "member {id}: {gone:?}"
        );
        removed_from(u, conv).await?;
    }
    for u in [&alice, &bob, &adm] {
        expect_code(
            call!(u.client, GetConversation, v1::GetConversation { conversation_id: conv }),
            ErrorCode::NotFound,
        )?;
        expect_code(call!(u.client, JoinChannel, v1::JoinChannel { conversation_id: conv }), ErrorCode::NotFound)?;
        let found =
            call!(u.client, DiscoverChannels, v1::DiscoverChannels { query: title.clone(), ..Default::default() })?;
        ensure!(found.conversations.is_empty(), "{found:?}");
        let list = call!(u.client, ListConversations, v1::ListConversations { page_token: String::new(), limit: 100 })?;
        ensure!(list.conversations.iter().all(|c| c.conversation_id != conv), "still listed");
        let h = call!(u.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 10, ..Default::default() });
        expect_code(h, ErrorCode::NotFound)?;
        expect_code(call!(u.client, SendMessage, send(conv, "late", "anyone?")), ErrorCode::NotFound)?;
    }
    let msgs = stored(s, conv, alice.id).await?;
    ensure!(msgs.len() == 3 && msgs.iter().all(|m| m.deleted && m.text.is_empty()), "{msgs:?}");
    ensure!(indexed(s, alice.id, conv).await? == 0, "search documents are left");
    let again = adm
        .client
        .request(Request::AdminDeleteConversation(v1::AdminDeleteConversation { conversation_id: conv }))
        .await;
    expect_code(again, ErrorCode::NotFound)?;
    // A direct conversation: the pair may start a new one afterwards.
    let dm = call!(alice.client, CreateConversation, direct(bob.id))?.conversation_id;
    call!(bob.client, SendMessage, send(dm, "acd", "between us"))?;
    let r = adm
        .client
        .request(Request::AdminDeleteConversation(v1::AdminDeleteConversation { conversation_id: dm }))
        .await?;
    ensure!(
        matches!(
            r,
            R::AdminDeleteConversation(v1::AdminDeleteConversationResult { members_removed: 2, messages_deleted: 1 })
        ),
        "{r:?}"
    );
    removed_from(&mut bob, dm).await?;
    let fresh = call!(bob.client, CreateConversation, direct(alice.id))?.conversation_id;
    ensure!(fresh != dm, "the deleted direct conversation came back");
    let log = audited(s, before, |r| r.entry.action == AuditAction::ConversationDeleted).await?;
    ensure!(log.len() == 2, "{log:?}");
    let e = &log[0].entry;
    ensure!(
        e.actor == Some(UserId(adm.id as i64))
            && e.target_conversation == Some(ConvId(conv as i64))
            && e.after.contains("\"members_removed\":2")
            && e.client_addr == "127.0.0.1",
        "{e:?}"
    );
    chain_intact(s).await
}

/// Waits for SessionRevoked with reason ACCOUNT_DELETED and the connection's end.
async fn closed_as_deleted(u: &mut User) -> anyhow::Result<()> {
    let reason = tokio::time::timeout(WAIT, async {
        let mut seen = None;
        while let Some(e) = u.events.recv().await {
            if let Some(event::Event::SessionRevoked(r)) = e.event {
                seen = Some(r.reason());
            }
        }
        seen
    })
    .await
    .context("the connection was not closed")?;
    ensure!(reason == Some(SessionRevokedReason::AccountDeleted), "{reason:?}");
    Ok(())
}

fn delete_user(user: u64, erase: bool) -> Request {
    Request::AdminDeleteUser(v1::AdminDeleteUser { user_id: user, erase })
}

/// §26.4 without erase: every connection of the account is told ACCOUNT_DELETED and closed, it
/// leaves its groups (an owner's pass on), its messages stay; again: NOT_FOUND, but with erase
/// its messages go then; one's own account: FAILED_PRECONDITION. Audited `account_deleted`, then
/// `account_erased` for each erase, by the administrator.
async fn an_administrator_deletes_an_account(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let mut bob = new_user(s, t, "adB").await?;
    let mut bob2 = second_device(s, t, &bob).await?;
    let mut alice = new_user(s, t, "adA").await?;
    let conv = call!(bob.client, CreateConversation, group("bob's", &[alice.id]))?.conversation_id;
    let m = call!(bob.client, SendMessage, send(conv, "ad1", "still here after me"))?;
    let before = head(s).await?;
    let r = adm.client.request(delete_user(bob.id, false)).await?;
    ensure!(matches!(r, R::AdminDeleteUser(v1::AdminDeleteUserResult { messages_erased: 0 })), "{r:?}");
    closed_as_deleted(&mut bob).await?;
    closed_as_deleted(&mut bob2).await?;
    let left = entry(&mut alice, conv, |b| matches!(b, Body::MemberLeft(_))).await?;
    ensure!(left.actor_id == bob.id, "{left:?}");
    let h = call!(alice.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 10, ..Default::default() })?;
    let kept = h.messages.iter().find(|x| x.message_id == m.message_id).context("the message")?;
    ensure!(!kept.deleted && kept.text == "still here after me", "{kept:?}");
    expect_code(adm.client.request(delete_user(bob.id, false)).await, ErrorCode::NotFound)?;
    // A deleted account's messages can still be erased (and an erase a failure stopped resumed).
    let r = adm.client.request(delete_user(bob.id, true)).await?;
    ensure!(matches!(r, R::AdminDeleteUser(v1::AdminDeleteUserResult { messages_erased: 1 })), "{r:?}");
    let r = adm.client.request(delete_user(bob.id, true)).await?;
    ensure!(matches!(r, R::AdminDeleteUser(v1::AdminDeleteUserResult { messages_erased: 0 })), "{r:?}");
    expect_code(adm.client.request(delete_user(adm.id, false)).await, ErrorCode::FailedPrecondition)?;
    expect_code(adm.client.request(delete_user(1 << 40, false)).await, ErrorCode::NotFound)?;
    expect_code(alice.client.request(delete_user(adm.id, false)).await, ErrorCode::NotFound)?;
    let about_bob = audited(s, before, |r| r.entry.target_user == Some(UserId(bob.id as i64))).await?;
    let got: Vec<(AuditAction, Option<UserId>)> = about_bob.iter().map(|r| (r.entry.action, r.entry.actor)).collect();
    // The deletion, then the automatic passing of bob's group to alice as bob leaves it.
    let by_admin = Some(UserId(adm.id as i64));
    let want = [
        (AuditAction::AccountDeleted, by_admin),
        (AuditAction::AccountErased, by_admin),
        (AuditAction::AccountErased, by_admin),
    ];
    ensure!(got == want, "{got:?}");
    ensure!(about_bob[0].entry.client_addr == "127.0.0.1", "{:?}", about_bob[0]);
    let passed = audited(s, before, |r| r.entry.action == AuditAction::OwnershipTransferred).await?;
    ensure!(
        passed.len() == 1
            && passed[0].entry.target_user == Some(UserId(alice.id as i64))
            && passed[0].entry.target == "automatic",
        "{passed:?}"
    );
    chain_intact(s).await
}

/// §26.4 with erase: more messages than one step takes (500), in a group and a direct
/// conversation: every one deleted (members see MessageDeleted by the administrator), the
/// others' kept; audited `account_deleted` then `account_erased` with the number.
async fn an_administrator_erases_an_account(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    const N: usize = 505;
    let adm = admin(s, t).await?;
    let carol = new_user(s, t, "aeC").await?;
    let mut alice = new_user(s, t, "aeA").await?;
    let grp = call!(alice.client, CreateConversation, group("erased", &[carol.id]))?.conversation_id;
    let dm = call!(carol.client, CreateConversation, direct(alice.id))?.conversation_id;
    let hers = call!(alice.client, SendMessage, send(grp, "ae-alice", "mine stays"))?;
    for chunk in (0..N).collect::<Vec<_>>().chunks(25) {
        let sends = chunk.iter().map(|i| {
            let conv = if i % 3 == 0 { dm } else { grp };
            let req = send(conv, &format!("ae{i}"), &format!("message {i}"));
            async { call!(carol.client, SendMessage, req) }
        });
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
    }
    let before = head(s).await?;
    let r = adm.client.request(delete_user(carol.id, true)).await?;
    let R::AdminDeleteUser(done) = r else { bail!("got {r:?}") };
    ensure!(done.messages_erased == N as u64, "{done:?}");
    let live = entry(&mut alice, dm, |b| matches!(b, Body::MessageDeleted(_))).await?;
    ensure!(live.actor_id == adm.id, "{live:?}");
    for conv in [grp, dm] {
        let msgs = stored(s, conv, alice.id).await?;
        let (theirs, mine): (Vec<_>, Vec<_>) = msgs.iter().partition(|m| m.sender_id == UserId(carol.id as i64));
        ensure!(theirs.iter().all(|m| m.deleted && m.text.is_empty()), "a message of carol's is left");
        ensure!(mine.iter().all(|m| !m.deleted), "alice's message was deleted");
        if conv == grp {
            ensure!(mine.len() == 1 && mine[0].id == MessageId(hers.message_id as i64), "{mine:?}");
        }
        ensure!(!theirs.is_empty());
    }
    let got: Vec<(AuditAction, String)> = audited(s, before, |r| r.entry.target_user == Some(UserId(carol.id as i64)))
        .await?
        .into_iter()
        .map(|r| (r.entry.action, r.entry.after))
        .collect();
    let want =
        [(AuditAction::AccountDeleted, String::new()), (AuditAction::AccountErased, format!("{{\"messages\":{N}}}"))];
    ensure!(got == want, "{got:?}");
    chain_intact(s).await
}

/// §28.1: a role change, a moderator's deletion of someone else's message, a removal and an
/// ownership transfer (by hand, then as the owner leaves) are one entry each; deleting one's own
/// message, and sends and receipts, record nothing.
async fn members_moderation_is_audited_once_each(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let alice = new_user(s, t, "maA").await?;
    let bob = new_user(s, t, "maB").await?;
    let carol = new_user(s, t, "maC").await?;
    let conv = call!(alice.client, CreateConversation, group("moderation", &[bob.id, carol.id]))?.conversation_id;
    let before = head(s).await?;
    let own = call!(bob.client, SendMessage, send(conv, "ma1", "my own"))?;
    let hers = call!(carol.client, SendMessage, send(conv, "ma2", "carol's"))?;
    call!(alice.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: hers.seq })?;
    ensure!(head(s).await? == before, "sends and receipts are not audited");
    let moderator = MemberRole::Moderator as i32;
    call!(alice.client, SetRole, v1::SetRole { conversation_id: conv, user_id: bob.id, role: moderator })?;
    call!(bob.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: own.message_id })?;
    call!(bob.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: hers.message_id })?;
    call!(alice.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: carol.id })?;
    call!(alice.client, TransferOwnership, v1::TransferOwnership { conversation_id: conv, user_id: bob.id })?;
    call!(bob.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    let log = audited(s, before, |r| r.entry.target_conversation == Some(ConvId(conv as i64))).await?;
    let u = |x: &User| Some(UserId(x.id as i64));
    let got: Vec<_> = log
        .iter()
        .map(|r| (r.entry.action, r.entry.actor, r.entry.target_user, r.entry.before.as_str(), r.entry.after.as_str()))
        .collect();
    use AuditAction::*;
    let (a, b) = (format!("{{\"owner\":{}}}", alice.id), format!("{{\"owner\":{}}}", bob.id));
    let want = vec![
        (RoleChanged, u(&alice), u(&bob), "{\"role\":\"member\"}", "{\"role\":\"moderator\"}"),
        (MessageDeleted, u(&bob), u(&carol), "", ""),
        (MemberRemoved, u(&alice), u(&carol), "{\"role\":\"member\"}", ""),
        (OwnershipTransferred, u(&alice), u(&bob), a.as_str(), b.as_str()),
        (OwnershipTransferred, u(&bob), u(&alice), b.as_str(), a.as_str()),
    ];
    ensure!(got == want, "{got:#?}");
    ensure!(log[1].entry.target_message == Some(MessageId(hers.message_id as i64)), "{:?}", log[1]);
    ensure!(log[3].entry.target.is_empty() && log[4].entry.target == "automatic", "{log:?}");
    // Member requests carry no address to the writer: recorded empty.
    ensure!(log.iter().all(|r| r.entry.client_addr.is_empty()), "{log:?}");
    chain_intact(s).await
}

/// A trigger that makes the database refuse any message whose text is "poison".
fn poison_trigger(store: StoreKind) -> &'static str {
    match store {
        StoreKind::Sqlite => {
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned write'); END"
        }
        StoreKind::Postgres => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.text = 'poison' THEN RAISE EXCEPTION 'poisoned write'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()"
        }
    }
}

/// Audited writes queued with writes the database refuses: the batches are split and applied
/// again, and each audited write that commits is recorded once (a batch that failed took its
/// entries with it); the chain is intact.
async fn split_batches_record_each_write_once(store: StoreKind) -> anyhow::Result<()> {
    const MEMBERS: usize = 24;
    let s = TestServer::start(store).await?;
    s.execute_sql(poison_trigger(store)).await?;
    let t = Transport::WebSocket;
    let owner = new_user(&s, t, "spO").await?;
    let poisoner = new_user(&s, t, "spP").await?;
    let mut ids = Vec::new();
    for i in 0..MEMBERS {
        ids.push(new_user(&s, t, &format!("spM{i}")).await?.id);
    }
    let conv = call!(owner.client, CreateConversation, group("split", &ids))?.conversation_id;
    let mine = call!(poisoner.client, CreateConversation, group("mine", &[]))?.conversation_id;
    let before = head(&s).await?;
    let mut roles = tokio::task::JoinSet::new();
    let mut poisons = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().enumerate() {
        let (c, id) = (owner.client.clone(), *id);
        let role = MemberRole::Moderator as i32;
        roles.spawn(async move { call!(c, SetRole, v1::SetRole { conversation_id: conv, user_id: id, role }) });
        if n % 6 == 0 {
            let c = poisoner.client.clone();
            poisons.spawn(async move { call!(c, SendMessage, send(mine, &format!("sp{n}"), "poison")) });
        }
    }
    while let Some(r) = roles.join_next().await {
        r??;
    }
    while let Some(r) = poisons.join_next().await {
        ensure!(r?.is_err(), "a poisoned send was stored");
    }
    let log = audited(&s, before, |r| r.entry.target_conversation == Some(ConvId(conv as i64))).await?;
    let mut targets: Vec<u64> = log.iter().filter_map(|r| r.entry.target_user.map(|u| u.0 as u64)).collect();
    targets.sort_unstable();
    ensure!(log.iter().all(|r| r.entry.action == AuditAction::RoleChanged), "{log:?}");
    ensure!(targets == ids, "one entry per role change: {targets:?}");
    chain_intact(&s).await?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_split_batches_record_each_write_once() {
    split_batches_record_each_write_once(StoreKind::Sqlite).await.expect("sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_split_batches_record_each_write_once() {
    split_batches_record_each_write_once(StoreKind::Postgres).await.expect("postgres");
}

/// Polls PostgreSQL's activity view (every 10 ms, up to 10 s) until a backend waits on a lock in a
/// statement starting with `prefix`; false when `done` turned true first (the statement never
/// waited) or the time ran out.
async fn waits_on_a_lock(
    watch: &mut sqlx::PgConnection,
    prefix: &str,
    done: impl Fn() -> bool,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline && !done() {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND starts_with(query, $1)",
        )
        .bind(prefix)
        .fetch_one(&mut *watch)
        .await?;
        if waiting > 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}

/// §26.6 on PostgreSQL with two servers on one database: a member's send on the other server,
/// made while an administrator's deletion of the conversation is under way, waits for it and is
/// refused, and no message of the deleted conversation keeps its text. The deletion is held
/// after it took the conversation's row (a lock on its membership spans, taken beside the
/// servers); the send is seen waiting for that row before the hold is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_send_racing_a_conversation_deletion_keeps_no_text() {
    a_send_racing_a_conversation_deletion_keeps_no_text().await.expect("postgres");
}

async fn a_send_racing_a_conversation_deletion_keeps_no_text() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let db = confab_conformance::pg::TestDatabase::create().await?;
    let one = TestServer::start_on(&db.url, |_| {}).await?;
    let two = TestServer::start_on(&db.url, |_| {}).await?;
    let t = Transport::WebSocket;
    let adm = admin(&one, t).await?;
    let owner = new_user(&one, t, "rco").await?;
    let member = new_user(&one, t, "rcm").await?;
    let conv = call!(owner.client, CreateConversation, group("racing", &[member.id]))?.conversation_id;
    let on_two = second_device(&two, t, &member).await?;
    call!(on_two.client, SendMessage, send(conv, "r1", "before"))?;

    let mut hold = sqlx::PgConnection::connect(&db.url).await?;
    let mut watch = sqlx::PgConnection::connect(&db.url).await?;
    sqlx::raw_sql("BEGIN").execute(&mut hold).await?;
    sqlx::query("SELECT 1 FROM membership_spans WHERE conversation_id = $1 FOR UPDATE")
        .bind(conv as i64)
        .fetch_all(&mut hold)
        .await?;
    let deletion = v1::AdminDeleteConversation { conversation_id: conv };
    let deleting = tokio::spawn(async move { call!(adm.client, AdminDeleteConversation, deletion) });
    ensure!(waits_on_a_lock(&mut watch, "UPDATE membership_spans", || deleting.is_finished()).await?, "held");
    let sender = on_two.client.clone();
    let sending = tokio::spawn(async move { call!(sender, SendMessage, send(conv, "r2", "during")) });
    let waited = waits_on_a_lock(&mut watch, "WITH v(cid", || sending.is_finished()).await?;
    sqlx::raw_sql("ROLLBACK").execute(&mut hold).await?;
    deleting.await??;
    let sent = sending.await?;
    ensure!(waited, "the send did not wait for the deletion: {sent:?}");
    expect_code(sent, ErrorCode::NotFound)?;
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE conversation_id = $1 AND (text <> '' OR deleted_at_ms IS NULL)",
    )
    .bind(conv as i64)
    .fetch_one(&mut watch)
    .await?;
    ensure!(kept == 0, "{kept} messages of the deleted conversation kept their text");
    one.stop().await?;
    two.stop().await?;
    db.drop_db().await
}
