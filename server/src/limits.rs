//! Connection admission: a global cap and a per-IP cap, held by a permit for the connection's life.

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
    Total,
    PerIp,
}

/// Held while a connection lives; releases its slot on drop.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(max_total: u32, max_per_ip: u32) -> Self {
        Self { counts: Arc::default(), max_total, max_per_ip }
    }

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
}
