//! The fan-out sequencer of a node in a cluster (docs/architecture.md "fanout/"), against a real
//! store: entries offered out of order, twice, or with a gap reach a connection once each, in seq
//! order, the missing ones read from the store; a lane's first entry brings the recent ones the
//! node never saw.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{group, new_user, send};
use confab_protocol::v1::{self, event, server_frame};
use confab_server::bus::{Live, SeqFrame};
use confab_server::fanout::Sequencer;
use confab_server::hub::Hub;
use confab_server::metrics::ClusterMetrics;
use confab_server::session::{Outbox, OutboxEnds};
use confab_server::store::{ConvId, UserId};
use prost::Message as _;

/// The seqs of the conversation events queued on `ends` within `wait` of quiet.
async fn seqs(ends: &mut OutboxEnds, wait: Duration) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    while let Ok(None) = tokio::time::timeout(wait, ends.take(&mut batch, 64)).await {
        for bytes in batch.drain(..) {
            let frame = v1::ServerFrame::decode(bytes)?;
            if let Some(server_frame::Frame::Event(v1::Event { event: Some(event::Event::ConversationEvent(e)) })) =
                frame.frame
            {
                out.push(e.seq);
            }
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_reach_a_connection_once_in_order_gaps_read_from_the_store() -> anyhow::Result<()> {
    let s = TestServer::start(StoreKind::Sqlite).await?;
    let a = new_user(&s, Transport::WebSocket, "seqA").await?;
    let conv = call!(a.client, CreateConversation, group("seq", &[]))?.conversation_id;
    for i in 0..9 {
        call!(a.client, SendMessage, send(conv, &format!("s{i}"), "hello"))?;
    }
    let store = s.store().clone();
    let log = store.events_after(ConvId(conv as i64), 0, 100).await?;
    ensure!(log.len() == 10, "created + 9 posts: {}", log.len());
    let frame = |seq: i64| -> anyhow::Result<SeqFrame> {
        let e = log.iter().find(|e| e.seq == seq).context("entry")?;
        Ok(SeqFrame { conversation: e.conversation_id, seq, frame: confab_server::wire::event_frame_bytes(e) })
    };
    let user = UserId(a.id as i64);
    let live = |seqs: &[i64]| -> anyhow::Result<Live> {
        Ok(Live {
            entries: seqs.iter().map(|s| frame(*s)).collect::<Result<_, _>>()?,
            audience: vec![user],
            ..Default::default()
        })
    };
    let hub = Arc::new(Hub::default());
    let (outbox, mut ends) = Outbox::new(1024);
    hub.attach("session-1", user, 1, outbox);
    let metrics = ClusterMetrics::default();
    let sequencer = Sequencer::new(hub.clone(), store.clone(), metrics.clone());

    // The first entry this node sees (seq 3) brings the recent ones below it (1, 2).
    sequencer.deliver(&live(&[3])?);
    ensure!(seqs(&mut ends, Duration::from_millis(300)).await? == [1, 2, 3]);
    // Seen again: dropped.
    sequencer.deliver(&live(&[3, 2])?);
    // 6 comes before 4 and 5 (published by another node, still on their way): read from the
    // store, delivered first; when 4 and 5 arrive they are dropped.
    sequencer.deliver(&live(&[6])?);
    sequencer.deliver(&live(&[5, 4])?);
    sequencer.deliver(&live(&[7])?);
    ensure!(seqs(&mut ends, Duration::from_millis(300)).await? == [4, 5, 6, 7]);
    // 1 and 2 came from the store; 4 and 5 from the store or, when they came in before the
    // read started, from what was held (then the store had nothing left to add).
    ensure!(metrics.gap_filled.get() >= 2, "read from the store: {}", metrics.gap_filled.get());
    ensure!(metrics.duplicates_dropped.get() >= 2, "3 and 2 dropped: {}", metrics.duplicates_dropped.get());
    // A gap nothing else fills: 8 is read from the store when 9 comes.
    sequencer.deliver(&live(&[9])?);
    ensure!(seqs(&mut ends, Duration::from_millis(300)).await? == [8, 9]);
    Ok(())
}
