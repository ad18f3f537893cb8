//! The `patchwarden` binary end to end for people: the server as a process on a random
//! loopback port, then `user`, `token` and `audit` commands as an operator would type them.

mod support;

use support::{run_with_stdin, start};

fn ok_with_stdin(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    String::from_utf8(support::ok_bytes_with_stdin(data, args, stdin)).expect("utf-8")
}

use serde_json::Value;
use std::path::Path;

#[test]
fn users_tokens_and_the_audit_log_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _server = start(&data);

    // A token is printed once, alone on stdout; its secret never appears in a listing.
    let secret = ok_with_stdin(
        &data,
        &[
            "token", "create", "ci", "--role", "viewer", "--tenant", "acme",
        ],
        None,
    );
    let secret = secret.trim();
    assert!(secret.starts_with("pwa_"), "{secret}");
    let list = ok_with_stdin(&data, &["token", "list", "--json"], None);
    assert!(!list.contains(secret));
    let tokens: Value = serde_json::from_str(&list).expect("json");
    let ci = tokens
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "ci")
        .expect("the new token");
    assert_eq!(ci["tenant"], "acme");
    assert_eq!(ci["role"], "viewer");

    // The viewer token reads but may not manage people.
    let denied = run_with_stdin(&data, &["--token", secret, "user", "list"], None);
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("403") && err.contains("admin"), "{err}");
    ok_with_stdin(&data, &["--token", secret, "devices"], None);

    // Users: a password from stdin, or a generated one printed once.
    ok_with_stdin(
        &data,
        &[
            "user",
            "create",
            "ann@acme.example",
            "--role",
            "approver",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
        Some("a very long password\n"),
    );
    let generated = ok_with_stdin(
        &data,
        &[
            "user", "create", "ben", "--role", "viewer", "--tenant", "acme",
        ],
        None,
    );
    assert!(generated.trim().len() >= 20, "{generated}");
    ok_with_stdin(&data, &["user", "disable", "ben"], None);
    let users: Value =
        serde_json::from_str(&ok_with_stdin(&data, &["user", "list", "--json"], None))
            .expect("json");
    let ben = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["login"] == "ben")
        .expect("ben");
    assert_eq!(ben["disabled"], true);
    let short = run_with_stdin(
        &data,
        &[
            "user",
            "create",
            "cy",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(String::from_utf8_lossy(&short.stderr).contains("too short"));

    // Revoked: the token stops working.
    let id = ci["id"].as_str().expect("id");
    ok_with_stdin(&data, &["token", "revoke", id], None);
    assert!(
        !run_with_stdin(&data, &["--token", secret, "devices"], None)
            .status
            .success()
    );

    // The audit log has it all, as a table, JSON and CSV.
    let rows: Value = serde_json::from_str(&ok_with_stdin(
        &data,
        &["audit", "--since", "1h", "--tenant", "acme", "--json"],
        None,
    ))
    .expect("json");
    let rows = rows.as_array().expect("rows");
    let has = |action: &str, outcome: &str| {
        rows.iter()
            .any(|r| r["action"] == action && r["outcome"] == outcome)
    };
    assert!(has("GET /api/v1/users", "denied"), "{rows:?}");
    assert!(has("POST /api/v1/users/{login}/disable", "ok"), "{rows:?}");
    assert!(has("DELETE /api/v1/tokens/{id}", "ok"), "{rows:?}");
    let csv = ok_with_stdin(&data, &["audit", "--csv"], None);
    assert!(
        csv.starts_with("id,at,tenant,actor_kind,actor,via,action"),
        "{csv}"
    );
    assert!(csv.contains("POST /api/v1/tokens"));
    let table = ok_with_stdin(&data, &["audit"], None);
    assert!(table.contains("denied 403"), "{table}");
}
