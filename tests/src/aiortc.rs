//! `AiortcPeer`: the independent group-call peer of tests/peers/aiortc_peer.py (aiortc, written
//! from docs/protocol.md alone) in a process of its own, on a [`TestServer`]'s WebSocket. The
//! test sends it one JSON command per line and reads one JSON reply per line; the peer generates
//! its protobuf classes from protocol/proto when it starts. Killed on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::{TestServer, Transport};

/// The variable naming the Python that has the peer's packages (scripts/lib/aiortc.sh sets it).
pub const ENV: &str = "CONFAB_TEST_AIORTC_PYTHON";

/// How long a peer may take to start (Python, aiortc and PyAV imports, protoc) and to answer.
const START_WITHIN: Duration = Duration::from_secs(60);
const REPLY_WITHIN: Duration = Duration::from_secs(30);
/// stderr lines kept for error messages.
const LOG_LINES: usize = 30;

/// The Python to run the peer with: [`ENV`], else the virtualenv scripts/lib/aiortc.sh installs
/// into (~/.cache/confab/aiortc-venv). Errors name the fix.
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{ENV}={} is not a file: run `. scripts/lib/aiortc.sh && aiortc_ensure`", p.display());
    }
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/confab/aiortc-venv/bin/python"));
    venv.filter(|p| p.is_file()).with_context(|| {
        format!(
            "no Python with aiortc for the aiortc peer tests: run ./scripts/test (it provides one), or \
             `. scripts/lib/aiortc.sh && aiortc_ensure` (installs tests/peers/requirements.txt and exports {ENV})"
        )
    })
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".."))
}

/// A running aiortc peer.
#[derive(Debug)]
pub struct AiortcPeer {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<VecDeque<String>>>,
    next: u64,
}

impl AiortcPeer {
    /// Starts a peer connected (Hello/Welcome done) to `server` over WebSocket.
    pub async fn start(server: &TestServer, name: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(python()?)
            .arg(repo().join("tests/peers/aiortc_peer.py"))
            .arg("--url")
            .arg(server.url(Transport::WebSocket))
            .arg("--proto")
            .arg(repo().join("protocol/proto"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the aiortc peer")?;
        let stdin = child.stdin.take().context("stdin")?;
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().context("stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (stderr, tail, who) = (child.stderr.take().context("stderr")?, log.clone(), name.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tracing::debug!(peer = %who, "{line}");
                let mut t = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if t.len() == LOG_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let mut peer = Self { name: name.into(), child, stdin, lines, log, next: 1 };
        let ready = peer.line(START_WITHIN).await?;
        if ready.get("ready") != Some(&Value::Bool(true)) {
            bail!("{name}: unexpected first line {ready}");
        }
        Ok(peer)
    }

    async fn line(&mut self, wait: Duration) -> anyhow::Result<Value> {
        match tokio::time::timeout(wait, self.lines.recv()).await {
            Ok(Some(l)) => serde_json::from_str(&l).with_context(|| format!("{}: not JSON: {l}", self.name)),
            Ok(None) => bail!("{}: the peer exited; its last log lines:\n{}", self.name, self.log_tail()),
            Err(_) => bail!("{}: no answer within {wait:?}; its last log lines:\n{}", self.name, self.log_tail()),
        }
    }

    /// The peer's last stderr lines.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `op` with `args` (a JSON object): Ok(reply) or Err(the error object) when the server
    /// (or the peer) refused; the outer error is a broken peer.
    pub async fn try_cmd(&mut self, op: &str, args: Value) -> anyhow::Result<Result<Value, Value>> {
        let id = self.next;
        self.next += 1;
        let mut cmd = args;
        cmd["id"] = json!(id);
        cmd["op"] = json!(op);
        writeln!(self.stdin, "{cmd}").with_context(|| format!("{}: writing {op}", self.name))?;
        self.stdin.flush()?;
        let reply = self.line(REPLY_WITHIN).await?;
        if reply["reply"] != json!(id) {
            bail!("{}: reply {reply} to command {id}", self.name);
        }
        Ok(if reply["ok"] == json!(true) { Ok(reply) } else { Err(reply["error"].clone()) })
    }

    /// Runs `op`, failing on a refusal.
    pub async fn cmd(&mut self, op: &str, args: Value) -> anyhow::Result<Value> {
        match self.try_cmd(op, args).await? {
            Ok(v) => Ok(v),
            Err(e) => bail!("{}: {op} refused: {e}", self.name),
        }
    }

    /// Registers an account (§11.2); returns its user id.
    pub async fn register(&mut self, username: &str) -> anyhow::Result<u64> {
        let r = self.cmd("register", json!({"username": username, "password": crate::util::PASSWORD})).await?;
        r["user_id"].as_u64().context("user_id")
    }

    /// Creates a group with `members` (§12.2); returns its id.
    pub async fn create_group(&mut self, title: &str, members: &[u64]) -> anyhow::Result<u64> {
        let r = self.cmd("create_group", json!({"title": title, "member_ids": members})).await?;
        r["conversation_id"].as_u64().context("conversation_id")
    }

    /// JoinCall (§20.3.2); with `drop_every` N > 0 the peer drops every Nth video RTP packet it
    /// receives before aiortc sees it. Returns the JoinCallResult as JSON.
    pub async fn join(&mut self, conv: u64, drop_every: u32) -> anyhow::Result<Value> {
        self.cmd("join", json!({"conversation_id": conv, "drop_every": drop_every})).await
    }

    /// Publish (§20.3.3) a tone and a moving picture (320×240, 20 fps), with `extra` options
    /// (see the peer's doc) merged in.
    pub async fn publish(&mut self, extra: Value) -> anyhow::Result<Result<Value, Value>> {
        self.try_cmd("publish", extra).await
    }

    /// LeaveCall (§20.3.7), both connections closed.
    pub async fn leave(&mut self) -> anyhow::Result<()> {
        self.cmd("leave", json!({})).await.map(drop)
    }

    /// Everything measured so far (the peer's `stats`).
    pub async fn stats(&mut self) -> anyhow::Result<Value> {
        self.cmd("stats", json!({})).await
    }

    /// Polls [`AiortcPeer::stats`] until `cond` holds, within `wait`; returns the stats that did.
    pub async fn wait_stats(
        &mut self,
        wait: Duration,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let s = self.stats().await?;
            if cond(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("{}: {what}: not within {wait:?}; stats: {s}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for AiortcPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decoded frames of `kind` ("audio"/"video") on the received tracks whose stream is
/// `participant` (the publisher's participant id, §20.3.3).
pub fn frames(stats: &Value, participant: &str, kind: &str) -> u64 {
    tracks(stats)
        .filter(|t| t["stream_id"] == json!(participant) && t["kind"] == json!(kind))
        .map(|t| t["frames"].as_u64().unwrap_or(0))
        .sum()
}

/// Decoded frames of the received track `track_id`.
pub fn track_frames(stats: &Value, track_id: &str) -> u64 {
    tracks(stats).filter(|t| t["track_id"] == json!(track_id)).map(|t| t["frames"].as_u64().unwrap_or(0)).sum()
}

fn tracks(stats: &Value) -> impl Iterator<Item = &Value> {
    stats["tracks"].as_array().into_iter().flatten()
}

/// The sum of a counter over the video receivers of the subscriber connection.
pub fn video_receivers(stats: &Value, counter: &str) -> u64 {
    stats["receivers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == json!("video"))
        .map(|r| r[counter].as_u64().unwrap_or(0))
        .sum()
}
