//! Architecture invariant: the agent links no server, database, async-runtime or template code.

#[test]
fn the_agent_links_no_server_or_database_crates() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "patchwarden-agent",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"patchwarden-wire"),
        "unexpected tree:\n{tree}"
    );
    for forbidden in [
        "patchwarden-store",
        "patchwarden-server",
        "sqlx",
        "libsqlite3-sys",
        "tokio",
        "axum",
        "hyper",
        "utoipa",
        "askama",
        "tera",
        "minijinja",
        "handlebars",
        "tiny_http",
    ] {
        assert!(
            !crates.contains(&forbidden),
            "the agent depends on {forbidden}:\n{tree}"
        );
    }
}
