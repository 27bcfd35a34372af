//! The `confab-conformance` binary against a running server: passes against Confab on both
//! transports, reports JSON and JUnit, runs the cases needing one-time codes with --code-sink
//! (and skips them without), and fails (non-zero, failing cases named) against a peer that
//! breaks the protocol and against a real server made to break one behaviour; with --url
//! repeated, spreads each case's connections over the nodes of a cluster.

use std::process::Command;
use std::sync::Arc;

use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::{StoreKind, TestServer, Transport, conformance_config};
use confab_conformance::proxy::CutProxy;
use confab_protocol::v1::{self, event, server_frame};

fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confab-conformance"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_against_confab_on_both_transports() {
    let s = TestServer::start_with(StoreKind::Sqlite, conformance_config).await.expect("start");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("server.der");
    std::fs::write(&cert, s.cert.as_ref()).expect("cert");
    let junit = dir.path().join("junit.xml");
    let (ws, quic) = (s.url(Transport::WebSocket), s.url(Transport::Quic));
    let out = tokio::task::spawn_blocking(move || {
        let text = runner().args(["--url", &ws, "--junit"]).arg(&junit).output().expect("run");
        let json = runner().args(["--url", &quic, "--insecure", "--json"]).output().expect("run");
        let pinned = runner().args(["--url", &quic, "--filter", "§4"]).arg("--cert").arg(&cert).output().expect("run");
        (text, json, pinned, std::fs::read_to_string(&junit).expect("junit"))
    })
    .await
    .expect("join");
    let (text, json, pinned, junit) = out;
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&text.stderr));
    let last = stdout.lines().last().expect("summary");
    assert!(last.ends_with("passed, 0 failed"), "{stdout}");
    assert!(stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 15, "{stdout}");
    assert!(stdout.contains("§4.2"), "cases name their section: {stdout}");
    assert!(junit.contains("<testsuite name=\"confab-conformance\"") && junit.contains("failures=\"0\""), "{junit}");
    assert!(json.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    let summary = lines.last().expect("summary");
    assert_eq!(summary["failed"], 0, "{lines:?}");
    assert!(summary["passed"].as_u64().unwrap_or(0) >= 12, "{lines:?}");
    assert!(lines.iter().take(lines.len() - 1).all(|l| l["section"].as_str().is_some_and(|s| s.starts_with('§'))));
    let pinned_out = String::from_utf8_lossy(&pinned.stdout);
    assert!(pinned.status.success(), "{pinned_out}");
    assert!(pinned_out.lines().all(|l| !l.starts_with("ok ") || l.contains("§4")), "filter: {pinned_out}");
    s.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_and_names_cases_against_a_broken_peer() {
    // A "server" that completes the TCP handshake and then hangs up: nothing it does is Confab.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let url = format!("ws://{addr}/v1/ws");
    let out = tokio::task::spawn_blocking(move || {
        runner().args(["--url", &url, "--filter", "handshake", "--timeout", "5s"]).output().expect("run")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a broken peer passed: {stdout}");
    assert!(stdout.contains("FAIL  §4.2     handshake_returns_welcome"), "{stdout}");
    assert!(
        stdout.lines().last().is_some_and(|l| l.starts_with("0 passed, ") && !l.ends_with(" 0 failed")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_sink_runs_the_cases_that_need_codes() {
    // The server's code webhook points at the address the runner's --code-sink will listen on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let sink = format!("127.0.0.1:{port}");
    let hook = format!("http://{sink}/codes");
    let s = TestServer::start_with(StoreKind::Sqlite, move |c| {
        conformance_config(c);
        c.auth.webhook_url = Some(hook);
        c.auth.webhook_secret = Some(confab_server::config::Secret::new("sink secret"));
    })
    .await
    .expect("start");
    let ws = s.url(Transport::WebSocket);
    let out = tokio::task::spawn_blocking(move || {
        let with = runner()
            .args(["--url", &ws, "--filter", "§11", "--code-sink", &sink])
            .env("CONFAB_CONFORMANCE_CODE_SINK_SECRET", "sink secret")
            .output()
            .expect("run");
        let without = runner().args(["--url", &ws, "--filter", "§11.4"]).output().expect("run");
        let json = runner().args(["--url", &ws, "--filter", "phone_code", "--json"]).output().expect("run");
        (with, without, json)
    })
    .await
    .expect("join");
    let (with, without, json) = out;
    let stdout = String::from_utf8_lossy(&with.stdout);
    assert!(with.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&with.stderr));
    for case in ["phone_sign_in_creates_then_signs_in", "phone_code_tries_are_limited", "password_reset_by_code"] {
        assert!(stdout.lines().any(|l| l.starts_with("ok    §11.") && l.contains(case)), "{case}: {stdout}");
    }
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[lines.len() - 2], "0 skipped", "{stdout}");
    assert!(lines[lines.len() - 1].ends_with(" passed, 0 failed"), "{stdout}");
    // Without a sink the same cases are skipped, named with what they need, and not passed.
    let stdout = String::from_utf8_lossy(&without.stdout);
    assert!(without.status.success(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "skip  §11.4    phone_sign_in_creates_then_signs_in  (needs --code-sink)"),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[lines.len() - 2..], ["2 skipped", "1 passed, 0 failed"], "{stdout}");
    let objects: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert!(json.status.success(), "{objects:?}");
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(
        (&objects[0]["skipped"], &objects[0]["needs"], &objects[0]["passed"]),
        (&true.into(), &"--code-sink".into(), &false.into())
    );
    assert_eq!(
        (&objects[1]["passed"], &objects[1]["failed"], &objects[1]["skipped"]),
        (&0.into(), &0.into(), &1.into())
    );
    s.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_and_names_the_case_against_a_server_that_drops_live_events() {
    // A real Confab server behind a proxy that swallows every ConversationEvent: the handshake,
    // requests and Sync all work; only live delivery (§14.5) is broken.
    let s = TestServer::start(StoreKind::Sqlite).await.expect("start");
    let drops_live = |f: &v1::ServerFrame| {
        !matches!(
            &f.frame,
            Some(server_frame::Frame::Event(v1::Event { event: Some(event::Event::ConversationEvent(_)) }))
        )
    };
    let proxy = CutProxy::filtering(s.ws_addr, Arc::new(drops_live)).await.expect("proxy");
    let url = format!("ws://{}/v1/ws", proxy.addr);
    // The sync chapter (§14) only: its live-delivery case must fail, its Sync cases must pass.
    let out = tokio::task::spawn_blocking(move || {
        runner().args(["--url", &url, "--timeout", "5s", "--filter", "§14"]).output().expect("run")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a server without live delivery passed: {stdout}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.iter().any(|l| l.contains("§14.5") && l.contains("live_events_carry_gapless_seqs")), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("ok ") && l.contains("sync_returns_missed_entries_in_order")),
        "{stdout}"
    );
    let summary = stdout.lines().last().expect("summary");
    assert!(summary.ends_with(&format!(" {} failed", failed.len())), "{stdout}");
    s.stop().await.expect("stop");
}

/// Connections a server accepted so far, from its /metrics.
async fn accepted(s: &TestServer) -> u64 {
    let (status, body) = s.http_get("/metrics").await.expect("metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("confab_connections_accepted_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_url_spreads_each_cases_connections_over_the_nodes() {
    let cluster = TestCluster::start_with(2, conformance_config).await.expect("start cluster");
    let node = |i| cluster.node(i).expect("node runs");
    let before = [accepted(node(0)).await, accepted(node(1)).await];
    let (a, b) = (cluster.url(0, Transport::WebSocket), cluster.url(1, Transport::Quic));
    let cert = cluster.cert_path().to_path_buf();
    let (ws, quic) = (cluster.urls(Transport::WebSocket), cluster.urls(Transport::Quic));
    let out = tokio::task::spawn_blocking(move || {
        // §4 (session) and §11.5 (a token from one connection signs in another): no live event
        // has to cross nodes, so they pass on a cluster without its bus too.
        let ws_run = runner().args(["--url", &ws[0], "--url", &ws[1], "--filter", "§4"]).output().expect("run");
        let quic_run = runner()
            .args(["--url", &quic[0], "--url", &quic[1], "--filter", "token_authenticates"])
            .arg("--cert")
            .arg(&cert)
            .output()
            .expect("run");
        let mixed = runner().args(["--url", &a, "--url", &b, "--insecure"]).output().expect("run");
        (ws_run, quic_run, mixed)
    })
    .await
    .expect("join");
    let (ws_run, quic_run, mixed) = out;
    for run in [&ws_run, &quic_run] {
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
        assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed") && !l.starts_with("0 ")));
    }
    let after = [accepted(node(0)).await, accepted(node(1)).await];
    // The pool alone opens 6 connections in turn: each node took at least 3 of them.
    for i in 0..2 {
        assert!(after[i] >= before[i] + 3, "node-{i} accepted {} connections: {before:?} → {after:?}", after[i]);
    }
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(!mixed.status.success() && stderr.contains("must all be WebSocket"), "mixed transports: {stderr}");
    cluster.stop().await.expect("stop");
}
