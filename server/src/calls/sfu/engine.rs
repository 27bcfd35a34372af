//! Building the SFU's WebRTC peer connections (docs/protocol.md §20.3.1): the media engine (Opus
//! 111, VP8 96, the audio-level header extension), the interceptor chain with the keyframe-request
//! marker, mDNS off, and one UDP socket per connection on `calls.media_bind` at a port of the
//! configured range (the next port is tried when one is taken).
//!
//! Pinned to `webrtc =0.21.1` / `rtc =0.21.1`: this is the thin async layer over the sans-I/O
//! `rtc` crate, whose API changes between minor versions.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateType, RTCIceServer, Registry, SettingEngineBuilder, register_default_interceptors,
};

/// RFC 6464 audio level, negotiated on audio m-lines.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// RFC 8843 `sdes:mid`, negotiated on audio and video m-lines; forwarded RTP carries the mid.
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;

pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub fn vp8_codec() -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.to_owned(), parameter: parameter.to_owned() };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir")],
    }
}

/// Opus/111 + VP8/96 and the audio-level extension (any direction). A connection consumes its
/// engine: build one per connection.
pub fn media_engine() -> webrtc::error::Result<MediaEngine> {
    let mut me = MediaEngine::default();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: PT_OPUS }, RtpCodecKind::Audio)?;
    me.register_codec(RTCRtpCodecParameters { rtp_codec: vp8_codec(), payload_type: PT_VP8 }, RtpCodecKind::Video)?;
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.to_owned() },
        RtpCodecKind::Audio,
        None,
    )?;
    // Video gets it from the default interceptors' registration (with the rid extensions).
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: MID_URI.to_owned() },
        RtpCodecKind::Audio,
        None,
    )?;
    Ok(me)
}

/// The default interceptors (NACK, RR/SR, TWCC, mid/rid) and, last, [`KeyframeRequestToApp`]:
/// without it inbound PLI/FIR never reach `TrackLocal::poll`.
pub fn interceptors(me: &mut MediaEngine) -> webrtc::error::Result<Registry> {
    Ok(register_default_interceptors(Registry::new(), me)?.with(Slot::from(14_000), KeyframeRequestToApp::default()))
}

/// Whether an RTCP packet asks for a keyframe (PLI or FIR).
pub fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Marks inbound PLI/FIR `DeliverToApplication` and drops the other inbound RTCP once the
/// interceptors before it have seen it.
#[derive(Default)]
pub struct KeyframeRequestToApp {
    read_q: VecDeque<TaggedPacket>,
    write_q: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for KeyframeRequestToApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyframeRequestToApp").field("queued", &(self.read_q.len() + self.write_q.len())).finish()
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(pkts) = &msg.message.packet {
            let keep: Vec<_> = pkts.iter().filter(|p| is_keyframe_request(p.as_ref())).cloned().collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
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

impl Interceptor for KeyframeRequestToApp {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// Where connections bind. 0.21.1 has no port-range setting, so the port is chosen here
/// (round-robin over the range) and passed as `ip:port`.
pub struct Engine {
    bind: IpAddr,
    public_ip: Option<IpAddr>,
    port_min: u16,
    port_max: u16,
    ice_servers: Vec<RTCIceServer>,
    next: AtomicU32,
    /// Adds interceptors to each connection's chain (test peers tap the wire with it).
    extra: Option<RegistryHook>,
}

/// Adds interceptors to a connection's chain: called once per connection built.
pub type RegistryHook = Arc<dyn Fn(Registry) -> Registry + Send + Sync>;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("bind", &self.bind)
            .field("ports", &(self.port_min..=self.port_max))
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// `port_min == 0` binds an ephemeral port (the test peer).
    pub fn new(bind: IpAddr, public_ip: Option<IpAddr>, port_min: u16, port_max: u16) -> Self {
        // A random start, so two servers sharing a range do not walk the same taken ports.
        let mut r = [0u8; 4];
        let start = getrandom::fill(&mut r).map_or(0, |()| u32::from_le_bytes(r));
        Self { bind, public_ip, port_min, port_max, ice_servers: Vec::new(), next: AtomicU32::new(start), extra: None }
    }

    pub fn with_ice_servers(mut self, servers: Vec<RTCIceServer>) -> Self {
        self.ice_servers = servers;
        self
    }

    /// Every connection built gets `hook`'s interceptors too (after the default chain's).
    pub fn with_interceptors(mut self, hook: RegistryHook) -> Self {
        self.extra = Some(hook);
        self
    }

    /// One peer connection whose events go to `handler`; the caller must `close()` it.
    pub async fn build(&self, handler: Arc<dyn PeerConnectionEventHandler>) -> Result<Arc<dyn PeerConnection>, String> {
        self.build_tapped(handler, None).await
    }

    /// [`Engine::build`], recording what arrives into `link` ([`super::link::LinkTap`]).
    pub async fn build_tapped(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
        link: Option<Arc<super::link::LinkStats>>,
    ) -> Result<Arc<dyn PeerConnection>, String> {
        let ports: Vec<u16> = if self.port_min == 0 {
            vec![0]
        } else {
            let n = u32::from(self.port_max - self.port_min) + 1;
            let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
            (0..n).map(|i| self.port_min + ((start + i) % n) as u16).collect()
        };
        let mut last_err = String::from("empty port range");
        for port in ports {
            let mut me = media_engine().map_err(|e| e.to_string())?;
            let mut reg = interceptors(&mut me).map_err(|e| e.to_string())?;
            if let Some(link) = &link {
                reg = reg.with(Slot::from(13_500), super::link::LinkTap::new(link.clone()));
            }
            if let Some(hook) = &self.extra {
                reg = hook(reg);
            }
            let mut setting = SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled);
            if let Some(ip) = self.public_ip {
                setting = setting.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
            }
            let config = RTCConfigurationBuilder::new().with_ice_servers(self.ice_servers.clone()).build();
            // Boxed: the builder's future is ~20 kB.
            let built = Box::pin(
                PeerConnectionBuilder::new()
                    .with_configuration(config)
                    .with_media_engine(me)
                    .with_interceptor_registry(reg)
                    .with_setting_engine(setting.build())
                    .with_handler(handler.clone())
                    .with_udp_addrs(vec![std::net::SocketAddr::new(self.bind, port).to_string()])
                    .build(),
            )
            .await;
            match built {
                Ok(pc) => return Ok(Arc::new(pc) as Arc<dyn PeerConnection>),
                Err(e) => last_err = format!("port {port}: {e}"),
            }
        }
        Err(last_err)
    }
}
