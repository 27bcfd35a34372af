//! Server behaviour that needs control over configuration or lifecycle: heartbeat and handshake
//! deadlines, graceful shutdown, connection limits, slow consumers, health and metrics, TLS trust.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use confab_conformance::cases::{self, as_go_away, expect_close, handshaken, until_closed};
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util;
use confab_protocol::client::{Client, ClientError, Trust};
use confab_protocol::frames::{client_frame, encode_client};
use confab_protocol::v1::{self, CloseCode, client_frame::Request};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const BOTH: [Transport; 2] = [Transport::WebSocket, Transport::Quic];

fn short_heartbeat(c: &mut confab_server::Config) {
    c.limits.heartbeat_interval = Duration::from_millis(100);
    c.limits.idle_timeout = Duration::from_millis(400);
}

/// Value of the first sample line starting with `prefix` in a Prometheus exposition.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn healthz_and_metrics_on_sqlite() {
    healthz_and_metrics(StoreKind::Sqlite).await.expect("sqlite");
}

#[tokio::test]
async fn healthz_and_metrics_on_postgres() {
    healthz_and_metrics(StoreKind::Postgres).await.expect("postgres");
}

/// §10: /healthz answers 200 while the store answers; /metrics counts what happened.
async fn healthz_and_metrics(store: StoreKind) -> anyhow::Result<()> {
    let server = TestServer::start(store).await?;
    let (status, body) = server.http_get("/healthz").await?;
    anyhow::ensure!(status == 200 && body == "ok\n", "healthz: {status} {body:?}");
    for t in BOTH {
        let (client, _ev) = server.connect(t).await?;
        client.ping().await?;
        client.close().await;
    }
    let (status, text) = server.http_get("/metrics").await?;
    anyhow::ensure!(status == 200, "metrics: {status}");
    for t in ["websocket", "quic"] {
        let accepted = metric(&text, &format!("confab_connections_accepted_total{{transport=\"{t}\"}}"));
        anyhow::ensure!(accepted == Some(1.0), "{t} accepted: {accepted:?}\n{text}");
        let frames = metric(&text, &format!("confab_frames_in_total{{transport=\"{t}\"}}")).unwrap_or(0.0);
        anyhow::ensure!(frames >= 2.0, "{t} frames in: {frames}");
    }
    anyhow::ensure!(text.contains("confab_request_duration_seconds_count{kind=\"ping\"}"), "no ping latency:\n{text}");
    anyhow::ensure!(text.contains("confab_store_duration_seconds_count{op=\"ping\"}"), "no store latency:\n{text}");
    let (status, _) = server.http_get("/nope").await?;
    anyhow::ensure!(status == 404, "unknown path: {status}");
    let (status, _) = server.http_get("/v1/ws").await?;
    anyhow::ensure!(status == 426, "plain GET on /v1/ws: {status}");
    server.stop().await
}

#[tokio::test]
async fn healthz_is_503_when_the_store_is_down() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("start");
    server.store().close().await;
    let (status, _) = server.http_get("/healthz").await.expect("healthz");
    assert_eq!(status, 503);
}

#[tokio::test]
async fn errors_are_counted_by_code() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("start");
    let mut raw = server.raw(Transport::WebSocket).await.expect("raw");
    raw.send_frame(&client_frame(1, Request::Ping(v1::Ping::default()))).await.expect("send");
    cases::expect_error(&mut raw, 1, v1::ErrorCode::FailedPrecondition).await.expect("refused");
    let (_, text) = server.http_get("/metrics").await.expect("metrics");
    assert_eq!(metric(&text, "confab_errors_total{code=\"ERROR_CODE_FAILED_PRECONDITION\"}"), Some(1.0), "{text}");
}

#[tokio::test]
async fn silent_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(StoreKind::Sqlite, short_heartbeat).await.expect("start");
    for t in BOTH {
        let mut raw = handshaken(&server.target(t)).await.expect("handshake");
        let (_, info) = until_closed(&mut raw).await.expect("closed");
        expect_close(&info, CloseCode::IdleTimeout).unwrap_or_else(|e| panic!("{t:?}: {e}"));
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn client_heartbeat_keeps_the_connection_alive() {
    let server = TestServer::start_with(StoreKind::Sqlite, short_heartbeat).await.expect("start");
    for t in BOTH {
        let (client, _ev) = server.connect(t).await.expect("connect");
        // Several idle timeouts pass; the client library's Pings keep the connection open.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        client.ping().await.unwrap_or_else(|e| panic!("{t:?}: {e}"));
        assert!(client.close_info().is_none());
        client.close().await;
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn no_hello_within_the_deadline_closes_4001() {
    let server = TestServer::start_with(StoreKind::Sqlite, |c| c.limits.handshake_timeout = Duration::from_millis(300))
        .await
        .expect("start");
    // WebSocket: upgraded, then silent.
    let mut raw = server.raw(Transport::WebSocket).await.expect("ws");
    let (_, info) = until_closed(&mut raw).await.expect("closed");
    expect_close(&info, CloseCode::HandshakeTimeout).expect("ws close code");
    // QUIC: a stream opened but no Hello sent.
    let mut raw = server.raw(Transport::Quic).await.expect("quic");
    let (_, info) = until_closed(&mut raw).await.expect("closed");
    expect_close(&info, CloseCode::HandshakeTimeout).expect("quic close code");
    // HTTP: a request line that never finishes.
    let mut tcp = tokio::net::TcpStream::connect(server.ws_addr).await.expect("tcp");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /v1/ws HTTP/1.1\r\n").await.expect("write");
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut buf))
        .await
        .expect("server kept a half-sent request open past the deadline");
    assert!(n.is_ok());
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn graceful_shutdown_on_sqlite() {
    graceful_shutdown(StoreKind::Sqlite).await.expect("sqlite");
}

#[tokio::test]
async fn graceful_shutdown_on_postgres() {
    graceful_shutdown(StoreKind::Postgres).await.expect("postgres");
}

/// §7.3: on shutdown every client gets GoAway, then close 1001; run() returns; the port closes.
async fn graceful_shutdown(store: StoreKind) -> anyhow::Result<()> {
    let mut server = TestServer::start(store).await?;
    let mut clients = Vec::new();
    for t in BOTH {
        clients.push((t, server.connect(t).await?));
    }
    let ws_addr = server.ws_addr;
    let ws_url = server.url(Transport::WebSocket);
    let opts = server.options();
    server.begin_shutdown();
    for (t, (client, mut events)) in clients {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .with_context(|| format!("{t:?}: no GoAway"))?
            .with_context(|| format!("{t:?}: closed without GoAway"))?;
        let g = as_go_away(&ev).with_context(|| format!("{t:?}: expected GoAway, got {ev:?}"))?;
        anyhow::ensure!(g.reason == v1::GoAwayReason::Shutdown as i32, "reason {}", g.reason);
        anyhow::ensure!(events.recv().await.is_none(), "{t:?}: events after GoAway");
        let info = events.close_info().context("no close info")?;
        expect_close(&info, CloseCode::GoingAway).with_context(|| format!("{t:?}"))?;
        drop(client);
    }
    server.stop().await?;
    anyhow::ensure!(tokio::net::TcpStream::connect(ws_addr).await.is_err(), "still accepting after shutdown");
    anyhow::ensure!(Client::connect(&ws_url, opts).await.is_err(), "handshake after shutdown");
    Ok(())
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_refused() {
    let server =
        TestServer::start_with(StoreKind::Sqlite, |c| c.limits.max_connections_per_ip = 2).await.expect("start");
    let a = server.connect(Transport::WebSocket).await.expect("first");
    let _b = server.connect(Transport::Quic).await.expect("second");
    for t in BOTH {
        // WebSocket: closed at accept, after a best-effort 503; QUIC: refused.
        assert!(server.connect(t).await.is_err(), "{t:?}: third connection from one IP admitted");
    }
    // 127.0.0.1 is at its cap, /metrics included: read it from another address.
    let (_, text) = server.http_get_from(loopback(2), "/metrics").await.expect("metrics");
    assert_eq!(metric(&text, "confab_connections_closed_total{reason=\"too_many_connections_per_ip\"}"), Some(2.0));
    // A slot frees when a connection ends.
    a.0.close().await;
    assert!(connect_and_sign_in(&server, loopback(1)).await.is_ok(), "slot not released after close");
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to the WebSocket port from `source` that sends nothing.
async fn silent(server: &TestServer, source: IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    socket.connect(server.ws_addr).await.expect("connect")
}

/// True when the server closes (or resets) `tcp` within `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut buf)).await.is_ok()
}

/// True while the server holds `tcp` open: nothing to read, no end of stream.
fn still_open(tcp: &TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(tcp.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A WebSocket client from `source` registers an account; retried for up to 2 s, since a slot
/// frees just after its socket closes.
async fn connect_and_sign_in(server: &TestServer, source: IpAddr) -> anyhow::Result<()> {
    let mut o = server.options();
    o.transport.local_ip = Some(source);
    let mut last = None;
    for _ in 0..40 {
        match Client::connect(&server.url(Transport::WebSocket), o.clone()).await {
            Ok((c, _events)) => {
                c.register(util::register(&util::unique("adm"))).await?;
                c.close().await;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.map(anyhow::Error::from).unwrap_or_else(|| anyhow::anyhow!("never connected")))
}

/// Sockets count against the per-address cap from accept, before any HTTP: one address holding
/// silent connections cannot go past its cap, the extra ones are closed at once, and another
/// address still connects and signs in.
#[tokio::test]
async fn silent_sockets_over_the_per_ip_cap_are_closed_at_accept() {
    let server =
        TestServer::start_with(StoreKind::Sqlite, |c| c.limits.max_connections_per_ip = 3).await.expect("start");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(silent(&server, loopback(1)).await);
    }
    // The listen queue is first in, first out: these come after the three held ones.
    for i in 0..5 {
        let mut extra = silent(&server, loopback(1)).await;
        assert!(closed_within(&mut extra, Duration::from_secs(3)).await, "extra socket {i} kept open");
    }
    assert!(held.iter().all(still_open), "an admitted silent socket was closed before its deadline");
    // QUIC shares the count: 127.0.0.1 has no room left.
    assert!(server.connect(Transport::Quic).await.is_err(), "QUIC admitted over the per-IP cap");
    connect_and_sign_in(&server, loopback(2)).await.expect("another address connects and signs in");
    let (_, text) = server.http_get_from(loopback(3), "/metrics").await.expect("metrics");
    assert_eq!(metric(&text, "confab_connections_closed_total{reason=\"too_many_connections_per_ip\"}"), Some(6.0));
    server.stop().await.expect("stop");
}

/// The global cap also counts from accept; silent sockets are dropped at the handshake deadline,
/// which frees their slots.
#[tokio::test]
async fn the_global_cap_counts_silent_sockets_until_the_handshake_deadline() {
    let deadline = Duration::from_secs(2);
    let server = TestServer::start_with(StoreKind::Sqlite, |c| {
        c.limits.max_connections = 2;
        c.limits.handshake_timeout = deadline;
    })
    .await
    .expect("start");
    let started = std::time::Instant::now();
    let mut held = vec![silent(&server, loopback(1)).await, silent(&server, loopback(1)).await];
    let mut other = silent(&server, loopback(2)).await;
    assert!(closed_within(&mut other, deadline / 2).await, "a socket over the global cap was kept open");
    assert!(held.iter().all(still_open), "an admitted silent socket was closed before its deadline");
    for tcp in &mut held {
        assert!(closed_within(tcp, Duration::from_secs(10)).await, "silent socket kept past the handshake deadline");
    }
    assert!(started.elapsed() >= deadline - Duration::from_millis(100), "closed before the deadline");
    connect_and_sign_in(&server, loopback(2)).await.expect("signs in once the silent sockets are gone");
    let (_, text) = server.http_get_from(loopback(3), "/metrics").await.expect("metrics");
    assert_eq!(metric(&text, "confab_connections_closed_total{reason=\"too_many_connections\"}"), Some(1.0));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_as_slow_consumer() {
    let server =
        TestServer::start_with(StoreKind::Sqlite, |c| c.limits.outbound_queue_frames = 8).await.expect("start");
    let mut raw = handshaken(&server.target(Transport::WebSocket)).await.expect("handshake");
    // Pipeline Pings and never read the Pongs: the socket buffers fill, then the server's queue.
    let ping = encode_client(&client_frame(2, Request::Ping(v1::Ping { client_time_ms: 1 })));
    let mut closed = false;
    for _ in 0..400 {
        let mut failed = false;
        for _ in 0..5_000 {
            if raw.sender.feed(ping.clone()).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed || raw.sender.flush().await.is_err() {
            closed = true;
            break;
        }
        let (_, text) = server.http_get("/metrics").await.expect("metrics");
        if metric(&text, "confab_connections_closed_total{reason=\"slow_consumer\"}") == Some(1.0) {
            closed = true;
            break;
        }
    }
    assert!(closed, "server kept queueing for a client that never reads");
    let (_, text) = server.http_get("/metrics").await.expect("metrics");
    assert_eq!(metric(&text, "confab_connections_closed_total{reason=\"slow_consumer\"}"), Some(1.0), "{text}");
    let _ = Bytes::new();
}

#[tokio::test]
async fn quic_client_verifies_the_server_certificate() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("start");
    let other = TestServer::start(StoreKind::Sqlite).await.expect("start other");
    let url = server.url(Transport::Quic);
    let with = |trust: Trust| {
        let mut o = server.options();
        o.transport.trust = trust;
        o
    };
    // Self-signed: not trusted by the system roots.
    match Client::connect(&url, with(Trust::SystemRoots)).await {
        Err(ClientError::Transport(m) | ClientError::Config(m)) => assert!(!m.is_empty()),
        other => panic!("self-signed certificate accepted by system roots: {other:?}"),
    }
    // Pinned to another server's certificate: refused.
    assert!(Client::connect(&url, with(other.trust())).await.is_err(), "wrong pinned certificate accepted");
    // Pinned to the right one, or explicitly insecure: accepted.
    Client::connect(&url, with(server.trust())).await.expect("pinned");
    Client::connect(&url, with(Trust::Insecure)).await.expect("insecure");
}

#[tokio::test]
async fn generated_certificate_is_reused_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = confab_server::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let first = confab_server::Server::build(config.clone()).await.expect("first");
    let cert = first.certificate();
    first.store().close().await;
    drop(first);
    let second = confab_server::Server::build(config).await.expect("second");
    assert_eq!(second.certificate(), cert);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("quic-key.pem")).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
    }
}

#[tokio::test]
async fn a_configured_certificate_is_served_instead_of_a_generated_one() {
    // Use the certificate another server generated as this server's configured one.
    let first = TestServer::start(StoreKind::Sqlite).await.expect("first");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let cfg = confab_server::Config { data_dir: dir.path().join("gen"), ..Default::default() };
    let generated = confab_server::Server::build(cfg).await.expect("generate");
    generated.store().close().await;
    std::fs::copy(dir.path().join("gen/quic-cert.pem"), &cert).expect("copy cert");
    std::fs::copy(dir.path().join("gen/quic-key.pem"), &key).expect("copy key");
    let (c2, k2) = (cert.clone(), key.clone());
    let server = TestServer::start_with(StoreKind::Sqlite, move |c| {
        c.tls.cert_path = Some(c2);
        c.tls.key_path = Some(k2);
    })
    .await
    .expect("configured");
    let mut opts = server.options();
    opts.transport.trust = Trust::pinned_from_file(&cert).expect("pin");
    Client::connect(&server.url(Transport::Quic), opts.clone()).await.expect("configured certificate served");
    opts.transport.trust = first.trust();
    assert!(Client::connect(&server.url(Transport::Quic), opts).await.is_err(), "served a generated certificate");
}
