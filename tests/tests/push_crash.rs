//! Push notifications across SIGKILL (docs/protocol.md §24.5): the server process is killed
//! between committing a message and planning its push (push was off on that run), restarted with
//! push on: the push is planned from the log and sent. Its provider then holds that request
//! without answering and the server is killed again, between sending and recording: restarted,
//! the server sends it once more when the lease runs out, records it once, and nothing else is
//! sent — the documented repeat, with the same collapse key.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_conformance::call;
use confab_conformance::harness::init_logging;
use confab_conformance::util::{msg_key, register, unique};
use confab_protocol::client::{Client, ConnectOptions, Trust};
use confab_protocol::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

struct Proc {
    child: Child,
    ws: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, db: Option<&str>, push: bool) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab-test-server"));
    if let Some(url) = db {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd
        .args(["--ws-listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--log-filter", "error"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("confab.toml"))
        .args(["--push-enabled", if push { "true" } else { "false" }])
        .args(["--rate-register-per-ip", "1000/1ms", "--rate-login-per-ip", "1000/1ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning confab-test-server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let ws = line.split_whitespace().find_map(|w| w.strip_prefix("ws=")).with_context(|| format!("{line:?}"))?;
    Ok(Proc { ws: format!("ws://{ws}/v1/ws"), child })
}

fn opts() -> ConnectOptions {
    let mut o = ConnectOptions { client_name: "push-crash-test".into(), ..Default::default() };
    o.transport.trust = Trust::Insecure;
    o.request_timeout = Duration::from_secs(5);
    o
}

/// A WebPush endpoint that can hold a request without answering: what a provider looks like
/// to a server killed mid-send.
#[derive(Default)]
struct Endpoint {
    /// The body of every request, in arrival order.
    bodies: Mutex<Vec<String>>,
    /// While set, requests are read and never answered.
    hold: Mutex<bool>,
    arrived: Notify,
    held: Mutex<Vec<TcpStream>>,
}

impl Endpoint {
    async fn start() -> anyhow::Result<(Arc<Self>, String)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/bob", listener.local_addr()?);
        let me = Arc::new(Self::default());
        let serving = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        Ok((me, url))
    }

    /// Reads requests off one connection (keep-alive) and answers 201, or holds them.
    async fn serve(self: Arc<Self>, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let Ok(n) = stream.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                continue;
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            buf.drain(..end + 4 + len);
            self.bodies.lock().unwrap().push(body);
            self.arrived.notify_waiters();
            if *self.hold.lock().unwrap() {
                self.held.lock().unwrap().push(stream);
                return;
            }
            if stream.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n").await.is_err() {
                return;
            }
        }
    }

    async fn wait_for(&self, n: usize, within: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let now = self.bodies.lock().unwrap().clone();
            if now.len() >= n {
                return Ok(now);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                bail!("{} requests within {within:?}, expected {n}", now.len());
            }
        }
    }
}

fn seq_of(body: &str) -> String {
    let j: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    j["data"]["seq"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_planning_and_while_sending_loses_no_push_sqlite() -> anyhow::Result<()> {
    crash_twice(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_planning_and_while_sending_loses_no_push_postgres() -> anyhow::Result<()> {
    let db = confab_conformance::pg::TestDatabase::create().await?;
    crash_twice(Some(&db.url)).await
}

async fn crash_twice(db: Option<&str>) -> anyhow::Result<()> {
    init_logging();
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("confab.toml"),
        "[push]\nack_wait = \"100ms\"\nlease = \"4s\"\nrequest_timeout = \"3s\"\nsweep_interval = \"1s\"\n\
         initial_backoff = \"100ms\"\n\n[push.webpush]\nallow_http = true\nallow_private_addresses = true\n",
    )?;
    let (endpoint, url) = Endpoint::start().await?;
    // Run 1, push off: bob's phone registers, goes away; alice writes to him.
    let mut server = start(dir.path(), db, false)?;
    let (phone, _e) = Client::connect(&server.ws, opts()).await?;
    let bob_name = unique("kbob");
    let bob_auth = phone.register(register(&bob_name)).await?;
    let bob = bob_auth.me.as_ref().context("me")?.user_id;
    let t = v1::RegisterPushTarget { provider: v1::PushProvider::Webpush as i32, token: url, ..Default::default() };
    phone.register_push_target(t).await?;
    drop(phone);
    let (alice, _ea) = Client::connect(&server.ws, opts()).await?;
    alice.register(register(&unique("kalice"))).await?;
    let conv = call!(
        alice,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Direct as i32,
            member_ids: vec![bob],
            ..Default::default()
        }
    )?
    .conversation_id;
    let r = v1::SendMessage {
        conversation_id: conv,
        client_msg_id: msg_key("k1"),
        text: "while off".into(),
        ..Default::default()
    };
    let seq = call!(alice, SendMessage, r)?.seq;
    drop(alice);
    server.child.kill()?;
    server.child.wait()?;
    // Run 2, push on, the provider holds what it gets: planned from the log, sent, killed mid-send.
    *endpoint.hold.lock().unwrap() = true;
    let mut server = start(dir.path(), db, true)?;
    let first = endpoint.wait_for(1, Duration::from_secs(20)).await?;
    ensure!(seq_of(&first[0]) == seq.to_string(), "pushed {:?}", first[0]);
    server.child.kill()?;
    server.child.wait()?;
    // Run 3: the lease runs out, the push goes again, is answered and recorded once.
    *endpoint.hold.lock().unwrap() = false;
    let server = start(dir.path(), db, true)?;
    let bodies = endpoint.wait_for(2, Duration::from_secs(30)).await?;
    ensure!(bodies.iter().all(|b| seq_of(b) == seq.to_string()), "other pushes: {bodies:?}");
    let (laptop, _el) = Client::connect(&server.ws, opts()).await?;
    laptop.login(&bob_name, confab_conformance::util::PASSWORD, "laptop").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let row = loop {
        let rows = laptop.list_push_deliveries(0, 10).await?.deliveries;
        ensure!(rows.len() == 1, "{rows:#?}");
        if rows[0].state == v1::PushDeliveryState::Sent as i32 {
            break rows[0].clone();
        }
        ensure!(tokio::time::Instant::now() < deadline, "never recorded as sent: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(row.attempts == 2 && row.seq == seq, "{row:?}");
    ensure!(endpoint.bodies.lock().unwrap().len() == 2, "sent more than once again");
    Ok(())
}
