//! The monitoring docs follow the registry: every `confab_*` series the Grafana dashboard
//! (docs/grafana/confab.json) queries and every name in docs/operations.md's metrics table is
//! registered, and every registered family is in that table (a new metric without docs fails).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use confab_server::metrics::Metrics;
use serde_json::Value;

/// Histogram series suffixes; a family's name alone is what the docs list.
const HISTOGRAM_SERIES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn docs(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The server's metrics with every labelled family given a sample: the registry renders a
/// family only once it has one. A family added to `Metrics` gets its recorder called here
/// (`registered` counts the families metrics.rs registers and fails otherwise).
fn exercised() -> Metrics {
    let m = Metrics::new();
    m.request("ping", Duration::from_millis(1));
    m.error(confab_protocol::ErrorCode::Internal);
    m.closed("normal");
    m.store_op("ping", Duration::from_millis(1));
    m.push("fcm", "sent");
    m.push_provider("fcm", Duration::from_millis(1));
    m
}

/// How many families server/src/metrics.rs registers: its `.register("name", …)` calls.
fn registrations() -> usize {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs");
    let src = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    src.split(".register(").skip(1).filter(|rest| rest.trim_start().starts_with('"')).count()
}

/// Registered families by the name the docs give them (counters with `_total`, as Prometheus
/// shows them), with their type.
fn registered() -> BTreeMap<String, String> {
    let text = exercised().render();
    let families: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| {
            let name =
                if kind == "counter" && !name.ends_with("_total") { format!("{name}_total") } else { name.into() };
            (name, kind.to_string())
        })
        .collect();
    assert_eq!(
        families.len(),
        registrations(),
        "server/src/metrics.rs registers a family this test does not render: call its recorder in `exercised`\n{text}"
    );
    assert!(families.keys().all(|n| n.starts_with("confab_")), "{families:?}");
    families
}

/// `name` as a registered family: itself, or a histogram's series reduced to its family.
fn family<'a>(name: &'a str, families: &BTreeMap<String, String>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    HISTOGRAM_SERIES
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| families.get(*base).is_some_and(|k| k == "histogram"))
}

/// Every `confab_*` word of a text.
fn confab_names(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("confab_"))
}

/// The names in the first column of the metrics table of operations.md "Health and metrics".
fn table_names() -> BTreeSet<String> {
    let ops = docs("operations.md");
    let section = ops.split("\n## Health and metrics\n").nth(1).expect("a Health and metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let names: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| confab_names(l.split('|').nth(1).unwrap_or("")).map(String::from).collect::<Vec<_>>())
        .collect();
    assert!(names.len() > 20, "too few rows in the metrics table: {names:?}");
    names
}

/// Every PromQL expression of the dashboard (panel targets and template variables).
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("a target's expr").to_string());
        }
    }
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        out.extend(v["definition"].as_str().map(String::from));
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&docs("grafana/confab.json")).expect("docs/grafana/confab.json is JSON")
}

#[test]
fn every_series_the_dashboard_queries_is_registered() {
    let families = registered();
    let queries = dashboard_queries(&dashboard());
    assert!(queries.len() > 20, "too few queries: {queries:?}");
    let mut used = BTreeSet::new();
    for q in &queries {
        for name in confab_names(q) {
            let f = family(name, &families).unwrap_or_else(|| panic!("{name} (in `{q}`) is not registered"));
            used.insert(f);
        }
    }
    for wanted in [
        "confab_deliveries_total",
        "confab_writer_batch_size",
        "confab_writer_batch_duration_seconds",
        "confab_sfu_rooms",
        "confab_sfu_participants",
        "confab_sfu_forwarded_tracks",
    ] {
        assert!(used.contains(wanted), "the dashboard shows no {wanted}");
    }
}

#[test]
fn the_dashboard_imports_with_a_prometheus_input() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"), "{inputs:?}");
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_u64().expect("a panel id")), "duplicate panel id {}", p["id"]);
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}", p["title"]);
        }
    }
}

#[test]
fn every_name_in_the_operations_table_is_registered() {
    let families = registered();
    for name in table_names() {
        assert!(families.contains_key(&name), "docs/operations.md lists {name}, which is not registered");
    }
}

#[test]
fn every_registered_family_is_in_the_operations_table() {
    let table = table_names();
    for name in registered().keys() {
        assert!(table.contains(name), "{name} is registered but not in docs/operations.md \"Health and metrics\"");
    }
}
