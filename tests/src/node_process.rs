//! `NodeProcess`: one Confab node in its own process (`confab-test-server`), for tests that kill
//! a node with SIGKILL and start it again. It reads the server's `READY ws=… quic=…` line instead
//! of sleeping, and restarts on the same addresses so clients reconnect to the same URLs.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::harness::Transport;

/// How long a starting node may take to print READY (it migrates the database first).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A `confab-test-server` process; killed on drop.
#[derive(Debug)]
pub struct NodeProcess {
    bin: PathBuf,
    /// Every flag but the listen addresses and the data dir.
    args: Vec<OsString>,
    node_id: String,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    ws: SocketAddr,
    quic: SocketAddr,
}

impl NodeProcess {
    /// Starts `bin` (the `confab-test-server` binary: `env!("CARGO_BIN_EXE_confab-test-server")`
    /// in an integration test) with `args` (its flags, e.g. from
    /// [`crate::cluster::TestCluster::process_args`]), on ports 0 and a data dir of its own, and
    /// waits for its READY line. `node_id` only names it in errors.
    pub async fn spawn(bin: impl Into<PathBuf>, node_id: &str, args: Vec<OsString>) -> anyhow::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut node = Self {
            bin: bin.into(),
            args,
            node_id: node_id.to_string(),
            data_dir: tempfile::tempdir()?,
            child: None,
            ws: any,
            quic: any,
        };
        node.run().await?;
        Ok(node)
    }

    /// The node's name (as given to [`NodeProcess::spawn`]).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The WebSocket (and HTTP) address, the same across restarts.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws
    }

    /// The QUIC address, the same across restarts.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic
    }

    /// The node's URL for a transport: `ws://ADDR/v1/ws` or `quic://ADDR`.
    pub fn url(&self, t: Transport) -> String {
        match t {
            Transport::WebSocket => format!("ws://{}/v1/ws", self.ws),
            Transport::Quic => format!("quic://{}", self.quic),
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the node with SIGKILL (no drain, no goodbye to the cluster) and waits until the
    /// process is gone. Killing a killed node does nothing.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().with_context(|| format!("waiting for {} to exit", self.node_id))?;
        }
        Ok(())
    }

    /// Starts the node again with the same flags and data dir, on the same addresses, and waits
    /// for READY. Errors if it is running, or if an address was taken meanwhile.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is still running", self.node_id);
        }
        self.run().await
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--ws-listen")
            .arg(self.ws.to_string())
            .arg("--quic-listen")
            .arg(self.quic.to_string())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("spawning {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        // Reads stdout for the life of the process, so the server never writes to a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY ") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(READY_WITHIN)).await?;
        let ready = match line {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout closed: the process is exiting; its status says how.
                let status = self.child.take().map(|mut c| c.wait());
                bail!("{} exited before READY ({status:?}); its log is above", self.node_id)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.kill9();
                bail!("{} printed no READY line within {READY_WITHIN:?}", self.node_id)
            }
        };
        let field = |name: &str| -> anyhow::Result<SocketAddr> {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .with_context(|| format!("no {name} in {ready:?}"))?
                .parse()
                .with_context(|| format!("{name} in {ready:?}"))
        };
        self.ws = field("ws=")?;
        self.quic = field("quic=")?;
        Ok(())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
