//! Simulcast through the SFU (docs/protocol.md §20.3.10), with real WebRTC peers on loopback: a
//! publisher sends one video track in three rid layers (`q`, `h`, `f`, payloads marked with their
//! layer); each subscriber gets the layer it asks for with SetSubscribedQuality, switches happen
//! at a keyframe of the new layer with continuous sequence numbers and increasing timestamps, OFF
//! stops the track, and a subscriber's REMB takes it down a layer and, once it recovers, back up.

use std::time::{Duration, Instant};

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{User, expect_code, new_user};
use confab_conformance::webrtc_peer::{GroupPeer, RawPacket};
use confab_protocol::v1::{self, ErrorCode, VideoQuality, event};

const WAIT: Duration = Duration::from_secs(10);
/// (rid, payload bytes) of the publisher's layers, lowest first.
const LAYERS: [(&str, usize); 3] = [("q", 200), ("h", 500), ("f", 1000)];

async fn server() -> anyhow::Result<TestServer> {
    TestServer::start_with(StoreKind::Sqlite, |c| {
        c.calls.udp_port_min = 51400;
        c.calls.udp_port_max = 51599;
    })
    .await
}

async fn group(owner: &User, members: &[&User]) -> anyhow::Result<u64> {
    let ids: Vec<u64> = members.iter().map(|u| u.id).collect();
    Ok(call!(owner.client, CreateConversation, confab_conformance::util::group("simulcast", &ids))?.conversation_id)
}

async fn set_quality(p: &GroupPeer, track: &str, q: VideoQuality) -> anyhow::Result<()> {
    let r = v1::SetSubscribedQuality {
        conversation_id: p.conversation_id,
        room_id: String::new(),
        track_id: track.to_string(),
        quality: q as i32,
    };
    call!(p.client(), SetSubscribedQuality, r)?;
    Ok(())
}

async fn quality_changed(p: &GroupPeer, track: &str, q: VideoQuality) -> anyhow::Result<()> {
    p.next_event(WAIT, |e| match e {
        event::Event::SubscribedQualityChanged(c) if c.track_id == track && c.quality == q as i32 => Some(()),
        _ => None,
    })
    .await
}

/// Waits until `p` got `n` more packets of `layer` on `track` than it had at `from` packets.
async fn wait_layer(p: &GroupPeer, track: &str, layer: u8, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let raw = p.raw(track);
        let tail = raw.iter().rev().take_while(|r| r.layer == layer).count();
        if tail >= n {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "layer {layer} not received: last {:?}", raw.last());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sequence numbers step by one, timestamps never go back, and every change of layer lands on a
/// keyframe of the new layer. Returns the number of switches.
fn seamless(who: &str, raw: &[RawPacket]) -> anyhow::Result<usize> {
    ensure!(!raw.is_empty(), "{who}: nothing received");
    ensure!(raw[0].key, "{who}: the first packet is not a keyframe: {:?}", raw[0]);
    let mut switches = 0;
    for w in raw.windows(2) {
        let (a, b) = (w[0], w[1]);
        ensure!(b.seq == a.seq.wrapping_add(1), "{who}: sequence jumps {} → {} ({a:?} → {b:?})", a.seq, b.seq);
        ensure!((b.ts.wrapping_sub(a.ts) as i32) >= 0, "{who}: timestamp goes back ({a:?} → {b:?})");
        if a.layer != b.layer {
            ensure!(b.key, "{who}: switched to layer {} on a delta frame: {b:?}", b.layer);
            switches += 1;
        }
    }
    Ok(switches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_its_layer_and_switches_are_seamless() -> anyhow::Result<()> {
    let s = server().await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "simA").await?;
    let b = new_user(&s, t, "simB").await?;
    let c = new_user(&s, t, "simC").await?;
    let conv = group(&a, &[&b, &c]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    let (pb, _) = GroupPeer::join(b.client, b.events, conv, 2).await?;
    let (pc, _) = GroupPeer::join(c.client, c.events, conv, 3).await?;

    pa.publish_simulcast(&LAYERS).await?;
    let track = pb
        .next_event(WAIT, |e| match e {
            event::Event::TrackPublished(t) => t.track.clone(),
            _ => None,
        })
        .await?
        .track_id;
    ensure!(track == format!("{}:1-sim", pa.participant_id), "{track}");
    // C wants the lowest layer; B asks for nothing and gets the highest.
    set_quality(&pc, &track, VideoQuality::Low).await?;
    wait_layer(&pb, &track, 2, 100).await?;
    wait_layer(&pc, &track, 0, 100).await?;
    quality_changed(&pb, &track, VideoQuality::High).await?;
    quality_changed(&pc, &track, VideoQuality::Low).await?;
    ensure!(pb.raw(&track).iter().all(|r| r.layer == 2), "B got other layers than the highest");

    // C moves up to MEDIUM: at a keyframe of that layer, without a gap in the sequence numbers.
    let asked = Instant::now();
    set_quality(&pc, &track, VideoQuality::Medium).await?;
    quality_changed(&pc, &track, VideoQuality::Medium).await?;
    println!("LOW → MEDIUM switch after {:?}", asked.elapsed());
    wait_layer(&pc, &track, 1, 50).await?;

    // OFF: nothing more arrives; HIGH again: it resumes on a keyframe, sequence unbroken.
    set_quality(&pc, &track, VideoQuality::Off).await?;
    quality_changed(&pc, &track, VideoQuality::Off).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = pc.raw(&track).len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    ensure!(pc.raw(&track).len() == stopped, "packets arrived after OFF");
    set_quality(&pc, &track, VideoQuality::High).await?;
    quality_changed(&pc, &track, VideoQuality::High).await?;
    wait_layer(&pc, &track, 2, 50).await?;

    let switches = seamless("C", &pc.raw(&track))?;
    ensure!(switches >= 2, "C switched {switches} times");
    seamless("B", &pb.raw(&track))?;

    // Errors: an unknown track, and a device not in the call.
    expect_code(
        call!(
            pc.client(),
            SetSubscribedQuality,
            v1::SetSubscribedQuality {
                conversation_id: conv,
                room_id: String::new(),
                track_id: "nope".into(),
                quality: VideoQuality::Low as i32
            }
        ),
        ErrorCode::NotFound,
    )?;
    expect_code(
        call!(
            pc.client(),
            SetSubscribedQuality,
            v1::SetSubscribedQuality {
                conversation_id: conv,
                room_id: String::new(),
                track_id: track.clone(),
                quality: VideoQuality::Unspecified as i32
            }
        ),
        ErrorCode::InvalidArgument,
    )?;
    for p in [&pa, &pb, &pc] {
        p.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_short_of_bandwidth_goes_down_and_back_up() -> anyhow::Result<()> {
    let s = server().await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "bweA").await?;
    let b = new_user(&s, t, "bweB").await?;
    let conv = group(&a, &[&b]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    let (pb, _) = GroupPeer::join(b.client, b.events, conv, 2).await?;
    pa.publish_simulcast(&LAYERS).await?;
    let track = format!("{}:1-sim", pa.participant_id);
    wait_layer(&pb, &track, 2, 100).await?;
    quality_changed(&pb, &track, VideoQuality::High).await?;

    // The layers are about 85, 205 and 405 kbit/s: 150 kbit/s only fits the lowest.
    let squeezed = Instant::now();
    let remb = |bps: u64| {
        let (pb, track) = (&pb, track.clone());
        async move {
            for _ in 0..5 {
                pb.send_remb(&track, bps).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        }
    };
    remb(150_000).await?;
    quality_changed(&pb, &track, VideoQuality::Low).await?;
    println!("REMB 150 kbit/s → LOW after {:?}", squeezed.elapsed());
    wait_layer(&pb, &track, 0, 50).await?;

    // Recovered: back up, but only after the hold time.
    let recovered = Instant::now();
    let up = async {
        loop {
            remb(5_000_000).await?;
        }
        #[allow(unreachable_code)]
        anyhow::Ok(())
    };
    tokio::select! {
        r = up => r?,
        r = quality_changed(&pb, &track, VideoQuality::High) => r?,
    }
    let took = recovered.elapsed();
    println!("REMB 5 Mbit/s → HIGH after {took:?}");
    wait_layer(&pb, &track, 2, 50).await?;
    seamless("B", &pb.raw(&track))?;
    for p in [&pa, &pb] {
        p.close().await;
    }
    Ok(())
}
