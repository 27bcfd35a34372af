//! Runs every conformance case against the in-process server, on both transports and both stores.
//! Nothing is skipped here: the server's codes go to the harness's code inbox.

use confab_conformance::cases;
use confab_conformance::harness::{StoreKind, TestServer, Transport, conformance_config};

async fn run_all(store: StoreKind, transport: Transport) {
    let server = TestServer::start_with(store, conformance_config).await.expect("start server");
    let target = server.target(transport);
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases::all().into_iter().filter(|c| c.applies_to(&target)) {
        assert_eq!(case.missing(&target), None, "{} would be skipped", case.name);
        ran += 1;
        if let Err(e) = (case.run)(target.clone()).await {
            failures.push(format!("{} ({}): {e:#}", case.name, case.section));
        }
    }
    server.stop().await.expect("stop server");
    let with_codes = cases::all().iter().filter(|c| c.needs == cases::Needs::Codes).count();
    assert!(with_codes >= 3, "the cases reading codes are registered ({with_codes})");
    assert!(ran >= 70, "only {ran} cases ran");
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

/// Every case cites a section that docs/protocol.md has (a numbered heading such as
/// `### 20.3 Group calls` or `## 21. Lifecycle consequences`).
#[test]
fn every_case_cites_an_existing_section() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).expect("protocol.md");
    let sections: std::collections::HashSet<String> = doc
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|n| format!("§{}", n.trim_end_matches('.')))
        .collect();
    // A case may cite several sections: "§21/§13.3".
    let unknown: Vec<String> = cases::all()
        .iter()
        .filter(|c| !c.section.split('/').all(|s| sections.contains(s)))
        .map(|c| format!("{} cites {}", c.name, c.section))
        .collect();
    assert!(unknown.is_empty(), "cases citing no section of docs/protocol.md:\n{}", unknown.join("\n"));
}
