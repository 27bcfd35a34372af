//! Runs every conformance case against the in-process server, on both transports and both stores.
//! Nothing is skipped here: the server's codes go to the harness's code inbox.

use confab_conformance::cases;
use confab_conformance::harness::{StoreKind, TestServer, Transport, conformance_config};

/// Runs every case against one server, in list order or reversed ([`cases::run_every_case`]):
/// none may depend on what another left behind, and each case's own registrations must match
/// what it declares (`cases::pool::SIGN_UPS`), which the runner's up-front estimate of the
/// registration wait adds up.
async fn run_all(store: StoreKind, transport: Transport, reversed: bool) {
    let server = TestServer::start_with(store, conformance_config).await.expect("start server");
    let run = cases::run_every_case(&server.target(transport), reversed).await;
    server.stop().await.expect("stop server");
    assert!(run.skipped.is_empty(), "cases would be skipped: {:?}", run.skipped);
    let with_codes = cases::all().iter().filter(|c| c.needs == cases::Needs::Codes).count();
    assert!(with_codes >= 3, "the cases reading codes are registered ({with_codes})");
    let ran = run.ran;
    assert!(ran >= 70, "only {ran} cases ran");
    assert!(run.failures.is_empty(), "{} of {ran} cases failed:\n{}", run.failures.len(), run.failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sqlite() {
    run_all(StoreKind::Sqlite, Transport::WebSocket, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_sqlite() {
    run_all(StoreKind::Sqlite, Transport::Quic, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_postgres() {
    run_all(StoreKind::Postgres, Transport::WebSocket, false).await;
}

/// In reverse order: no case relies on running after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_postgres_reversed() {
    run_all(StoreKind::Postgres, Transport::Quic, true).await;
}

/// Every declared sign-up count names a case that exists.
#[test]
fn declared_sign_ups_name_cases() {
    let names: std::collections::HashSet<_> = cases::all().iter().map(|c| c.name).collect();
    for (name, _) in cases::pool::SIGN_UPS {
        assert!(names.contains(name), "SIGN_UPS names {name}, which is no case");
    }
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
