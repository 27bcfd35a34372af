//! The terminal client's layering check (docs/architecture.md, "The terminal client's layers"):
//! every `crate::` and `super::` path in client-cli/src points down its layer table, and its
//! top-level modules import each other in no cycle. The checker is tests/src/layering.rs, shared
//! with the server's check.

use std::path::PathBuf;

#[path = "../../tests/src/layering.rs"]
mod layering;

#[test]
fn client_imports_point_down_the_layers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(dir.join("../docs/architecture.md")).expect("docs/architecture.md");
    let problems = layering::check(&dir.join("src"), &doc, "client-layers");
    assert!(problems.is_empty(), "layering violations (docs/architecture.md):\n  {}", problems.join("\n  "));
}
