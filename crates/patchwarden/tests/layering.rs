//! The crate graph is the architecture: this test reads the code map of ARCHITECTURE.md
//! (each crate, the workspace crates it may depend on, the crates it must never pull in) and
//! checks it against `cargo tree`, so that a forbidden dependency fails the build's tests and
//! the document cannot drift from the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One row of the code map.
#[derive(Debug)]
struct Rule {
    /// Folder name under `crates/` (the short name used in the document).
    short: String,
    /// Workspace crates (short names) it may depend on directly.
    allowed: BTreeSet<String>,
    /// Crates that must not appear anywhere in its normal dependency tree.
    never: BTreeSet<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_owned()
}

/// The names in backticks of a table cell.
fn ticked(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows of the table headed `| crate | … | may depend on | never |`.
fn rules(doc: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in doc.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        if line.starts_with("| crate |") && line.contains("may depend on") && line.contains("never")
        {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        if line.starts_with("|--") || line.starts_with("|:-") || cells.len() < 4 {
            continue;
        }
        let short = cells[0]
            .split('`')
            .nth(1)
            .expect("a crate name in backticks")
            .to_owned();
        out.push(Rule {
            short,
            allowed: ticked(cells[cells.len() - 2]),
            never: ticked(cells[cells.len() - 1]),
        });
    }
    out
}

/// Package name of a workspace crate from its folder name.
fn package_of(short: &str) -> String {
    if short == "patchwarden" {
        short.to_owned()
    } else {
        format!("patchwarden-{short}")
    }
}

/// (direct workspace dependencies, every crate in the normal dependency tree) of a package,
/// with the features `cargo build -p package` would enable.
fn tree(package: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let run = |depth: &str| {
        let out = Command::new(&cargo)
            .current_dir(workspace_root())
            .args([
                "tree",
                "--offline",
                "-p",
                package,
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
                "--depth",
                depth,
            ])
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect::<BTreeSet<String>>()
    };
    let mut direct = run("1");
    direct.remove(package);
    let mut all = run("100");
    all.remove(package);
    (direct, all)
}

#[test]
fn the_crate_graph_follows_architecture_md() {
    let doc =
        std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rules = rules(&doc);
    let on_disk: BTreeSet<String> = std::fs::read_dir(workspace_root().join("crates"))
        .expect("crates/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let documented: BTreeSet<String> = rules.iter().map(|r| r.short.clone()).collect();
    assert_eq!(
        documented, on_disk,
        "every crate under crates/ has a row in ARCHITECTURE.md's code map, and only those"
    );
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in &rules {
        let package = package_of(&rule.short);
        let (direct, all) = tree(&package);
        for dep in direct.iter().filter(|d| d.starts_with("patchwarden")) {
            let short = dep.strip_prefix("patchwarden-").unwrap_or(dep);
            if !rule.allowed.contains(short) {
                problems.entry(package.clone()).or_default().push(format!(
                    "depends on {dep}, which the code map does not allow"
                ));
            }
        }
        for banned in &rule.never {
            let name = if documented.contains(banned) {
                package_of(banned)
            } else {
                banned.clone()
            };
            if all.contains(&name) {
                problems
                    .entry(package.clone())
                    .or_default()
                    .push(format!("pulls in {name}, which it must never depend on"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the crate graph breaks ARCHITECTURE.md's code map:\n{problems:#?}"
    );
}

#[test]
fn the_code_map_parser_reads_the_table() {
    let doc = "intro\n\
        | crate | what | may depend on | never |\n\
        |---|---|---|---|\n\
        | `app` (`patchwarden-app`) | use cases | `core`, `store` | `axum`, `hyper` |\n\
        | `core` | pure | nothing | `tokio` |\n\
        \nafter";
    let r = rules(doc);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].short, "app");
    assert_eq!(
        r[0].allowed,
        BTreeSet::from(["core".to_owned(), "store".to_owned()])
    );
    assert_eq!(
        r[0].never,
        BTreeSet::from(["axum".to_owned(), "hyper".to_owned()])
    );
    assert!(r[1].allowed.is_empty());
}
