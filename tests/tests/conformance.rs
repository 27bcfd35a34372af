//! Runs every conformance case against the in-process server, on both transports and both stores.

use confab_conformance::cases;
use confab_conformance::harness::{StoreKind, TestServer, Transport};

async fn run_all(store: StoreKind, transport: Transport) {
    let server = TestServer::start(store).await.expect("start server");
    let target = server.target(transport);
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases::all().into_iter().filter(|c| c.applies_to(&target)) {
        ran += 1;
        if let Err(e) = (case.run)(target.clone()).await {
            failures.push(format!("{} ({}): {e:#}", case.name, case.section));
        }
    }
    server.stop().await.expect("stop server");
    assert!(ran >= 10, "only {ran} cases ran");
    assert!(failures.is_empty(), "{} of {ran} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sqlite() {
    run_all(StoreKind::Sqlite, Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_sqlite() {
    run_all(StoreKind::Sqlite, Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_postgres() {
    run_all(StoreKind::Postgres, Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_postgres() {
    run_all(StoreKind::Postgres, Transport::Quic).await;
}
