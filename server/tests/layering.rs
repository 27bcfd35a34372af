//! The server's layering check (docs/architecture.md, "The layers, checked"): the checker is
//! tests/src/layering.rs, shared with the terminal client's check.

use std::path::PathBuf;

#[path = "../../tests/src/layering.rs"]
mod layering;

use layering::check;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn server_imports_point_down_the_layers() {
    let doc = std::fs::read_to_string(manifest_dir().join("../docs/architecture.md")).expect("docs/architecture.md");
    let problems = check(&manifest_dir().join("src"), &doc, "layers");
    assert!(problems.is_empty(), "layering violations (docs/architecture.md):\n  {}", problems.join("\n  "));
}

/// The checker itself catches an upward import, a lateral import between services, an upward
/// `super::` path and a cycle, in a synthetic tree.
#[test]
fn the_check_fails_on_a_deliberate_upward_import() {
    let dir = std::env::temp_dir().join(format!("confab-layering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("svc")).expect("mkdir");
    let doc = "<!-- layers:begin -->\n| # | layer | modules | may import |\n|---|---|---|---|\n\
               | 1 | store | `store` | |\n| 2 | services | `svc` `other` | below; not each other |\n\
               | 3 | edge | `edge` `crate` | below |\n<!-- layers:end -->";
    let write = |p: &str, s: &str| std::fs::write(dir.join(p), s).expect("write");
    write("lib.rs", "pub mod store; pub mod svc; pub mod other; pub mod edge;");
    write("store.rs", "use crate::edge::Thing; // upward\n");
    write("svc/mod.rs", "pub mod inner;\nuse crate::{store, other::X};\n");
    write("svc/inner.rs", "use super::super::edge::Y;\n");
    write("other.rs", "use crate::store::Z;\n");
    write("edge.rs", "use crate::svc::inner::W; // \"crate::nothing\"\n");
    let problems = check(&dir, doc, "layers");
    let _ = std::fs::remove_dir_all(&dir);
    let has = |s: &str| problems.iter().any(|p| p.contains(s));
    assert!(has("store (store) imports edge::Thing (edge): upward"), "{problems:#?}");
    assert!(has("svc imports other::X: services do not import each other"), "{problems:#?}");
    assert!(has("svc::inner (services) imports edge::Y (edge): upward"), "{problems:#?}");
    assert!(has("import cycle: edge → svc → edge") || has("import cycle: edge → store → edge"), "{problems:#?}");
    assert!(!has("nothing"), "strings are not imports: {problems:#?}");
    assert!(!has("other (services) imports store"), "downward is fine: {problems:#?}");
}
