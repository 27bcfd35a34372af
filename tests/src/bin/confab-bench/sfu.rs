//! The SFU scenario: one publisher sends audio (50 packets/s) and video at a set bitrate through
//! the server's SFU to N subscribers, all WebRTC peers in this process on loopback: in a group
//! conversation's call (every subscriber an account, a member), or with `--room` in a meeting
//! room's call (§25: the publisher is the room's owner, the subscribers are guests on one GUEST
//! invite, which spares the server N registrations). Reports loss, send-to-receive latency
//! p50/p99 (the payload carries its send time), the server's CPU and the generator's.

use std::time::{Duration, Instant};

use anyhow::Context;
use confab_conformance::call;
use confab_conformance::webrtc_peer::{GroupPeer, Rate};
use confab_protocol::client::{Client, ConnectOptions, Events};
use confab_protocol::v1::{self, RoomRole};
use serde_json::json;

use crate::peer::{create_group, random_name, register};
use crate::sfu_measure::{in_parallel, measure, warm_up};

/// Payload bytes of one video packet (about an MTU's worth after headers).
const VIDEO_LEN: usize = 1100;

/// What one run does.
pub struct Plan {
    pub subscribers: usize,
    pub video_kbps: u32,
    pub duration: Duration,
    pub server_pid: Option<u32>,
    /// In a meeting room with guest subscribers instead of a group conversation.
    pub room: bool,
}

/// A registered account's connection, its events and its user id.
pub async fn signed_in(url: &str, options: &ConnectOptions, tag: &str) -> anyhow::Result<(Client, Events, u64)> {
    let (c, events) = Client::connect(url, options.clone()).await?;
    let id = register(&c, &random_name(tag)).await?.me.context("AuthResult without me")?.user_id;
    Ok((c, events, id))
}

/// A meeting room without a lobby, created by `owner`, and an invite of `role` for any number.
pub async fn room_with_invite(owner: &Client, name: &str, role: RoomRole) -> anyhow::Result<(String, String)> {
    let r = v1::CreateRoom { name: name.into(), lobby: false, ..Default::default() };
    let room = call!(owner, CreateRoom, r).context("CreateRoom")?.room_id;
    let r = v1::CreateRoomInvite { room_id: room.clone(), role: role as i32, expires_at_ms: 0, max_uses: 0 };
    let token = call!(owner, CreateRoomInvite, r).context("CreateRoomInvite")?.token;
    Ok((room, token))
}

/// A guest's connection (Hello with the invite's token) joined to `room`'s call.
pub async fn guest_joins(
    url: &str,
    options: &ConnectOptions,
    token: &str,
    room: &str,
    name: String,
    tag: u8,
) -> anyhow::Result<GroupPeer> {
    let mut o = options.clone();
    o.room_token = Some(token.to_owned());
    o.display_name = name;
    let (c, e) = Client::connect(url, o).await.context("a guest's Hello")?;
    let (p, _) = GroupPeer::join_room(c, e, room, tag)
        .await
        .context("a guest's JoinCall (the server's calls.max_participants, --max-participants, must cover everyone)")?;
    Ok(p)
}

pub async fn run(url: &str, options: &ConnectOptions, plan: &Plan) -> anyhow::Result<serde_json::Value> {
    let n = plan.subscribers;
    let kind = if plan.room { "meeting room, guest subscribers" } else { "group conversation" };
    eprintln!("SFU: 1 publisher and {n} subscribers ({kind})");
    let (pc, pe, _) = signed_in(url, options, "sfupub").await?;
    let joined = Instant::now();
    let (peers, publisher) = if plan.room {
        let (room, token) = room_with_invite(&pc, "sfu bench", RoomRole::Guest).await?;
        let peers =
            in_parallel(n, |i| guest_joins(url, options, &token, &room, format!("sub{i}"), (i % 200) as u8 + 2))
                .await?;
        (peers, GroupPeer::join_room(pc, pe, &room, 1).await?.0)
    } else {
        let subs = in_parallel(n, |i| async move { signed_in(url, options, &format!("sfusub{i}")).await }).await?;
        let ids: Vec<u64> = subs.iter().map(|s| s.2).collect();
        let conv = create_group(&pc, "sfu bench", &ids).await?;
        let subs: Vec<_> = subs.into_iter().map(|s| std::sync::Mutex::new(Some(s))).collect();
        let peers = in_parallel(n, |i| {
            let taken = subs[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            let (c, e, _) = taken.expect("each once");
            async move { Ok(GroupPeer::join(c, e, conv, (i % 200) as u8 + 2).await?.0) }
        })
        .await?;
        (peers, GroupPeer::join(pc, pe, conv, 1).await?.0)
    };
    // 2.5 Mbit/s of 1100-byte payloads is about 284 packets/s.
    let video_pps = (u64::from(plan.video_kbps) * 1000 / (VIDEO_LEN as u64 * 8)).max(1) as u32;
    publisher.publish_at(Rate { video_pps, video_len: VIDEO_LEN }).await?;
    eprintln!(
        "SFU: {n} joined in {:.1} s; publishing {} kbit/s ({video_pps} video packets/s)",
        joined.elapsed().as_secs_f64(),
        plan.video_kbps
    );
    let refs: Vec<&GroupPeer> = peers.iter().collect();
    // Warm-up: every subscriber receives both tracks.
    let ready = warm_up(&refs, 2, Duration::from_secs(120)).await;
    anyhow::ensure!(ready == n, "only {ready} of {n} subscribers receive both tracks after 120 s");
    let mut m = measure(&refs, plan.duration, plan.server_pid).await?;
    publisher.close().await;
    for p in &peers {
        p.close().await;
    }
    let mut out = json!({
        "scenario": "SFU",
        "url": url,
        "call": if plan.room { "meeting room (guests)" } else { "group conversation" },
        "subscribers": n,
        "video_kbps": plan.video_kbps,
        "video_packets_per_second": video_pps,
    });
    if let (Some(o), serde_json::Value::Object(f)) = (out.as_object_mut(), m.json()) {
        o.extend(f);
    }
    Ok(out)
}
