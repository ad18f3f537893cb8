//! The operator CLI against the real server process: policies as files (`apply`, applied
//! twice = unchanged), `policy list|show|edit|delete`, clear errors for bad files, and the
//! README's example policy accepted as written.

use patchwarden_lab::fleet::ServerProcess;
use std::path::Path;

fn run(server: &ServerProcess, args: &[&str]) -> (i32, String, String) {
    let out = server.cli(args).expect("cli runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first ```toml block of the README (the example policy).
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README");
    let start = readme.find("```toml").expect("a toml block in the README") + "```toml".len();
    let end = start + readme[start..].find("```").expect("end of the block");
    readme[start..end]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn policies_as_files_through_the_cli() {
    let server = ServerProcess::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, readme_example()).expect("write");
    let file = file.to_str().expect("present");

    let (code, out, err) = run(&server, &["apply", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("created"), "{out}");
    assert!(
        out.contains("monthly") && out.contains("tenant acme"),
        "{out}"
    );
    let (code, out, err) = run(&server, &["apply", file]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("unchanged"),
        "applying again changes nothing: {out}"
    );

    let (code, out, _) = run(&server, &["policy", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("monthly") && out.contains("manual"), "{out}");
    let (code, out, err) = run(&server, &["policy", "show", "monthly", "--tenant", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("schedule = \"monthly second tuesday +2d 22:00\""),
        "{out}"
    );
    assert!(out.contains("# policy pol_"), "{out}");

    let (code, out, err) = run(
        &server,
        &["policy", "edit", "monthly", "--tenant", "acme", "--disable"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("updated"), "{out}");
    let (_, out, _) = run(
        &server,
        &["policy", "show", "monthly", "--tenant", "acme", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["spec"]["enabled"], false);
    assert_eq!(v["revision"], 2);

    // A bad file: a clear error naming the field, nothing stored changed.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\ntarget: {all: true}\nwhat: {kind: security}\nschedule: every full moon\n",
    )
    .expect("present");
    let (code, _, err) = run(&server, &["apply", bad.to_str().expect("present")]);
    assert_ne!(code, 0);
    assert!(err.contains("schedule"), "{err}");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "name = \"x\"\ntarget = { all = true }\nwhat = { kind = \"security\" }\nschedual = \"daily 01:00\"\n").expect("present");
    let (code, _, err) = run(&server, &["apply", typo.to_str().expect("present")]);
    assert_ne!(code, 0);
    assert!(err.contains("schedual"), "{err}");
    let (_, out, _) = run(&server, &["policy", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    let (code, _, err) = run(
        &server,
        &["policy", "delete", "monthly", "--tenant", "acme"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&server, &["policy", "show", "monthly", "--tenant", "acme"]);
    assert_ne!(code, 0);
    assert!(err.contains("no policy"), "{err}");
}
