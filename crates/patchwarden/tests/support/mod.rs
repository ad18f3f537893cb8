//! Shared by the CLI tests: the `patchwarden` server as a process on a random loopback port
//! (stopped by its pid on drop), and the CLI run against it as an operator would type it,
//! finding the URL and the administrator token in the data directory.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_patchwarden");

pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start(data: &Path) -> Server {
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

/// `patchwarden ARGS`, with `stdin` written to it when given.
pub fn run_with_stdin(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("PATCHWARDEN_DATA_DIR", data)
        .env_remove("PATCHWARDEN_URL")
        .env_remove("PATCHWARDEN_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
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

pub fn run(data: &Path, args: &[&str]) -> Output {
    run_with_stdin(data, args, None)
}

/// Its standard output, asserting it succeeded.
pub fn ok_bytes_with_stdin(data: &Path, args: &[&str], stdin: Option<&str>) -> Vec<u8> {
    let out = run_with_stdin(data, args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn ok_bytes(data: &Path, args: &[&str]) -> Vec<u8> {
    ok_bytes_with_stdin(data, args, None)
}

pub fn ok(data: &Path, args: &[&str]) -> String {
    String::from_utf8(ok_bytes(data, args)).expect("utf-8")
}

pub fn json(data: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(data, args)).expect("json")
}
