//! The meeting page in real browsers (docs/protocol.md §25, §20.3): the owner of a meeting room
//! (a Rust participant, [`GroupPeer`], sending real VP8) and two headless Chromium pages that
//! came through SPEAKER invite links (one with the name in the link, one typed into the page), in
//! the room's call through the SFU. The pages wait in the lobby until the owner admits them; then
//! each page shows the others' names and decodes their video (framesDecoded grows), the Rust
//! participant receives both pages' audio and video, the server refuses a guest's requests
//! outside its room (PERMISSION_DENIED), a reloaded page comes back as the same guest with its
//! resume token without knocking again, and, when the server forwards simulcast layers, a page
//! switches another's video between its LOW and HIGH layers (the frame width changes,
//! SubscribedQualityChanged arrives). Needs Chromium, Node.js and web/node_modules (scripts/test
//! provides them); a missing one fails the test with the reason.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use confab_conformance::browser::BrowserEnv;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{err_code, new_user};
use confab_conformance::webrtc_peer::GroupPeer;
use confab_protocol::v1::{self, ErrorCode, RoomRole, event};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// One VP8 keyframe, 160×120 (web/tests/make-vp8-keyframe.mjs made it).
const VP8_KEYFRAME: &[u8] = include_bytes!("../data/vp8-keyframe-160x120.bin");

async fn server() -> anyhow::Result<TestServer> {
    TestServer::start_with(StoreKind::Sqlite, |c| {
        c.calls.udp_port_min = 51800;
        c.calls.udp_port_max = 51999;
        // A closed page leaves the call soon.
        c.calls.reconnect_grace = Duration::from_millis(500);
    })
    .await
}

/// `s` with everything but unreserved characters percent-encoded, for a URL's fragment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn room(name: &str, lobby: bool) -> v1::CreateRoom {
    v1::CreateRoom { name: name.into(), lobby, ..Default::default() }
}

/// Whether this server forwards simulcast layers on request: SetSubscribedQuality is served
/// (answered with anything but UNIMPLEMENTED, here NOT_FOUND for a track that does not exist).
async fn simulcast_served(peer: &GroupPeer) -> anyhow::Result<bool> {
    let r = call!(
        peer.client(),
        SetSubscribedQuality,
        v1::SetSubscribedQuality {
            conversation_id: 0,
            room_id: peer.room_id.clone(),
            track_id: "no-such-track".into(),
            quality: v1::VideoQuality::High as i32,
        }
    );
    Ok(!matches!(err_code(r), Ok(ErrorCode::Unimplemented)))
}

/// Admits the next `n` knocks on the owner's connection (§25.4).
async fn admit(owner: &GroupPeer, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let knock = owner
            .next_event(WAIT, |e| match e {
                event::Event::RoomKnock(k) => k.knock.clone(),
                _ => None,
            })
            .await
            .context("a page knocks")?;
        let answer =
            v1::AnswerKnock { room_id: owner.room_id.clone(), participant_id: knock.participant_id, admit: true };
        call!(owner.client(), AnswerKnock, answer)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_and_a_rust_peer_in_a_meeting_room() -> anyhow::Result<()> {
    let env = BrowserEnv::find()?;
    let s = server().await?;
    let owner = new_user(&s, Transport::WebSocket, "owner").await?;
    let meeting = call!(owner.client, CreateRoom, room("stand-up", true))?;
    // Another room: the pages' guests may not touch it.
    let other = call!(owner.client, CreateRoom, room("elsewhere", false))?;
    let invite = |role: RoomRole| v1::CreateRoomInvite {
        room_id: meeting.room_id.clone(),
        role: role as i32,
        ..Default::default()
    };
    let speaker_a = call!(owner.client, CreateRoomInvite, invite(RoomRole::Speaker))?;
    let speaker_b = call!(owner.client, CreateRoomInvite, invite(RoomRole::Speaker))?;

    let (peer, _) = GroupPeer::join_room(owner.client, owner.events, &meeting.room_id, 1).await?;
    peer.publish_vp8(Bytes::from_static(VP8_KEYFRAME), 15).await?;
    let simulcast = simulcast_served(&peer).await?;
    if !simulcast {
        eprintln!("browser test: SetSubscribedQuality is UNIMPLEMENTED on this build: the simulcast part does not run");
    }

    let url =
        |invite: &v1::RoomInvite| format!("http://{}/call/{}#token={}", s.ws_addr, meeting.room_id, enc(&invite.token));
    let ada = json!({ "label": "Ada Lovelace", "url": format!("{}&name={}", url(&speaker_a), enc("Ada Lovelace")) });
    // Grace's link has no name: she types it into the page.
    let grace = json!({ "label": "Grace Hopper", "url": url(&speaker_b), "typeName": "Grace Hopper" });
    let refused = |request: &str, body: serde_json::Value| json!({ "label": "Ada Lovelace", "request": request, "body": body, "code": "PERMISSION_DENIED" });
    let config = json!({
        "pages": [ada, grace],
        "rust": { "participantId": peer.participant_id, "realVideo": true },
        "simulcast": simulcast,
        "refused": [
            refused("joinCall", json!({ "roomId": other.room_id })),
            refused("getRoom", json!({ "roomId": other.room_id })),
            refused("listConversations", json!({})),
            refused("createRoom", json!({ "name": "mine" })),
        ],
        "reload": true,
        "timeoutMs": 30_000,
    });
    let started = Instant::now();
    let mut run = env.run(&config)?;
    // The room has a lobby: both pages knock, the owner admits them, they join again.
    let (ready, ()) = tokio::try_join!(run.expect("ready", WAIT), admit(&peer, 2))?;
    let ids: Vec<String> = ready["participants"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["participantId"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    ensure!(ids.len() == 2, "two pages in the call: {ready}");

    // The Rust participant receives both pages' audio and video.
    peer.wait_received(WAIT, "both pages' media at the Rust participant", |got| {
        ids.iter().all(|id| {
            let mine: Vec<_> = got.values().filter(|r| &r.stream_id == id).collect();
            mine.len() == 2 && mine.iter().all(|r| r.rtp >= 20) && mine.iter().any(|r| r.video)
        })
    })
    .await?;
    let report = run.finish(WAIT).await?;
    eprintln!("browser test: {:.1} s with the browsers; report: {report}", started.elapsed().as_secs_f64());
    ensure!(report["refused"].as_array().is_some_and(|r| r.len() == 4), "refusals checked: {report}");
    ensure!(!simulcast || report["simulcast"]["widths"].is_array(), "simulcast checked: {report}");

    // A closed page leaves the call (the first page: the second left once already, reloading).
    peer.next_event(WAIT, |e| match e {
        event::Event::ParticipantLeft(l) if l.participant_id == ids[0] => Some(()),
        _ => None,
    })
    .await?;
    peer.close().await;
    s.stop().await
}
