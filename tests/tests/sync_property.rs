//! Property test of the sync promise (docs/protocol.md §14.6): random interleavings of sends,
//! edits, deletes and membership changes from several users and devices, with random
//! disconnects, reconnects and syncs. Afterwards every device holds exactly the stored log of
//! every conversation it belongs to, each entry applied once, in seq order, with no gap.
//! Scenarios come from seeds; a failure names its seed so it can be replayed.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::scenario::{Rng, Sent, pick_live};
use confab_conformance::syncer::{ConvState, Device};
use confab_conformance::util::{PASSWORD, direct, group, new_user, send};
use confab_protocol::v1;
use confab_server::wire;

async fn scenario(s: &TestServer, t: Transport, seed: u64, steps: usize) -> anyhow::Result<String> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let a = new_user(s, t, "pA").await?;
    let b = new_user(s, t, "pB").await?;
    let c = new_user(s, t, "pC").await?;
    let group = call!(a.client, CreateConversation, group("prop", &[b.id, c.id]))?.conversation_id;
    let dm = call!(a.client, CreateConversation, direct(b.id))?.conversation_id;
    // Devices: A has two, B and C one each. A's second device has its own session.
    let (a2c, _) = s.connect(t).await?;
    let a2 = a2c.login(&a.name, PASSWORD, "A phone").await?;
    let users = [a.id, a.id, b.id, c.id];
    let tokens = [&a.auth.access_token, &a2.access_token, &b.auth.access_token, &c.auth.access_token];
    let mut devices: Vec<Device> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let mut d = Device::new(&format!("device{i}"), &s.url(t), s.options(), token);
        d.connect().await?;
        devices.push(d);
    }
    let mut sent: Vec<Sent> = Vec::new();
    let mut c_in_group = true;
    let mut n = 0u64;
    for _ in 0..steps {
        let i = rng.below(devices.len());
        let user = users[i];
        let roll = rng.below(100);
        if !devices[i].connected() {
            devices[i].connect().await.with_context(|| format!("reconnect device{i}"))?;
            continue;
        }
        match roll {
            0..=44 => {
                let mut convs = vec![group];
                if user != c.id {
                    convs.push(dm);
                }
                if user == c.id && !c_in_group {
                    continue;
                }
                let conv = convs[rng.below(convs.len())];
                n += 1;
                let r = call!(
                    devices[i].client()?,
                    SendMessage,
                    send(conv, &format!("s{seed}-{n}"), &format!("message {n} from device{i}"))
                )?;
                sent.push(Sent { conv, message_id: r.message_id, sender: user, deleted: false });
            }
            45..=56 => {
                if user == c.id && !c_in_group {
                    continue;
                }
                let Some(k) = pick_live(&sent, user, &mut rng) else { continue };
                call!(
                    devices[i].client()?,
                    EditMessage,
                    v1::EditMessage {
                        conversation_id: sent[k].conv,
                        message_id: sent[k].message_id,
                        text: format!("edited by device{i} at step {n}"),
                    }
                )?;
            }
            57..=63 => {
                if user == c.id && !c_in_group {
                    continue;
                }
                let Some(k) = pick_live(&sent, user, &mut rng) else { continue };
                call!(
                    devices[i].client()?,
                    DeleteMessage,
                    v1::DeleteMessage { conversation_id: sent[k].conv, message_id: sent[k].message_id }
                )?;
                sent[k].deleted = true;
            }
            64..=77 => devices[i].disconnect().await,
            78..=85 => devices[i].drain(Duration::from_millis(5)).await?,
            86..=91 => devices[i].sync().await?,
            _ => {
                // Membership churn: A removes C from the group, or adds C back.
                if !devices[0].connected() {
                    devices[0].connect().await?;
                }
                let owner = devices[0].client()?;
                if c_in_group {
                    call!(owner, RemoveMember, v1::RemoveMember { conversation_id: group, user_id: c.id })?;
                } else {
                    call!(owner, AddMembers, v1::AddMembers { conversation_id: group, user_ids: vec![c.id] })?;
                }
                c_in_group = !c_in_group;
            }
        }
    }
    // Quiesce: everyone online, caught up, live queues drained.
    for d in devices.iter_mut() {
        if !d.connected() {
            d.connect().await?;
        }
    }
    for d in devices.iter_mut() {
        d.drain(Duration::from_millis(150)).await?;
        d.sync().await?;
    }
    // Compare with the store.
    let mut summary = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let mut heads = s.store().heads(confab_server::store::UserId(users[i] as i64)).await?;
        heads.sort_unstable();
        let expected_convs: Vec<u64> = heads.iter().map(|(c, _)| wire::conv(*c)).collect();
        let got_convs = d.member_conversations();
        ensure!(
            got_convs == expected_convs,
            "seed {seed} {}: conversations {got_convs:?}, stored {expected_convs:?}",
            d.name
        );
        for (conv, head) in heads {
            let mut truth = ConvState::default();
            for e in s.store().events_after(conv, 0, 100_000).await? {
                truth.apply(&wire::event(&e, None))?;
            }
            ensure!(truth.cursor == head as u64, "store head {head} but log ends at {}", truth.cursor);
            let mine = &d.convs[&wire::conv(conv)];
            ensure!(
                mine.cursor == truth.cursor,
                "seed {seed} {}: conversation {conv} at {} of {}",
                d.name,
                mine.cursor,
                truth.cursor
            );
            ensure!(mine.messages == truth.messages, "seed {seed} {}: conversation {conv} messages differ", d.name);
        }
        summary.push(format!("{}: {} syncs, {} duplicate live events ignored", d.name, d.syncs, d.duplicates));
    }
    ensure!(sent.len() > steps / 5, "seed {seed}: scenario sent only {} messages", sent.len());
    Ok(format!("seed {seed}: {} messages; {}", sent.len(), summary.join("; ")))
}

async fn run(store: StoreKind, t: Transport, seeds: std::ops::Range<u64>) {
    let s = TestServer::start(store).await.expect("start");
    for seed in seeds {
        match scenario(&s, t, seed, 120).await {
            Ok(summary) => eprintln!("{summary}"),
            Err(e) => panic!("{store:?}/{t:?} seed {seed}: {e:#}"),
        }
    }
    s.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_websocket_sqlite() {
    run(StoreKind::Sqlite, Transport::WebSocket, 1..5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_quic_sqlite() {
    run(StoreKind::Sqlite, Transport::Quic, 11..15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_websocket_postgres() {
    run(StoreKind::Postgres, Transport::WebSocket, 21..25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_quic_postgres() {
    run(StoreKind::Postgres, Transport::Quic, 31..35).await;
}
