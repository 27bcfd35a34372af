//! Call settings (docs/protocol.md §20): ringing lifetime, ICE servers with TURN REST
//! credentials, and the integrated SFU's media sockets, rooms and limits.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// How long an unanswered call rings before it ends as missed.
    #[serde(with = "humantime_serde")]
    pub ring_timeout: Duration,
    /// How long a party of a call may stay disconnected before the call ends (CONNECTION_LOST).
    #[serde(with = "humantime_serde")]
    pub reconnect_grace: Duration,
    /// Conversations with more members than this use group calls (JoinCall), not ringing.
    pub max_ring_members: u32,
    /// STUN server URLs handed to clients, e.g. "stun:stun.example.com:3478".
    pub stun_urls: Vec<String>,
    /// TURN server URLs, e.g. "turn:turn.example.com:3478?transport=udp".
    pub turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn `use-auth-secret` / `static-auth-secret`).
    pub turn_secret: Option<Secret>,
    /// Lifetime of the TURN credentials handed out.
    #[serde(with = "humantime_serde")]
    pub turn_credential_ttl: Duration,
    /// Address the SFU's media (UDP) sockets bind to. Not 0.0.0.0: the WebRTC stack would skip
    /// loopback; use the host's address.
    pub media_bind: IpAddr,
    /// The address announced in ICE candidates when the server is behind 1:1 NAT.
    pub media_public_ip: Option<IpAddr>,
    /// UDP ports the SFU may use, inclusive.
    pub udp_port_min: u16,
    pub udp_port_max: u16,
    /// A group call room with nobody in it closes after this.
    #[serde(with = "humantime_serde")]
    pub room_ttl: Duration,
    /// Participants publishing at once in one room.
    pub max_publishers: u32,
    /// Participants in one room.
    pub max_participants: u32,
    /// A meeting room (§25) without its own `empty_timeout_ms` closes after nobody has been in
    /// it for this long.
    #[serde(with = "humantime_serde")]
    pub meeting_empty_timeout: Duration,
    /// How often meeting rooms due to expire or close when empty are looked for.
    #[serde(with = "humantime_serde")]
    pub meeting_sweep_interval: Duration,
    /// A group-call connection that should carry media but got no RTP or RTCP for this long is
    /// LOST and restarted; still nothing after as long again, the participant leaves (§20.3.12).
    #[serde(with = "humantime_serde")]
    pub media_timeout: Duration,
    /// Networks (CIDR) client ICE candidates must be in to be used (§20.3.5); empty: any address
    /// of `media_bind`'s family that is not unspecified, multicast, broadcast, link-local, or
    /// loopback (unless `media_bind` is loopback).
    pub allowed_candidate_networks: Vec<ipnet::IpNet>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::from_secs(20),
            max_ring_members: 16,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_credential_ttl: Duration::from_secs(3600),
            media_bind: IpAddr::from([127, 0, 0, 1]),
            media_public_ip: None,
            udp_port_min: 50000,
            udp_port_max: 50199,
            room_ttl: Duration::from_secs(60),
            max_publishers: 16,
            max_participants: 64,
            meeting_empty_timeout: Duration::from_secs(300),
            meeting_sweep_interval: Duration::from_secs(5),
            media_timeout: Duration::from_secs(10),
            allowed_candidate_networks: Vec::new(),
        }
    }
}

impl CallsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.ring_timeout < Duration::from_secs(1) || self.ring_timeout > Duration::from_secs(600) {
            return bad("calls.ring_timeout must be within 1s..10m");
        }
        if self.reconnect_grace > Duration::from_secs(600) {
            return bad("calls.reconnect_grace must be at most 10m");
        }
        if self.max_ring_members < 2 {
            return bad("calls.max_ring_members must be at least 2");
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return bad("calls.turn_urls needs calls.turn_secret (TURN REST credentials)");
        }
        let urls = self.stun_urls.iter().chain(&self.turn_urls);
        if let Some(u) = urls.clone().find(|u| {
            !(u.starts_with("stun:") || u.starts_with("stuns:") || u.starts_with("turn:") || u.starts_with("turns:"))
        }) {
            return Err(ConfigError::Invalid(format!(
                "ICE server URL {u:?} must start with stun:, stuns:, turn: or turns:"
            )));
        }
        if self.turn_credential_ttl < Duration::from_secs(60)
            || self.turn_credential_ttl > Duration::from_secs(7 * 86400)
        {
            return bad("calls.turn_credential_ttl must be within 1m..7d");
        }
        if self.media_bind.is_unspecified() {
            return bad(
                "calls.media_bind must be a concrete address (0.0.0.0 would skip loopback in the WebRTC stack)",
            );
        }
        if self.udp_port_min == 0 || self.udp_port_max < self.udp_port_min {
            return bad("calls.udp_port_min..udp_port_max must be a non-empty range of non-zero ports");
        }
        if self.media_timeout < Duration::from_millis(200) || self.media_timeout > Duration::from_secs(300) {
            return bad("calls.media_timeout must be within 200ms..5m");
        }
        if let Some(n) =
            self.allowed_candidate_networks.iter().find(|n| n.addr().is_ipv4() != self.media_bind.is_ipv4())
        {
            return Err(ConfigError::Invalid(format!(
                "calls.allowed_candidate_networks: {n} is not of calls.media_bind's address family"
            )));
        }
        if self.max_publishers == 0 || self.max_participants == 0 || self.max_publishers > self.max_participants {
            return bad("calls.max_publishers must be positive and at most calls.max_participants");
        }
        if self.meeting_empty_timeout < Duration::from_secs(1)
            || self.meeting_empty_timeout > Duration::from_secs(7 * 86400)
        {
            return bad("calls.meeting_empty_timeout must be within 1s..7d");
        }
        if self.meeting_sweep_interval < Duration::from_millis(10)
            || self.meeting_sweep_interval > Duration::from_secs(600)
        {
            return bad("calls.meeting_sweep_interval must be within 10ms..10m");
        }
        Ok(())
    }
}
