//! Connection admission: a global cap and a per-IP cap, counted from accept and held by a permit
//! for the connection's life; and the process's descriptor limit, which bounds the global cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Counts live connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    counts: Arc<Mutex<Counts>>,
    max_total: u32,
    max_per_ip: u32,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The global cap (`limits.max_connections`, bounded by the descriptor limit).
    Total,
    /// The per-address cap (`limits.max_connections_per_ip`).
    PerIp,
}

impl Refused {
    /// The `reason` label of `confab_connections_closed_total` for this refusal.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Total => "too_many_connections",
            Self::PerIp => "too_many_connections_per_ip",
        }
    }
}

/// The process's open-file limit (RLIMIT_NOFILE); `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit in force: opening a descriptor beyond it fails with EMFILE.
    pub soft: Option<u64>,
    /// The hard limit: the most the soft limit may be raised to without privileges.
    pub hard: Option<u64>,
}

impl DescriptorLimit {
    /// The current limit; on platforms without rlimits, unlimited.
    pub fn current() -> Self {
        #[cfg(unix)]
        {
            let r = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            Self { soft: r.current, hard: r.maximum }
        }
        #[cfg(not(unix))]
        Self { soft: None, hard: None }
    }

    /// Raises the soft limit to the hard limit (a process may always do so) and returns the limit
    /// now in force. Call once at start, before other threads open descriptors.
    pub fn raise_soft_to_hard() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            let now = Self::current();
            if now.soft != now.hard {
                let r = rustix::process::Rlimit { current: now.hard, maximum: now.hard };
                rustix::process::setrlimit(rustix::process::Resource::Nofile, r)?;
            }
            Ok(Self::current())
        }
        #[cfg(not(unix))]
        Ok(Self::current())
    }
}

/// The global connection cap in force: the configured one, lowered so that connections plus the
/// `reserve` (store, files, listeners, media sockets) stay below the soft descriptor limit, and at
/// least 1. Each WebSocket connection holds one descriptor; QUIC connections share the UDP socket
/// but count against the same cap.
pub fn effective_max_connections(configured: u32, limit: DescriptorLimit, reserve: u64) -> u32 {
    match limit.soft {
        None => configured,
        Some(soft) => {
            let room = u32::try_from(soft.saturating_sub(reserve)).unwrap_or(u32::MAX);
            configured.min(room).max(1)
        }
    }
}

/// Held while a connection lives; releases its slot on drop.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// At most `max_total` connections in all and `max_per_ip` from one address.
    pub fn new(max_total: u32, max_per_ip: u32) -> Self {
        Self { counts: Arc::default(), max_total, max_per_ip }
    }

    /// The global cap in force.
    pub fn max_total(&self) -> u32 {
        self.max_total
    }

    /// A slot for one connection from `ip`, or which cap refused it.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(Permit { counts: self.counts.clone(), ip })
    }

    /// Connections currently admitted.
    pub fn total(&self) -> u32 {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total
    }

    /// True when more than half the global cap is in use (QUIC then validates addresses first).
    pub fn under_pressure(&self) -> bool {
        self.total() > self.max_total / 2
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_releases_on_drop() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let p1 = l.try_acquire(a).expect("first");
        let _p2 = l.try_acquire(a).expect("second");
        assert_eq!(l.try_acquire(a).expect_err("third from a"), Refused::PerIp);
        let _p3 = l.try_acquire(b).expect("b");
        assert_eq!(l.try_acquire(b).expect_err("over total"), Refused::Total);
        drop(p1);
        assert!(l.try_acquire(a).is_ok());
    }

    #[test]
    fn global_cap_stays_below_the_descriptor_limit() {
        let lim = |soft| DescriptorLimit { soft, hard: soft };
        assert_eq!(effective_max_connections(100_000, lim(Some(4096)), 300), 3796);
        assert_eq!(effective_max_connections(1000, lim(Some(4096)), 300), 1000);
        assert_eq!(effective_max_connections(1000, lim(None), 300), 1000);
        assert_eq!(effective_max_connections(1000, lim(Some(100)), 300), 1, "never zero");
    }

    #[test]
    fn the_soft_descriptor_limit_rises_to_the_hard_one() {
        let raised = DescriptorLimit::raise_soft_to_hard().expect("setrlimit");
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(raised, DescriptorLimit::current());
    }
}
