//! Accounts as administrators see and limit them, on both stores and both transports
//! (docs/protocol.md §26.2, §26.7-§26.9): the user list and one user with their figures
//! (sessions, messages, conversations, last seen, suspension, deletion, connections), limit
//! overrides that BeginUpload and SendMessage obey and that go back to the server's values when
//! cleared, forgetting an account's sign-in attempts, quarantined media that nobody reads and
//! that cannot be uploaded again (and that the collector keeps), and the server's figures
//! moving with sign-ups and sends. Every change and read is in the audit log, whose chain
//! verifies.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::media::{download, octets, random_bytes, upload};
use confab_conformance::util::{PASSWORD, User, expect_code, group, new_user, second_device, send, unique};
use confab_protocol::client::ClientError;
use confab_protocol::v1::{self, ErrorCode};
use confab_server::config::RateLimit;
use confab_server::store::{AuditAction, AuditFilter, AuditRec, UserId};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    listed_users_show_their_figures,
    overrides_replace_the_server_limits_until_cleared,
    quarantined_media_is_read_by_nobody,
    statistics_move_with_sign_ups_and_sends,
];

/// Uploads and a media quota of at most 100 000 bytes, two attempts per account at signing in, and a collector that
/// runs only when asked, with no grace.
fn tweak(c: &mut confab_server::Config) {
    c.media.max_upload_bytes = 100_000;
    c.media.quota_bytes_per_user = 100_000;
    c.media.gc_grace = Duration::ZERO;
    c.media.gc_interval = Duration::from_secs(3600);
    c.auth.rate_limits.login_per_account = RateLimit::new(2, Duration::from_secs(3600));
}

confab_conformance::matrix_tests!(TESTS, tweak);

/// A new account made a server administrator as the command line does.
async fn admin(s: &TestServer, t: Transport) -> anyhow::Result<User> {
    let a = new_user(s, t, "adm").await?;
    s.grant_server_admin(a.id).await?;
    Ok(a)
}

fn list_req(query: &str, after: u64, limit: u32, include_deleted: bool) -> v1::AdminListUsers {
    v1::AdminListUsers { query: query.into(), after_user_id: after, limit, include_deleted }
}

async fn get(a: &User, id: u64) -> Result<v1::AdminUser, ClientError> {
    call!(a.client, AdminGetUser, v1::AdminGetUser { user_id: id })
}

async fn set_limits(a: &User, id: u64, limits: v1::UserLimits, reset: bool) -> anyhow::Result<v1::UserLimits> {
    let r = v1::AdminSetUserLimits { user_id: id, limits: Some(limits), reset_sign_in_limits: reset };
    call!(a.client, AdminSetUserLimits, r)?.limits.context("limits")
}

/// Entries by `actor` of `action`, oldest first.
async fn entries(s: &TestServer, actor: u64, action: AuditAction) -> anyhow::Result<Vec<AuditRec>> {
    let f = AuditFilter { actor: Some(UserId(actor as i64)), actions: vec![action], ..Default::default() };
    let mut recs = s.store().audit_page(&f, 1000).await?;
    recs.reverse();
    Ok(recs)
}

async fn listed_users_show_their_figures(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let tag = unique("fig");
    let sign_up = |suffix: &'static str| {
        let tag = tag.clone();
        async move {
            let (client, events) = s.connect(t).await?;
            let reg = v1::Register {
                username: format!("{tag}{suffix}"),
                password: PASSWORD.into(),
                display_name: Some(format!("Élodie {tag} {suffix}")),
                device_name: "laptop".into(),
                ..Default::default()
            };
            let auth = client.register(reg).await?;
            let id = auth.me.as_ref().context("me")?.user_id;
            anyhow::Ok(User { client, events, id, name: format!("{tag}{suffix}"), auth })
        }
    };
    let a = sign_up("a").await?;
    let a2 = second_device(s, t, &a).await?;
    let b = sign_up("b").await?;
    let c = sign_up("c").await?;
    let conv = call!(a.client, CreateConversation, group("figures", &[b.id]))?.conversation_id;
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        call!(a.client, SendMessage, send(conv, &format!("{tag}-{i}"), text))?;
    }
    let last = call!(a2.client, SendMessage, send(conv, &format!("{tag}-x"), "gone soon"))?;
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: last.message_id })?;
    call!(c.client, DeleteAccount, v1::DeleteAccount { password: PASSWORD.into() })?;

    // By username prefix, case-folded: a and b (c's name went with its account).
    let page = call!(adm.client, AdminListUsers, list_req(&tag.to_uppercase(), 0, 0, false))?;
    let ids: Vec<u64> = page.users.iter().map(|u| u.user_id).collect();
    ensure!(ids == [a.id, b.id] && !page.has_more, "{page:?}");
    let ua = &page.users[0];
    let now = confab_protocol::frames::now_ms();
    ensure!(ua.username == a.name && ua.display_name == format!("Élodie {tag} a"), "{ua:?}");
    ensure!(ua.live_sessions == 2 && ua.connections == 2, "two devices: {ua:?}");
    ensure!(ua.messages_sent == 3 && ua.conversations == 1, "the deleted message is not counted: {ua:?}");
    ensure!(ua.created_at_ms > 0 && ua.last_seen_at_ms >= ua.created_at_ms && ua.last_seen_at_ms <= now, "{ua:?}");
    ensure!(!ua.server_admin && ua.suspended_at_ms == 0 && ua.deleted_at_ms == 0, "{ua:?}");
    ensure!(ua.limits == Some(v1::UserLimits::default()), "no overrides: {ua:?}");
    ensure!(page.users[1].messages_sent == 0 && page.users[1].conversations == 1, "{:?}", page.users[1]);
    // By display name prefix, folded ("ÉLODIE" finds "Élodie"), paged in id order.
    let first = call!(adm.client, AdminListUsers, list_req(&format!("ÉLODIE {}", tag.to_uppercase()), 0, 1, false))?;
    ensure!(first.users.len() == 1 && first.users[0].user_id == a.id && first.has_more, "{first:?}");
    let next = call!(adm.client, AdminListUsers, list_req(&format!("élodie {tag}"), a.id, 1, false))?;
    ensure!(next.users.len() == 1 && next.users[0].user_id == b.id && !next.has_more, "{next:?}");
    // The deleted account is listed only when asked for.
    let deleted = call!(adm.client, AdminListUsers, list_req("", c.id - 1, 1, true))?;
    ensure!(deleted.users.first().is_some_and(|u| u.user_id == c.id && u.deleted_at_ms > 0), "{deleted:?}");
    let live = call!(adm.client, AdminListUsers, list_req("", c.id - 1, 1, false))?;
    ensure!(live.users.iter().all(|u| u.user_id != c.id), "{live:?}");
    let gc = get(&adm, c.id).await?;
    ensure!(gc.deleted_at_ms > 0 && gc.live_sessions == 0 && gc.username == format!("deleted-{}", c.id), "{gc:?}");
    // Suspended: shown, and its sessions are gone.
    let r = v1::AdminSuspendUser { user_id: b.id, reason: "figures".into() };
    let done = call!(adm.client, AdminSuspendUser, r)?;
    let gb = get(&adm, b.id).await?;
    ensure!(gb.suspended_at_ms == done.suspended_at_ms && gb.suspended_at_ms > 0 && gb.live_sessions == 0, "{gb:?}");
    ensure!(get(&adm, adm.id).await?.server_admin, "the administrator is one");
    expect_code(get(&adm, 1 << 40).await, ErrorCode::NotFound)?;
    // Anyone else: NOT_FOUND.
    expect_code(call!(a.client, AdminListUsers, list_req("", 0, 0, false)), ErrorCode::NotFound)?;
    expect_code(call!(a.client, AdminGetUser, v1::AdminGetUser { user_id: a.id }), ErrorCode::NotFound)?;
    let long = call!(adm.client, AdminListUsers, list_req(&"x".repeat(257), 0, 0, false));
    ensure!(expect_code(long, ErrorCode::InvalidArgument)?.field == "admin_list_users.query");
    // Every read is recorded, before it is made (the one about an unknown account too).
    let views = entries(s, adm.id, AuditAction::AdminViewed).await?;
    let targets: Vec<&str> = views.iter().map(|r| r.entry.target.as_str()).collect();
    let expected = [["admin_list_users"; 5].as_slice(), ["admin_get_user"; 4].as_slice()].concat();
    ensure!(targets == expected, "{targets:?}");
    ensure!(views[6].entry.target_user == Some(UserId(b.id as i64)) && views[0].entry.target_user.is_none());
    ensure!(views.iter().all(|r| r.entry.client_addr == "127.0.0.1"));
    ensure!(s.store().verify_audit().await?.broken.is_none());
    Ok(())
}

async fn overrides_replace_the_server_limits_until_cleared(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let u = new_user(s, t, "lim").await?;
    let sp = octets();
    // Over the server's quota of 100 000 bytes.
    upload(&u.client, &random_bytes(60_000), &sp).await?;
    let e = expect_code(u.client.begin_upload(60_000, &sp).await, ErrorCode::TooLarge)?;
    ensure!(e.message.contains("quota"), "{e:?}");
    let raised =
        v1::UserLimits { media_quota_bytes: Some(1_000_000), max_pending_uploads: Some(1), ..Default::default() };
    ensure!(set_limits(&adm, u.id, raised, false).await? == raised);
    ensure!(get(&adm, u.id).await?.limits == Some(raised));
    let more = upload(&u.client, &random_bytes(60_000), &sp).await?;
    ensure!(more.size == 60_000);
    let pending = u.client.begin_upload(10, &sp).await?;
    let e = expect_code(u.client.begin_upload(10, &sp).await, ErrorCode::FailedPrecondition)?;
    ensure!(e.message.contains("1 unfinished"), "the override of pending uploads: {e:?}");
    u.client.cancel_upload(&pending.upload_id).await?;
    // Cleared: the server's values again; 120 000 bytes stored are over its quota.
    ensure!(set_limits(&adm, u.id, v1::UserLimits::default(), false).await? == v1::UserLimits::default());
    let e = expect_code(u.client.begin_upload(1, &sp).await, ErrorCode::TooLarge)?;
    ensure!(e.message.contains("quota") && e.message.contains("100000"), "{e:?}");

    // Two messages a minute: the third is refused until a token comes back; a retry of a sent
    // message costs nothing.
    let two = v1::UserLimits { messages_per_minute: Some(2), ..Default::default() };
    set_limits(&adm, u.id, two, false).await?;
    let conv = call!(u.client, CreateConversation, group("rate", &[adm.id]))?.conversation_id;
    let first = call!(u.client, SendMessage, send(conv, &format!("{}-1", u.name), "one"))?;
    let again = call!(u.client, SendMessage, send(conv, &format!("{}-1", u.name), "one"))?;
    ensure!(again.message_id == first.message_id, "a retry is the same message");
    call!(u.client, SendMessage, send(conv, &format!("{}-2", u.name), "two"))?;
    let e = expect_code(
        call!(u.client, SendMessage, send(conv, &format!("{}-3", u.name), "three")),
        ErrorCode::RateLimited,
    )?;
    ensure!(e.retry_after_ms > 20_000 && e.retry_after_ms <= 30_000, "a token every 30 s: {e:?}");
    // Others are not limited by it.
    for i in 0..4 {
        call!(adm.client, SendMessage, send(conv, &format!("{}-{i}", adm.name), "free"))?;
    }

    // Sign-in attempts: two per account, then refused even with the right password, until an
    // administrator forgets them.
    let (c, _e) = s.connect(t).await?;
    for _ in 0..2 {
        expect_code(c.login(&u.name, "not the password", "x").await, ErrorCode::Unauthenticated)?;
    }
    expect_code(c.login(&u.name, PASSWORD, "x").await, ErrorCode::RateLimited)?;
    let kept = set_limits(&adm, u.id, two, true).await?;
    ensure!(kept == two, "the overrides stay as given: {kept:?}");
    c.login(&u.name.to_uppercase(), PASSWORD, "x").await.context("sign-in limits forgotten")?;

    // Refusals.
    let huge = v1::UserLimits { messages_per_minute: Some(2_000_000), ..Default::default() };
    let e = expect_code(
        call!(
            adm.client,
            AdminSetUserLimits,
            v1::AdminSetUserLimits { user_id: u.id, limits: Some(huge), reset_sign_in_limits: false }
        ),
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "admin_set_user_limits.limits.messages_per_minute", "{e:?}");
    let none = v1::AdminSetUserLimits { user_id: 1 << 40, limits: None, reset_sign_in_limits: false };
    expect_code(call!(adm.client, AdminSetUserLimits, none), ErrorCode::NotFound)?;
    let mine = v1::AdminSetUserLimits { user_id: u.id, limits: None, reset_sign_in_limits: false };
    expect_code(call!(u.client, AdminSetUserLimits, mine), ErrorCode::NotFound)?;

    // Recorded with before and after: raised, cleared, two a minute, and the reset (unchanged
    // overrides, but buckets forgotten).
    let changes = entries(s, adm.id, AuditAction::LimitsChanged).await?;
    ensure!(changes.len() == 4, "{changes:?}");
    ensure!(changes.iter().all(|r| r.entry.target_user == Some(UserId(u.id as i64))));
    ensure!(changes[0].entry.before.contains("\"media_quota_bytes\":null"), "{:?}", changes[0]);
    ensure!(changes[0].entry.after.contains("\"media_quota_bytes\":1000000"), "{:?}", changes[0]);
    ensure!(changes[1].entry.after.contains("\"max_pending_uploads\":null"), "{:?}", changes[1]);
    ensure!(changes[2].entry.after.contains("\"messages_per_minute\":2"), "{:?}", changes[2]);
    ensure!(changes[3].entry.target == "reset_sign_in_limits" && changes[3].entry.before == changes[3].entry.after);
    ensure!(s.store().verify_audit().await?.broken.is_none());
    Ok(())
}

async fn quarantined_media_is_read_by_nobody(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let u = new_user(s, t, "qua").await?;
    let w = new_user(s, t, "quw").await?;
    let bytes = random_bytes(20_000);
    let m = upload(&u.client, &bytes, &octets()).await?;
    let conv = call!(u.client, CreateConversation, group("quarantine", &[w.id]))?.conversation_id;
    let att = v1::Attachment { media_id: m.media_id.clone(), ..Default::default() };
    let sent = call!(u.client, SendMessage, v1::SendMessage { attachments: vec![att], ..send(conv, &u.name, "") })?;
    ensure!(download(&w.client, &m.media_id, "", 0).await? == bytes, "a member reads it");

    let q = |id: &str| v1::AdminQuarantineMedia { media_id: id.into(), reason: "illegal content".into() };
    ensure!(call!(adm.client, AdminQuarantineMedia, q(&m.media_id))?.quarantined);
    ensure!(!call!(adm.client, AdminQuarantineMedia, q(&m.media_id))?.quarantined, "already");
    let unknown = format!("m{}", "0".repeat(32));
    expect_code(call!(adm.client, AdminQuarantineMedia, q(&unknown)), ErrorCode::NotFound)?;
    expect_code(call!(adm.client, AdminQuarantineMedia, q("nonsense")), ErrorCode::NotFound)?;
    expect_code(call!(u.client, AdminQuarantineMedia, q(&m.media_id)), ErrorCode::NotFound)?;

    // Nobody reads it, the uploader included; the message no longer offers it.
    for who in [&u, &w] {
        expect_code(who.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
        expect_code(download(&who.client, &m.media_id, "", 0).await, ErrorCode::NotFound)?;
    }
    let hist = call!(w.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() })?;
    let msg = hist.messages.iter().find(|x| x.message_id == sent.message_id).context("the message stays")?;
    ensure!(msg.attachments.is_empty(), "{msg:?}");
    // It cannot be attached again, nor uploaded again by anyone.
    let att = v1::Attachment { media_id: m.media_id.clone(), ..Default::default() };
    let r = call!(u.client, SendMessage, v1::SendMessage { attachments: vec![att], ..send(conv, &w.name, "") });
    expect_code(r, ErrorCode::NotFound)?;
    for who in [&u, &w] {
        let e = expect_code(upload(&who.client, &bytes, &octets()).await, ErrorCode::FailedPrecondition)?;
        ensure!(e.message == "this content is quarantined", "{e:?}");
    }
    // The collector keeps it once nothing references it: the same bytes are still refused.
    s.media.collect_once().await?;
    call!(u.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: sent.message_id })?;
    let report = s.media.collect_once().await?;
    ensure!(report.media == 0 && report.blobs == 0, "kept: {report:?}");
    expect_code(upload(&w.client, &bytes, &octets()).await, ErrorCode::FailedPrecondition)?;

    let recs = entries(s, adm.id, AuditAction::MediaQuarantined).await?;
    ensure!(recs.len() == 1, "the repeat is not recorded: {recs:?}");
    let e = &recs[0].entry;
    ensure!(e.target == m.media_id && e.target_user == Some(UserId(u.id as i64)), "{e:?}");
    ensure!(e.after.contains("illegal content") && e.client_addr == "127.0.0.1", "{e:?}");
    ensure!(s.store().verify_audit().await?.broken.is_none());
    Ok(())
}

async fn stats(a: &User) -> anyhow::Result<v1::ServerStats> {
    Ok(call!(a.client, AdminGetStats, v1::AdminGetStats {})?)
}

async fn statistics_move_with_sign_ups_and_sends(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let head = s.store().audit_head().await?;
    let before = stats(&adm).await?;
    ensure!(s.store().audit_head().await? == head, "AdminGetStats is not recorded");
    ensure!(before.audit_entries == head.seq as u64, "{before:?}");
    ensure!(before.store_bytes > 0 && before.connections >= 1 && before.online_users >= 1, "{before:?}");
    let days = &before.messages_per_day;
    ensure!(days.len() == 7, "{days:?}");
    let today = confab_protocol::frames::now_ms() / 86_400_000 * 86_400_000;
    ensure!(days[6].day_start_ms == today, "today last: {days:?}");
    ensure!(days.windows(2).all(|w| w[1].day_start_ms == w[0].day_start_ms + 86_400_000), "{days:?}");

    let u = new_user(s, t, "sta").await?;
    let v = new_user(s, t, "stv").await?;
    let conv = call!(u.client, CreateConversation, group("stats", &[v.id]))?.conversation_id;
    for i in 0..3 {
        call!(u.client, SendMessage, send(conv, &format!("{}-{i}", u.name), "counted"))?;
    }
    upload(&v.client, &random_bytes(30_000), &octets()).await?;
    let r = v1::AdminSuspendUser { user_id: v.id, reason: String::new() };
    call!(adm.client, AdminSuspendUser, r)?;
    let after = stats(&adm).await?;
    ensure!(after.users == before.users + 2 && after.users_suspended == before.users_suspended + 1, "{after:?}");
    ensure!(after.users_deleted == before.users_deleted, "{after:?}");
    ensure!(after.conversations == before.conversations + 1 && after.messages == before.messages + 3, "{after:?}");
    let last_day = |st: &v1::ServerStats| st.messages_per_day.last().map_or((0, 0), |d| (d.day_start_ms, d.count));
    let (day, n) = last_day(&after);
    // (Unless midnight UTC passed in between.)
    if day == last_day(&before).0 {
        ensure!(n == last_day(&before).1 + 3, "{:?} then {:?}", before.messages_per_day, after.messages_per_day);
    }
    ensure!(after.media_bytes >= before.media_bytes + 30_000, "{after:?}");
    // The administrator and u are connected (v's connection closed with its suspension).
    ensure!(after.connections >= 2 && after.online_users >= 2, "{after:?}");
    ensure!(after.audit_entries > before.audit_entries, "sign-ups and the suspension are recorded");
    expect_code(call!(u.client, AdminGetStats, v1::AdminGetStats {}), ErrorCode::NotFound)?;
    ensure!(s.store().verify_audit().await?.broken.is_none());
    Ok(())
}
