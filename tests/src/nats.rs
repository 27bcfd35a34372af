//! `NatsServer`: a real `nats-server` process on 127.0.0.1 for the multi-node tests. It picks a
//! free port itself (`-p -1`) and reports it in its log, so there is no race for the port; it is
//! ready when it logs "Server is ready" (read from its stderr, never slept for). Tests stop it and
//! start it again on the same port, so the nodes' clients reconnect to the same URL.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};

/// The variable naming the `nats-server` binary (scripts/lib/nats.sh sets it).
pub const ENV: &str = "CONFAB_TEST_NATS_SERVER";

/// How long a starting nats-server may take to log that it is ready (it takes milliseconds).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Log lines kept for error messages.
const LOG_LINES: usize = 40;

/// The `nats-server` binary: [`ENV`], else `nats-server` on PATH, else the virtualenv
/// scripts/lib/nats.sh installs into (~/.cache/confab/nats-venv). Errors name the fix.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        bail!("{ENV}={} is not an executable file: run `. scripts/lib/nats.sh && nats_ensure`", p.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("nats-server")).collect::<Vec<_>>())
        .unwrap_or_default();
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/confab/nats-venv/bin/nats-server"));
    on_path.into_iter().chain(venv).find(|p| is_executable(p)).with_context(|| {
        format!(
            "no nats-server binary for the multi-node tests: run ./scripts/test (it provides one), or \
             `. scripts/lib/nats.sh && nats_ensure` (installs it and exports {ENV}), or set {ENV}=/path/to/nats-server"
        )
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running (or stopped) nats-server; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    /// The last lines of its log, for error messages.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// What the log reader saw while the server started.
enum Startup {
    Listening(u16),
    Ready,
    /// The log ended: the process exited.
    Ended,
}

impl NatsServer {
    /// Starts a nats-server on 127.0.0.1 on a port of its choosing and waits until it is ready.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = binary()?;
        let mut s = Self { bin, port: 0, child: None, log: Arc::default() };
        s.spawn(None).await?;
        Ok(s)
    }

    /// `nats://127.0.0.1:PORT`, the same across [`NatsServer::stop`] and
    /// [`NatsServer::start_again`].
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the process is running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (SIGKILL: the way a NATS server dies, not a drain) and waits for it to
    /// be gone, so its port refuses connections when this returns. Stopping a stopped server
    /// does nothing.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().context("waiting for nats-server to exit")?;
        }
        Ok(())
    }

    /// Starts the server again on the same port, after [`NatsServer::stop`], and waits until it is
    /// ready. Errors if it is running, or if the port was taken meanwhile (named in the error).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("nats-server on port {} is still running", self.port);
        }
        self.spawn(Some(self.port)).await
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.log.lock().map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    async fn spawn(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let stderr = child.stderr.take().context("nats-server stderr")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        // Reads the log for the whole life of the process: the pipe must be drained or the
        // server would block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("Listening for client connections on ").nth(1)
                    && let Some(p) = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok())
                {
                    let _ = tx.send(Startup::Listening(p));
                }
                if line.contains("Server is ready") {
                    let _ = tx.send(Startup::Ready);
                }
                if let Ok(mut l) = log.lock() {
                    if l.len() == LOG_LINES {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            }
            let _ = tx.send(Startup::Ended);
        });
        let outcome = tokio::task::spawn_blocking(move || {
            let mut listening = None;
            loop {
                match rx.recv_timeout(READY_WITHIN) {
                    Ok(Startup::Listening(p)) => listening = Some(p),
                    Ok(Startup::Ready) => return Ok(listening),
                    Ok(Startup::Ended) | Err(mpsc::RecvTimeoutError::Disconnected) => return Err("exited"),
                    Err(mpsc::RecvTimeoutError::Timeout) => return Err("did not log \"Server is ready\" in time"),
                }
            }
        })
        .await?;
        match outcome {
            Ok(Some(p)) if port.is_none_or(|want| want == p) => {
                self.port = p;
                Ok(())
            }
            Ok(Some(p)) => Err(self.failed(port, &format!("listens on {p} instead"))),
            Ok(None) => Err(self.failed(port, "did not log its client port")),
            Err(why) => Err(self.failed(port, why)),
        }
    }

    /// Stops a server that did not start as wanted; the error names the port and quotes its log.
    fn failed(&mut self, port: Option<u16>, why: &str) -> anyhow::Error {
        let _ = self.stop();
        let wanted = port.map_or_else(|| "a free port".to_string(), |p| format!("port {p}"));
        anyhow::anyhow!("nats-server ({}) on {wanted} {why}; its log:\n{}", self.bin.display(), self.log_tail())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
