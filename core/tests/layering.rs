//! Structural rules of edgefront-core, checked on its source:
//! - the top-level modules form no import cycle (each layer imports only from below);
//! - no error code is spelled as a string literal outside the code table (`src/code.rs`).
//!
//! Test-only code (`#[cfg(test)]` modules and files) is exempt from both.
#![cfg(not(target_family = "wasm"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use edgefront_core::code::Code;

/// Files that exist only for tests.
const TEST_FILES: &[&str] = &["edge_tests.rs", "testing.rs", "auth/tests.rs"];

fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            // Everything from the first test module on is test code.
            let text = match text.find("#[cfg(test)]\nmod ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            (rel, text)
        })
        .filter(|(rel, _)| !TEST_FILES.contains(&rel.as_str()))
        .collect()
}

/// `auth/cache.rs` → `auth`; `lib.rs` → `lib`.
fn module_of(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules `text` names through `crate::…` paths (uses and inline paths).
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b::c}` groups.
        if let Some(i) = code.find("crate::{") {
            for part in code[i + "crate::{".len()..].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn core_modules_form_no_import_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    for (rel, text) in &files {
        let from = module_of(rel);
        let to = graph.entry(from.clone()).or_default();
        for m in references(text) {
            if m != from && modules.contains(&m) && from != "lib" {
                to.insert(m);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
    // The leaves stay leaves.
    for (leaf, allowed) in [
        ("code", &[][..]),
        ("jwk", &[][..]),
        ("window", &[][..]),
        ("obs", &[][..]),
        ("ports", &["jwk", "window", "obs"][..]),
        ("ids", &["ports", "obs"][..]),
    ] {
        let deps: Vec<&String> = graph[leaf]
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            deps.is_empty(),
            "{leaf} must be a leaf but imports {deps:?}"
        );
    }
}

#[test]
fn the_reference_scanner_reads_groups_and_inline_paths() {
    let refs = references("use crate::{a, b::c};\nlet x = crate::d::e(); // crate::f\n");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), vec!["a", "b", "d"]);
}

#[test]
fn no_error_code_is_spelled_outside_the_table() {
    let wire: BTreeSet<String> = Code::ALL
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect();
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if rel == "code.rs" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for w in &wire {
                if code.contains(w.as_str()) {
                    found.push(format!("src/{rel}:{}: {w}", n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "use `Code::…` instead of these literals:\n{}",
        found.join("\n")
    );
}
