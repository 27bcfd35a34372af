//! Which client ICE candidates the SFU takes (docs/protocol.md §20.3.5): a trickled candidate
//! whose address the server could not reach — another address family than `calls.media_bind`,
//! an mDNS `.local` name (the SFU resolves none), unspecified, multicast, broadcast, link-local,
//! loopback unless the server binds loopback, or outside `calls.allowed_candidate_networks` when
//! that list is set — is dropped (the Trickle still succeeds).

use std::net::IpAddr;

use ipnet::IpNet;

/// Why a candidate is dropped, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an IP address (e.g. an mDNS `.local` name).
    NotAnAddress,
    /// Another address family than the one the SFU binds.
    Family,
    /// Unspecified, multicast, broadcast, link-local, or loopback while the SFU is not on loopback.
    Unreachable,
    /// Outside `calls.allowed_candidate_networks`.
    NotAllowed,
}

/// The connection address of a candidate line (`candidate:… <address> <port> typ …`), if any.
pub fn address(candidate: &str) -> Option<&str> {
    let line = candidate.trim().strip_prefix("a=").unwrap_or(candidate.trim());
    line.strip_prefix("candidate:")?.split_whitespace().nth(4)
}

/// Whether the SFU, bound to `bind`, takes a client candidate at `addr` given the configured
/// networks (`allowed` empty: every address that passes the other rules).
pub fn check(addr: &str, bind: IpAddr, allowed: &[IpNet]) -> Result<(), Refused> {
    let ip: IpAddr = addr.trim_matches(['[', ']']).parse().map_err(|_| Refused::NotAnAddress)?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_ipv4() != bind.is_ipv4() {
        return Err(Refused::Family);
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if ip.is_unspecified() || ip.is_multicast() || link_local || (ip.is_loopback() && !bind.is_loopback()) {
        return Err(Refused::Unreachable);
    }
    if !allowed.is_empty() && !allowed.iter().any(|n| n.contains(&ip)) {
        return Err(Refused::NotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_the_server_cannot_reach_are_refused() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let lan: IpAddr = [10, 0, 0, 5].into();
        let line = "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host";
        assert_eq!(address(line), Some("192.168.1.20"));
        assert_eq!(address("a=candidate:1 1 udp 1 abc.local 9 typ host"), Some("abc.local"));
        assert_eq!(address("junk"), None);
        assert_eq!(check("127.0.0.1", lo, &[]), Ok(()));
        assert_eq!(check("127.0.0.1", lan, &[]), Err(Refused::Unreachable));
        assert_eq!(check("192.168.1.20", lan, &[]), Ok(()));
        assert_eq!(check("4f3a-1.local", lan, &[]), Err(Refused::NotAnAddress));
        assert_eq!(check("2001:db8::1", lan, &[]), Err(Refused::Family));
        assert_eq!(check("169.254.3.4", lan, &[]), Err(Refused::Unreachable));
        assert_eq!(check("224.0.0.251", lan, &[]), Err(Refused::Unreachable));
        assert_eq!(check("0.0.0.0", lan, &[]), Err(Refused::Unreachable));
        assert_eq!(check("fe80::1", "2001:db8::2".parse().unwrap(), &[]), Err(Refused::Unreachable));
        let only: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(check("10.1.2.3", lan, &only), Ok(()));
        assert_eq!(check("192.168.1.20", lan, &only), Err(Refused::NotAllowed));
    }
}
