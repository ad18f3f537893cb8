//! A fleet for end-to-end tests, benchmarks and demos: the real `patchwarden` server as a
//! process on loopback, the real agent inside lab hosts, and the operator CLI.

use crate::{workspace_bin, Host, HostProcess};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the agent lives inside a host, and its state directory there.
pub const AGENT_IN_HOST: &str = "/usr/local/bin/patchwarden-agent";
pub const AGENT_STATE_IN_HOST: &str = "/var/lib/patchwarden-agent";
/// The agents' reboot command in lab hosts (`PATCHWARDEN_REBOOT_COMMAND`): a simulated reboot
/// as the agent can tell it, a new boot id and /run/reboot-required gone, logged one line per
/// reboot in [`LAB_REBOOT_LOG`]. Never the machine's `systemctl reboot`.
pub const LAB_REBOOT_COMMAND: &str = "/usr/local/sbin/patchwarden-lab-reboot";
pub const LAB_REBOOT_LOG: &str = "/var/log/patchwarden-lab-reboots";
const LAB_REBOOT_SCRIPT: &str = "#!/bin/sh\nset -e\necho \"reboot $(date +%s%N)\" >> /var/log/patchwarden-lab-reboots\necho \"lab-boot-$(date +%s%N)-$$\" > /etc/patchwarden-lab/boot_id\nrm -f /run/reboot-required /run/reboot-required.pkgs\n";

/// The `patchwarden server` binary running on a random loopback port with a fresh data
/// directory. Stopped (by its process id) on drop.
pub struct ServerProcess {
    child: Child,
    url: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// The extra `server` flags, for [`ServerProcess::restart`].
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

/// `patchwarden --data-dir DIR server --listen ADDR EXTRA...`, logging (appending) to `log`.
fn spawn_server(data_dir: &Path, log: &Path, listen: &str, extra: &[String]) -> Result<Child> {
    let bin = workspace_bin("patchwarden")?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["server", "--listen", listen])
        .args(extra);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("RUST_LOG", "info");
    cmd.spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

impl ServerProcess {
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts the server with extra `server` flags (e.g. `--checkin-interval 5`).
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pw-server-")
            .tempdir()
            .context("server tempdir")?;
        let data_dir = dir.path().join("data");
        let log = dir.path().join("server.log");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = spawn_server(&data_dir, &log, "127.0.0.1:0", &extra)?;
        let mut server = ServerProcess {
            child,
            url: String::new(),
            data_dir,
            log,
            extra,
            _dir: dir,
        };
        server.wait_listening()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> Result<()> {
        let url_file = self.data_dir.join("server-url");
        wait_until(Duration::from_secs(30), "the server to listen", || {
            if let Some(status) = self.child.try_wait()? {
                bail!("server exited with {status}: {}", self.logs());
            }
            Ok(url_file.is_file())
        })?;
        self.url = std::fs::read_to_string(&url_file)?.trim().to_owned();
        Ok(())
    }

    /// SIGKILL by pid, as a crash or power loss would stop it, and waits for it.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let pid = rustix::process::Pid::from_child(&self.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            self.child.wait().context("reaping the server")?;
        }
        Ok(())
    }

    /// Starts the server again (after [`ServerProcess::kill`] or [`ServerProcess::stop`]) on
    /// the same data directory, database and address, so that enrolled agents find it.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            bail!("the server (pid {}) is still running", self.child.id());
        }
        let listen = self
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let _ = std::fs::remove_file(self.data_dir.join("server-url"));
        // Append to the log: the first run's lines stay readable.
        self.child = spawn_server(&self.data_dir, &self.log, &listen, &self.extra)?;
        self.wait_listening()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `patchwarden ARGS` as an operator against this server (it finds the URL and the
    /// administrator token in the data directory, as on a real local install).
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let bin = workspace_bin("patchwarden")?;
        Command::new(&bin)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env_remove("PATCHWARDEN_URL")
            .env_remove("PATCHWARDEN_TOKEN")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running patchwarden {}", args.join(" ")))
    }

    /// Runs a CLI command that must succeed and returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "patchwarden {} exited with {}: {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a `--json` CLI command and parses its output.
    pub fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let out = self.cli_ok(args)?;
        serde_json::from_str(&out)
            .with_context(|| format!("parsing the JSON of patchwarden {}: {out}", args.join(" ")))
    }

    /// A fresh enrollment token (extra flags such as `--label k=v`).
    pub fn enroll_token(&self, extra: &[&str]) -> Result<String> {
        let mut args = vec!["enroll-token", "create"];
        args.extend_from_slice(extra);
        Ok(self.cli_ok(&args)?.trim().to_owned())
    }

    /// The device list, as `patchwarden devices --json` prints it.
    pub fn devices(&self) -> Result<Vec<serde_json::Value>> {
        match self.cli_json(&["devices", "--json"])? {
            serde_json::Value::Array(v) => Ok(v),
            other => bail!("devices --json printed {other}"),
        }
    }

    /// Stops the server the way an operator's SIGTERM does and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let pid = rustix::process::Pid::from_child(&self.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.wait();
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Polls `check` every 100 ms until it returns true, for at most `limit`.
pub fn wait_until(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies the workspace's agent binary into the host, with the lab's reboot command.
pub fn install_agent(host: &Host) -> Result<()> {
    host.write_file(LAB_REBOOT_COMMAND, LAB_REBOOT_SCRIPT, 0o755)?;
    host.install_file_from_host(&workspace_bin("patchwarden-agent")?, AGENT_IN_HOST, 0o755)
}

/// Enrolls the host's agent with `token` against `server_url`.
pub fn enroll_agent(host: &Host, server_url: &str, token: &str) -> Result<()> {
    let out = host.exec(&[
        AGENT_IN_HOST,
        "--state-dir",
        AGENT_STATE_IN_HOST,
        "enroll",
        "--server",
        server_url,
        "--token",
        token,
    ])?;
    if !out.status.success() {
        bail!(
            "agent enrollment in host {} failed ({}): {}{}",
            host.name(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs the agent once in the host (`run --once`) and returns its output.
pub fn run_agent_once(host: &Host, extra: &[&str]) -> Result<Output> {
    let mut args = vec![
        AGENT_IN_HOST,
        "--state-dir",
        AGENT_STATE_IN_HOST,
        "run",
        "--once",
    ];
    args.extend_from_slice(extra);
    host.exec_with_env(
        &args,
        &[
            (crate::BOOT_ID_ENV, crate::BOOT_ID_FILE),
            ("PATCHWARDEN_REBOOT_COMMAND", LAB_REBOOT_COMMAND),
            ("RUST_LOG", "info"),
        ],
    )
}

/// Starts the agent daemon in the host (`run`, with extra flags).
pub fn spawn_agent(host: &Host, extra: &[&str]) -> Result<HostProcess> {
    let mut args = vec![AGENT_IN_HOST, "--state-dir", AGENT_STATE_IN_HOST, "run"];
    args.extend_from_slice(extra);
    host.spawn(
        &args,
        &[
            (crate::BOOT_ID_ENV, crate::BOOT_ID_FILE),
            ("PATCHWARDEN_REBOOT_COMMAND", LAB_REBOOT_COMMAND),
            ("RUST_LOG", "info"),
        ],
    )
}
