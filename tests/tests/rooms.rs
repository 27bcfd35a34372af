//! Meeting rooms (docs/protocol.md §25) on both stores and both transports: a guest joins with an
//! invite token through the lobby, is confined to its room, comes back with its resume token and
//! keeps its role and admission; moderators mute and remove (barring the guest and its invite);
//! invites run out and are revoked; `max_publishers` holds at Publish and guests do not publish;
//! rooms close when they expire, stay empty or their owner's account is deleted, and everyone in
//! them is told; media flows from an
//! account to a guest through the same SFU as conversation calls.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{User, expect_code, new_user, next_matching};
use confab_conformance::webrtc_peer::GroupPeer;
use confab_protocol::client::{Client, Events};
use confab_protocol::frames::now_ms;
use confab_protocol::v1::{self, ErrorCode, RoomRole, event};

const WAIT: Duration = Duration::from_secs(10);

async fn server(store: StoreKind, ports: u16) -> anyhow::Result<TestServer> {
    TestServer::start_with(store, |c| {
        c.calls.reconnect_grace = Duration::from_millis(500);
        c.calls.meeting_sweep_interval = Duration::from_millis(100);
        c.calls.udp_port_min = ports;
        c.calls.udp_port_max = ports + 199;
    })
    .await
}

async fn create(owner: &User, lobby: bool, max_publishers: u32) -> anyhow::Result<v1::Room> {
    let r = v1::CreateRoom { name: "stand-up".into(), lobby, max_publishers, ..Default::default() };
    Ok(call!(owner.client, CreateRoom, r)?)
}

async fn invite(owner: &User, room: &str, role: RoomRole, max_uses: u32) -> anyhow::Result<v1::RoomInvite> {
    let r = v1::CreateRoomInvite { room_id: room.into(), role: role as i32, expires_at_ms: 0, max_uses };
    Ok(call!(owner.client, CreateRoomInvite, r)?)
}

/// A guest's connection: Hello with the room token and a display name.
async fn guest(
    s: &TestServer,
    t: Transport,
    token: &str,
    name: &str,
) -> Result<(Client, Events), confab_protocol::client::ClientError> {
    let mut o = s.options();
    o.room_token = Some(token.to_string());
    o.display_name = name.to_string();
    Client::connect(&s.url(t), o).await
}

fn join(room: &str) -> v1::JoinCall {
    v1::JoinCall { room_id: room.into(), conversation_id: 0 }
}

async fn lobby_and_moderation(store: StoreKind, t: Transport, ports: u16) -> anyhow::Result<()> {
    let s = server(store, ports).await?;
    let mut owner = new_user(&s, t, "owner").await?;
    let room = create(&owner, true, 0).await?;
    ensure!(room.room_id.len() == 32, "a 128-bit id in hex");
    let inv = invite(&owner, &room.room_id, RoomRole::Speaker, 0).await?;
    ensure!(!inv.token.is_empty());

    // The guest says Hello with the token and is a guest of that room only.
    let (g, mut gev) = guest(&s, t, &inv.token, "Ada (guest)").await?;
    let info = g.welcome().guest.clone().context("Welcome.guest")?;
    ensure!(
        info.room_id == room.room_id && info.role == RoomRole::Speaker as i32 && info.display_name == "Ada (guest)"
    );
    expect_code(call!(g, ListConversations, v1::ListConversations::default()), ErrorCode::PermissionDenied)?;
    expect_code(
        call!(g, CreateRoom, v1::CreateRoom { name: "x".into(), ..Default::default() }),
        ErrorCode::PermissionDenied,
    )?;
    let other = create(&owner, false, 0).await?;
    expect_code(call!(g, GetRoom, v1::GetRoom { room_id: other.room_id.clone() }), ErrorCode::PermissionDenied)?;
    expect_code(call!(g, JoinCall, join(&other.room_id)), ErrorCode::PermissionDenied)?;
    expect_code(
        call!(g, JoinCall, v1::JoinCall { room_id: String::new(), conversation_id: 1 }),
        ErrorCode::PermissionDenied,
    )?;
    expect_code(call!(g, CloseRoom, v1::CloseRoom { room_id: room.room_id.clone() }), ErrorCode::PermissionDenied)?;
    expect_code(
        call!(
            g,
            CreateRoomInvite,
            v1::CreateRoomInvite { room_id: room.room_id.clone(), role: RoomRole::Guest as i32, ..Default::default() }
        ),
        ErrorCode::PermissionDenied,
    )?;

    // Lobby: the guest knocks, the owner (bypassing the lobby) admits it.
    let knocked = call!(g, JoinCall, join(&room.room_id))?;
    ensure!(knocked.in_lobby && knocked.participants.is_empty());
    let knock = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::RoomKnock(k) => k.knock.clone(),
        _ => None,
    })
    .await?;
    ensure!(knock.display_name == "Ada (guest)" && knock.participant_id == info.guest_id);
    let mine = call!(owner.client, JoinCall, join(&room.room_id))?;
    ensure!(!mine.in_lobby && !mine.participant_id.is_empty());
    let seen = call!(owner.client, GetRoom, v1::GetRoom { room_id: room.room_id.clone() })?;
    ensure!(seen.knocks.len() == 1 && seen.role == RoomRole::Owner as i32);
    call!(
        owner.client,
        AnswerKnock,
        v1::AnswerKnock { room_id: room.room_id.clone(), participant_id: knock.participant_id.clone(), admit: true }
    )?;
    let decision = next_matching(&mut gev, WAIT, |e| match e {
        event::Event::LobbyDecision(d) => Some(d.clone()),
        _ => None,
    })
    .await?;
    ensure!(decision.admitted);
    let seated = call!(g, JoinCall, join(&room.room_id))?;
    ensure!(!seated.in_lobby && seated.participants.len() == 1, "the owner is in the call");
    let joined = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::ParticipantJoined(p) if p.room_id == room.room_id => p.participant.clone(),
        _ => None,
    })
    .await?;
    ensure!(joined.display_name == "Ada (guest)" && joined.user_id == 0 && joined.role == RoomRole::Speaker as i32);
    let roster = call!(g, GetRoom, v1::GetRoom { room_id: room.room_id.clone() })?;
    ensure!(roster.participants.len() == 2 && roster.knocks.is_empty(), "a guest sees no knocks: {roster:?}");
    ensure!(roster.you.as_ref().is_some_and(|y| y.participant_id == seated.participant_id));

    // Moderators mute and remove; a guest cannot.
    expect_code(
        call!(
            g,
            MuteParticipant,
            v1::MuteParticipant {
                room_id: room.room_id.clone(),
                participant_id: mine.participant_id.clone(),
                track_id: String::new()
            }
        ),
        ErrorCode::PermissionDenied,
    )?;
    call!(
        owner.client,
        MuteParticipant,
        v1::MuteParticipant {
            room_id: room.room_id.clone(),
            participant_id: seated.participant_id.clone(),
            track_id: String::new()
        }
    )?;
    expect_code(
        call!(
            owner.client,
            RemoveParticipant,
            v1::RemoveParticipant { room_id: room.room_id.clone(), participant_id: "pt-nobody".into(), bar: false }
        ),
        ErrorCode::NotFound,
    )?;
    call!(
        owner.client,
        RemoveParticipant,
        v1::RemoveParticipant {
            room_id: room.room_id.clone(),
            participant_id: seated.participant_id.clone(),
            bar: true
        }
    )?;
    let removed = next_matching(&mut gev, WAIT, |e| match e {
        event::Event::ParticipantRemoved(r) => Some(r.clone()),
        _ => None,
    })
    .await?;
    ensure!(removed.barred && removed.reason == v1::RoomCloseReason::Removed as i32);
    expect_code(call!(g, JoinCall, join(&room.room_id)), ErrorCode::PermissionDenied)?;
    expect_code(call!(g, GetRoom, v1::GetRoom { room_id: room.room_id.clone() }), ErrorCode::PermissionDenied)?;
    // Barred: neither the resume token nor the invite lets it back in.
    expect_code(guest(&s, t, &info.resume_token, "x").await, ErrorCode::Unauthenticated)?;
    expect_code(guest(&s, t, &inv.token, "Ada again").await, ErrorCode::Unauthenticated)?;

    // A knocker removed with a bar: told, and the moderators' list drops it.
    let inv2 = invite(&owner, &room.room_id, RoomRole::Speaker, 0).await?;
    let (g2, mut g2ev) = guest(&s, t, &inv2.token, "Spammer").await?;
    let g2id = g2.welcome().guest.clone().context("guest")?.guest_id;
    ensure!(call!(g2, JoinCall, join(&room.room_id))?.in_lobby);
    let bar = v1::RemoveParticipant { room_id: room.room_id.clone(), participant_id: g2id.clone(), bar: true };
    call!(owner.client, RemoveParticipant, bar)?;
    let told = next_matching(&mut g2ev, WAIT, |e| match e {
        event::Event::ParticipantRemoved(r) => Some(r.barred),
        _ => None,
    })
    .await?;
    ensure!(told);
    let id2 = g2id.clone();
    next_matching(&mut owner.events, WAIT, move |e| match e {
        event::Event::LobbyDecision(d) if d.participant_id == id2 && !d.admitted && d.by_user_id == 0 => Some(()),
        _ => None,
    })
    .await?;
    expect_code(call!(g2, JoinCall, join(&room.room_id)), ErrorCode::PermissionDenied)?;

    // A stranger's account learns nothing of the room; a moderator is not its owner.
    let stranger = new_user(&s, t, "stranger").await?;
    expect_code(call!(stranger.client, GetRoom, v1::GetRoom { room_id: room.room_id.clone() }), ErrorCode::NotFound)?;
    expect_code(call!(stranger.client, JoinCall, join(&room.room_id)), ErrorCode::NotFound)?;
    let upd = v1::UpdateRoom {
        room_id: room.room_id.clone(),
        set_moderators: true,
        moderator_ids: vec![stranger.id],
        ..Default::default()
    };
    call!(owner.client, UpdateRoom, upd)?;
    let as_mod = call!(stranger.client, GetRoom, v1::GetRoom { room_id: room.room_id.clone() })?;
    ensure!(as_mod.role == RoomRole::Moderator as i32);
    expect_code(
        call!(stranger.client, CloseRoom, v1::CloseRoom { room_id: room.room_id.clone() }),
        ErrorCode::PermissionDenied,
    )?;
    let lock = v1::UpdateRoom { room_id: room.room_id.clone(), locked: Some(true), ..Default::default() };
    ensure!(call!(stranger.client, UpdateRoom, lock)?.locked, "a moderator locks the room");
    let rename = v1::UpdateRoom { room_id: room.room_id.clone(), name: Some("renamed".into()), ..Default::default() };
    expect_code(call!(stranger.client, UpdateRoom, rename), ErrorCode::PermissionDenied)?;
    let listed = call!(stranger.client, ListRooms, v1::ListRooms::default())?;
    ensure!(listed.rooms.iter().any(|r| r.room_id == room.room_id));
    // A barred moderator moderates no more.
    let seat = call!(stranger.client, JoinCall, join(&room.room_id))?;
    let bar = v1::RemoveParticipant { room_id: room.room_id.clone(), participant_id: seat.participant_id, bar: true };
    call!(owner.client, RemoveParticipant, bar)?;
    let after = call!(owner.client, GetRoom, v1::GetRoom { room_id: room.room_id.clone() })?;
    ensure!(after.room.context("room")?.moderator_ids.is_empty());
    expect_code(call!(stranger.client, GetRoom, v1::GetRoom { room_id: room.room_id.clone() }), ErrorCode::NotFound)?;

    // Closing tells everyone in the call.
    call!(owner.client, CloseRoom, v1::CloseRoom { room_id: room.room_id.clone() })?;
    let closed = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::RoomClosed(c) => Some(c.reason),
        _ => None,
    })
    .await?;
    ensure!(closed == v1::RoomCloseReason::Closed as i32);
    expect_code(call!(owner.client, JoinCall, join(&room.room_id)), ErrorCode::FailedPrecondition)?;
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn lobby_and_moderation_sqlite_websocket() -> anyhow::Result<()> {
    Box::pin(lobby_and_moderation(StoreKind::Sqlite, Transport::WebSocket, 52000)).await
}

#[tokio::test]
async fn lobby_and_moderation_sqlite_quic() -> anyhow::Result<()> {
    Box::pin(lobby_and_moderation(StoreKind::Sqlite, Transport::Quic, 52200)).await
}

#[tokio::test]
async fn lobby_and_moderation_postgres_websocket() -> anyhow::Result<()> {
    Box::pin(lobby_and_moderation(StoreKind::Postgres, Transport::WebSocket, 52400)).await
}

#[tokio::test]
async fn lobby_and_moderation_postgres_quic() -> anyhow::Result<()> {
    Box::pin(lobby_and_moderation(StoreKind::Postgres, Transport::Quic, 52600)).await
}

async fn invites_resume_and_limits(store: StoreKind) -> anyhow::Result<()> {
    let t = Transport::WebSocket;
    let s = server(store, if store == StoreKind::Sqlite { 52800 } else { 53000 }).await?;
    let owner = new_user(&s, t, "owner").await?;
    let room = create(&owner, true, 1).await?;

    // A moderator invite bypasses the lobby and keeps its role when it comes back.
    let m = invite(&owner, &room.room_id, RoomRole::Moderator, 0).await?;
    let (mg, _mev) = guest(&s, t, &m.token, "Mod").await?;
    let minfo = mg.welcome().guest.clone().context("guest")?;
    let seated = call!(mg, JoinCall, join(&room.room_id))?;
    ensure!(!seated.in_lobby, "moderators bypass the lobby");
    mg.close().await;
    let (mg2, _mev2) = guest(&s, t, &minfo.resume_token, "").await?;
    let again = mg2.welcome().guest.clone().context("guest")?;
    ensure!(
        again.guest_id == minfo.guest_id && again.role == RoomRole::Moderator as i32 && again.display_name == "Mod"
    );

    // max_uses runs out; a revoked invite stops working and its guests leave.
    let once = invite(&owner, &room.room_id, RoomRole::Guest, 1).await?;
    let (g1, mut g1ev) = guest(&s, t, &once.token, "One").await?;
    expect_code(guest(&s, t, &once.token, "Two").await, ErrorCode::FailedPrecondition)?;
    let knock = call!(g1, JoinCall, join(&room.room_id))?;
    ensure!(knock.in_lobby);
    call!(
        mg2,
        RevokeRoomInvite,
        v1::RevokeRoomInvite { room_id: room.room_id.clone(), invite_id: once.invite_id.clone() }
    )?;
    let gone = next_matching(&mut g1ev, WAIT, |e| match e {
        event::Event::ParticipantRemoved(r) => Some(r.reason),
        _ => None,
    })
    .await?;
    ensure!(gone == v1::RoomCloseReason::Revoked as i32);
    let g1info = g1.welcome().guest.clone().context("guest")?;
    expect_code(guest(&s, t, &g1info.resume_token, "").await, ErrorCode::Unauthenticated)?;
    // Its open connection keeps no right either.
    expect_code(call!(g1, JoinCall, join(&room.room_id)), ErrorCode::PermissionDenied)?;
    expect_code(call!(g1, GetRoom, v1::GetRoom { room_id: room.room_id.clone() }), ErrorCode::PermissionDenied)?;
    expect_code(call!(g1, GetIceServers, v1::GetIceServers {}), ErrorCode::PermissionDenied)?;
    let listed = call!(owner.client, ListRoomInvites, v1::ListRoomInvites { room_id: room.room_id.clone() })?;
    ensure!(listed.invites.iter().all(|i| i.token.is_empty()), "tokens are shown once");
    ensure!(listed.invites.iter().any(|i| i.invite_id == once.invite_id && i.revoked_at_ms > 0 && i.uses == 1));

    // Bad input: a forged token, a token with an access token, no name, a bad role.
    expect_code(guest(&s, t, "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "x").await, ErrorCode::Unauthenticated)?;
    expect_code(guest(&s, t, &m.token, "").await, ErrorCode::InvalidArgument)?;
    let bad_role =
        v1::CreateRoomInvite { room_id: room.room_id.clone(), role: RoomRole::Owner as i32, ..Default::default() };
    expect_code(call!(owner.client, CreateRoomInvite, bad_role), ErrorCode::InvalidArgument)?;
    let past = v1::CreateRoom { name: "late".into(), expires_at_ms: 1, ..Default::default() };
    expect_code(call!(owner.client, CreateRoom, past), ErrorCode::InvalidArgument)?;
    expect_code(call!(owner.client, CreateRoom, v1::CreateRoom::default()), ErrorCode::InvalidArgument)?;

    // max_publishers holds at Publish, not at join; a GUEST does not publish.
    let offer = GroupPeer::sample_offer().await?;
    let publish =
        |sdp: &str| v1::Publish { room_id: room.room_id.clone(), conversation_id: 0, sdp_offer: sdp.to_string() };
    // The resumed guest's device may still hold its seat (within the reconnect grace): it leaves
    // and joins again.
    let _ = call!(mg2, LeaveCall, v1::LeaveCall { room_id: room.room_id.clone(), conversation_id: 0 });
    call!(mg2, JoinCall, join(&room.room_id))?;
    call!(mg2, Publish, publish(&offer))?;
    let sp = invite(&owner, &room.room_id, RoomRole::Speaker, 0).await?;
    let (spk, _sev) = guest(&s, t, &sp.token, "Speaker").await?;
    let unlock = v1::UpdateRoom { room_id: room.room_id.clone(), lobby: Some(false), ..Default::default() };
    call!(owner.client, UpdateRoom, unlock)?;
    ensure!(!call!(spk, JoinCall, join(&room.room_id))?.in_lobby, "joining is not limited by max_publishers");
    expect_code(call!(spk, Publish, publish(&offer)), ErrorCode::FailedPrecondition)?;
    let li = invite(&owner, &room.room_id, RoomRole::Guest, 0).await?;
    let (listener, _lev) = guest(&s, t, &li.token, "Listener").await?;
    call!(listener, JoinCall, join(&room.room_id))?;
    expect_code(call!(listener, Publish, publish(&offer)), ErrorCode::PermissionDenied)?;
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn invites_resume_and_limits_sqlite() -> anyhow::Result<()> {
    invites_resume_and_limits(StoreKind::Sqlite).await
}

#[tokio::test]
async fn invites_resume_and_limits_postgres() -> anyhow::Result<()> {
    invites_resume_and_limits(StoreKind::Postgres).await
}

async fn expiry_and_empty_timeout(store: StoreKind) -> anyhow::Result<()> {
    let t = Transport::WebSocket;
    let s = server(store, if store == StoreKind::Sqlite { 53200 } else { 53400 }).await?;
    let mut owner = new_user(&s, t, "owner").await?;
    // Expires while the owner is in its call: told why.
    let r = v1::CreateRoom { name: "short".into(), expires_at_ms: now_ms() + 1500, ..Default::default() };
    let short = call!(owner.client, CreateRoom, r)?;
    call!(owner.client, JoinCall, join(&short.room_id))?;
    let why = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::RoomClosed(c) if c.room_id == short.room_id => Some(c.reason),
        _ => None,
    })
    .await?;
    ensure!(why == v1::RoomCloseReason::Expired as i32);
    // Empty for its empty timeout: closed, and so reported.
    let r = v1::CreateRoom { name: "empty".into(), empty_timeout_ms: 1000, ..Default::default() };
    let empty = call!(owner.client, CreateRoom, r)?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = call!(owner.client, GetRoom, v1::GetRoom { room_id: empty.room_id.clone() })?.room.context("room")?;
        if got.closed_at_ms > 0 {
            ensure!(got.close_reason == v1::RoomCloseReason::Empty as i32);
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "the empty room never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = call!(owner.client, ListRooms, v1::ListRooms { include_closed: false })?;
    ensure!(open.rooms.is_empty(), "closed rooms are listed only when asked");
    let all = call!(owner.client, ListRooms, v1::ListRooms { include_closed: true })?;
    ensure!(all.rooms.len() == 2);
    // §21: a deleted account's rooms close; its moderators see why.
    let leaving = new_user(&s, t, "leaving").await?;
    let r = v1::CreateRoom { name: "theirs".into(), moderator_ids: vec![owner.id], ..Default::default() };
    let theirs = call!(leaving.client, CreateRoom, r)?;
    call!(leaving.client, DeleteAccount, v1::DeleteAccount { password: confab_conformance::util::PASSWORD.into() })?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got =
            call!(owner.client, GetRoom, v1::GetRoom { room_id: theirs.room_id.clone() })?.room.context("room")?;
        if got.closed_at_ms > 0 {
            ensure!(got.close_reason == v1::RoomCloseReason::Closed as i32);
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "a deleted account's room stayed open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn expiry_and_empty_timeout_sqlite() -> anyhow::Result<()> {
    expiry_and_empty_timeout(StoreKind::Sqlite).await
}

#[tokio::test]
async fn expiry_and_empty_timeout_postgres() -> anyhow::Result<()> {
    expiry_and_empty_timeout(StoreKind::Postgres).await
}

/// The same SFU and signalling as conversation calls: an account publishes, a guest receives.
#[tokio::test]
async fn media_from_an_account_reaches_a_guest() -> anyhow::Result<()> {
    let t = Transport::WebSocket;
    let s = server(StoreKind::Sqlite, 53600).await?;
    let owner = new_user(&s, t, "owner").await?;
    let room = create(&owner, false, 0).await?;
    let inv = invite(&owner, &room.room_id, RoomRole::Guest, 0).await?;
    let (p, _) = GroupPeer::join_room(owner.client, owner.events, &room.room_id, 1).await?;
    let (gc, gev) = guest(&s, t, &inv.token, "Watcher").await?;
    let (sub, _) = GroupPeer::join_room(gc, gev, &room.room_id, 2).await?;
    p.publish().await?;
    sub.wait_received(WAIT, "audio and video at the guest", |r| r.values().filter(|x| x.packets > 20).count() == 2)
        .await?;
    ensure!(sub.received().values().all(|r| r.corrupt == 0), "intact media");
    p.close().await;
    sub.close().await;
    s.stop().await?;
    Ok(())
}
