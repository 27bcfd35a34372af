//! The layering check, shared by the server's and the terminal client's tests (each includes this
//! file with `#[path]`; it uses only std): every `crate::` and `super::` path in a crate's `src`
//! must point to a module of the same layer or a lower one, modules of a "not each other" layer
//! must not import one another, and the table's modules must not import each other in a cycle.
//! The layer tables are read from docs/architecture.md (between `<!-- NAME:begin -->` and
//! `<!-- NAME:end -->`), so the document and the code cannot drift apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One row of the layer table.
#[derive(Debug)]
struct Layer {
    rank: usize,
    name: String,
    modules: Vec<String>,
    /// Modules of this layer may not import one another (the services).
    isolated: bool,
}

/// Reads the layer table `table` (between `<!-- table:begin -->` and `<!-- table:end -->`): rows
/// `| rank | name | `mod` `mod::child` … | may import … |`.
fn layers(doc: &str, table: &str) -> Vec<Layer> {
    let (begin, end) = (format!("<!-- {table}:begin -->"), format!("<!-- {table}:end -->"));
    let start = doc.find(&begin).unwrap_or_else(|| panic!("docs/architecture.md has {begin}"));
    let end = doc.find(&end).unwrap_or_else(|| panic!("docs/architecture.md has {end}"));
    let mut out = Vec::new();
    for line in doc[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let Ok(rank) = cells[1].parse::<usize>() else { continue };
        let modules = cells[3].split('`').skip(1).step_by(2).map(str::to_string).collect();
        out.push(Layer { rank, name: cells[2].to_string(), modules, isolated: cells[4].contains("not each other") });
    }
    assert!(!out.is_empty(), "the layer table is empty");
    out
}

/// The module path of a source file: `calls/sfu/room.rs` → `calls::sfu::room`, `hub/mod.rs` →
/// `hub`, `lib.rs` → `` (the crate root).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().to_string()).collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source without comments (doc links are not imports) and without string literals.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Every module path a source file refers to: `crate::a::b` (also `$crate::`, and every path
/// of a `crate::{a, b::c}` group) and `super::` paths, resolved against `module`.
fn references(module: &str, src: &str) -> BTreeSet<String> {
    let code = code_only(src);
    let mut out = BTreeSet::new();
    let parent = |m: &str| m.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string());
    let bytes = code.as_bytes();
    let word = |i: usize| i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
    for (i, _) in code.match_indices("crate::") {
        if word(i) && bytes[i - 1] != b'$' {
            continue;
        }
        for p in expand(&code[i + "crate::".len()..]) {
            out.insert(p);
        }
    }
    for (i, _) in code.match_indices("super::") {
        if word(i) || code[..i].ends_with("super::") {
            continue;
        }
        let mut base = parent(module);
        let mut rest = &code[i + "super::".len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base = parent(&base);
            rest = r;
        }
        for p in expand(rest) {
            out.insert(if base.is_empty() { p } else { format!("{base}::{p}") });
        }
    }
    out
}

/// The paths at the start of `s`: `a::b::c` → [`a::b::c`]; `a::{b, c::d}` → [`a::b`, `a::c::d`];
/// `{a, b}` → [`a`, `b`].
fn expand(s: &str) -> Vec<String> {
    let mut head = String::new();
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            head.push(c);
        } else if c == '{' {
            let inner = &s[i + 1..];
            let mut depth = 1;
            let mut end = inner.len();
            for (j, d) in inner.char_indices() {
                match d {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let body = &inner[..end];
            let mut parts = Vec::new();
            let mut depth = 0;
            let mut last = 0;
            for (j, d) in body.char_indices() {
                match d {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&body[last..j]);
                        last = j + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&body[last..]);
            let prefix = head.trim_end_matches("::").to_string();
            return parts
                .into_iter()
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "self")
                .flat_map(expand)
                .map(|p| if prefix.is_empty() { p } else { format!("{prefix}::{p}") })
                .chain((!prefix.is_empty()).then_some(prefix.clone()))
                .collect();
        } else {
            break;
        }
    }
    let head = head.trim_end_matches("::").to_string();
    if head.is_empty() { Vec::new() } else { vec![head] }
}

/// The longest known module that `path` starts with.
fn resolve<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    modules
        .iter()
        .filter(|m| !m.is_empty() && (path == m.as_str() || path.starts_with(&format!("{m}::"))))
        .max_by_key(|m| m.len())
}

/// The layer of a module: the row naming the longest prefix of it.
fn layer_of<'a>(module: &str, layers: &'a [Layer]) -> Option<(&'a Layer, &'a str)> {
    let mut best: Option<(&Layer, &str)> = None;
    for l in layers {
        for m in &l.modules {
            let hit =
                m == "crate" && module.is_empty() || module == m.as_str() || module.starts_with(&format!("{m}::"));
            if hit && best.is_none_or(|(_, b)| m.len() > b.len()) {
                best = Some((l, m.as_str()));
            }
        }
    }
    best
}

/// Checks a source tree against the layer table `table` of `doc`; returns one line per violation.
pub fn check(src_dir: &Path, doc: &str, table: &str) -> Vec<String> {
    let layers = layers(doc, table);
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    let sources: BTreeMap<String, String> = files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| (module_of(f.strip_prefix(src_dir).unwrap_or(f)), std::fs::read_to_string(f).unwrap_or_default()))
        .collect();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut problems = Vec::new();
    let mut top_edges: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (module, src) in &sources {
        let Some((from_layer, from_unit)) = layer_of(module, &layers) else {
            problems.push(format!("{module}: in no layer of docs/architecture.md"));
            continue;
        };
        for path in references(module, src) {
            let Some(target) = resolve(&path, &modules) else { continue };
            let Some((to_layer, to_unit)) = layer_of(target, &layers) else { continue };
            if to_layer.rank > from_layer.rank {
                problems.push(format!("{module} ({}) imports {path} ({}): upward", from_layer.name, to_layer.name));
            } else if to_layer.rank == from_layer.rank && from_layer.isolated && from_unit != to_unit {
                problems.push(format!("{module} imports {path}: {} do not import each other", from_layer.name));
            }
            if from_unit != to_unit && from_unit != "crate" {
                top_edges.entry(from_unit.to_string()).or_default().insert(to_unit.to_string());
            }
        }
    }
    problems.extend(cycles(&top_edges));
    problems
}

/// Import cycles between the table's modules (a module's children without a row of their own
/// are part of it).
fn cycles(edges: &HashMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    let nodes: BTreeSet<&String> = edges.keys().collect();
    for start in nodes {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    // Reported once, from its smallest module.
                    if cycle[1..cycle.len() - 1].iter().all(|n| n > start) {
                        out.push(format!("import cycle: {}", cycle.join(" → ")));
                    }
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    out
}
