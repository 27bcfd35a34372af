//! The SFU rooms scenario: R meeting rooms (§25) of S participants each, every participant a
//! guest on its room's SPEAKER invite, publishing audio (Opus-like, 50 packets/s of 160 bytes)
//! and video, and receiving everyone else in its room. Participant 1 of each room is its speaker:
//! every other participant asks for that speaker's video at HIGH and for the others' at LOW with
//! SetSubscribedQuality (§20.3.10), as a gallery with one large tile would. The video is one
//! layer at `--video-kbps` (1,100-byte packets, evenly paced; rid layers are still to come);
//! the answers to SetSubscribedQuality are counted by outcome. Reports loss, p50/p99
//! send-to-receive latency, the server's CPU and the generator's, as the SFU scenario does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_conformance::call;
use confab_conformance::webrtc_peer::{GroupPeer, Rate};
use confab_protocol::client::{ClientError, ConnectOptions};
use confab_protocol::v1::{self, RoomRole, VideoQuality};
use serde_json::json;

use crate::sfu::{guest_joins, room_with_invite, signed_in};
use crate::sfu_measure::{in_parallel, measure, warm_up};

/// Payload bytes of one video packet.
const VIDEO_LEN: usize = 1100;
/// The GroupPeer tag of each room's speaker (its payloads carry it).
const SPEAKER: u8 = 1;

/// What one run does.
pub struct Plan {
    pub rooms: usize,
    /// Participants per room (2 to 200).
    pub size: usize,
    pub video_kbps: u32,
    pub duration: Duration,
    pub server_pid: Option<u32>,
}

/// Asks for the speaker's video at HIGH and everyone else's at LOW, every peer at once (one
/// request after another on each); the answers, by outcome.
async fn choose_qualities(peers: &[&GroupPeer]) -> BTreeMap<String, u64> {
    let per_peer = peers.iter().map(|p| async move {
        let mut answers = Vec::new();
        for (track_id, r) in p.received_counts().into_iter().filter(|(_, r)| r.video) {
            let quality = if r.tag == SPEAKER { VideoQuality::High } else { VideoQuality::Low };
            let req = v1::SetSubscribedQuality {
                conversation_id: 0,
                room_id: p.room_id.clone(),
                track_id,
                quality: quality as i32,
            };
            answers.push(match call!(p.client(), SetSubscribedQuality, req) {
                Ok(_) => "ok".to_owned(),
                Err(ClientError::Server(e)) => format!("{:?}", e.code()),
                Err(e) => format!("failed: {e}"),
            });
        }
        answers
    });
    let mut answers = BTreeMap::new();
    for outcome in futures_util::future::join_all(per_peer).await.into_iter().flatten() {
        *answers.entry(outcome).or_default() += 1;
    }
    answers
}

pub async fn run(url: &str, options: &ConnectOptions, plan: &Plan) -> anyhow::Result<serde_json::Value> {
    let (rooms, size) = (plan.rooms.max(1), plan.size.clamp(2, 200));
    eprintln!("SFU rooms: {rooms} rooms of {size} participants, every one publishing");
    // Publish waits behind the media already flowing: when the server is saturated, it can take
    // longer than the usual 30 s.
    let mut o = options.clone();
    o.request_timeout = o.request_timeout.max(Duration::from_secs(120));
    let options = &o;
    let (owner, _events, _) = signed_in(url, options, "sfuowner").await?;
    let mut invites = Vec::with_capacity(rooms);
    for r in 0..rooms {
        invites.push(room_with_invite(&owner, &format!("sfu rooms bench {r}"), RoomRole::Speaker).await?);
    }
    let joined = Instant::now();
    let peers = in_parallel(rooms * size, |i| {
        let (room, token) = &invites[i / size];
        let tag = (i % size) as u8 + 1;
        guest_joins(url, options, token, room, format!("r{}p{tag}", i / size), tag)
    })
    .await?;
    let video_pps = (u64::from(plan.video_kbps) * 1000 / (VIDEO_LEN as u64 * 8)).max(1) as u32;
    for (i, p) in peers.iter().enumerate() {
        let t = Instant::now();
        p.publish_at(Rate { video_pps, video_len: VIDEO_LEN })
            .await
            .with_context(|| format!("Publish of participant {} in room {}", i % size + 1, i / size))?;
        if t.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "SFU rooms: participant {} in room {} published in {:.1} s",
                i % size + 1,
                i / size,
                t.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "SFU rooms: {} joined and publishing in {:.1} s; video {} kbit/s ({video_pps} packets/s) each",
        peers.len(),
        joined.elapsed().as_secs_f64(),
        plan.video_kbps
    );
    let setup = joined.elapsed().as_secs_f64();
    let refs: Vec<&GroupPeer> = peers.iter().collect();
    // Measured even when some never get everything (an overloaded machine): the figures say so.
    let ready = warm_up(&refs, 2 * (size - 1), Duration::from_secs(120)).await;
    if ready < peers.len() {
        eprintln!("SFU rooms: only {ready} of {} receive all {} tracks after 120 s", peers.len(), 2 * (size - 1));
    }
    let answers = choose_qualities(&refs).await;
    eprintln!("SFU rooms: SetSubscribedQuality answers {answers:?}");
    // A layer switch waits for a keyframe: let it happen before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut m = measure(&refs, plan.duration, plan.server_pid).await?;
    for p in &peers {
        p.close().await;
    }
    let mut out = json!({
        "scenario": "SFU rooms",
        "url": url,
        "rooms": rooms,
        "participants_per_room": size,
        "publishers": peers.len(),
        "setup_seconds": setup,
        "participants_receiving_every_track": ready,
        "video_kbps": plan.video_kbps,
        "video_packets_per_second": video_pps,
        "video_layers": "one (the scenario does not publish rid layers yet)",
        "quality_requests": format!("{answers:?}"),
    });
    if let (Some(o), serde_json::Value::Object(f)) = (out.as_object_mut(), m.json()) {
        o.extend(f);
    }
    Ok(out)
}
