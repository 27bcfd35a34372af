//! A wire tap for the test peers ([`crate::webrtc_peer::GroupPeer`]): an interceptor next to the
//! wire (below the NACK generator) that records what a peer's connections receive and send — RTP
//! headers with their header extensions, RTCP packet kinds, each with its arrival time — and can
//! drop inbound video packets on their first arrival, so the peer's NACK generator asks for them
//! and the retransmissions (RFC 4585 generic NACK, docs/protocol.md §20.3.8) can be counted.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use confab_server::calls::sfu::engine::{PT_VP8, RegistryHook};
use rtc::interceptor::{Interceptor, Packet, Slot, StreamInfo, TaggedPacket, TwccSenderBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

/// Where the tap sits: nearer the wire than every default interceptor.
const TAP_SLOT: usize = 100;
/// RTP packets remembered per tap (the oldest go first).
const MAX_RTP: usize = 50_000;

/// The kind of an RTCP packet, as far as the tests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RtcpKind {
    Pli,
    Fir,
    Nack,
    TransportCc,
    Remb,
    SenderReport,
    ReceiverReport,
    Other,
}

fn kind(p: &dyn rtc::rtcp::Packet) -> RtcpKind {
    let any = p.as_any();
    if any.is::<PictureLossIndication>() {
        RtcpKind::Pli
    } else if any.is::<FullIntraRequest>() {
        RtcpKind::Fir
    } else if any.is::<TransportLayerNack>() {
        RtcpKind::Nack
    } else if any.is::<TransportLayerCc>() {
        RtcpKind::TransportCc
    } else if any.is::<ReceiverEstimatedMaximumBitrate>() {
        RtcpKind::Remb
    } else if any.is::<SenderReport>() {
        RtcpKind::SenderReport
    } else if any.is::<ReceiverReport>() {
        RtcpKind::ReceiverReport
    } else {
        RtcpKind::Other
    }
}

/// One inbound RTP packet as it came off the wire.
#[derive(Clone, Debug)]
pub struct RtpSeen {
    pub at: Instant,
    /// Which connection of the peer: 0 the subscriber connection, then publisher connections.
    pub conn: usize,
    pub ssrc: u32,
    pub seq: u16,
    pub payload_type: u8,
    /// One- or two-byte header extensions: (id, value).
    pub extensions: Vec<(u8, Bytes)>,
}

/// One RTCP packet in or out.
#[derive(Clone, Copy, Debug)]
pub struct RtcpSeen {
    pub at: Instant,
    pub conn: usize,
    pub kind: RtcpKind,
    /// The media SSRC it is about (0 when it has none).
    pub media_ssrc: u32,
}

/// Everything one peer's taps saw.
#[derive(Debug, Default)]
pub struct TapLog {
    pub rtp_in: VecDeque<RtpSeen>,
    pub rtcp_in: Vec<RtcpSeen>,
    pub rtcp_out: Vec<RtcpSeen>,
    /// (ssrc, seq) of the video packets dropped on their first arrival.
    pub dropped: HashSet<(u32, u16)>,
    /// Dropped packets that arrived again (retransmitted), counted once each.
    pub repaired: HashSet<(u32, u16)>,
}

impl TapLog {
    /// RTCP packets of `kind` received so far.
    pub fn rtcp_in_count(&self, kind: RtcpKind) -> usize {
        self.rtcp_in.iter().filter(|r| r.kind == kind).count()
    }
    /// RTCP packets of `kind` sent so far.
    pub fn rtcp_out_count(&self, kind: RtcpKind) -> usize {
        self.rtcp_out.iter().filter(|r| r.kind == kind).count()
    }
}

/// A peer's tap: its log and whether it drops video.
#[derive(Clone, Debug, Default)]
pub struct Tap {
    pub log: Arc<Mutex<TapLog>>,
    /// Drop the first arrival of each inbound VP8 packet whose sequence number is a multiple of
    /// this (`None`: drop nothing).
    pub drop_video_every: Option<u16>,
    conns: Arc<AtomicUsize>,
}

impl Tap {
    pub fn new(drop_video_every: Option<u16>) -> Self {
        Self { drop_video_every, ..Default::default() }
    }

    /// A lock on what was seen.
    pub fn log(&self) -> std::sync::MutexGuard<'_, TapLog> {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hook for [`confab_server::calls::sfu::engine::Engine::with_interceptors`]: each
    /// connection built gets its own interceptor, numbered in build order, all logging here, and
    /// a transport-cc sender as a browser has.
    pub fn hook(&self) -> RegistryHook {
        let tap = self.clone();
        Arc::new(move |reg| {
            let conn = tap.conns.fetch_add(1, Ordering::Relaxed);
            // A browser's sender stamps transport-wide sequence numbers (transport-cc), which the
            // SFU's feedback needs; the default chain only receives them.
            reg.with(Slot::TwccSender, TwccSenderBuilder::new().build()).with(
                Slot::from(TAP_SLOT),
                TapInterceptor { tap: tap.clone(), conn, read_q: VecDeque::new(), write_q: VecDeque::new() },
            )
        })
    }
}

struct TapInterceptor {
    tap: Tap,
    conn: usize,
    read_q: VecDeque<TaggedPacket>,
    write_q: VecDeque<TaggedPacket>,
}

fn media_ssrc(p: &dyn rtc::rtcp::Packet) -> u32 {
    p.destination_ssrc().first().copied().unwrap_or(0)
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for TapInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = Instant::now();
        let mut log = self.tap.log();
        match &msg.message.packet {
            Packet::Rtp(pkt) => {
                let h = &pkt.header;
                let key = (h.ssrc, h.sequence_number);
                if h.payload_type == PT_VP8
                    && let Some(n) = self.tap.drop_video_every
                    && h.sequence_number % n == 0
                {
                    if log.dropped.insert(key) {
                        return Ok(()); // lost on the way
                    }
                    log.repaired.insert(key);
                }
                if log.rtp_in.len() >= MAX_RTP {
                    log.rtp_in.pop_front();
                }
                let extensions = h.extensions.iter().map(|e| (e.id, e.payload.clone())).collect();
                log.rtp_in.push_back(RtpSeen {
                    at: now,
                    conn: self.conn,
                    ssrc: h.ssrc,
                    seq: h.sequence_number,
                    payload_type: h.payload_type,
                    extensions,
                });
            }
            Packet::Rtcp(pkts) => {
                for p in pkts {
                    let seen = RtcpSeen {
                        at: now,
                        conn: self.conn,
                        kind: kind(p.as_ref()),
                        media_ssrc: media_ssrc(p.as_ref()),
                    };
                    log.rtcp_in.push(seen);
                }
            }
            _ => {}
        }
        drop(log);
        self.read_q.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_q.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(pkts) = &msg.message.packet {
            let now = Instant::now();
            let mut log = self.tap.log();
            for p in pkts {
                let seen =
                    RtcpSeen { at: now, conn: self.conn, kind: kind(p.as_ref()), media_ssrc: media_ssrc(p.as_ref()) };
                log.rtcp_out.push(seen);
            }
        }
        self.write_q.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_q.pop_front()
    }
}

impl Interceptor for TapInterceptor {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
