//! Group calls (docs/protocol.md §20.3) with an independent WebRTC peer: aiortc, driven as a
//! process of its own (tests/peers/aiortc_peer.py through `confab_conformance::aiortc`), beside
//! the Rust peers of `webrtc_peer`. Media is real: aiortc encodes VP8 and Opus and decodes what
//! it receives; the Rust publisher sends a VP8 clip that aiortc encoded. Figures (join to first
//! frame, retransmissions, feedback) are printed; assertions are about what happened, not how
//! fast. Needs the Python of scripts/lib/aiortc.sh (`./scripts/test` provides it).

use std::time::Duration;

use anyhow::ensure;
use confab_conformance::aiortc::{AiortcPeer, frames, track_frames, video_receivers};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{group, new_user, unique};
use confab_conformance::webrtc_peer::{GroupPeer, read_ivf};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn server() -> anyhow::Result<TestServer> {
    TestServer::start_with(StoreKind::Sqlite, |c| {
        c.calls.reconnect_grace = Duration::from_millis(300);
        c.calls.room_ttl = Duration::from_secs(2);
        // sfu.rs uses 51000–51399; the SFU skips ports in use anyway.
        c.calls.udp_port_min = 52000;
        c.calls.udp_port_max = 52399;
    })
    .await
}

/// Two aiortc peers with fresh accounts, in a new group (created by the first, §12.2) that also
/// holds `others`.
async fn two_peers(s: &TestServer, others: &[u64]) -> anyhow::Result<(AiortcPeer, AiortcPeer, u64)> {
    let (a, b) = tokio::try_join!(AiortcPeer::start(s, "A"), AiortcPeer::start(s, "B"))?;
    let (mut a, mut b) = (a, b);
    a.register(&unique("aioA")).await?;
    let b_id = b.register(&unique("aioB")).await?;
    let mut members = vec![b_id];
    members.extend_from_slice(others);
    let conv = a.create_group("aiortc", &members).await?;
    Ok((a, b, conv))
}

fn pid(joined: &Value) -> String {
    joined["participant_id"].as_str().unwrap_or_default().to_string()
}

/// §20.3.3, §20.3.4: an aiortc publisher's Opus and VP8 reach an aiortc subscriber, which decodes
/// both, and a Rust subscriber, which receives both and a VP8 keyframe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publisher_reaches_aiortc_and_rust_subscribers() -> anyhow::Result<()> {
    let s = server().await?;
    let c = new_user(&s, Transport::WebSocket, "aioC").await?;
    let (mut a, mut b, conv) = two_peers(&s, &[c.id]).await?;
    let a_pid = pid(&a.join(conv, 0).await?);
    a.publish(json!({})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    b.join(conv, 0).await?;
    let (rust, _) = GroupPeer::join(c.client, c.events, conv, 3).await?;

    let got = b
        .wait_stats(WAIT, "A's audio and video decoded at B", |st| {
            frames(st, &a_pid, "video") >= 20 && frames(st, &a_pid, "audio") >= 50
        })
        .await?;
    println!(
        "aiortc B decoded {} video and {} audio frames of A; joins {}",
        frames(&got, &a_pid, "video"),
        frames(&got, &a_pid, "audio"),
        got["joins"]
    );
    rust.wait_received(WAIT, "A's tracks at the Rust subscriber", |got| {
        let mine: Vec<_> = got.values().filter(|r| r.stream_id == a_pid).collect();
        mine.len() == 2
            && mine.iter().any(|r| r.video && r.rtp >= 50 && r.vp8_keyframes >= 1)
            && mine.iter().any(|r| !r.video && r.rtp >= 50)
    })
    .await?;
    for r in rust.received().values() {
        println!("Rust C: video={} packets={} keyframe starts={}", r.video, r.rtp, r.vp8_keyframes);
    }
    a.leave().await?;
    b.leave().await?;
    rust.close().await;
    s.stop().await
}

/// §20.3.8 and RFC 4585: a subscriber that loses video packets NACKs them and gets them again,
/// so it keeps decoding. The publisher is the Rust peer sending a VP8 clip (libvpx, through the
/// aiortc peer); the aiortc subscriber drops every 10th video packet before SRTP, as a network loss would (a
/// plain retransmission keeps its sequence number, which SRTP's replay check would refuse after
/// a drop made later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_nacks_are_answered_with_retransmissions() -> anyhow::Result<()> {
    let s = server().await?;
    let p = new_user(&s, Transport::WebSocket, "aioP").await?;
    let mut b = AiortcPeer::start(&s, "B").await?;
    let b_id = b.register(&unique("aioB")).await?;
    let conv = call!(p.client, CreateConversation, group("aiortc", &[b_id]))?.conversation_id;
    let dir = tempfile::tempdir()?;
    let ivf = dir.path().join("clip.ivf");
    b.cmd("encode_ivf", json!({"path": ivf, "frames": 50, "width": 320, "height": 240, "fps": 25})).await?;
    let clip = read_ivf(&ivf)?;
    let (publisher, _) = GroupPeer::join(p.client, p.events, conv, 1).await?;
    let sent = publisher.publish_clip(clip, 25).await?;
    b.join(conv, 10).await?;

    let pid = publisher.participant_id.clone();
    let first = b.wait_stats(WAIT, "a first decoded frame", |st| frames(st, &pid, "video") > 0).await?;
    let sent_then = sent.load(std::sync::atomic::Ordering::Relaxed);
    let at_loss = b.wait_stats(WAIT, "15 dropped packets", |st| video_receivers(st, "dropped") >= 15).await?;
    tokio::time::sleep(Duration::from_secs(1)).await; // retransmissions in flight
    let last = b.stats().await?;
    let decoded = frames(&last, &pid, "video") - frames(&first, &pid, "video");
    let sent_since = sent.load(std::sync::atomic::Ordering::Relaxed) - sent_then;
    let (dropped, retransmitted) = (video_receivers(&at_loss, "dropped"), video_receivers(&last, "retransmitted"));
    println!(
        "dropped {} (then {dropped}), NACKs {} for {} seqs, retransmitted {retransmitted}, PLIs {}; \
         decoded {decoded} of {sent_since} frames sent since the first",
        video_receivers(&last, "dropped"),
        video_receivers(&last, "nacks_sent"),
        video_receivers(&last, "nacked_seqs"),
        video_receivers(&last, "plis_sent"),
    );
    ensure!(video_receivers(&last, "nacks_sent") > 0, "aiortc sent no NACK: {}", last["receivers"]);
    ensure!(
        retransmitted * 10 >= dropped * 8,
        "{retransmitted} of {dropped} dropped packets came again: NACKs are not answered"
    );
    ensure!(decoded * 2 >= sent_since, "decoding stalled: {decoded} frames decoded of {sent_since} sent");
    b.leave().await?;
    publisher.close().await;
    s.stop().await
}

/// §20.3.8: a new subscriber gets a keyframe (the server asks the publisher when the subscriber
/// starts receiving), join after join. The figures are printed (goal: first frame within about
/// 300 ms of the subscriber connection on loopback); only the keyframe's arrival is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_subscriber_gets_a_first_keyframe() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, mut b, conv) = two_peers(&s, &[]).await?;
    a.join(conv, 0).await?;
    a.publish(json!({})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    const JOINS: usize = 4;
    for n in 1..=JOINS {
        b.join(conv, 0).await?;
        b.wait_stats(WAIT, "a first decoded video frame", |st| {
            st["joins"].as_array().and_then(|j| j.get(n - 1)).is_some_and(|j| j["first_video_ms"].is_u64())
        })
        .await?;
        b.leave().await?;
    }
    let st = b.stats().await?;
    let joins = st["joins"].as_array().cloned().unwrap_or_default();
    let figure = |k: &str| joins.iter().map(|j| j[k].as_i64().unwrap_or(-1)).collect::<Vec<_>>();
    println!(
        "over {JOINS} joins (ms): join→offer {:?}, join→connected {:?}, join→first frame {:?}, \
         connected→first frame {:?}; PLIs at the publisher {}",
        figure("offer_ms"),
        figure("connected_ms"),
        figure("first_video_ms"),
        figure("connected_to_first_video_ms"),
        a.stats().await?["publisher_rtcp"]["pli"]
    );
    ensure!(joins.len() == JOINS && joins.iter().all(|j| j["first_video_ms"].is_u64()), "{joins:?}");
    a.leave().await?;
    s.stop().await
}

/// §20.3.8: someone who joins while another participant speaks learns who speaks, without
/// waiting for the list to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_speakers_are_sent_on_join_while_someone_speaks() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, mut b, conv) = two_peers(&s, &[]).await?;
    let a_pid = pid(&a.join(conv, 0).await?);
    a.publish(json!({"video": false})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    let speaks = |st: &Value| {
        st["active_speakers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["speakers"][0]["participant_id"] == json!(a_pid))
    };
    a.wait_stats(WAIT, "A hears itself speak (ActiveSpeakers)", speaks).await?;
    b.join(conv, 0).await?;
    let st = b.wait_stats(Duration::from_secs(5), "ActiveSpeakers naming A at B after its join", speaks).await?;
    println!("B's ActiveSpeakers: {}", st["active_speakers"]);
    a.leave().await?;
    b.leave().await?;
    s.stop().await
}

/// §20.3.3, §20.3.7: a publisher leaves and comes back while another keeps publishing; the
/// subscriber connection reuses the freed m-lines for the new tracks and the subscriber decodes
/// them. With two VP8 m-lines, and a new SSRC on a reused one, only the negotiated `sdes:mid`
/// header extension (RFC 8843 §9.2, §15) tells them apart: the peer routes by it as browsers do
/// (aiortc 1.16 alone routes by SSRC and payload type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoining_publisher_is_decoded_on_reused_m_lines() -> anyhow::Result<()> {
    let s = server().await?;
    let mut other = AiortcPeer::start(&s, "A2").await?;
    let other_id = other.register(&unique("aioA2")).await?;
    let (mut a, mut b, conv) = two_peers(&s, &[other_id]).await?;
    let first = pid(&a.join(conv, 0).await?);
    let stays = pid(&other.join(conv, 0).await?);
    a.publish(json!({})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    other.publish(json!({"audio": false})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    b.join(conv, 0).await?;
    let mut wrong = Vec::new();
    let both = |st: &Value| frames(st, &first, "video") >= 10 && frames(st, &stays, "video") >= 10;
    if b.wait_stats(WAIT, "both publishers' video", both).await.is_err() {
        wrong.push("aiortc did not decode both publishers' video (two VP8 m-lines)".to_string());
    }
    let st = b.stats().await?;
    let offers_before = st["offers"].as_array().map_or(0, Vec::len);
    a.leave().await?;
    b.wait_stats(WAIT, "the offer without A's tracks", |st| {
        st["offers"].as_array().is_some_and(|o| o.len() > offers_before)
    })
    .await?;
    let again = pid(&a.join(conv, 0).await?);
    let published = a.publish(json!({})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    let new_tracks: Vec<String> = published["offer"]["sections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["msid"]["track_id"].as_str().map(|t| format!("{again}:{t}")))
        .collect();
    let decoded = |st: &Value| frames(st, &again, "video") >= 10;
    if b.wait_stats(WAIT, "the rejoined publisher's video decoded", decoded).await.is_err() {
        wrong.push("aiortc decoded no video of the rejoined publisher".to_string());
    }
    let st = b.stats().await?;
    let (with_mid, rtp) = (video_receivers(&st, "with_mid_ext"), video_receivers(&st, "rtp_packets"));
    if with_mid == 0 {
        wrong.push(format!("none of {rtp} forwarded video RTP packets carries the negotiated sdes:mid extension"));
    }
    let lines: Vec<Value> = st["offers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let m = o["sections"].as_array().into_iter().flatten();
            let m = m.map(|m| json!([m["mid"], m["kind"], m["direction"], m["ssrcs"]]));
            json!({"bundle": o["bundle_mids"], "m": Value::Array(m.collect())})
        })
        .collect();
    let receivers: Vec<Value> = st["receivers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| json!([r["mid"], r["ssrcs"], r["mids_seen"], r["rtp_packets"], r["plis_sent"]]))
        .collect();
    println!(
        "offers (mid, kind, direction, SSRCs): {}\nreceivers (mid, SSRCs seen, sdes:mid values seen, packets, PLIs): {}\n\
         transceivers: {}\n\
         video RTP with sdes:mid {with_mid} of {rtp}; new tracks {new_tracks:?}: {:?} frames",
        Value::Array(lines),
        Value::Array(receivers),
        st["transceivers"],
        new_tracks.iter().map(|t| track_frames(&st, t)).collect::<Vec<_>>()
    );
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    for p in [&mut a, &mut b, &mut other] {
        p.leave().await?;
    }
    s.stop().await
}

/// §20.3.4 and RFC 8829/8830/8839: the SubscriberOffer as an independent stack reads it.
/// Session-level `a=msid-semantic` from the first offer; forwarded tracks `sendonly`; m-lines
/// freed by a leaving publisher `inactive`; server candidates in the SDP or trickled with their
/// `sdp_mid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_offers_are_well_formed() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, mut b, conv) = two_peers(&s, &[]).await?;
    let a_pid = pid(&a.join(conv, 0).await?);
    a.publish(json!({})).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    b.join(conv, 0).await?;
    b.wait_stats(WAIT, "A's video", |st| frames(st, &a_pid, "video") >= 1).await?;
    a.leave().await?;
    let st = b
        .wait_stats(WAIT, "the offer without A's tracks", |st| st["offers"].as_array().is_some_and(|o| o.len() >= 2))
        .await?;
    let offers = st["offers"].as_array().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    if offers[0]["msid_semantic"] != json!(true) {
        wrong.push("the first SubscriberOffer has no a=msid-semantic".to_string());
    }
    for (n, o) in offers.iter().enumerate() {
        for m in o["sections"].as_array().into_iter().flatten() {
            let dir = m["direction"].as_str().unwrap_or_default();
            let forwarded = !m["msid"].is_null();
            if forwarded && dir != "sendonly" {
                wrong.push(format!("offer {n}: forwarded track on mid {} is {dir}, not sendonly", m["mid"]));
            }
            if !forwarded && m["port"] != json!("0") && dir != "inactive" {
                wrong.push(format!("offer {n}: freed mid {} is {dir}, not inactive", m["mid"]));
            }
        }
    }
    let in_sdp = offers[0]["candidates"].as_u64().unwrap_or(0);
    let trickle = &st["server_trickle"];
    if in_sdp == 0 && (trickle["subscriber"] == json!(0) || trickle["empty_mid"] != json!(0)) {
        wrong.push(format!("server candidates: none in the SDP, trickled {trickle}"));
    }
    println!("offers: {}", Value::Array(offers.clone()));
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    b.leave().await?;
    s.stop().await
}

/// §20.3.3, §5: an offer aiortc makes with PCMU audio only has no usable media (Opus/VP8 only):
/// INVALID_ARGUMENT on `publish.sdp_offer`, and neither that message nor the one for an offer
/// that does not parse echoes the input or the parser's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_usable_codecs_is_refused_without_echo() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, _b, conv) = two_peers(&s, &[]).await?;
    a.join(conv, 0).await?;
    let refused = a.publish(json!({"video": false, "audio_codecs": ["PCMU"]})).await?;
    let mut wrong = Vec::new();
    let token = "zq7token";
    let junk = format!("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns={token}\r\nm=audio 9 {token} 0\r\nx={token}\r\n");
    let junk_refused = a.try_cmd("publish_raw", json!({ "sdp": junk })).await?;
    for (what, r) in [("a PCMU-only offer", refused), ("a malformed offer", junk_refused)] {
        match r {
            Ok(answer) => wrong.push(format!(
                "{what} was accepted (aiortc applying the answer: {}): {}",
                answer["apply_error"], answer["answer"]
            )),
            Err(e) => {
                println!("{what}: {e}");
                let msg = e["message"].as_str().unwrap_or_default();
                if e["code"] != json!("ERROR_CODE_INVALID_ARGUMENT") || e["field"] != json!("publish.sdp_offer") {
                    wrong.push(format!("{what}: {e}"));
                }
                let echoes = [token, "PCMU", "a=", "m=", "\n", "Error", "Sdp", "error:"];
                if let Some(bad) = echoes.iter().find(|w| msg.contains(*w)) {
                    wrong.push(format!("{what}: the message {msg:?} echoes {bad:?}"));
                }
            }
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    // The room is unaffected: a proper offer is answered.
    a.publish(json!({})).await?.map_err(|e| anyhow::anyhow!("publish refused after the refusals: {e}"))?;
    a.leave().await?;
    s.stop().await
}

/// §20.3.1: a publisher that negotiates transport-cc (draft-holmer-rmcat-transport-wide-cc-
/// extensions-01) gets transport-wide congestion feedback. Stock aiortc neither offers nor reads
/// transport-cc (it adapts to REMB only, which the server does not offer), so the peer offers the
/// extension and stamps transport-wide sequence numbers, as browsers do; the REMB count is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_negotiating_transport_cc_gets_congestion_feedback() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, mut b, conv) = two_peers(&s, &[]).await?;
    let a_pid = pid(&a.join(conv, 0).await?);
    a.publish(json!({ "twcc": true })).await?.map_err(|e| anyhow::anyhow!("publish refused: {e}"))?;
    b.join(conv, 0).await?;
    b.wait_stats(WAIT, "A's video at B", |st| frames(st, &a_pid, "video") >= 10).await?;
    let outcome = a
        .wait_stats(Duration::from_secs(5), "transport-cc feedback at the publisher", |st| {
            st["publisher_rtcp"]["twcc"].as_u64().unwrap_or(0) > 0
        })
        .await;
    println!("RTCP at the publisher: {}", a.stats().await?["publisher_rtcp"]);
    outcome?;
    a.leave().await?;
    b.leave().await?;
    s.stop().await
}
