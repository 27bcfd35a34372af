//! What W2 and W3 cost outside the generator, sampled at every step boundary: the CPU time of
//! given processes (each with its children, so a PostgreSQL postmaster counts its backends), the
//! `confab_cluster_*` counters and the store operation counts on each node's /metrics, and
//! nats-server's message and byte counters (its monitoring endpoint's /varz). The generator's own CPU time is always sampled.
//! A step's cost is the difference of the samples around its sending window.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The nats-server counters kept from /varz.
const VARZ: [&str; 4] = ["in_msgs", "out_msgs", "in_bytes", "out_bytes"];

/// What to sample.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// (label, pid): processes whose CPU time (with their children's) is sampled.
    pub cpu: Vec<(String, u32)>,
    /// Nodes' /metrics URLs (`http://HOST:PORT/metrics`).
    pub metrics: Vec<String>,
    /// nats-server's monitoring base URL (`http://HOST:PORT`).
    pub nats_monitor: Option<String>,
}

/// One reading of every probe.
#[derive(Clone, Debug)]
pub struct Sample {
    at: Instant,
    generator_cpu: f64,
    cpu: Vec<f64>,
    /// Per metrics URL: counter name (`cluster.published`, `store.apply_batch`, …) → value.
    counters: Vec<BTreeMap<String, f64>>,
    nats: BTreeMap<String, f64>,
}

/// Parses `LABEL=PID` (for `--cpu`).
pub fn labelled_pid(s: &str) -> Result<(String, u32), String> {
    let (label, pid) = s.split_once('=').ok_or_else(|| format!("expected LABEL=PID, got {s:?}"))?;
    let pid = pid.trim().parse().map_err(|_| format!("not a process id: {pid:?}"))?;
    if label.is_empty() {
        return Err(format!("expected LABEL=PID, got {s:?}"));
    }
    Ok((label.to_owned(), pid))
}

impl Probes {
    /// Whether anything beyond the generator's own CPU is sampled.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_empty() && self.metrics.is_empty() && self.nats_monitor.is_none()
    }

    /// Reads every probe now. A probe that cannot be read fails the run: a figure silently
    /// missing would read as zero cost.
    pub async fn sample(&self) -> anyhow::Result<Sample> {
        let at = Instant::now();
        let tree = ProcessTree::read();
        let cpu = self
            .cpu
            .iter()
            .map(|(label, pid)| tree.cpu_seconds(*pid).with_context(|| format!("CPU time of {label} (pid {pid})")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let generator_cpu = tree.cpu_seconds(std::process::id()).context("the generator's own CPU time")?;
        let mut counters = Vec::with_capacity(self.metrics.len());
        for url in &self.metrics {
            counters.push(node_counters(&http_get(url).await?));
        }
        let mut nats = BTreeMap::new();
        if let Some(base) = &self.nats_monitor {
            let url = format!("{}/varz", base.trim_end_matches('/'));
            let v: Value = serde_json::from_str(&http_get(&url).await?).with_context(|| format!("{url}: not JSON"))?;
            for k in VARZ {
                nats.insert(k.to_owned(), v[k].as_f64().with_context(|| format!("{url}: no {k}"))?);
            }
        }
        Ok(Sample { at, generator_cpu, cpu, counters, nats })
    }

    /// The cost between two samples, against the `deliveries` and acknowledged `messages` it
    /// paid for: CPU seconds per process and in all, microseconds per delivery and per message,
    /// cluster counters and store operations (how many of each) summed over the nodes (and per
    /// node), nats-server's traffic.
    pub fn cost(&self, from: &Sample, to: &Sample, deliveries: u64, messages: u64) -> Value {
        let per = |secs: f64, n: u64| if n == 0 { Value::Null } else { json!(secs * 1e6 / n as f64) };
        let mut cpu = Map::new();
        let mut total = 0.0;
        for (i, (label, _)) in self.cpu.iter().enumerate() {
            let d = (to.cpu[i] - from.cpu[i]).max(0.0);
            total += d;
            cpu.insert(label.clone(), json!(d));
        }
        let (mut per_node, mut store_per_node) = (Vec::new(), Vec::new());
        let (mut cluster, mut store) = (BTreeMap::<String, f64>::new(), BTreeMap::<String, f64>::new());
        for (a, b) in from.counters.iter().zip(&to.counters) {
            let (mut node_cluster, mut node_store) = (BTreeMap::new(), BTreeMap::new());
            for (k, v) in b {
                let d = v - a.get(k).copied().unwrap_or(0.0);
                if let Some(name) = k.strip_prefix("cluster.") {
                    *cluster.entry(name.to_owned()).or_default() += d;
                    node_cluster.insert(name.to_owned(), d);
                } else if let Some(op) = k.strip_prefix("store.") {
                    *store.entry(op.to_owned()).or_default() += d;
                    node_store.insert(op.to_owned(), d);
                }
            }
            per_node.push(json!(node_cluster));
            node_store.retain(|_, d| *d != 0.0);
            store_per_node.push(json!(node_store));
        }
        store.retain(|_, d| *d != 0.0);
        let nats: BTreeMap<String, f64> =
            to.nats.iter().map(|(k, v)| (k.clone(), v - from.nats.get(k).copied().unwrap_or(0.0))).collect();
        let nats_bytes = nats.get("in_bytes").copied();
        let generator = (to.generator_cpu - from.generator_cpu).max(0.0);
        let seconds = to.at.duration_since(from.at).as_secs_f64();
        let per_cpu_second = |n: u64| if total > 0.0 && n > 0 { json!(n as f64 / total) } else { Value::Null };
        let cores = |secs: f64| if seconds > 0.0 { json!(secs / seconds) } else { Value::Null };
        json!({
            "seconds": seconds,
            "deliveries": deliveries,
            "messages": messages,
            "cpu_seconds": cpu,
            "cpu_seconds_total": total,
            "cpu_us_per_delivery": per(total, deliveries),
            "cpu_us_per_message": per(total, messages),
            "deliveries_per_cpu_second": per_cpu_second(deliveries),
            "messages_per_cpu_second": per_cpu_second(messages),
            "server_cores": if self.cpu.is_empty() { Value::Null } else { cores(total) },
            "generator_cpu_seconds": generator,
            "generator_cores": cores(generator),
            "load_average_1m": load_average(),
            "cluster": cluster,
            "cluster_per_node": per_node,
            "store_ops": store,
            "store_ops_per_node": store_per_node,
            "nats": nats,
            "nats_bytes_in_per_message": nats_bytes.filter(|_| messages > 0).map(|b| b / messages as f64),
        })
    }
}

/// The machine's one-minute load average (/proc/loadavg): how busy the machine was beside the
/// processes measured (a run on a loaded machine says so).
pub fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map_or(Value::Null, |v| json!(v))
}

/// The CPUs this process may run on (sched_getaffinity, as /proc/self/status says), e.g. "1"
/// when the generator is pinned with taskset, "0-1" when it is not.
pub fn cpus_allowed() -> Value {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_owned())))
        .map_or(Value::Null, Value::String)
}

/// From a node's /metrics page: the `confab_cluster_*_total` counters (as `cluster.NAME`) and
/// how many store operations of each kind ran (`store.OP`, the count of the store latency
/// histogram: `apply_batch` is one writer transaction, `events_after` one read of a log).
fn node_counters(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            if let Some(rest) = name.strip_prefix("confab_cluster_") {
                let counter = rest.split('{').next()?.strip_suffix("_total")?;
                return Some((format!("cluster.{counter}"), value));
            }
            let labels = name.strip_prefix("confab_store_duration_seconds_count{")?;
            let op = labels.split(',').find_map(|kv| kv.strip_prefix("op=\""))?.split('"').next()?;
            Some((format!("store.{op}"), value))
        })
        .collect()
}

/// CPU times from /proc: every process's own and its waited-for children's, and who is whose
/// parent, read once per sample.
struct ProcessTree {
    /// pid → (own + waited-for children's CPU seconds, parent pid).
    procs: HashMap<u32, (f64, u32)>,
}

impl ProcessTree {
    fn read() -> Self {
        let mut procs = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if let Some(v) = stat(pid) {
                    procs.insert(pid, v);
                }
            }
        }
        Self { procs }
    }

    /// `pid`'s CPU seconds with all its descendants' (the living ones from /proc, the exited
    /// ones through the waited-for children's times of their parents).
    fn cpu_seconds(&self, pid: u32) -> anyhow::Result<f64> {
        let Some(&(own, _)) = self.procs.get(&pid) else { bail!("no process {pid}") };
        let children: f64 = self
            .procs
            .iter()
            .filter(|(child, (_, parent))| *parent == pid && **child != pid)
            .map(|(child, _)| self.cpu_seconds(*child).unwrap_or(0.0))
            .sum();
        Ok(own + children)
    }
}

/// (utime + stime + cutime + cstime in seconds, ppid) of a process.
fn stat(pid: u32) -> Option<(f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks: f64 = f.get(11..15)?.iter().filter_map(|v| v.parse::<f64>().ok()).sum();
    Some((ticks / TICKS_PER_SECOND, ppid))
}

/// CPU time (user + system) of one process alone, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).context("short stat")?.iter().filter_map(|v| v.parse::<f64>().ok()).sum();
    Ok(ticks / TICKS_PER_SECOND)
}

/// The body of a 200 answer to `GET url` (`http://HOST:PORT/PATH`), over HTTP/1.0 so the body
/// ends with the connection (no chunking).
pub async fn http_get(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs are read"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let io = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(std::time::Duration::from_secs(10), io)
        .await
        .with_context(|| format!("{url}: no answer within 10 s"))?
        .with_context(|| format!("GET {url}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("{url}: malformed answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{url}: {status}");
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_node_counters() {
        let page = "# HELP confab_cluster_published Events published\n# TYPE confab_cluster_published counter\n\
                    confab_cluster_published_total 42\nconfab_cluster_link_up 1\n\
                    confab_cluster_received_total{x=\"y\"} 7\nconfab_requests_total 9\n\
                    confab_store_duration_seconds_sum{op=\"apply_batch\"} 0.5\n\
                    confab_store_duration_seconds_count{op=\"apply_batch\"} 12\n\
                    confab_store_duration_seconds_bucket{le=\"0.001\",op=\"apply_batch\"} 3\n# EOF\n";
        let c = node_counters(page);
        assert_eq!(c.get("cluster.published"), Some(&42.0));
        assert_eq!(c.get("cluster.received"), Some(&7.0));
        assert_eq!(c.get("store.apply_batch"), Some(&12.0));
        assert_eq!(c.len(), 3, "{c:?}");
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let tree = ProcessTree::read();
        let me = std::process::id();
        assert!(tree.cpu_seconds(me).expect("self") >= 0.0 && cpu_seconds(me).expect("self") >= 0.0);
        assert!(tree.cpu_seconds(u32::MAX).is_err());
        assert!(labelled_pid("node-a=12").is_ok() && labelled_pid("=1").is_err() && labelled_pid("a=b").is_err());
    }
}
