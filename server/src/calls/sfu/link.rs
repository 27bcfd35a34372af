//! What arrives on one of the SFU's peer connections, as seen by [`LinkTap`], an interceptor
//! that only looks: when the last RTP or RTCP came in (dead-media detection, docs/protocol.md
//! §20.3.12), and on a subscriber connection the receiver's bandwidth estimate (REMB, or the
//! transport-wide congestion controller's target when one is in the chain) and the loss of its
//! receiver reports (simulcast layer choice, §20.3.10).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;

use crate::store::now_ms;

/// An estimate or loss figure older than this is not used (ms).
const FRESH_MS: u64 = 5000;

/// Counters of one connection, written by its [`LinkTap`] and read by the room.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// When the last RTP or RTCP packet arrived (ms since the Unix epoch; 0: never).
    pub heard_ms: AtomicU64,
    remb_bps: AtomicU64,
    remb_ms: AtomicU64,
    target_bps: AtomicU64,
    target_ms: AtomicU64,
    /// The highest fraction lost (of 256) of the latest receiver report.
    loss: AtomicU8,
    loss_ms: AtomicU64,
}

impl LinkStats {
    /// The receiver's bandwidth estimate in bits/s, if a fresh one came: the lower of REMB and the
    /// congestion controller's target.
    pub fn estimate(&self, now_ms: u64) -> Option<u64> {
        let fresh = |v: &AtomicU64, at: &AtomicU64| {
            let at = at.load(Ordering::Relaxed);
            (at != 0 && now_ms.saturating_sub(at) < FRESH_MS).then(|| v.load(Ordering::Relaxed))
        };
        match (fresh(&self.remb_bps, &self.remb_ms), fresh(&self.target_bps, &self.target_ms)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The loss of the latest receiver report (fraction of 256), if fresh.
    pub fn loss(&self, now_ms: u64) -> Option<u8> {
        let at = self.loss_ms.load(Ordering::Relaxed);
        (at != 0 && now_ms.saturating_sub(at) < FRESH_MS).then(|| self.loss.load(Ordering::Relaxed))
    }

    fn rtcp(&self, p: &dyn rtc::rtcp::Packet, now: u64) {
        let any = p.as_any();
        if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
            self.remb_bps.store(remb.bitrate.max(0.0) as u64, Ordering::Relaxed);
            self.remb_ms.store(now, Ordering::Relaxed);
            return;
        }
        let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            &rr.reports
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            &sr.reports
        } else {
            return;
        };
        if let Some(worst) = reports.iter().map(|r| r.fraction_lost).max() {
            self.loss.store(worst, Ordering::Relaxed);
            self.loss_ms.store(now, Ordering::Relaxed);
        }
    }
}

/// Records into [`LinkStats`] what comes in; passes everything on unchanged.
pub struct LinkTap {
    stats: Arc<LinkStats>,
    read_q: VecDeque<TaggedPacket>,
    write_q: VecDeque<TaggedPacket>,
}

impl LinkTap {
    pub fn new(stats: Arc<LinkStats>) -> Self {
        Self { stats, read_q: VecDeque::new(), write_q: VecDeque::new() }
    }
}

impl std::fmt::Debug for LinkTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTap").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for LinkTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = now_ms().max(0) as u64;
        match &msg.message.packet {
            Packet::Rtp(_) => self.stats.heard_ms.store(now, Ordering::Relaxed),
            Packet::Rtcp(pkts) => {
                self.stats.heard_ms.store(now, Ordering::Relaxed);
                for p in pkts {
                    self.stats.rtcp(p.as_ref(), now);
                }
            }
            _ => {}
        }
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged { bits_per_second: 0.0 })
        {
            self.stats.target_bps.store(bits_per_second.max(0.0) as u64, Ordering::Relaxed);
            self.stats.target_ms.store(now, Ordering::Relaxed);
        }
        self.read_q.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_q.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_q.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_q.pop_front()
    }
}

impl Interceptor for LinkTap {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
