//! The sending half of the cluster link: events numbered and kept in a bounded ring, queued to
//! one task that hands them to NATS in order and sends heartbeats when idle, and a task that
//! answers the other nodes' replay requests from the ring.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{Body, Envelope, HeartbeatMsg, PresenceTableMsg, ReplayReply, ReplayRequest, SessionMsg};
use super::{ClusterBus, Subjects};
use crate::metrics::ClusterMetrics;

/// Events queued for NATS before newer ones are left to replay.
const QUEUE: usize = 16_384;
/// Bytes of published events kept for replay.
const RING_BYTES: usize = 64 << 20;
/// Largest replay answer (NATS's default max payload is 1 MiB).
const REPLY_BYTES: usize = 768 << 10;
/// Presence entries per table chunk.
const TABLE_CHUNK: usize = 5_000;

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Numbering {
    /// The last `pub_seq` assigned.
    assigned: u64,
    /// Every event up to this one was handed to NATS or left to replay.
    settled: u64,
    ring: Ring,
}

/// Numbers, keeps and queues what this node publishes.
#[derive(Debug)]
pub(super) struct Outbound {
    node: String,
    incarnation: u64,
    state: Mutex<Numbering>,
    tx: mpsc::Sender<(u64, Bytes)>,
    metrics: ClusterMetrics,
}

impl Outbound {
    pub(super) fn new(node: String, incarnation: u64, metrics: ClusterMetrics) -> (Self, mpsc::Receiver<(u64, Bytes)>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { node, incarnation, state: Mutex::new(Numbering::default()), tx, metrics }, rx)
    }

    fn state(&self) -> MutexGuard<'_, Numbering> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn envelope(&self, pub_seq: u64, body: Body) -> Envelope {
        Envelope { node: self.node.clone(), incarnation: self.incarnation, pub_seq, body: Some(body) }
    }

    /// Numbers `body`, keeps it for replay and queues it without waiting: when the queue is full
    /// (NATS is down or slow) it is left to the ring, and the others replay it.
    pub(super) fn send(&self, body: Body) {
        self.send_many(|| vec![body]);
    }

    /// Like [`send`](Self::send) for the bodies `make` returns, made under the numbering lock:
    /// a body that reads state (the hub's presence of a user) is numbered in the order the state
    /// was read, so other nodes never see an older state after a newer one.
    pub(super) fn send_many(&self, make: impl FnOnce() -> Vec<Body>) {
        let mut s = self.state();
        for body in make() {
            self.push(&mut s, body);
        }
    }

    fn push(&self, s: &mut Numbering, body: Body) {
        s.assigned += 1;
        let seq = s.assigned;
        let bytes = Bytes::from(self.envelope(seq, body).encode_to_vec());
        s.ring.bytes += bytes.len();
        s.ring.entries.push_back((seq, bytes.clone()));
        while s.ring.bytes > RING_BYTES {
            match s.ring.entries.pop_front() {
                Some((_, b)) => s.ring.bytes -= b.len(),
                None => break,
            }
        }
        if self.tx.try_send((seq, bytes)).is_err() {
            s.settled = seq;
            self.metrics.publish_queue_full.inc();
        }
    }

    /// This node's presence table and connected sessions as bodies, in chunks (the first tells
    /// receivers to forget what this node said before). For [`send_many`](Self::send_many).
    pub(super) fn table(
        table: Vec<(crate::store::UserId, crate::hub::Presence)>,
        sessions: Vec<(crate::store::UserId, String)>,
    ) -> Vec<Body> {
        let sessions: Vec<SessionMsg> =
            sessions.into_iter().map(|(u, session)| SessionMsg { user: u.0, session, connected: true }).collect();
        let mut out = Vec::new();
        let mut chunks = table.chunks(TABLE_CHUNK).peekable();
        if chunks.peek().is_none() {
            out.push(Body::PresenceTable(PresenceTableMsg { first: true, ..Default::default() }));
        }
        for (i, chunk) in chunks.enumerate() {
            out.push(Body::PresenceTable(PresenceTableMsg {
                first: i == 0,
                users: chunk.iter().map(|(u, _)| u.0).collect(),
                states: chunk.iter().map(|(_, p)| p.wire()).collect(),
                sessions: Vec::new(),
            }));
        }
        for chunk in sessions.chunks(TABLE_CHUNK) {
            out.push(Body::PresenceTable(PresenceTableMsg { sessions: chunk.to_vec(), ..Default::default() }));
        }
        out
    }

    fn settle(&self, seq: u64) {
        let mut s = self.state();
        s.settled = s.settled.max(seq);
    }

    /// The heartbeat: everything up to `published` was sent or left to replay.
    fn heartbeat(&self, leaving: bool) -> Bytes {
        let published = self.state().settled;
        let env = Envelope {
            node: self.node.clone(),
            incarnation: self.incarnation,
            pub_seq: 0,
            body: Some(Body::Heartbeat(HeartbeatMsg { published, leaving })),
        };
        Bytes::from(env.encode_to_vec())
    }

    /// Up to [`REPLY_BYTES`] of the events `from..=to`, or `gone` when `from` left the ring.
    fn replay(&self, req: &ReplayRequest) -> ReplayReply {
        let s = self.state();
        if req.incarnation != self.incarnation || s.ring.entries.front().is_none_or(|(first, _)| *first > req.from) {
            return ReplayReply { gone: true, envelopes: vec![] };
        }
        // An event too large for a reply (it was too large to publish too) cannot be replayed.
        if s.ring.entries.iter().find(|(seq, _)| *seq == req.from).is_some_and(|(_, b)| b.len() > REPLY_BYTES) {
            return ReplayReply { gone: true, envelopes: vec![] };
        }
        let mut size = 0;
        let envelopes = s
            .ring
            .entries
            .iter()
            .skip_while(|(seq, _)| *seq < req.from)
            .take_while(|(seq, b)| {
                size += b.len();
                *seq <= req.to && size <= REPLY_BYTES
            })
            .map(|(_, b)| b.clone())
            .collect();
        ReplayReply { gone: false, envelopes }
    }
}

/// Hands queued events to NATS in order; sends a heartbeat every `every` while idle, and a last
/// one marked `leaving` at shutdown.
pub(super) async fn publish_loop(
    client: async_nats::Client,
    subjects: Subjects,
    mut rx: mpsc::Receiver<(u64, Bytes)>,
    bus: Arc<ClusterBus>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let out = &bus.out;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max = client.server_info().max_payload.max(1 << 20);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                // What is still queued goes first: the goodbye must not overtake it.
                while let Ok((seq, bytes)) = rx.try_recv() {
                    let _ = client.publish(subjects.events.clone(), bytes).await;
                    out.settle(seq);
                }
                let _ = client.publish(subjects.events.clone(), out.heartbeat(true)).await;
                return;
            }
            next = rx.recv() => {
                let Some((seq, bytes)) = next else { return };
                if bytes.len() > max {
                    tracing::error!(bytes = bytes.len(), max, "cluster event larger than NATS accepts: receivers resync");
                } else if let Err(e) = client.publish(subjects.events.clone(), bytes).await {
                    tracing::warn!(error = %e, "publishing to NATS: the others replay it");
                } else {
                    out.metrics.published.inc();
                }
                out.settle(seq);
            }
            _ = tick.tick() => {
                let _ = client.publish(subjects.events.clone(), out.heartbeat(false)).await;
            }
        }
    }
}

/// Answers replay requests on this node's replay subject.
pub(super) async fn answer_replays(
    client: async_nats::Client,
    mut requests: async_nats::Subscriber,
    bus: Arc<ClusterBus>,
    incarnation: u64,
    shutdown: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => return,
            m = requests.next() => match m { Some(m) => m, None => return },
        };
        let Some(reply) = msg.reply else { continue };
        let answer = match ReplayRequest::decode(msg.payload) {
            Ok(req) => bus.out.replay(&req),
            Err(_) => ReplayReply { gone: true, envelopes: vec![] },
        };
        tracing::debug!(incarnation, envelopes = answer.envelopes.len(), gone = answer.gone, "answering a replay");
        if let Err(e) = client.publish(reply, Bytes::from(answer.encode_to_vec())).await {
            tracing::debug!(error = %e, "answering a replay request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Live;
    use crate::cluster::codec::LiveMsg;

    fn body() -> Body {
        let _ = Live::default();
        Body::Committed(LiveMsg::default())
    }

    #[test]
    fn replay_answers_a_kept_range_and_refuses_a_lost_one() {
        let (out, mut rx) = Outbound::new("a".into(), 7, ClusterMetrics::default());
        for _ in 0..5 {
            out.send(body());
        }
        assert_eq!(rx.try_recv().expect("queued").0, 1);
        let got = out.replay(&ReplayRequest { incarnation: 7, from: 2, to: 4 });
        assert!(!got.gone);
        let seqs: Vec<u64> =
            got.envelopes.iter().map(|b| Envelope::decode(b.clone()).expect("envelope").pub_seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert!(out.replay(&ReplayRequest { incarnation: 8, from: 2, to: 4 }).gone, "another incarnation");
        out.state().ring.entries.pop_front();
        assert!(out.replay(&ReplayRequest { incarnation: 7, from: 1, to: 4 }).gone, "left the ring");
    }
}
