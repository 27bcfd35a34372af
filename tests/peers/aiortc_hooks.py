"""aiortc hooks of the aiortc peer (aiortc_peer.py), installed on import: loss before SRTP (so a
retransmission with the same sequence number is taken), NACK/PLI counts, the RTCP its publisher connection receives, BUNDLE demultiplexing by
sdes:mid as browsers do, and transport-wide sequence numbers when the publisher offers
transport-cc. They act for `state.peer`, the one peer of the process."""
import struct
from types import SimpleNamespace

import pylibsrtp

from aiortc import RTCRtpReceiver
from aiortc import rtp as aiortc_rtp
from aiortc.rtcdtlstransport import RtpRouter

RTPFB_TWCC = 15
state = SimpleNamespace(peer=None)  # the peer whose drop_every, recv_stats, ... the hooks use


# ---------------------------------------------------------------------------------------------
# aiortc hooks: loss before SRTP, NACK/PLI counts, RTCP seen by the publisher,
# transport-wide sequence numbers (when the publisher offers transport-cc).

class ReceiverStats:
    def __init__(self):
        self.rtp = 0
        self.with_mid_ext = 0
        self.first_time = 0  # packets seen for the first time (what drop_every counts)
        self.dropped = set()  # (ssrc, seq) dropped and not retransmitted yet
        self.dropped_total = 0
        self.retransmitted = 0
        self.nacks_sent = 0
        self.nacked_seqs = 0
        self.plis_sent = 0
        self.ssrcs = set()
        self.mids = set()  # sdes:mid values seen

    def json(self):
        return {"rtp_packets": self.rtp, "with_mid_ext": self.with_mid_ext, "dropped": self.dropped_total,
                "unrecovered": len(self.dropped), "retransmitted": self.retransmitted, "nacks_sent": self.nacks_sent,
                "nacked_seqs": self.nacked_seqs, "plis_sent": self.plis_sent,
                "ssrcs": sorted(str(x) for x in self.ssrcs), "mids_seen": sorted(self.mids)}


def receiver_stats(receiver):
    return state.peer.recv_stats.setdefault(receiver, ReceiverStats())


_orig_handle_rtp = RTCRtpReceiver._handle_rtp_packet


async def _hooked_handle_rtp(self, packet, arrival_time_ms):
    if state.peer is not None:
        st = receiver_stats(self)
        st.rtp += 1
        if len(st.ssrcs) < 8:
            st.ssrcs.add(packet.ssrc)
        if packet.extensions.mid is not None:
            st.with_mid_ext += 1
            if len(st.mids) < 8:
                st.mids.add(packet.extensions.mid)
        video = self._RTCRtpReceiver__kind == "video"
        rtx = self._RTCRtpReceiver__rtx_ssrc
        if video and packet.ssrc in rtx:  # RFC 4588: the original sequence number leads the payload
            if len(packet.payload) >= 2:
                key = (rtx[packet.ssrc], struct.unpack("!H", packet.payload[:2])[0])
                if key in st.dropped:
                    st.dropped.discard(key)
                    st.retransmitted += 1
        elif video and packet.payload:
            # Losses are made before SRTP (`_unprotect`): a plain retransmission (RFC 4585, the
            # same sequence number) would otherwise be refused by SRTP's replay check.
            key = (packet.ssrc, packet.sequence_number)
            if key in st.dropped:
                st.dropped.discard(key)
                st.retransmitted += 1
    await _orig_handle_rtp(self, packet, arrival_time_ms)


# Video payload types the server offers (VP8, H.264).
VIDEO_PTS = {96, 102, 127}
_orig_unprotect = pylibsrtp.Session.unprotect


def _unprotect(self, data):
    """Drops every `drop_every`-th video RTP packet of a known receiver before SRTP sees it, as a
    network loss would (the RTP header is in clear); a retransmission of it passes."""
    peer = state.peer
    n = peer.drop_every if peer is not None else 0
    if n and len(data) >= 12 and (data[1] & 0x7F) in VIDEO_PTS:
        seq = struct.unpack("!H", data[2:4])[0]
        ssrc = struct.unpack("!I", data[8:12])[0]
        st = next((s for s in peer.recv_stats.values() if ssrc in s.ssrcs), None)
        if st is not None and (ssrc, seq) not in st.dropped:
            st.first_time += 1
            if st.first_time % n == 0:
                st.dropped.add((ssrc, seq))
                st.dropped_total += 1
                raise pylibsrtp.Error("dropped by the test (a loss before SRTP)")
    return _orig_unprotect(self, data)


pylibsrtp.Session.unprotect = _unprotect


_orig_nack = RTCRtpReceiver._send_rtcp_nack
_orig_pli = RTCRtpReceiver._send_rtcp_pli


async def _hooked_nack(self, media_ssrc, lost):
    if state.peer is not None:
        st = receiver_stats(self)
        st.nacks_sent += 1
        st.nacked_seqs += len(lost)
    await _orig_nack(self, media_ssrc, lost)


async def _hooked_pli(self, media_ssrc):
    if state.peer is not None:
        receiver_stats(self).plis_sent += 1
    await _orig_pli(self, media_ssrc)


RTCRtpReceiver._handle_rtp_packet = _hooked_handle_rtp
RTCRtpReceiver._send_rtcp_nack = _hooked_nack
RTCRtpReceiver._send_rtcp_pli = _hooked_pli

_orig_route_rtcp = RtpRouter.route_rtcp


def _hooked_route_rtcp(self, packet):
    if state.peer is not None and self in state.peer.publisher_routers:
        c = state.peer.publisher_rtcp
        if isinstance(packet, aiortc_rtp.RtcpPsfbPacket) and packet.fmt == aiortc_rtp.RTCP_PSFB_APP:
            try:
                bitrate, _ = aiortc_rtp.unpack_remb_fci(packet.fci)
                c["remb"] += 1
                c["remb_last_bps"] = bitrate
            except ValueError:
                c["other"] += 1
        elif isinstance(packet, aiortc_rtp.RtcpPsfbPacket) and packet.fmt in (
                aiortc_rtp.RTCP_PSFB_PLI, aiortc_rtp.RTCP_PSFB_FIR):
            c["pli"] += 1
        elif isinstance(packet, aiortc_rtp.RtcpRtpfbPacket) and packet.fmt == aiortc_rtp.RTCP_RTPFB_NACK:
            c["nack"] += 1
        elif isinstance(packet, aiortc_rtp.RtcpRtpfbPacket) and packet.fmt == RTPFB_TWCC:
            c["twcc"] += 1
        elif isinstance(packet, aiortc_rtp.RtcpRrPacket):
            c["rr"] += 1
        else:
            c["other"] += 1
    return _orig_route_rtcp(self, packet)


RtpRouter.route_rtcp = _hooked_route_rtcp

_orig_route_rtp = RtpRouter.route_rtp


def _hooked_route_rtp(self, packet):
    # BUNDLE demultiplexing as browsers do it (RFC 8843 §9.2): the negotiated sdes:mid header
    # extension first. aiortc 1.16 routes by the SSRCs its receivers started with and else by
    # payload type alone, so a second VP8 m-line, or a new SSRC on a reused m-line, is lost.
    mid = packet.extensions.mid
    receiver = self.mid_table.get(mid) if mid is not None else None
    if receiver is not None:
        self.ssrc_table[packet.ssrc] = receiver
        return receiver
    return _orig_route_rtp(self, packet)


RtpRouter.route_rtp = _hooked_route_rtp

_orig_serialize = aiortc_rtp.RtpPacket.serialize
_twcc_seq = [0]


def _hooked_serialize(self, extensions_map):
    # aiortc parses and writes the transport-wide sequence number but never sets it: do it here
    # for the publisher that offered transport-cc (the extension is only mapped there).
    if extensions_map._HeaderExtensionsMap__ids.transport_sequence_number:
        self.extensions.transport_sequence_number = _twcc_seq[0]
        _twcc_seq[0] = (_twcc_seq[0] + 1) & 0xFFFF
    return _orig_serialize(self, extensions_map)


aiortc_rtp.RtpPacket.serialize = _hooked_serialize
