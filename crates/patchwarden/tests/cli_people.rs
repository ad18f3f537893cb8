//! The `patchwarden` binary end to end for people: the server as a process on a random
//! loopback port, then `user`, `token` and `audit` commands as an operator would type them.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_patchwarden");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path) -> Server {
    let child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("server-url").exists() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn run(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("PATCHWARDEN_DATA_DIR", data)
        .env_remove("PATCHWARDEN_URL")
        .env_remove("PATCHWARDEN_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli runs");
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("cli output")
}

fn ok(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(data, args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn users_tokens_and_the_audit_log_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _server = start(&data);

    // A token is printed once, alone on stdout; its secret never appears in a listing.
    let secret = ok(
        &data,
        &[
            "token", "create", "ci", "--role", "viewer", "--tenant", "acme",
        ],
        None,
    );
    let secret = secret.trim();
    assert!(secret.starts_with("pwa_"), "{secret}");
    let list = ok(&data, &["token", "list", "--json"], None);
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
    let denied = run(&data, &["--token", secret, "user", "list"], None);
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("403") && err.contains("admin"), "{err}");
    ok(&data, &["--token", secret, "devices"], None);

    // Users: a password from stdin, or a generated one printed once.
    ok(
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
    let generated = ok(
        &data,
        &[
            "user", "create", "ben", "--role", "viewer", "--tenant", "acme",
        ],
        None,
    );
    assert!(generated.trim().len() >= 20, "{generated}");
    ok(&data, &["user", "disable", "ben"], None);
    let users: Value =
        serde_json::from_str(&ok(&data, &["user", "list", "--json"], None)).expect("json");
    let ben = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["login"] == "ben")
        .expect("ben");
    assert_eq!(ben["disabled"], true);
    let short = run(
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
    ok(&data, &["token", "revoke", id], None);
    assert!(!run(&data, &["--token", secret, "devices"], None)
        .status
        .success());

    // The audit log has it all, as a table, JSON and CSV.
    let rows: Value = serde_json::from_str(&ok(
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
    let csv = ok(&data, &["audit", "--csv"], None);
    assert!(
        csv.starts_with("id,at,tenant,actor_kind,actor,via,action"),
        "{csv}"
    );
    assert!(csv.contains("POST /api/v1/tokens"));
    let table = ok(&data, &["audit"], None);
    assert!(table.contains("denied 403"), "{table}");
}
