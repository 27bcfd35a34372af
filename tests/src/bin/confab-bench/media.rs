//! The media scenario (issue 15): upload and download throughput per file size over the transport
//! of `--url`, beside a plain loopback TCP copy of the same bytes in this process (the ceiling);
//! concurrent uploads of the largest size while the server's RSS is sampled; and message latency
//! while uploads run on the sender's own connection (media_latency.rs).
//!
//! Files are random bytes held in memory (each upload a distinct variant, so no two share a
//! blob). An upload is timed from BeginUpload to FinishUploadResult (the server has stored and
//! checked every byte); the client's own SHA-256 of the file, which `Client::upload` computes
//! first, is taken beforehand and reported on its own. A download is timed from the request to
//! the last byte, into memory; it is hashed after the clock stops and must match.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use confab_protocol::client::media::UploadSpec;
use confab_protocol::client::{Client, ConnectOptions};
use confab_protocol::v1::{self, MediaPurpose};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::media_latency;
use crate::peer::{random_name, register};
use crate::rss_kib;

const MIB: f64 = 1024.0 * 1024.0;

/// What the media scenario does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// File sizes in bytes, each uploaded and downloaded once.
    pub sizes: Vec<u64>,
    /// Uploads of the largest size run at once in the concurrency phase (0: skip it).
    pub concurrent: usize,
    /// Messages per second in the latency phases (0: skip them).
    pub rate: u32,
    /// The loaded latency phase uploads back to back until at least this long has passed.
    pub latency_for: Duration,
    /// The server's process id, whose VmRSS is sampled (none: no RSS figures).
    pub server_pid: Option<u32>,
}

/// Parses a size: bytes, or a number with KiB, MiB or GiB.
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?} (e.g. 10MiB, 512KiB, 1000)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use KiB, MiB or GiB")),
    };
    match n.checked_mul(mult) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("a size is at least one byte and fits 64 bits: {s:?}")),
    }
}

/// Sizes from a comma-separated list ("10MiB,100MiB").
#[derive(Clone, Debug)]
pub struct Sizes(pub Vec<u64>);

/// Parses `--sizes`.
pub fn sizes(s: &str) -> Result<Sizes, String> {
    let v = s.split(',').map(size).collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err("at least one size".into());
    }
    Ok(Sizes(v))
}

/// The resident set size of the server, sampled every 20 ms from its start until `finish`.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    /// Starts sampling `pid` (its current RSS is the first sample).
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)?));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Ok(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { stop, peak, task })
    }

    /// Stops sampling; the highest RSS seen, in KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// Bytes moved by uploads and downloads, printed once a second as MiB/s.
#[derive(Clone, Default)]
pub struct Moved(Arc<AtomicU64>);

impl Moved {
    /// A progress callback for one upload: it adds what was sent since its last call.
    pub fn upload_progress(&self) -> impl FnMut(u64) + Send + use<> {
        let (moved, mut last) = (self.0.clone(), 0u64);
        move |sent| {
            moved.fetch_add(sent.saturating_sub(last), Ordering::Relaxed);
            last = last.max(sent);
        }
    }

    fn download_progress(&self) -> impl FnMut(u64, u64) + Send + use<> {
        let mut up = self.upload_progress();
        move |written, _total| up(written)
    }

    /// Prints `[ Ns] label: X MiB/s (total Y MiB)` each second until `stop`.
    pub fn report(&self, label: &'static str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let moved = self.0.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut last, mut second) = (0u64, 0);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                second += 1;
                let now = moved.load(Ordering::Relaxed);
                eprintln!(
                    "[{second:>3}s] {label}: {:.1} MiB/s (total {:.1} MiB)",
                    (now - last) as f64 / MIB,
                    now as f64 / MIB
                );
                last = now;
            }
        })
    }
}

/// `size` bytes of `base` with the upload number `n` written over the first eight: a file of its
/// own (its own SHA-256, its own blob on the server).
pub fn variant(base: &[u8], size: u64, n: u64) -> Bytes {
    let mut v = base[..size as usize].to_vec();
    for (b, x) in v.iter_mut().zip(n.to_le_bytes()) {
        *b ^= x ^ 0x5a;
    }
    Bytes::from(v)
}

fn spec(name: &str, sha256: [u8; 32]) -> UploadSpec {
    UploadSpec {
        mime_type: "application/octet-stream".into(),
        purpose: MediaPurpose::Attachment,
        file_name: name.into(),
        sha256: Some(sha256),
    }
}

/// A timed upload: the stored media item, the seconds from BeginUpload to FinishUploadResult,
/// and of those the seconds FinishUpload took (the server reads, hashes and stores the file).
pub struct Timed {
    pub media: v1::MediaInfo,
    pub seconds: f64,
    pub finish_seconds: f64,
}

/// One timed upload of `data` (whose SHA-256 is `sha`): BeginUpload, the bytes, FinishUpload.
pub async fn timed_upload(c: &Client, data: &Bytes, sha: [u8; 32], moved: &Moved) -> anyhow::Result<Timed> {
    let started = Instant::now();
    let sp = spec("bench.bin", sha);
    let begun = c.begin_upload(data.len() as u64, &sp).await.context("BeginUpload")?;
    let state = v1::UploadState {
        upload_id: begun.upload_id.clone(),
        size: data.len() as u64,
        chunk_size: begun.chunk_size,
        received: Vec::new(),
        expires_at_ms: begun.expires_at_ms,
        purpose: sp.purpose as i32,
        mime_type: sp.mime_type.clone(),
    };
    let mut progress = moved.upload_progress();
    c.upload_missing(&state, &mut Cursor::new(data.clone()), &mut progress).await.context("uploading")?;
    let finishing = Instant::now();
    let m = c.finish_upload(&begun.upload_id).await.context("FinishUpload")?;
    let (seconds, finish_seconds) = (started.elapsed().as_secs_f64(), finishing.elapsed().as_secs_f64());
    ensure!(m.size == data.len() as u64 && m.sha256.as_ref() == sha, "the server stored something else: {m:?}");
    Ok(Timed { media: m, seconds, finish_seconds })
}

/// Copies `data` over a loopback TCP connection to a listener task in this process that reads
/// and discards it, then answers one byte; the seconds from the first write to that byte.
async fn tcp_copy(data: &Bytes) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        s.write_all(&[1]).await?;
        Ok::<_, std::io::Error>(total)
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    let started = Instant::now();
    c.write_all(data).await?;
    c.shutdown().await?;
    let mut done = [0u8; 1];
    c.read_exact(&mut done).await?;
    let secs = started.elapsed().as_secs_f64();
    let read = sink.await??;
    ensure!(read == data.len() as u64, "the TCP sink read {read} of {} bytes", data.len());
    Ok(secs)
}

/// A fresh account on its own connection (events discarded), and its AuthResult.
pub async fn account(url: &str, opts: &ConnectOptions, tag: &str) -> anyhow::Result<(Client, v1::AuthResult)> {
    let (c, _events) = Client::connect(url, opts.clone()).await?;
    let auth = register(&c, &random_name(tag)).await?;
    Ok((c, auth))
}

/// Another connection of the account `auth` signed in (its token in Hello; events discarded).
pub async fn connection(url: &str, opts: &ConnectOptions, auth: &v1::AuthResult) -> anyhow::Result<Client> {
    let mut o = opts.clone();
    o.access_token = Some(auth.access_token.clone());
    Ok(Client::connect(url, o).await?.0)
}

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB / secs.max(1e-9)
}

/// Runs the media scenario against `url`.
pub async fn run(url: &str, opts: &ConnectOptions, plan: &Plan) -> anyhow::Result<Value> {
    let largest = *plan.sizes.iter().max().context("no sizes")?;
    let transport = if url.starts_with("quic") { "quic" } else { "websocket" };
    eprintln!("media: {} random bytes in memory; sizes {:?} over {transport}", largest, plan.sizes);
    let base = confab_conformance::media::random_bytes(usize::try_from(largest)?);
    let mut next_variant = 0u64;
    let mut variant_of = |size: u64| {
        next_variant += 1;
        variant(&base, size, next_variant)
    };
    // The client's own SHA-256, which Client::upload computes before BeginUpload.
    let probe = variant_of(largest);
    let t = Instant::now();
    let _ = Sha256::digest(&probe);
    let client_sha256_mib_per_s = mib_per_s(largest, t.elapsed().as_secs_f64());
    drop(probe);

    let moved = Moved::default();
    let stop = Arc::new(AtomicBool::new(false));
    let report = moved.report("media moved", stop.clone());
    let (c, auth) = account(url, opts, "media").await?;
    let mut rows = Vec::new();
    for &size in &plan.sizes {
        let data = variant_of(size);
        let sha: [u8; 32] = Sha256::digest(&data).into();
        // The ceiling: the best of three plain copies of the same bytes.
        let mut tcp = f64::MAX;
        for _ in 0..3 {
            tcp = tcp.min(tcp_copy(&data).await?);
        }
        let watch = plan.server_pid.map(RssWatch::start).transpose()?;
        let Timed { media: m, seconds: up, finish_seconds } = timed_upload(&c, &data, sha, &moved).await?;
        let upload_peak = match watch {
            Some(w) => Some(w.finish().await),
            None => None,
        };
        let mut sink = Vec::with_capacity(data.len());
        let mut progress = moved.download_progress();
        let watch = plan.server_pid.map(RssWatch::start).transpose()?;
        let t = Instant::now();
        let n = c.download(&m.media_id, "", 0, &mut sink, &mut progress).await.context("download")?;
        let down = t.elapsed().as_secs_f64();
        let download_peak = match watch {
            Some(w) => Some(w.finish().await),
            None => None,
        };
        ensure!(n == size && <[u8; 32]>::from(Sha256::digest(&sink)) == sha, "the download differs from the upload");
        drop(sink);
        let (tcp_rate, up_rate, down_rate) = (mib_per_s(size, tcp), mib_per_s(size, up), mib_per_s(size, down));
        eprintln!(
            "media: {size} bytes: upload {up_rate:.1} MiB/s, download {down_rate:.1} MiB/s, TCP copy {tcp_rate:.1} MiB/s"
        );
        rows.push(json!({
            "bytes": size,
            "mib": size as f64 / MIB,
            "tcp_copy_seconds": tcp,
            "tcp_copy_mib_per_s": tcp_rate,
            "upload_seconds": up,
            "upload_mib_per_s": up_rate,
            "upload_ratio_to_tcp": up_rate / tcp_rate,
            "upload_finish_seconds": finish_seconds,
            "upload_transfer_mib_per_s": mib_per_s(size, up - finish_seconds),
            "download_seconds": down,
            "download_mib_per_s": down_rate,
            "download_ratio_to_tcp": down_rate / tcp_rate,
            "sha256_verified": true,
            "server_rss_peak_during_upload_kib": upload_peak,
            "server_rss_peak_during_download_kib": download_peak,
        }));
    }
    let concurrent = if plan.concurrent > 0 {
        concurrent_uploads(url, opts, &auth, plan, largest, &mut variant_of, &moved).await?
    } else {
        Value::Null
    };
    let latency = if plan.rate > 0 {
        let data = variant_of(largest);
        media_latency::run(url, opts, &auth, &data, plan.rate, plan.latency_for, &moved).await?
    } else {
        Value::Null
    };
    stop.store(true, Ordering::Relaxed);
    report.abort();
    Ok(json!({
        "scenario": "media",
        "url": url,
        "transport": transport,
        "client_sha256_mib_per_s": client_sha256_mib_per_s,
        "sizes": rows,
        "concurrent": concurrent,
        "latency": latency,
    }))
}

/// `plan.concurrent` connections of the account `auth` upload a file of `size` bytes each at once
/// while the server's RSS is sampled: before (after sign-in), the peak, and 1 s after the last.
async fn concurrent_uploads(
    url: &str,
    opts: &ConnectOptions,
    auth: &v1::AuthResult,
    plan: &Plan,
    size: u64,
    variant_of: &mut impl FnMut(u64) -> Bytes,
    moved: &Moved,
) -> anyhow::Result<Value> {
    let n = plan.concurrent;
    eprintln!("media: {n} concurrent uploads of {size} bytes");
    let mut files = Vec::with_capacity(n);
    for _ in 0..n {
        let c = connection(url, opts, auth).await?;
        let data = variant_of(size);
        let sha: [u8; 32] = Sha256::digest(&data).into();
        files.push((c, data, sha));
    }
    let before = plan.server_pid.map(rss_kib).transpose()?;
    let watch = plan.server_pid.map(RssWatch::start).transpose()?;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (c, data, sha) in files {
        let moved = moved.clone();
        set.spawn(async move { timed_upload(&c, &data, sha, &moved).await.map(|t| t.seconds) });
    }
    let mut each = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        each.push(r??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = match watch {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let after = match plan.server_pid {
        Some(pid) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some(rss_kib(pid)?)
        }
        None => None,
    };
    each.sort_by(f64::total_cmp);
    Ok(json!({
        "uploads": n,
        "bytes_each": size,
        "seconds": seconds,
        "aggregate_mib_per_s": mib_per_s(size * n as u64, seconds),
        "upload_seconds_each": each,
        "server_rss_before_kib": before,
        "server_rss_peak_kib": peak.map(|p| p.max(after.unwrap_or(0))),
        "server_rss_after_kib": after,
        "settle_ms": 1000,
    }))
}

/// The media tables: one row per size, then the concurrency and latency phases.
pub fn print_tables(result: &Value) {
    println!();
    println!(
        "{:>9} {:>10} {:>13} {:>7} {:>9} {:>15} {:>7} {:>7}",
        "size MiB", "TCP MiB/s", "upload MiB/s", "ratio", "finish s", "download MiB/s", "ratio", "sha256"
    );
    for r in result["sizes"].as_array().into_iter().flatten() {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "{:>9.1} {:>10.1} {:>13.1} {:>7.3} {:>9.3} {:>15.1} {:>7.3} {:>7}",
            f("mib"),
            f("tcp_copy_mib_per_s"),
            f("upload_mib_per_s"),
            f("upload_ratio_to_tcp"),
            f("upload_finish_seconds"),
            f("download_mib_per_s"),
            f("download_ratio_to_tcp"),
            if r["sha256_verified"] == true { "equal" } else { "-" },
        );
    }
    let c = &result["concurrent"];
    if c.is_object() {
        let mib = |k: &str| c[k].as_f64().map_or("-".to_owned(), |v| format!("{:.1}", v / 1024.0));
        println!(
            "{} concurrent uploads of {:.1} MiB: {:.1} s, {:.1} MiB/s in all; server RSS before {} MiB, peak {} MiB, after {} MiB",
            c["uploads"],
            c["bytes_each"].as_f64().unwrap_or(0.0) / MIB,
            c["seconds"].as_f64().unwrap_or(0.0),
            c["aggregate_mib_per_s"].as_f64().unwrap_or(0.0),
            mib("server_rss_before_kib"),
            mib("server_rss_peak_kib"),
            mib("server_rss_after_kib"),
        );
    }
    media_latency::print_table(&result["latency"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(size("10MiB"), Ok(10 << 20));
        assert_eq!(size("512kib"), Ok(512 << 10));
        assert_eq!(size("1000"), Ok(1000));
        assert_eq!(size(" 2 GiB"), Ok(2 << 30));
        assert!(size("0").is_err() && size("10MB").is_err() && size("MiB").is_err());
        assert_eq!(sizes("2MiB,8MiB").map(|s| s.0), Ok(vec![2 << 20, 8 << 20]));
    }

    #[test]
    fn variants_differ_and_keep_their_size() {
        let base = vec![7u8; 64];
        let (a, b) = (variant(&base, 32, 1), variant(&base, 32, 2));
        assert_eq!((a.len(), b.len()), (32, 32));
        assert_ne!(a, b);
        assert_eq!(a[8..], base[8..32]);
    }
}
