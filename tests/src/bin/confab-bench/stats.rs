//! Measurement helpers: latency samples with percentiles, a per-second progress line, and the
//! send time and tag carried inside each benchmark message.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Latencies in microseconds, for percentiles.
#[derive(Default)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// The `p` quantile (0..=1) in milliseconds; 0 when there are no samples.
    pub fn percentile(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

/// Prints one progress line per second until `stop`: the rate of `count` and its total.
pub fn progress(label: &'static str, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut second = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            second += 1;
            let now = count.load(Ordering::Relaxed);
            eprintln!("[{second:>3}s] {label}: {} /s (total {now})", now - last);
            last = now;
        }
    })
}

/// What closed loops achieved: completions, failures, elapsed seconds and latency percentiles.
pub struct LoopStats {
    pub done: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs each lane as a closed loop (one operation at a time, the next as soon as the previous
/// ends) for `duration`, printing progress each second; `lane(n)` makes operation n.
pub async fn closed_loops<F, Fut>(label: &'static str, lanes: Vec<F>, duration: Duration) -> LoopStats
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress(label, done.clone(), stop.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(lanes.len());
    for mut lane in lanes {
        let (done, errors) = (done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let t = Instant::now();
                if lane(n).await {
                    local.push(t.elapsed().as_micros() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            local
        }));
    }
    let mut samples = Samples::default();
    for t in tasks {
        if let Ok(local) = t.await {
            samples.0.extend(local);
        }
    }
    stop.store(true, Ordering::Relaxed);
    p.abort();
    LoopStats {
        done: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        p50_ms: samples.percentile(0.50),
        p99_ms: samples.percentile(0.99),
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the process's measuring base (one clock for senders and receivers).
pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// Width of the send-time and tag prefixes of a stamped message.
const STAMP: usize = 20;
const TAG: usize = 4;

/// A message of `len` bytes (at least 24) carrying its send time and a tag (e.g. a ramp step).
pub fn stamped_text(len: usize, tag: u16) -> String {
    let mut s = format!("{:0stamp$}{tag:0tag_width$}", now_ns(), stamp = STAMP, tag_width = TAG);
    s.extend(std::iter::repeat_n('x', len.saturating_sub(STAMP + TAG)));
    s
}

/// The send time and tag carried by a stamped message.
pub fn stamp_of(text: &str) -> Option<(u64, u16)> {
    Some((text.get(..STAMP)?.parse().ok()?, text.get(STAMP..STAMP + TAG)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let t = stamped_text(100, 7);
        assert_eq!(t.len(), 100);
        let (at, tag) = stamp_of(&t).expect("stamp");
        assert!(at <= now_ns());
        assert_eq!(tag, 7);
        assert_eq!(stamp_of("short"), None);
    }

    #[test]
    fn percentiles() {
        let mut s = Samples((1..=100).map(|v| v * 1000).collect());
        assert_eq!(s.percentile(0.5), 51.0);
        assert_eq!(s.percentile(0.99), 99.0);
        assert_eq!(Samples::default().percentile(0.5), 0.0);
    }
}
