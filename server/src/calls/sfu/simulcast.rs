//! Simulcast (docs/protocol.md §20.3.10): the layers of a published video track ranked from their
//! RFC 8853 `a=rid` names, the layer each subscriber gets ([`Choice`], set by the room from
//! `SetSubscribedQuality` and the subscriber's bandwidth estimate and loss, [`allocate`] and
//! [`Adapt`]), and per (track, subscriber) the [`Forwarder`] that switches layers only at a
//! keyframe of the new one and rewrites sequence numbers and timestamps so the subscriber sees one
//! continuous stream.
//!
//! Levels: 0 is OFF (nothing forwarded), 1 LOW, 2 MEDIUM, 3 HIGH — `VideoQuality` but for OFF.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confab_protocol::v1::VideoQuality;
use rtc::rtp;

/// The level of no layer at all.
pub const OFF: u8 = 0;
/// The highest level (and the level of a track sent without simulcast).
pub const HIGH: u8 = 3;
/// At most this many layers per track are accepted; further rids are ignored.
pub const MAX_LAYERS: usize = 3;

/// `VideoQuality` → level (`None` for UNSPECIFIED or an unknown value).
pub fn level_of(q: i32) -> Option<u8> {
    match VideoQuality::try_from(q).ok()? {
        VideoQuality::Low => Some(1),
        VideoQuality::Medium => Some(2),
        VideoQuality::High => Some(3),
        VideoQuality::Off => Some(OFF),
        VideoQuality::Unspecified => None,
    }
}

/// Level → `VideoQuality`.
pub fn quality_of(level: u8) -> VideoQuality {
    match level {
        1 => VideoQuality::Low,
        2 => VideoQuality::Medium,
        3 => VideoQuality::High,
        _ => VideoQuality::Off,
    }
}

/// Naming schemes of simulcast layers in use, each lowest first.
const SCHEMES: [[&str; 3]; 7] = [
    ["q", "h", "f"],
    ["l", "m", "h"],
    ["low", "mid", "high"],
    ["low", "medium", "high"],
    ["quarter", "half", "full"],
    ["r0", "r1", "r2"],
    ["0", "1", "2"],
];

/// The level of each of a track's rids (in `a=simulcast` order): one rid is HIGH; rids that all
/// belong to one known scheme take their place in it (`q`/`h`/`f`, `l`/`m`/`h`, `low`/`mid`/`high`,
/// `r0`/`r1`/`r2`, …, compared without case); otherwise the list is taken lowest first and two
/// layers are LOW and HIGH. Rids beyond [`MAX_LAYERS`] are left out.
pub fn rank(rids: &[String]) -> Vec<(String, u8)> {
    let rids: Vec<&String> = rids.iter().take(MAX_LAYERS).collect();
    match rids.len() {
        0 => return Vec::new(),
        1 => return vec![(rids[0].clone(), HIGH)],
        _ => {}
    }
    for scheme in SCHEMES {
        let pos: Option<Vec<usize>> =
            rids.iter().map(|r| scheme.iter().position(|s| s.eq_ignore_ascii_case(r))).collect();
        if let Some(pos) = pos {
            return rids.iter().zip(pos).map(|(r, p)| ((*r).clone(), p as u8 + 1)).collect();
        }
    }
    let levels: &[u8] = if rids.len() == 2 { &[1, 3] } else { &[1, 2, 3] };
    rids.iter().zip(levels).map(|(r, l)| ((*r).clone(), *l)).collect()
}

/// The rids a publisher's SDP sends for the track `track_id` (its `a=msid` track id), in the order
/// of the section's `a=simulcast:send` list (alternatives and paused `~` marks dropped); empty
/// without simulcast.
pub fn offered_rids(sdp: &str, track_id: &str) -> Vec<String> {
    for section in sdp.split("\nm=").skip(1) {
        let lines = || section.lines().map(str::trim);
        let ours = lines().any(|l| {
            l.strip_prefix("a=msid:").and_then(|m| m.split_whitespace().nth(1)).is_some_and(|t| t == track_id)
        });
        if !ours {
            continue;
        }
        let Some(list) = lines().find_map(|l| l.strip_prefix("a=simulcast:")) else { return Vec::new() };
        let mut parts = list.split_whitespace();
        while let Some(dir) = parts.next() {
            let ids = parts.next().unwrap_or_default();
            if dir == "send" {
                return ids
                    .split(';')
                    .filter_map(|alt| alt.split(',').next())
                    .map(|r| r.trim_start_matches('~').to_string())
                    .filter(|r| !r.is_empty() && r.len() <= 32)
                    .collect();
            }
        }
        return Vec::new();
    }
    Vec::new()
}

/// Whether an RTP payload starts a keyframe: VP8 (RFC 7741: start of partition 0, inverse key
/// frame bit clear) or H.264 (RFC 6184: an IDR slice or SPS, alone, in a STAP-A or as the start of
/// an FU-A).
pub fn is_keyframe(h264: bool, payload: &[u8]) -> bool {
    if h264 {
        return h264_keyframe(payload);
    }
    let Some(&d) = payload.first() else { return false };
    // S bit set and partition index 0.
    if d & 0x10 == 0 || d & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if d & 0x80 != 0 {
        let Some(&x) = payload.get(1) else { return false };
        at += 1;
        if x & 0x80 != 0 {
            // I: picture id, one or two bytes.
            at += if payload.get(2).is_some_and(|p| p & 0x80 != 0) { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // T or K
        }
    }
    payload.get(at).is_some_and(|b| b & 0x01 == 0)
}

fn h264_keyframe(p: &[u8]) -> bool {
    let key = |t: u8| t == 5 || t == 7;
    let Some(&first) = p.first() else { return false };
    match first & 0x1F {
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while at + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                if size == 0 || at + 2 + size > p.len() {
                    return false;
                }
                if key(p[at + 2] & 0x1F) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1F)),
        t => key(t),
    }
}

/// What one subscriber wants of one track and gets: shared between the room (which sets
/// `wanted` and `target`) and the track's writer task (which switches and reports `sent`).
#[derive(Debug)]
pub struct Choice {
    /// The highest level the subscriber asked for (`SetSubscribedQuality`; HIGH by default).
    pub wanted: AtomicU8,
    /// The level the room decided on: `wanted`, or lower for bandwidth or loss.
    pub target: AtomicU8,
    /// The level of the layer being forwarded (OFF before the first packet).
    pub sent: AtomicU8,
}

impl Default for Choice {
    fn default() -> Self {
        Self { wanted: AtomicU8::new(HIGH), target: AtomicU8::new(HIGH), sent: AtomicU8::new(OFF) }
    }
}

/// One layer of a published track as the reader of the track measures it.
#[derive(Debug)]
pub struct Layer {
    pub ssrc: u32,
    pub level: u8,
    /// Bits per second over the last full second.
    pub bps: AtomicU64,
    /// When its last packet arrived (ms since the Unix epoch).
    pub heard_ms: AtomicU64,
}

/// A layer that sent nothing for this long is not chosen.
pub const LAYER_IDLE_MS: u64 = 2000;

/// Of `layers` (any order), the one to forward for `level`: the highest active layer at or below
/// it, else the lowest active layer; OFF or no active layer: none.
pub fn pick(layers: &[std::sync::Arc<Layer>], level: u8, now_ms: u64) -> Option<(u32, u8)> {
    if level == OFF {
        return None;
    }
    let active = || layers.iter().filter(|l| now_ms.saturating_sub(l.heard_ms.load(Ordering::Relaxed)) < LAYER_IDLE_MS);
    active()
        .filter(|l| l.level <= level)
        .max_by_key(|l| l.level)
        .or_else(|| active().min_by_key(|l| l.level))
        .map(|l| (l.ssrc, l.level))
}

/// What [`Forwarder::admit`] decided about one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it (rewritten); `Some(level)` when it switched layers.
    Forward(Option<u8>),
    /// Not for this subscriber.
    Drop,
    /// The target layer's packet, but no keyframe yet: ask for one on this SSRC.
    NeedKeyframe(u32),
    /// Forwarding just stopped (target OFF).
    Stopped,
}

/// Per (track, subscriber): which layer is forwarded and the offsets that keep the subscriber's
/// sequence numbers continuous and its timestamps increasing across switches.
#[derive(Debug)]
pub struct Forwarder {
    /// Simulcast: start and switch only at a keyframe (a single-layer track starts at once).
    gate: bool,
    clock_rate: u32,
    current: Option<u32>,
    seq_off: u16,
    ts_off: u32,
    /// First incoming sequence number of the current layer (older packets are dropped).
    start_seq: u16,
    last: Option<(u16, u32, Instant)>,
}

impl Forwarder {
    pub fn new(gate: bool, clock_rate: u32) -> Self {
        Self { gate, clock_rate: clock_rate.max(1), current: None, seq_off: 0, ts_off: 0, start_seq: 0, last: None }
    }

    /// Decides on `pkt` of layer `pkt.header.ssrc`, given the layer wanted now (`None`: OFF) and
    /// whether the packet starts a keyframe; rewrites the sequence number and timestamp of a
    /// packet to forward.
    pub fn admit(&mut self, target: Option<(u32, u8)>, keyframe: bool, pkt: &mut rtp::Packet, now: Instant) -> Admit {
        let ssrc = pkt.header.ssrc;
        let Some((want, level)) = target else {
            return if self.current.take().is_some() { Admit::Stopped } else { Admit::Drop };
        };
        let mut switched = None;
        if self.current != Some(want) && ssrc == want {
            if self.gate && !keyframe {
                return if self.current == Some(ssrc) { Admit::Drop } else { Admit::NeedKeyframe(want) };
            }
            // Switch here: continue right after the last packet sent.
            let (seq, ts) = match self.last {
                Some((seq, ts, at)) => {
                    let gap = now.saturating_duration_since(at).min(Duration::from_secs(10));
                    let ticks = (gap.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000).max(1);
                    (seq.wrapping_add(1), ts.wrapping_add(ticks as u32))
                }
                None => (pkt.header.sequence_number, pkt.header.timestamp),
            };
            self.seq_off = seq.wrapping_sub(pkt.header.sequence_number);
            self.ts_off = ts.wrapping_sub(pkt.header.timestamp);
            self.start_seq = pkt.header.sequence_number;
            self.current = Some(want);
            switched = Some(level);
        } else if self.current != Some(ssrc) {
            return if self.current.is_none() && self.gate && ssrc != want {
                Admit::NeedKeyframe(want)
            } else {
                Admit::Drop
            };
        }
        if (pkt.header.sequence_number.wrapping_sub(self.start_seq) as i16) < 0 {
            return Admit::Drop; // from before the switch
        }
        let seq = pkt.header.sequence_number.wrapping_add(self.seq_off);
        let ts = pkt.header.timestamp.wrapping_add(self.ts_off);
        pkt.header.sequence_number = seq;
        pkt.header.timestamp = ts;
        let newer = self.last.is_none_or(|(s, _, _)| (seq.wrapping_sub(s) as i16) > 0);
        if newer {
            self.last = Some((seq, ts, now));
        }
        Admit::Forward(switched)
    }
}

/// One simulcast video track a subscriber receives, for [`allocate`].
#[derive(Clone, Debug, Default)]
pub struct Demand {
    /// The subscriber's cap (OFF: none).
    pub wanted: u8,
    /// (level, bits/s) of the track's active layers, lowest first.
    pub layers: Vec<(u8, u64)>,
}

/// The level of each track within `budget` bits/s (`None`: no estimate, everyone gets what they
/// want): every track starts at its lowest layer (never turned off for bandwidth), then tracks are
/// raised one layer at a time, in turn, while the total fits.
pub fn allocate(budget: Option<u64>, demands: &[Demand]) -> Vec<u8> {
    let cap = |d: &Demand| d.layers.iter().filter(|l| l.0 <= d.wanted).count().max(1);
    let mut at: Vec<usize> =
        demands.iter().map(|d| if d.wanted == OFF || d.layers.is_empty() { 0 } else { 1 }).collect();
    let Some(budget) = budget else {
        return demands
            .iter()
            .map(|d| if d.wanted == OFF || d.layers.is_empty() { d.wanted } else { d.layers[cap(d) - 1].0 })
            .collect();
    };
    let rate = |d: &Demand, n: usize| if n == 0 { 0 } else { d.layers[n - 1].1 };
    let mut used: u64 = demands.iter().zip(&at).map(|(d, &n)| rate(d, n)).sum();
    loop {
        let mut raised = false;
        for (i, d) in demands.iter().enumerate() {
            let n = at[i];
            if n == 0 || n >= cap(d) {
                continue;
            }
            let more = used - rate(d, n) + rate(d, n + 1);
            if more <= budget {
                used = more;
                at[i] = n + 1;
                raised = true;
            }
        }
        if !raised {
            break;
        }
    }
    demands
        .iter()
        .zip(at)
        .map(|(d, n)| {
            if d.layers.is_empty() {
                d.wanted
            } else if n == 0 {
                OFF
            } else {
                d.layers[n - 1].0
            }
        })
        .collect()
}

/// Loss above this (fraction of 256) lowers the subscriber's budget.
const LOSS_HIGH: u8 = 26; // ~10 %
/// Loss below this lets the loss cap grow again.
const LOSS_LOW: u8 = 5; // ~2 %
/// Going up waits this long after the last step down and needs this much headroom.
pub const UP_HOLD: Duration = Duration::from_secs(3);
const UP_HEADROOM: f64 = 1.2;

/// A subscriber connection's adaptation state: a cap from loss (RFC 3550 receiver reports), and
/// hysteresis between going down (at once) and up (after [`UP_HOLD`], with headroom).
#[derive(Debug, Default)]
pub struct Adapt {
    loss_cap: Option<u64>,
    last_down: Option<Instant>,
}

impl Adapt {
    /// The levels to target now, given the current ones (`current`, one per demand), the
    /// estimate (`None`: none), the latest loss (fraction of 256) and what is being sent (bits/s).
    pub fn decide(
        &mut self,
        now: Instant,
        estimate: Option<u64>,
        loss: Option<u8>,
        sending: u64,
        demands: &[Demand],
        current: &[u8],
    ) -> Vec<u8> {
        match loss {
            Some(l) if l > LOSS_HIGH && sending > 0 => {
                let cut = (sending as f64 * (1.0 - f64::from(l) / 512.0)) as u64;
                self.loss_cap = Some(self.loss_cap.map_or(cut, |c| c.min(cut)));
            }
            Some(l) if l < LOSS_LOW => {
                self.loss_cap =
                    self.loss_cap.map(|c| c + c / 12).filter(|&c| estimate.is_none_or(|e| c < e) && c < 50_000_000);
            }
            _ => {}
        }
        let budget = match (estimate, self.loss_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let down = allocate(budget, demands);
        let up = allocate(budget.map(|b| (b as f64 / UP_HEADROOM) as u64), demands);
        let unlimited = allocate(None, demands);
        let may_rise = self.last_down.is_none_or(|t| now.saturating_duration_since(t) >= UP_HOLD);
        let mut out = Vec::with_capacity(demands.len());
        for (i, d) in demands.iter().enumerate() {
            let cur = current.get(i).copied().unwrap_or(OFF);
            let next = if d.wanted == OFF {
                OFF
            } else if cur == OFF || down[i] < cur || cur > d.wanted {
                // Only a cut for bandwidth or loss holds the way back up.
                if cur != OFF && down[i] < cur && down[i] < unlimited[i] {
                    self.last_down = Some(now);
                }
                down[i]
            } else if up[i] > cur && may_rise {
                up[i]
            } else {
                cur
            };
            out.push(next);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rids_rank_by_known_schemes_else_by_order() {
        assert_eq!(rank(&s(&["f", "h", "q"])), vec![("f".into(), 3), ("h".into(), 2), ("q".into(), 1)]);
        assert_eq!(rank(&s(&["l", "h"])), vec![("l".into(), 1), ("h".into(), 3)]);
        assert_eq!(rank(&s(&["a", "b", "c", "d"])), vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
        assert_eq!(rank(&s(&["x"])), vec![("x".into(), 3)]);
        assert_eq!(rank(&s(&["x", "y"])), vec![("x".into(), 1), ("y".into(), 3)]);
    }

    #[test]
    fn offered_rids_follow_the_simulcast_list() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:s mic\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s cam\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\n\
            a=simulcast:send q;~h;f,x\r\n";
        assert_eq!(offered_rids(sdp, "cam"), s(&["q", "h", "f"]));
        assert!(offered_rids(sdp, "mic").is_empty());
        assert!(offered_rids(sdp, "nope").is_empty());
    }

    #[test]
    fn keyframes_of_vp8_and_h264() {
        assert!(is_keyframe(false, &[0x10, 0x00]));
        assert!(!is_keyframe(false, &[0x10, 0x01]));
        assert!(!is_keyframe(false, &[0x00, 0x00])); // not the start of a partition
        // X, I with a 15-bit picture id: descriptor 4 bytes.
        assert!(is_keyframe(false, &[0x90, 0x80, 0x81, 0x02, 0x00]));
        assert!(!is_keyframe(false, &[0x90, 0x80, 0x81, 0x02, 0x01]));
        assert!(is_keyframe(true, &[0x65, 0x88]));
        assert!(!is_keyframe(true, &[0x41, 0x88]));
        assert!(is_keyframe(true, &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]));
        assert!(is_keyframe(true, &[0x7c, 0x85, 0x00]));
        assert!(!is_keyframe(true, &[0x7c, 0x05, 0x00]));
        assert!(!is_keyframe(true, &[]));
    }

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header { ssrc, sequence_number: seq, timestamp: ts, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_keeps_seq_continuous() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(true, 90_000);
        let low = Some((1, 1));
        let high = Some((3, 3));
        let mut p = pkt(1, 100, 1000);
        assert_eq!(f.admit(low, false, &mut p, t0), Admit::NeedKeyframe(1));
        let mut p = pkt(1, 101, 1000);
        assert_eq!(f.admit(low, true, &mut p, t0), Admit::Forward(Some(1)));
        assert_eq!((p.header.sequence_number, p.header.timestamp), (101, 1000));
        let mut p = pkt(3, 5000, 777);
        assert_eq!(f.admit(high, false, &mut p, t0), Admit::NeedKeyframe(3));
        let mut p = pkt(1, 102, 4000);
        assert_eq!(f.admit(high, false, &mut p, t0), Admit::Forward(None)); // the old layer goes on
        assert_eq!(p.header.sequence_number, 102);
        let t1 = t0 + Duration::from_millis(20);
        let mut p = pkt(3, 5001, 800);
        assert_eq!(f.admit(high, true, &mut p, t1), Admit::Forward(Some(3)));
        assert_eq!(p.header.sequence_number, 103);
        assert_eq!(p.header.timestamp, 4000 + 1800);
        let mut p = pkt(1, 103, 7000);
        assert_eq!(f.admit(high, false, &mut p, t1), Admit::Drop);
        let mut p = pkt(3, 5002, 3800);
        assert_eq!(f.admit(high, false, &mut p, t1), Admit::Forward(None));
        assert_eq!((p.header.sequence_number, p.header.timestamp), (104, 8800));
        let mut p = pkt(3, 5000, 700); // from before the switch
        assert_eq!(f.admit(high, false, &mut p, t1), Admit::Drop);
        let mut p = pkt(3, 5003, 3900);
        assert_eq!(f.admit(None, false, &mut p, t1), Admit::Stopped);
        assert_eq!(f.admit(None, false, &mut p, t1), Admit::Drop);
    }

    #[test]
    fn allocation_fits_the_budget_and_adapt_goes_up_slowly() {
        let d = Demand { wanted: 3, layers: vec![(1, 100_000), (2, 300_000), (3, 1_000_000)] };
        assert_eq!(allocate(None, std::slice::from_ref(&d)), vec![3]);
        assert_eq!(allocate(Some(50_000), std::slice::from_ref(&d)), vec![1]);
        assert_eq!(allocate(Some(700_000), &[d.clone(), d.clone()]), vec![2, 2]);
        assert_eq!(allocate(Some(1_300_000), &[d.clone(), d.clone()]), vec![3, 2]);
        let capped = Demand { wanted: 2, ..d.clone() };
        assert_eq!(allocate(None, std::slice::from_ref(&capped)), vec![2]);
        assert_eq!(allocate(Some(10_000_000), &[capped]), vec![2]);
        let off = Demand { wanted: OFF, ..d.clone() };
        assert_eq!(allocate(Some(10_000_000), &[off]), vec![OFF]);

        let t0 = Instant::now();
        let mut a = Adapt::default();
        assert_eq!(a.decide(t0, None, None, 0, std::slice::from_ref(&d), &[OFF]), vec![3]);
        assert_eq!(a.decide(t0, Some(200_000), None, 1_000_000, std::slice::from_ref(&d), &[3]), vec![1]);
        // Enough again, but not for long enough.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(a.decide(t1, Some(5_000_000), None, 100_000, std::slice::from_ref(&d), &[1]), vec![1]);
        let t2 = t0 + UP_HOLD;
        assert_eq!(a.decide(t2, Some(5_000_000), None, 100_000, std::slice::from_ref(&d), &[1]), vec![3]);
        // A subscriber's own step down does not hold its way back up.
        let mut b = Adapt::default();
        let low = Demand { wanted: 1, ..d.clone() };
        assert_eq!(b.decide(t0, None, None, 0, &[low], &[3]), vec![1]);
        assert_eq!(b.decide(t0, None, None, 0, std::slice::from_ref(&d), &[1]), vec![3]);
        // Heavy loss: down below what is sent.
        assert_eq!(a.decide(t2, None, Some(128), 1_000_000, std::slice::from_ref(&d), &[3]), vec![2]);
    }
}
