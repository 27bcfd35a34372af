//! Sync under injected faults (docs/protocol.md §14.6): a proxy cuts a scripted exchange at every
//! frame boundary from the server; after reconnecting and syncing, the client holds every entry
//! exactly once, in order — on both stores.

use std::time::Duration;

use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::proxy::CutProxy;
use confab_conformance::syncer::{ConvState, Device};
use confab_conformance::util::{msg_key, new_user};
use confab_protocol::v1;
use confab_server::wire;

async fn cut_everywhere(store: StoreKind) -> anyhow::Result<()> {
    let s = TestServer::start(store).await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "fiA").await?;
    let b = new_user(&s, t, "fiB").await?;
    let conv = call!(
        a.client,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Group as i32,
            title: "faults".into(),
            member_ids: vec![b.id],
            ..Default::default()
        }
    )?
    .conversation_id;
    let direct = s.url(t);
    let mut device = Device::new("B", &direct, s.options(), &b.auth.access_token);
    let mut n = 0;
    // The scripted exchange, through the proxy: Welcome, Sync answer, then live entries (three
    // messages, an edit, a reaction). Cut after each server frame in turn.
    for cut in 1..=9 {
        for _ in 0..2 {
            n += 1;
            call!(
                a.client,
                SendMessage,
                v1::SendMessage {
                    conversation_id: conv,
                    client_msg_id: msg_key(&format!("before-{n}")),
                    text: format!("missed {n}"),
                    ..Default::default()
                }
            )?;
        }
        let proxy = CutProxy::start(s.ws_addr, Some(cut)).await?;
        device.set_url(&format!("ws://{}/v1/ws", proxy.addr));
        let connected = device.connect().await.is_ok();
        let mut last = 0;
        for i in 0..3 {
            n += 1;
            last = call!(
                a.client,
                SendMessage,
                v1::SendMessage {
                    conversation_id: conv,
                    client_msg_id: msg_key(&format!("live-{n}")),
                    text: format!("live {n} ({i})"),
                    ..Default::default()
                }
            )?
            .message_id;
        }
        call!(
            a.client,
            EditMessage,
            v1::EditMessage { conversation_id: conv, message_id: last, text: "edited".into() }
        )?;
        call!(a.client, React, v1::React { conversation_id: conv, message_id: last, emoji: "👍".into() })?;
        if connected {
            device.drain(Duration::from_millis(150)).await?;
        }
        device.disconnect().await;
        // Reconnect directly and catch up.
        device.set_url(&direct);
        device.connect().await?;
        device.drain(Duration::from_millis(100)).await?;
        let mut truth = ConvState::default();
        for e in s.store().events_after(confab_server::store::ConvId(conv as i64), 0, 100_000).await? {
            truth.apply(&wire::event(&e, None))?;
        }
        let mine = device.convs.get(&conv).cloned().unwrap_or_default();
        anyhow::ensure!(
            mine.cursor == truth.cursor,
            "cut after frame {cut}: at seq {} of {}",
            mine.cursor,
            truth.cursor
        );
        anyhow::ensure!(mine.messages == truth.messages, "cut after frame {cut}: messages differ");
        device.disconnect().await;
    }
    eprintln!(
        "{store:?}: 9 cut points, {n} messages, {} syncs, {} duplicate live entries ignored",
        device.syncs, device.duplicates
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_at_every_frame_boundary_on_sqlite() {
    cut_everywhere(StoreKind::Sqlite).await.expect("sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_at_every_frame_boundary_on_postgres() {
    cut_everywhere(StoreKind::Postgres).await.expect("postgres");
}
