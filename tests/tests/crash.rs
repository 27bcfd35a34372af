//! Crash test (docs/protocol.md §13.2, §14.6): the server is killed with SIGKILL while many
//! clients send, then restarted on the same data. Every acknowledged message is there and is
//! delivered by sync; retries of unacknowledged sends never create a second copy.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::init_logging;
use confab_conformance::pg::TestDatabase;
use confab_conformance::syncer::Device;
use confab_conformance::util::{msg_key, register, unique};
use confab_protocol::client::{Client, ConnectOptions, Trust};
use confab_protocol::v1;

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

fn start(data_dir: &std::path::Path, db: Option<&str>) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confab-test-server"));
    cmd.args(["--ws-listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--log-filter", "error"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--rate-register-per-ip", "1000/1ms", "--rate-login-per-ip", "1000/1ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = db {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd.spawn().context("spawning confab-test-server")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ws = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ws="))
        .with_context(|| format!("no READY line: {line:?}"))?
        .to_string();
    Ok(Proc { child, ws: format!("ws://{ws}/v1/ws") })
}

fn opts() -> ConnectOptions {
    let mut o = ConnectOptions { client_name: "crash-test".into(), ..Default::default() };
    o.transport.trust = Trust::Insecure;
    o.request_timeout = Duration::from_secs(5);
    o
}

async fn crash_and_recover(db: Option<&str>) -> anyhow::Result<()> {
    init_logging();
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), db)?;
    let (a, _ea) = Client::connect(&server.ws, opts()).await?;
    let a_auth = a.register(register(&unique("crashA"))).await?;
    let (b, _eb) = Client::connect(&server.ws, opts()).await?;
    let b_auth = b.register(register(&unique("crashB"))).await?;
    let b_id = b_auth.me.as_ref().context("me")?.user_id;
    let conv = call!(
        a,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Group as i32,
            title: "crash".into(),
            member_ids: vec![b_id],
            ..Default::default()
        }
    )?
    .conversation_id;

    // Eight concurrent senders on A's session, each on its own connection.
    let acked: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::default();
    let attempted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let mut o = opts();
        o.access_token = Some(a_auth.access_token.clone());
        let (c, _e) = Client::connect(&server.ws, o).await?;
        let (acked, attempted) = (acked.clone(), attempted.clone());
        tasks.push(tokio::spawn(async move {
            let _events = _e;
            for n in 0.. {
                let id = format!("t{task}-{n}");
                attempted.lock().expect("lock").insert(id.clone());
                let req = v1::SendMessage {
                    conversation_id: conv,
                    client_msg_id: msg_key(&id),
                    text: format!("crash {id}"),
                    ..Default::default()
                };
                match call!(c, SendMessage, req) {
                    Ok(r) => {
                        acked.lock().expect("lock").insert(id, (r.message_id, r.seq));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut server = server;
    server.child.kill()?; // SIGKILL
    server.child.wait()?;
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    let attempted = attempted.lock().expect("lock").clone();
    ensure!(acked.len() >= 20, "only {} sends acknowledged before the kill", acked.len());

    let server = start(dir.path(), db)?;
    // A fresh device of A (same session, via its access token) syncs from zero.
    let mut fresh = Device::new("fresh", &server.ws, opts(), &a_auth.access_token);
    fresh.connect().await?;
    let state = fresh.convs.get(&conv).context("conversation missing after restart")?;
    for (id, (message_id, _)) in &acked {
        ensure!(state.messages.contains_key(message_id), "acknowledged {id} (message {message_id}) lost");
    }
    // Retry every send that may not have been acknowledged, with the same client_msg_id.
    let mut o = opts();
    o.access_token = Some(a_auth.access_token.clone());
    let (retry, _re) = Client::connect(&server.ws, o).await?;
    let mut duplicates = 0;
    for id in attempted.iter().filter(|id| !acked.contains_key(*id)) {
        let r = call!(
            retry,
            SendMessage,
            v1::SendMessage {
                conversation_id: conv,
                client_msg_id: msg_key(id),
                text: format!("crash {id}"),
                ..Default::default()
            }
        )?;
        duplicates += usize::from(r.duplicate);
    }
    for (id, (message_id, seq)) in &acked {
        let r = call!(
            retry,
            SendMessage,
            v1::SendMessage {
                conversation_id: conv,
                client_msg_id: msg_key(id),
                text: "again".into(),
                ..Default::default()
            }
        )?;
        ensure!(
            r.duplicate && r.message_id == *message_id && r.seq == *seq,
            "retry of acknowledged {id} was not recognised"
        );
    }
    // Every attempted id is stored exactly once; the log is gapless; B sees the same.
    let mut ids = BTreeMap::new();
    let mut before = 0;
    loop {
        let page = call!(
            retry,
            GetHistory,
            v1::GetHistory { conversation_id: conv, before_seq: before, limit: 200, ..Default::default() }
        )?;
        for m in &page.messages {
            *ids.entry(m.client_msg_id.clone()).or_insert(0) += 1;
        }
        match (page.has_more, page.messages.first()) {
            (true, Some(m)) => before = m.seq,
            _ => break,
        }
    }
    ensure!(ids.values().all(|n| *n == 1), "a client_msg_id stored twice");
    let stored: BTreeSet<String> = ids.keys().cloned().collect();
    let attempted: BTreeSet<String> = attempted.iter().map(|label| msg_key(label)).collect();
    ensure!(stored == attempted, "stored {} ids, attempted {}", stored.len(), attempted.len());
    let mut bdev = Device::new("B", &server.ws, opts(), &b_auth.access_token);
    bdev.connect().await?;
    ensure!(
        bdev.convs[&conv].messages.len() == attempted.len(),
        "B sees {} messages",
        bdev.convs[&conv].messages.len()
    );
    fresh.sync().await?;
    ensure!(fresh.convs[&conv] == bdev.convs[&conv], "A's and B's copies differ");
    eprintln!(
        "crash test: {} acknowledged before SIGKILL, {} in flight ({} of them had committed), all recovered once",
        acked.len(),
        attempted.len() - acked.len(),
        duplicates
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_on_sqlite() {
    crash_and_recover(None).await.expect("sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_on_postgres() {
    let db = TestDatabase::create().await.expect("test database");
    crash_and_recover(Some(&db.url)).await.expect("postgres");
    db.drop_db().await.expect("drop");
}
