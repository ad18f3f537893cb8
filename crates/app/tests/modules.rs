//! The application's modules form no cycle: each top-level module uses only modules below
//! it (ARCHITECTURE.md lists the layers). Read from the source: the `crate::x` paths of each
//! module's files, outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code a module's file contributes: without its test module and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::name` in the code.
fn uses(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Top-level module → the top-level modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_owned())
            .expect("a module");
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read");
        // A submodule's `super::` is its own top-level module: only `crate::` paths count.
        let mut used = uses(&code(&text));
        used.remove(&top);
        graph.entry(top).or_default().extend(used);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == node) {
        let mut c = path[i..].to_vec();
        c.push(node.to_owned());
        return Some(c);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn the_modules_of_the_app_form_no_cycle() {
    let graph = graph();
    assert!(graph.len() > 20, "modules found: {graph:?}");
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(c) = cycle_from(&graph, m, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_reader_finds_uses_outside_comments_and_tests() {
    let text = "use crate::scope::x; // crate::devices\nfn f() { crate::plan::Plan::of(); }\n#[cfg(test)]\nmod tests { use crate::agent; }";
    assert_eq!(
        uses(&code(text)),
        BTreeSet::from(["scope".to_owned(), "plan".to_owned()])
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&g, "a", &mut Vec::new(), &mut BTreeSet::new()),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
}
