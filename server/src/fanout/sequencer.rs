//! Once-each, in-order live delivery of log entries published by several nodes (a cluster). Each
//! conversation log and each user log is a lane keyed by its id; an entry is delivered when it is
//! the next seq of its lane. One already delivered is dropped (counted); one that comes early
//! (seq above the next) is held while the missing entries are read from the store, then
//! everything is delivered in order. A lost cluster message thus costs latency, never an entry.
//!
//! The first entry a lane sees (after start, or after the lane was idle long enough to be
//! forgotten) may have been overtaken by entries another node committed just before it: the
//! entries committed in the last [`FIRST_SIGHT_WINDOW_MS`] below it are read and delivered first
//! (clients drop an entry they already have by its seq, §14.5).
//!
//! When the store cannot fill a gap (down for longer than [`FILL_ATTEMPTS`] tries), the held
//! entries are delivered and the lane's audience is closed with 4003 so their clients resync.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bus::Live;
use crate::hub::Hub;
use crate::metrics::ClusterMetrics;
use crate::store::{ConvId, LogBody, Store, StoreError, UserId, now_ms};
use crate::wire;

/// How far back (by commit time) the first entry a lane sees looks for entries overtaken.
pub const FIRST_SIGHT_WINDOW_MS: i64 = 30_000;
/// At most this many entries are looked for below a lane's first entry.
const FIRST_SIGHT_MAX: i64 = 64;
/// Entries read per store query while filling a gap.
const FILL_BATCH: i64 = 500;
/// Tries to read a gap before giving up (with [`FILL_RETRY`] between them).
pub const FILL_ATTEMPTS: u32 = 10;
const FILL_RETRY: Duration = Duration::from_millis(500);
/// Lanes tracked before idle ones are forgotten (looked for at most every [`SWEEP_EVERY`]).
const TRACKED_MAX: usize = 100_000;
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A lane with no entry for this long may be forgotten.
const IDLE: Duration = Duration::from_secs(600);

/// A conversation log or a user log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lane {
    Conv(ConvId),
    User(UserId),
}

/// An entry held back until the ones before it are delivered.
#[derive(Debug)]
struct Held {
    frame: Bytes,
    audience: Arc<[UserId]>,
}

#[derive(Debug)]
struct Track {
    /// The highest seq delivered; everything below it was delivered or read past.
    last: i64,
    /// A fill is running: new entries are held.
    filling: bool,
    held: BTreeMap<i64, Held>,
    touched: Instant,
    /// The last entry had an audience on this node.
    local: bool,
}

/// An entry read from the store to fill a gap.
struct Found {
    seq: i64,
    at_ms: i64,
    frame: Bytes,
    /// A member who left or was removed by this entry: told too.
    gone: Option<UserId>,
}

#[derive(Debug)]
struct Lanes {
    tracks: HashMap<Lane, Track>,
    swept_at: Instant,
}

#[derive(Debug)]
struct Inner {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    metrics: ClusterMetrics,
    lanes: Mutex<Lanes>,
}

/// Cheap-clone handle to a node's sequencer.
#[derive(Clone, Debug)]
pub struct Sequencer(Arc<Inner>);

impl Sequencer {
    pub fn new(hub: Arc<Hub>, store: Arc<dyn Store>, metrics: ClusterMetrics) -> Self {
        let lanes = Mutex::new(Lanes { tracks: HashMap::new(), swept_at: Instant::now() });
        Self(Arc::new(Inner { hub, store, metrics, lanes }))
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.0.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers `live`'s log entries and user-log entries once each, in seq order per lane.
    pub fn deliver(&self, live: &Live) {
        for e in &live.entries {
            self.offer(Lane::Conv(e.conversation), e.seq, &e.frame, &live.audience);
        }
        for u in &live.user_updates {
            self.offer(Lane::User(u.user), u.seq, &u.frame, &[u.user]);
        }
    }

    fn offer(&self, lane: Lane, seq: i64, frame: &Bytes, audience: &[UserId]) {
        let mut lanes = self.lanes();
        let now = Instant::now();
        let held = || Held { frame: frame.clone(), audience: audience.into() };
        // Nobody here to deliver to: only the position is kept (no store read for others' lanes).
        let nobody = !self.0.hub.any_connected(audience);
        let Some(t) = lanes.tracks.get_mut(&lane) else {
            if lanes.tracks.len() >= TRACKED_MAX && now.duration_since(lanes.swept_at) >= SWEEP_EVERY {
                lanes.swept_at = now;
                lanes.tracks.retain(|_, t| t.filling || now.duration_since(t.touched) < IDLE);
            }
            if nobody {
                let track = Track { last: seq, filling: false, held: BTreeMap::new(), touched: now, local: false };
                lanes.tracks.insert(lane, track);
                return;
            }
            let held = BTreeMap::from([(seq, held())]);
            let track = Track { last: seq - 1, filling: true, held, touched: now, local: true };
            lanes.tracks.insert(lane, track);
            drop(lanes);
            self.spawn_fill(lane, true);
            return;
        };
        t.touched = now;
        t.local = !nobody;
        if seq <= t.last || t.held.contains_key(&seq) {
            self.0.metrics.duplicates_dropped.inc();
            return;
        }
        if nobody && !t.filling {
            t.last = seq;
            return;
        }
        if t.filling || seq != t.last + 1 {
            t.held.insert(seq, held());
            if !t.filling {
                t.filling = true;
                drop(lanes);
                self.spawn_fill(lane, false);
            }
            return;
        }
        t.last = seq;
        self.0.hub.deliver(audience, frame);
    }

    /// Reads what lane `lane` misses below its first held entry, then delivers in order.
    fn spawn_fill(&self, lane: Lane, first_sight: bool) {
        let this = self.clone();
        tokio::spawn(async move { this.fill(lane, first_sight).await });
    }

    async fn fill(&self, lane: Lane, first_sight: bool) {
        let Some((after, upto)) = self.gap(lane, first_sight) else { return };
        let mut found = Vec::new();
        let mut failed = 0;
        let mut unread = false;
        let mut from = after;
        while from + 1 < upto {
            match self.read(lane, from, (upto - from - 1).min(FILL_BATCH)).await {
                Ok(batch) => {
                    let batch: Vec<Found> = batch.into_iter().filter(|f| f.seq < upto).collect();
                    let Some(next) = batch.last().map(|f| f.seq) else { break };
                    from = next;
                    found.extend(batch);
                }
                Err(e) => {
                    failed += 1;
                    if failed >= FILL_ATTEMPTS {
                        tracing::warn!(error = %e, "cannot read a live-delivery gap from the store: clients resync");
                        unread = true;
                        break;
                    }
                    tokio::time::sleep(FILL_RETRY).await;
                }
            }
        }
        if first_sight {
            // Only the recent run of entries that reaches the first one seen.
            let since = now_ms() - FIRST_SIGHT_WINDOW_MS;
            let (mut keep, mut expect) = (found.len(), upto - 1);
            while keep > 0 && found[keep - 1].seq == expect && found[keep - 1].at_ms >= since {
                keep -= 1;
                expect -= 1;
            }
            found.drain(..keep);
        }
        self.settle(lane, first_sight, upto, found, unread);
    }

    /// The range to read: above `last` (or the first-sight window) and below the first held entry.
    fn gap(&self, lane: Lane, first_sight: bool) -> Option<(i64, i64)> {
        let lanes = self.lanes();
        let t = lanes.tracks.get(&lane)?;
        let upto = *t.held.keys().next()?;
        let after = if first_sight { (upto - 1 - FIRST_SIGHT_MAX).max(0) } else { t.last };
        Some((after, upto))
    }

    /// Another node stopped: what it committed just before may never have reached NATS. Every
    /// lane with an entry within `within` is read up to the store's head and what this node
    /// missed is delivered, so a dead node's last messages still arrive live.
    pub fn catch_up_recent(&self, within: Duration) {
        let lanes: Vec<(Lane, i64)> = {
            let lanes = self.lanes();
            lanes
                .tracks
                .iter()
                .filter(|(_, t)| t.local && !t.filling && t.touched.elapsed() < within)
                .map(|(l, t)| (*l, t.last))
                .collect()
        };
        for (lane, after) in lanes {
            let this = self.clone();
            tokio::spawn(async move {
                let found = match this.read(lane, after, FILL_BATCH).await {
                    Ok(f) => f,
                    Err(e) => return tracing::warn!(error = %e, "catching up after a node stopped"),
                };
                let audience: Vec<UserId> = match lane {
                    Lane::User(u) => vec![u],
                    Lane::Conv(conv) => match this.0.store.members(conv, UserId::default(), 100_000).await {
                        Ok(m) => m.into_iter().map(|m| m.user_id).collect(),
                        Err(e) => return tracing::warn!(error = %e, "catching up after a node stopped"),
                    },
                };
                let mut lanes = this.lanes();
                let Some(t) = lanes.tracks.get_mut(&lane) else { return };
                if t.filling {
                    return; // a fill runs: it delivers in order itself
                }
                this.deliver_read(t, found, &audience);
            });
        }
    }

    async fn read(&self, lane: Lane, after: i64, limit: i64) -> Result<Vec<Found>, StoreError> {
        let limit = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        match lane {
            Lane::Conv(conv) => Ok(self
                .0
                .store
                .events_after(conv, after, limit)
                .await?
                .into_iter()
                .map(|e| Found {
                    seq: e.seq,
                    at_ms: e.at_ms,
                    frame: wire::event_frame_bytes(&e),
                    gone: match e.body {
                        LogBody::Left(u) | LogBody::Removed(u) => Some(u),
                        _ => None,
                    },
                })
                .collect()),
            Lane::User(user) => Ok(self
                .0
                .store
                .user_updates_after(user, after, limit)
                .await?
                .0
                .into_iter()
                .map(|u| Found {
                    seq: u.user_seq,
                    at_ms: u.at_ms,
                    frame: wire::user_update_frame_bytes(&u),
                    gone: None,
                })
                .collect()),
        }
    }

    /// Delivers the entries read from the store that continue lane `t`, in order, to `audience`
    /// (and to the member an entry removed or saw leave).
    fn deliver_read(&self, t: &mut Track, found: Vec<Found>, audience: &[UserId]) {
        for f in found {
            if f.seq != t.last + 1 {
                continue;
            }
            t.last = f.seq;
            self.0.metrics.gap_filled.inc();
            match f.gone {
                Some(u) if !audience.contains(&u) => {
                    let mut with = audience.to_vec();
                    with.push(u);
                    self.0.hub.deliver(&with, &f.frame);
                }
                _ => {
                    self.0.hub.deliver(audience, &f.frame);
                }
            }
        }
    }

    /// Delivers what was read, then the held entries, in order; starts another fill at the next
    /// gap, or (the store failed) delivers past the gap and has the audience resync.
    fn settle(&self, lane: Lane, first_sight: bool, upto: i64, found: Vec<Found>, unread: bool) {
        let hub = &self.0.hub;
        let mut lanes = self.lanes();
        let Some(t) = lanes.tracks.get_mut(&lane) else { return };
        if first_sight {
            t.last = found.first().map_or(upto - 1, |f| f.seq - 1);
        }
        let audience = t.held.values().next().map(|h| h.audience.clone()).unwrap_or_else(|| Arc::from([]));
        self.deliver_read(t, found, &audience);
        let mut resync: Vec<UserId> = Vec::new();
        // The store could not be read: entries may be missing (below the first one seen, too).
        let gave_up = unread || (!first_sight && t.last + 1 < upto);
        if gave_up {
            // The store could not fill the gap: deliver past it; the audience resyncs.
            resync.extend(audience.iter());
            t.last = upto - 1;
        }
        loop {
            let Some((&seq, _)) = t.held.first_key_value() else {
                t.filling = false;
                break;
            };
            if seq <= t.last {
                t.held.remove(&seq);
                self.0.metrics.duplicates_dropped.inc();
                continue;
            }
            if seq != t.last + 1 {
                drop(lanes);
                self.spawn_fill(lane, false);
                break;
            }
            let Some(h) = t.held.remove(&seq) else { break };
            t.last = seq;
            hub.deliver(&h.audience, &h.frame);
        }
        if gave_up {
            self.0.metrics.resyncs.inc();
            self.0.hub.resync(Some(&resync));
        }
    }
}
