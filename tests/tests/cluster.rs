//! Several nodes on one PostgreSQL, linked by a real NATS server: the whole conformance suite with
//! each case's clients spread over three nodes (WebSocket and QUIC), and self-tests of the
//! multi-node harness (NATS stopped and started again on its port, nodes sharing their keys, a
//! node restarted in-process and one killed with SIGKILL and restarted).

use std::time::Duration;

use anyhow::Context;
use confab_conformance::cases;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::{Transport, conformance_config};
use confab_conformance::nats::NatsServer;
use confab_conformance::util::{register, unique};
use confab_protocol::client::Client;
use tokio::io::AsyncBufReadExt;

/// Runs every case against a 3-node cluster on `transport`; the round robin puts a case's
/// consecutive connections on different nodes, so every live event a case waits for crosses
/// nodes.
async fn conformance_over_three_nodes(transport: Transport) {
    let cluster = TestCluster::start_with(3, conformance_config).await.expect("start cluster");
    let target = cluster.target(transport).expect("target");
    assert_eq!(target.urls().len(), 3);
    let run = cases::run_every_case(&target, false).await;
    cluster.stop().await.expect("stop cluster");
    assert!(run.skipped.is_empty(), "cases would be skipped: {:?}", run.skipped);
    let ran = run.ran;
    assert!(ran >= 70, "only {ran} cases ran");
    assert!(
        run.failures.is_empty(),
        "{} of {ran} cases failed across 3 nodes ({transport:?}):\n{}",
        run.failures.len(),
        run.failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_across_three_nodes_websocket() {
    conformance_over_three_nodes(Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_across_three_nodes_quic() {
    conformance_over_three_nodes(Transport::Quic).await;
}

/// The first line a NATS server sends a new client: `INFO {…}`.
async fn nats_info(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), tokio::io::BufReader::new(stream).read_line(&mut line))
        .await
        .context("no INFO line in time")??;
    Ok(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_stops_and_starts_again_on_its_port() {
    let mut nats = NatsServer::start().await.expect("start nats-server");
    let (url, addr) = (nats.url(), nats.addr());
    assert!(url.starts_with("nats://127.0.0.1:") && addr.port() != 0, "{url}");
    let info = nats_info(addr).await.expect("INFO");
    assert!(info.starts_with("INFO {") && info.contains("\"server_id\""), "{info}");
    nats.stop().expect("stop");
    assert!(!nats.is_running());
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the port still accepts connections after stop");
    nats.start_again().await.expect("start again");
    assert!(nats.is_running());
    assert_eq!(nats.url(), url, "the URL changed across the restart");
    let again = nats_info(addr).await.expect("INFO after the restart");
    assert!(again.starts_with("INFO {"), "{again}");
    assert!(nats.start_again().await.is_err(), "starting a running server again must fail");
}

/// A token issued by one node signs in on another: the nodes share the signing key (and the
/// database holding the session); the one pinned certificate is trusted on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_keys_and_restart_on_their_addresses() {
    let mut cluster = TestCluster::start(2).await.expect("start cluster");
    assert_eq!((cluster.node_id(0), cluster.node_id(1)), ("node-0", "node-1"));
    let (c0, _e0) = cluster.connect(0, Transport::Quic).await.expect("connect node-0");
    let auth = c0.register(register(&unique("cl"))).await.expect("register on node-0");
    let mut o = cluster.options();
    o.access_token = Some(auth.access_token.clone());
    for t in [Transport::WebSocket, Transport::Quic] {
        let (c1, _e1) = Client::connect(&cluster.url(1, t), o.clone()).await.expect("token of node-0 on node-1");
        let me = c1.welcome().auth.as_ref().map(|a| a.user_id);
        assert_eq!(me, auth.me.as_ref().map(|m| m.user_id), "{t:?}");
    }
    // A stopped node comes back on the same URLs; its old clients' tokens still work there.
    let before = cluster.urls(Transport::WebSocket);
    cluster.stop_node(1).await.expect("stop node-1");
    assert!(cluster.node(1).is_none());
    assert!(Client::connect(&cluster.url(1, Transport::WebSocket), o.clone()).await.is_err(), "node-1 is stopped");
    cluster.restart_node(1).await.expect("restart node-1");
    assert_eq!(cluster.urls(Transport::WebSocket), before);
    let (c1, _e1) = Client::connect(&cluster.url(1, Transport::Quic), o).await.expect("node-1 after its restart");
    assert!(c1.welcome().auth.is_some());
    cluster.stop().await.expect("stop cluster");
}

/// An out-of-process node of the cluster: shares the keys (a token from an in-process node signs
/// in), dies with SIGKILL (its port refuses connections), restarts on the same addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_node_is_killed_and_restarted() {
    let cluster = TestCluster::start(1).await.expect("start cluster");
    let (c0, _e0) = cluster.connect(0, Transport::WebSocket).await.expect("connect node-0");
    let auth = c0.register(register(&unique("cp"))).await.expect("register on node-0");
    let mut o = cluster.options();
    o.access_token = Some(auth.access_token.clone());
    let mut node = cluster.spawn_process(env!("CARGO_BIN_EXE_confab-test-server"), "node-p").await.expect("spawn");
    let (ws, quic) = (node.url(Transport::WebSocket), node.url(Transport::Quic));
    let (c, _e) = Client::connect(&quic, o.clone()).await.expect("token of node-0 on node-p");
    assert!(c.welcome().auth.is_some());
    node.kill9().expect("kill -9");
    assert!(!node.is_running() && node.pid().is_none());
    assert!(tokio::net::TcpStream::connect(node.ws_addr()).await.is_err(), "a killed node still accepts");
    node.restart().await.expect("restart");
    assert_eq!((node.url(Transport::WebSocket), node.url(Transport::Quic)), (ws.clone(), quic));
    let (c, _e) = Client::connect(&ws, o).await.expect("node-p after its restart");
    assert!(c.welcome().auth.is_some());
    drop(node);
    cluster.stop().await.expect("stop cluster");
}

/// §26.3 across nodes: an administrator on node-0 suspends an account connected to node-1
/// (WebSocket) and node-0 (QUIC); both connections get SessionRevoked (SUSPENDED) and close with
/// 4004 within a second of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_closes_connections_on_every_node() {
    use confab_protocol::v1::{self, client_frame::Request, event};
    use confab_server::store::{AuditAction, NewAudit, UserId};
    let cluster = TestCluster::start(2).await.expect("start cluster");
    let (admin, _ea) = cluster.connect(0, Transport::Quic).await.expect("connect");
    let admin_id = admin.register(register(&unique("cladm"))).await.expect("register").me.expect("me").user_id;
    let store = cluster.node(0).expect("node-0").store().clone();
    let grant = NewAudit::new(AuditAction::AdminGranted, 1);
    assert!(store.set_server_admin(UserId(admin_id as i64), true, &grant).await.expect("grant"));
    let name = unique("clsus");
    let (b1, mut e1) = cluster.connect(1, Transport::WebSocket).await.expect("connect node-1");
    let bob = b1.register(register(&name)).await.expect("register").me.expect("me").user_id;
    let (b0, mut e0) = cluster.connect(0, Transport::Quic).await.expect("connect node-0");
    b0.login(&name, confab_conformance::util::PASSWORD, "second").await.expect("login");
    let r = admin
        .request(Request::AdminSuspendUser(v1::AdminSuspendUser { user_id: bob, reason: String::new() }))
        .await
        .expect("suspend");
    assert!(matches!(r, v1::response::Result::AdminSuspendUser(ref s) if s.sessions_revoked == 2), "{r:?}");
    for (node, events) in [("node-1", &mut e1), ("node-0", &mut e0)] {
        let reason = tokio::time::timeout(Duration::from_secs(1), async {
            let mut reason = None;
            while let Some(e) = events.recv().await {
                if let Some(event::Event::SessionRevoked(r)) = e.event {
                    reason = Some(r.reason());
                }
            }
            reason
        })
        .await
        .unwrap_or_else(|_| panic!("the connection on {node} was not closed within a second"));
        assert_eq!(reason, Some(v1::SessionRevokedReason::Suspended), "{node}");
        let info = events.close_info().expect("close info");
        assert_eq!(info.code, Some(v1::CloseCode::SessionRevoked as u32), "{node}: {info}");
    }
    drop((b0, b1));
    cluster.stop().await.expect("stop cluster");
}
