//! VP8 over RTP for test peers (RFC 7741): one encoded frame cut into packets a browser
//! reassembles and decodes, as [`crate::webrtc_peer::GroupPeer::publish_vp8`] sends them.

use bytes::{BufMut, BytesMut};
use rtc::rtp;

/// The most VP8 bytes in one packet (well inside a 1200-byte MTU with headers).
pub const CHUNK: usize = 1000;

/// The packets of `frame`: each carries `header` with the next sequence number from `seq`,
/// the frame's first packet a payload descriptor with S set (start of partition 0, RFC 7741
/// §4.2), the others an empty one, and the last the marker bit (end of frame).
pub fn packetize(frame: &[u8], header: &rtp::header::Header, seq: &mut u16) -> Vec<rtp::Packet> {
    let chunks: Vec<&[u8]> = frame.chunks(CHUNK).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            *seq = seq.wrapping_add(1);
            let mut h = header.clone();
            h.sequence_number = *seq;
            h.marker = i == last;
            let mut p = BytesMut::with_capacity(chunk.len() + 1);
            p.put_u8(if i == 0 { 0x10 } else { 0x00 });
            p.put_slice(chunk);
            rtp::Packet { header: h, payload: p.freeze() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_in_packets() {
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let mut seq = u16::MAX;
        let ps = packetize(&frame, &rtp::header::Header { timestamp: 9, ..Default::default() }, &mut seq);
        assert_eq!(ps.len(), 3);
        assert_eq!(ps.iter().map(|p| p.header.sequence_number).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(ps.iter().map(|p| p.header.marker).collect::<Vec<_>>(), [false, false, true]);
        assert!(ps.iter().all(|p| p.header.timestamp == 9));
        assert_eq!(ps.iter().map(|p| p.payload[0]).collect::<Vec<_>>(), [0x10, 0, 0]);
        let joined: Vec<u8> = ps.iter().flat_map(|p| p.payload[1..].to_vec()).collect();
        assert_eq!(joined, frame);
    }
}
