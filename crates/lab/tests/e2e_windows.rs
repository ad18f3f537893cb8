//! Maintenance windows on real lab hosts (issue 4, acceptance): the server runs in-process with
//! an injected clock (real time shifted by what the test sets, so it keeps flowing: no test
//! sleeps through a real window), real agents in lab hosts talk real HTTP to it and install
//! with real apt. Checked against each host's dpkg database and dpkg.log, not only the API.
//!
//! - A host cut off from the network (its own namespace, link down) during its window is
//!   `device_offline` once the window closes, nothing is installed while it is away nor when
//!   it comes back outside a window, and in its next window it is caught up exactly once.
//!   Another host loses its network in the middle of its install: the work is not taken
//!   back when the window closes, and its result, kept in the agent's outbox, is delivered
//!   when it returns (one attempt, no re-run).
//! - A window that closes mid-deployment (concurrency 1): the devices not reached are
//!   `window_missed`, no install starts after the window's end, and the next window catches
//!   each up once.
//! - The server stops abruptly mid-install and the window closes while it is down: after its
//!   restart on the same SQLite file the install's result is delivered, the rest are
//!   `window_missed` with nothing started late, and the next window catches each up once.
//! - With `--catch-up-immediately`, a host away for its window is patched, once, as soon as
//!   it returns (the work it gets carries no stale window end for its agent to refuse).
//!
//! Needs root (skips with a reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, spawn_agent, wait_until, AGENT_STATE_IN_HOST,
};
use patchwarden_lab::netns::{HostLink, LabNet};
use patchwarden_lab::{
    require_lab, workspace_bin, AptRepo, BaseRoot, DebPackage, Host, HostProcess,
};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: i64 = 24 * 3600 * 1000;
const MINUTE_MS: i64 = 60 * 1000;

/// The server's clock: real time plus an offset the test moves. Kept near real time while the
/// agents' own check of the window end (against their real clocks) matters.
struct ShiftedClock(AtomicI64);

impl ShiftedClock {
    fn now(&self) -> i64 {
        patchwarden_server::now_ms() + self.0.load(Ordering::SeqCst)
    }
    /// From now on the server reads `ms`, and time flows on from there.
    fn set(&self, ms: i64) {
        self.0
            .store(ms - patchwarden_server::now_ms(), Ordering::SeqCst);
    }
}

impl patchwarden_server::Clock for ShiftedClock {
    fn now_ms(&self) -> i64 {
        self.now()
    }
}

/// The patchwarden server library running in a thread of this test, on its own data
/// directory, with the time from a [`ShiftedClock`]. Stopped (abruptly) on drop.
struct Server {
    url: String,
    data_dir: PathBuf,
    config: patchwarden_server::ServerConfig,
    clock: Arc<ShiftedClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(listen: SocketAddr) -> Result<Server> {
        // The server's log, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("pw-server-")
            .tempdir()
            .context("server tempdir")?;
        let data_dir = dir.path().join("data");
        let config = patchwarden_server::ServerConfig {
            listen,
            data_dir: data_dir.clone(),
            database_url: None,
            checkin_interval_secs: 5,
            stale_after_secs: None,
            offline_after_secs: None,
        };
        let clock = Arc::new(ShiftedClock(AtomicI64::new(0)));
        let mut server = Server {
            url: String::new(),
            data_dir,
            config,
            clock,
            stop: None,
            thread: None,
            _dir: dir,
        };
        server.run()?;
        Ok(server)
    }

    /// Runs the server in a thread of its own (a runtime of its own) until [`Server::stop`].
    fn run(&mut self) -> Result<()> {
        let url_file = self.data_dir.join("server-url");
        let _ = std::fs::remove_file(&url_file);
        let config = self.config.clone();
        let server_clock: Arc<dyn patchwarden_server::Clock> = self.clock.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("in-process server: no runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                tokio::select! {
                    r = patchwarden_server::run_with_clock(config, server_clock, std::future::pending()) => {
                        if let Err(e) = r {
                            eprintln!("in-process server stopped: {e:#}");
                        }
                    }
                    _ = rx => {}
                }
            });
            // Abrupt: held long-polls and requests in flight are dropped, not waited for.
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        self.stop = Some(tx);
        self.thread = Some(thread);
        wait_until(Duration::from_secs(30), "the in-process server", || {
            Ok(url_file.is_file())
        })?;
        self.url = std::fs::read_to_string(&url_file)?.trim().to_owned();
        Ok(())
    }

    /// Stops it abruptly (every task dropped, like a crash; what was committed stays).
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Starts it again on the same data directory, SQLite file and address.
    fn restart(&mut self) -> Result<()> {
        self.stop();
        self.config.listen = self
            .url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("the address in {}", self.url))?;
        self.run()
    }

    /// `patchwarden ARGS` as an operator (URL and token from the data directory).
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(workspace_bin("patchwarden")?)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env_remove("PATCHWARDEN_URL")
            .env_remove("PATCHWARDEN_TOKEN")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running patchwarden {}", args.join(" ")))?;
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

    fn json(&self, args: &[&str]) -> Result<Value> {
        let out = self.cli(args)?;
        serde_json::from_str(&out)
            .with_context(|| format!("the JSON of patchwarden {}: {out}", args.join(" ")))
    }

    fn deployment(&self, id: &str) -> Result<Value> {
        self.json(&["deployment", "show", id, "--json"])
    }

    /// Device id by hostname.
    fn device_id(&self, hostname: &str) -> Result<String> {
        let devices = self.json(&["devices", "--json"])?;
        devices
            .as_array()
            .and_then(|d| d.iter().find(|x| x["hostname"] == hostname))
            .and_then(|d| d["id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no device {hostname} in {devices:#}"))
    }

    /// (state, class) of the device's attempts for this deployment, sorted: an install's
    /// attempt is stamped with the agent's (real) clock, a missed window's with the server's
    /// (shifted) one, so their order is not comparable here; the job's start time is.
    fn attempts(&self, device: &str, deployment: &str) -> Result<Vec<(String, String)>> {
        let detail = self.json(&["device", "show", device, "--json"])?;
        let mut rows: Vec<(String, String)> = detail["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter(|h| h["deployment"] == deployment)
            .map(|h| {
                (
                    h["state"].as_str().unwrap_or("").to_owned(),
                    h["class"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        rows.sort();
        Ok(rows)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// RFC 3339 (as the API prints it) to Unix milliseconds.
fn ms(rfc3339: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("not an RFC 3339 time: {rfc3339:?}"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A daily window that opened a minute or two ago (UTC, the hosts' zone) and lasts an hour:
/// (its spec, its start, its end).
fn window_open_now() -> Result<(String, i64, i64)> {
    let now = patchwarden_server::now_ms();
    let start = now - now.rem_euclid(MINUTE_MS) - MINUTE_MS;
    let t = time::OffsetDateTime::from_unix_timestamp(start / 1000)?;
    let spec = format!("daily {:02}:{:02}", t.hour(), t.minute());
    Ok((spec, start, start + 3600 * 1000))
}

fn results_row<'a>(view: &'a Value, hostname: &str) -> Result<&'a Value> {
    view["results"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["hostname"] == hostname))
        .with_context(|| format!("no result row for {hostname} in {}", brief(view)))
}

fn job_row<'a>(view: &'a Value, hostname: &str) -> Result<&'a Value> {
    view["jobs"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["hostname"] == hostname))
        .with_context(|| format!("no job for {hostname} in {}", brief(view)))
}

/// How many times dpkg upgraded `pkg` in the host (its own log: one line per real upgrade).
fn upgrades(host: &Host, pkg: &str) -> Result<usize> {
    let log = host.read_file("/var/log/dpkg.log").unwrap_or_default();
    let needle = format!(" upgrade {pkg}:all ");
    Ok(log.lines().filter(|l| l.contains(&needle)).count())
}

fn version(host: &Host, pkg: &str) -> Result<(String, String)> {
    let p = host
        .dpkg_version(pkg)?
        .with_context(|| format!("{pkg} not installed in {}", host.name()))?;
    Ok((p.version, p.status))
}

/// Results still waiting in the agent's outbox (delivered ones move to done/).
fn outbox_len(host: &Host) -> Result<usize> {
    let dir = host.path(&format!("{AGENT_STATE_IN_HOST}/outbox"))?;
    Ok(std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0))
}

/// `name` hosts prepared in parallel: UTC zone, the repository, `pkg` 1.0 installed, the
/// agent binary. The ones listed in `cut_off` get a network of their own on `net` (and reach
/// the repository through the bridge).
fn hosts(
    base: &BaseRoot,
    repo: &AptRepo,
    net: Option<&LabNet>,
    names: &[&str],
    pkg: &str,
) -> Result<Vec<(Host, Option<HostLink>)>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                s.spawn(move || -> Result<(Host, Option<HostLink>)> {
                    let host = Host::create(base, name)?;
                    host.write_file("/etc/timezone", "Etc/UTC\n", 0o644)?;
                    let link = match net {
                        Some(net) => {
                            let link = net.attach(&host)?;
                            host.set_apt_sources(&[format!(
                                "deb [trusted=yes] http://{}:{}/ ./",
                                net.gateway(),
                                repo.port()
                            )])?;
                            Some(link)
                        }
                        None => {
                            host.set_apt_sources(&[repo.source_line()])?;
                            None
                        }
                    };
                    host.exec_ok(&["apt-get", "update"])?;
                    host.exec_ok(&["apt-get", "install", "-y", &format!("{pkg}=1.0")])?;
                    install_agent(&host)?;
                    Ok((host, link))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("host thread panicked")))
            })
            .collect()
    })
}

/// Enrolls every host, starts its agent daemon, and waits for every inventory to show the
/// pending update.
fn start_agents(server: &Server, hosts: &[&Host]) -> Result<Vec<HostProcess>> {
    let token = server.cli(&["enroll-token", "create", "--ttl", "1h"])?;
    let mut agents = Vec::new();
    for host in hosts {
        enroll_agent(host, &server.url, token.trim())?;
        agents.push(spawn_agent(host, &[])?);
    }
    wait_until(
        Duration::from_secs(120),
        "every device with its inventory",
        || {
            let devices = server.json(&["devices", "--json"])?;
            let devices = devices.as_array().cloned().unwrap_or_default();
            Ok(devices.len() == hosts.len()
                && devices
                    .iter()
                    .all(|d| d["pending_updates"].as_u64() >= Some(1)))
        },
    )?;
    Ok(agents)
}

fn deploy(server: &Server, args: &[&str]) -> Result<String> {
    let mut all = vec!["deploy", "--all", "--json"];
    all.extend_from_slice(args);
    let v = server.json(&all)?;
    Ok(v["id"]
        .as_str()
        .with_context(|| format!("id in {v:#}"))?
        .to_owned())
}

/// Runs `check` until it holds, printing the deployment and agent logs when it never does.
fn wait_for(
    server: &Server,
    id: &str,
    agents: &[HostProcess],
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&Value) -> Result<bool>,
) -> Result<Value> {
    let mut last = Value::Null;
    let r = wait_until(limit, what, || {
        last = server.deployment(id)?;
        check(&last)
    });
    if let Err(e) = r {
        let logs: Vec<String> = agents.iter().map(HostProcess::logs).collect();
        bail!("{e:#}\n{}\n{}", brief(&last), logs.join("\n"));
    }
    Ok(last)
}

/// The deployment view without the jobs' command output (for failure messages).
fn brief(view: &Value) -> String {
    let mut v = view.clone();
    if let Some(jobs) = v["jobs"].as_array_mut() {
        for j in jobs {
            if let Some(o) = j.as_object_mut() {
                o.remove("output");
                o.remove("commands");
            }
        }
    }
    format!("{v:#}")
}

#[test]
fn lab_a_host_cut_off_in_its_window_is_offline_then_caught_up_exactly_once() -> Result<()> {
    require_lab!(Ok(()));
    const PKG: &str = "pw-offline";
    let base = BaseRoot::get(&[])?;
    let net = LabNet::new()?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new(PKG, "1.0"))?;
    repo.add(&DebPackage::new(PKG, "1.1"))?;
    repo.publish()?;
    net.forward(repo.port())?;
    // The server listens on the bridge: the hosts on the machine's network reach it there
    // too, the cut-off host only while its link is up.
    let server = Server::start(SocketAddr::from((net.gateway(), 0)))?;
    let on = hosts(&base, &repo, None, &["woff-on0", "woff-on1"], PKG)?;
    // woff-cut is away for the whole window; woff-mid loses its network while it installs.
    let mut away = hosts(&base, &repo, Some(&net), &["woff-cut", "woff-mid"], PKG)?;
    let (mid_host, mid_link) = away.pop().context("host cut mid-install")?;
    let (cut_host, cut_link) = away.pop().context("cut-off host")?;
    let (cut_link, mid_link) = (cut_link.context("link")?, mid_link.context("link")?);
    // A slower install on woff-mid (apt runs this after dpkg), to cut it off in the middle.
    mid_host.write_file(
        "/etc/apt/apt.conf.d/99lab-slow",
        "DPkg::Post-Invoke { \"sleep 5\"; };\n",
        0o644,
    )?;
    let all: Vec<&Host> = on
        .iter()
        .map(|(h, _)| h)
        .chain([&cut_host, &mid_host])
        .collect();
    let agents = start_agents(&server, &all)?;
    let cut_id = server.device_id("woff-cut")?;
    let mid_id = server.device_id("woff-mid")?;

    // The host drops off the network; the window is open; the deployment starts.
    cut_link.cut()?;
    let (window, start, end) = window_open_now()?;
    let id = deploy(
        &server,
        &[
            "--package",
            &format!("{PKG}=1.1"),
            "--window",
            &window,
            "--window-duration",
            "1h",
        ],
    )?;
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(60),
        "woff-mid to start installing",
        |v| Ok(job_row(v, "woff-mid")?["status"] == "running"),
    )?;
    // Cut once dpkg has the new version (apt then sleeps in its post-invoke hook): the
    // download is done, the verification and the report are still to come.
    wait_until(
        Duration::from_secs(60),
        "dpkg on woff-mid to have 1.1",
        || Ok(version(&mid_host, PKG)?.0 == "1.1"),
    )?;
    mid_link.cut()?;
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(120),
        "the connected hosts to install",
        |v| {
            Ok(results_row(v, "woff-on0")?["state"] == "verified"
                && results_row(v, "woff-on1")?["state"] == "verified")
        },
    )?;
    // woff-mid finished its install without the server: its result waits in the outbox.
    wait_until(
        Duration::from_secs(60),
        "woff-mid's result upload to fail",
        || Ok(agents[3].logs().contains("result upload failed")),
    )
    .with_context(|| agents[3].logs())?;
    assert_eq!(version(&mid_host, PKG)?, ("1.1".into(), "ii".into()));
    assert_eq!(outbox_len(&mid_host)?, 1, "the result is kept");
    assert_eq!(
        results_row(&view, "woff-cut")?["state"],
        "pending",
        "{}",
        brief(&view)
    );
    assert_eq!(
        view["rings"][0]["released"],
        4,
        "released to all four: {}",
        brief(&view)
    );

    // The window closes with the host still away.
    server.clock.set(end + MINUTE_MS);
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(20),
        "device_offline",
        |v| Ok(results_row(v, "woff-cut")?["state"] == "device_offline"),
    )?;
    let row = results_row(&view, "woff-cut")?;
    assert_eq!(row["class"], "device_offline", "{row:#}");
    assert!(
        row["evidence"][0]
            .as_str()
            .unwrap_or("")
            .contains("did not check in during its window"),
        "{row:#}"
    );
    assert_eq!(
        view["status"],
        "running",
        "it waits for the next window: {}",
        brief(&view)
    );
    assert_eq!(version(&cut_host, PKG)?, ("1.0".into(), "ii".into()));
    // Work that started inside the window is not taken back: its result is on its way.
    assert_eq!(
        job_row(&view, "woff-mid")?["status"],
        "running",
        "{}",
        brief(&view)
    );
    assert_eq!(
        results_row(&view, "woff-mid")?["state"],
        "pending",
        "{}",
        brief(&view)
    );

    // Both come back outside any window: woff-mid's result is delivered; woff-cut checks in,
    // and nothing is installed.
    let back_at = server.clock.now();
    cut_link.restore()?;
    mid_link.restore()?;
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(120),
        "woff-mid's result after its return",
        |v| Ok(results_row(v, "woff-mid")?["state"] == "verified"),
    )?;
    wait_until(
        Duration::from_secs(120),
        "the host to check in again",
        || {
            let d = server.json(&["device", "show", &cut_id, "--json"])?;
            let seen = d["summary"]["last_seen"].as_str().map(ms).transpose()?;
            Ok(seen.is_some_and(|s| s >= back_at))
        },
    )
    .with_context(|| agents[2].logs())?;
    std::thread::sleep(Duration::from_secs(3)); // two orchestrator ticks
    let view = server.deployment(&id)?;
    assert_eq!(results_row(&view, "woff-cut")?["state"], "device_offline");
    assert_eq!(
        job_row(&view, "woff-cut")?["status"],
        "waiting",
        "not released: {}",
        brief(&view)
    );
    assert_eq!(
        view["rings"][0]["released"],
        3,
        "taken back until the next window: {}",
        brief(&view)
    );
    assert_eq!(version(&cut_host, PKG)?, ("1.0".into(), "ii".into()));
    assert_eq!(upgrades(&cut_host, PKG)?, 0);

    // Its next window: caught up, once.
    let next_start = start + DAY_MS;
    server.clock.set(next_start + MINUTE_MS);
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(120),
        "the catch-up in the next window",
        |v| Ok(v["status"] == "completed"),
    )?;
    assert_eq!(view["counts"]["verified"], 4, "{}", brief(&view));
    let row = results_row(&view, "woff-cut")?;
    assert_eq!(
        (row["state"].as_str(), row["installed_version"].as_str()),
        (Some("verified"), Some("1.1")),
        "{row:#}"
    );
    let job = job_row(&view, "woff-cut")?;
    let started = ms(job["started_at"].as_str().context("started_at")?)?;
    assert!(
        started >= next_start,
        "started {} before its next window ({next_start})",
        job["started_at"]
    );
    assert_eq!(
        view["jobs"].as_array().map(Vec::len),
        Some(4),
        "one job per device: {}",
        brief(&view)
    );
    assert_eq!(
        server.attempts(&cut_id, &id)?,
        vec![
            ("device_offline".to_owned(), "device_offline".to_owned()),
            ("verified".to_owned(), String::new())
        ],
        "offline, and one verified install"
    );
    for host in &all {
        assert_eq!(
            version(host, PKG)?,
            ("1.1".into(), "ii".into()),
            "{}",
            host.name()
        );
        assert_eq!(upgrades(host, PKG)?, 1, "{} upgraded once", host.name());
        assert_eq!(
            outbox_len(host)?,
            0,
            "{}: no result left undelivered",
            host.name()
        );
    }
    assert_eq!(
        server.attempts(&mid_id, &id)?,
        vec![("verified".to_owned(), String::new())],
        "cut off mid-install: one attempt, its result delivered on return"
    );
    for agent in &agents {
        let runs = agent.logs().matches("running job").count();
        assert_eq!(runs, 1, "each agent ran its job once:\n{}", agent.logs());
    }
    drop(agents);
    drop((cut_host, mid_host));
    drop((cut_link, mid_link));
    Ok(())
}

#[test]
fn lab_a_window_closing_mid_deployment_leaves_the_rest_window_missed_and_starts_nothing_after_it(
) -> Result<()> {
    require_lab!(Ok(()));
    const PKG: &str = "pw-slow";
    const N: usize = 4;
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new(PKG, "1.0"))?;
    // Slow enough that the window can close while the first host installs.
    repo.add(&DebPackage::new(PKG, "1.1").postinst("#!/bin/sh\nsleep 4\n"))?;
    repo.publish()?;
    let server = Server::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let names: Vec<String> = (0..N).map(|i| format!("wend-{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let hosts: Vec<Host> = hosts(&base, &repo, None, &name_refs, PKG)?
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let agents = start_agents(&server, &hosts.iter().collect::<Vec<_>>())?;

    let (window, start, end) = window_open_now()?;
    let id = deploy(
        &server,
        &[
            "--package",
            &format!("{PKG}=1.1"),
            "--window",
            &window,
            "--window-duration",
            "1h",
            "--concurrency",
            "1",
        ],
    )?;
    // The first host starts; the window closes while it installs.
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(60),
        "the first install to start",
        |v| {
            Ok(v["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|x| x["status"] == "running")))
        },
    )?;
    server.clock.set(end + MINUTE_MS);
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(60),
        "the first host to finish and the others to miss the window",
        |v| {
            let rows = v["results"].as_array().cloned().unwrap_or_default();
            Ok(rows.len() == N
                && rows
                    .iter()
                    .all(|r| r["state"] == "verified" || r["class"] == "window_missed"))
        },
    )?;
    // Work that had started before the end finished; nothing started after it.
    let mut in_first = Vec::new();
    for name in &names {
        let job = job_row(&view, name)?;
        let row = results_row(&view, name)?;
        match job["started_at"].as_str() {
            Some(t) => {
                assert!(
                    ms(t)? < end,
                    "{name} started at {t}, after the window's end"
                );
                assert_eq!(row["state"], "verified", "{row:#}");
                in_first.push(name.clone());
            }
            None => {
                assert_eq!(
                    (row["state"].as_str(), row["class"].as_str()),
                    (Some("failed"), Some("window_missed")),
                    "{row:#}"
                );
                assert!(
                    row["evidence"][0]
                        .as_str()
                        .unwrap_or("")
                        .contains("window closed"),
                    "{row:#}"
                );
            }
        }
    }
    assert!(
        !in_first.is_empty() && in_first.len() < N,
        "the window should close mid-deployment: {}",
        brief(&view)
    );
    assert_eq!(view["status"], "running", "{}", brief(&view));
    std::thread::sleep(Duration::from_secs(3)); // two orchestrator ticks: still nothing
    let view = server.deployment(&id)?;
    for (host, name) in hosts.iter().zip(&names) {
        let expect = if in_first.contains(name) {
            "1.1"
        } else {
            "1.0"
        };
        assert_eq!(version(host, PKG)?, (expect.into(), "ii".into()), "{name}");
        assert_eq!(upgrades(host, PKG)?, usize::from(expect == "1.1"), "{name}");
        if !in_first.contains(name) {
            assert_eq!(
                job_row(&view, name)?["started_at"],
                Value::Null,
                "{}",
                brief(&view)
            );
        }
    }

    // The next window catches each one up, once, one at a time.
    let next_start = start + DAY_MS;
    server.clock.set(next_start + MINUTE_MS);
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(180),
        "the catch-up in the next window",
        |v| Ok(v["status"] == "completed"),
    )?;
    assert_eq!(view["counts"]["verified"], N as u64, "{}", brief(&view));
    assert_eq!(
        view["jobs"].as_array().map(Vec::len),
        Some(N),
        "{}",
        brief(&view)
    );
    for (host, name) in hosts.iter().zip(&names) {
        assert_eq!(version(host, PKG)?, ("1.1".into(), "ii".into()), "{name}");
        assert_eq!(upgrades(host, PKG)?, 1, "{name} upgraded once");
        let device = server.device_id(name)?;
        let want: Vec<(String, String)> = if in_first.contains(name) {
            vec![("verified".into(), String::new())]
        } else {
            let started = ms(job_row(&view, name)?["started_at"]
                .as_str()
                .context("started")?)?;
            assert!(started >= next_start, "{name} caught up in its next window");
            vec![
                ("failed".into(), "window_missed".into()),
                ("verified".into(), String::new()),
            ]
        };
        assert_eq!(server.attempts(&device, &id)?, want, "{name}");
    }
    drop(agents);
    Ok(())
}

#[test]
fn lab_a_server_down_when_the_window_closes_starts_nothing_late_and_loses_nothing() -> Result<()> {
    require_lab!(Ok(()));
    const PKG: &str = "pw-down";
    const N: usize = 3;
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new(PKG, "1.0"))?;
    repo.add(&DebPackage::new(PKG, "1.1").postinst("#!/bin/sh\nsleep 4\n"))?;
    repo.publish()?;
    let mut server = Server::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let names: Vec<String> = (0..N).map(|i| format!("wdown-{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let hosts: Vec<Host> = hosts(&base, &repo, None, &name_refs, PKG)?
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let agents = start_agents(&server, &hosts.iter().collect::<Vec<_>>())?;
    let (window, start, end) = window_open_now()?;
    let id = deploy(
        &server,
        &[
            "--package",
            &format!("{PKG}=1.1"),
            "--window",
            &window,
            "--window-duration",
            "1h",
            "--concurrency",
            "1",
        ],
    )?;
    let mut first = String::new();
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(60),
        "the first install to start",
        |v| {
            let running = v["jobs"].as_array().and_then(|j| {
                j.iter()
                    .find(|x| x["status"] == "running")
                    .and_then(|x| x["hostname"].as_str())
            });
            first = running.unwrap_or("").to_owned();
            Ok(running.is_some())
        },
    )?;
    let i = names.iter().position(|n| *n == first).context("host")?;

    // The server goes down mid-install, and the window closes while it is down.
    server.stop();
    server.clock.set(end + MINUTE_MS);
    wait_until(
        Duration::from_secs(60),
        "the install to end with the server down",
        || Ok(agents[i].logs().contains("result upload failed")),
    )
    .with_context(|| agents[i].logs())?;
    server.restart()?;
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(60),
        "the result delivered and the others window_missed",
        |v| {
            let rows = v["results"].as_array().cloned().unwrap_or_default();
            Ok(rows.len() == N
                && rows.iter().all(|r| {
                    if r["hostname"] == first.as_str() {
                        r["state"] == "verified"
                    } else {
                        r["class"] == "window_missed"
                    }
                }))
        },
    )?;
    std::thread::sleep(Duration::from_secs(3)); // two orchestrator ticks: still nothing
    for (host, name) in hosts.iter().zip(&names) {
        if *name == first {
            continue;
        }
        assert_eq!(
            job_row(&view, name)?["started_at"],
            Value::Null,
            "{}",
            brief(&view)
        );
        assert_eq!(version(host, PKG)?, ("1.0".into(), "ii".into()), "{name}");
        assert_eq!(upgrades(host, PKG)?, 0, "{name}");
    }

    // The next window catches the others up, once each.
    server.clock.set(start + DAY_MS + MINUTE_MS);
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(120),
        "the catch-up in the next window",
        |v| Ok(v["status"] == "completed"),
    )?;
    assert_eq!(view["counts"]["verified"], N as u64, "{}", brief(&view));
    for ((host, name), agent) in hosts.iter().zip(&names).zip(&agents) {
        assert_eq!(version(host, PKG)?, ("1.1".into(), "ii".into()), "{name}");
        assert_eq!(upgrades(host, PKG)?, 1, "{name} upgraded once");
        assert_eq!(outbox_len(host)?, 0, "{name}: every result delivered");
        assert_eq!(agent.logs().matches("running job").count(), 1, "{name}");
        let want: Vec<(String, String)> = if *name == first {
            vec![("verified".into(), String::new())]
        } else {
            vec![
                ("failed".into(), "window_missed".into()),
                ("verified".into(), String::new()),
            ]
        };
        assert_eq!(
            server.attempts(&server.device_id(name)?, &id)?,
            want,
            "{name}"
        );
    }
    drop(agents);
    Ok(())
}

#[test]
fn lab_a_host_away_for_its_window_with_catch_up_immediately_is_patched_once_on_return() -> Result<()>
{
    require_lab!(Ok(()));
    const PKG: &str = "pw-return";
    let base = BaseRoot::get(&[])?;
    let net = LabNet::new()?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new(PKG, "1.0"))?;
    repo.add(&DebPackage::new(PKG, "1.1"))?;
    repo.publish()?;
    net.forward(repo.port())?;
    let server = Server::start(SocketAddr::from((net.gateway(), 0)))?;
    let on = hosts(&base, &repo, None, &["wret-on"], PKG)?;
    let mut away = hosts(&base, &repo, Some(&net), &["wret-away"], PKG)?;
    let (host, link) = away.pop().context("host")?;
    let link = link.context("link")?;
    let all: Vec<&Host> = [&on[0].0, &host].into_iter().collect();
    let agents = start_agents(&server, &all)?;
    let away_id = server.device_id("wret-away")?;

    link.cut()?;
    let (window, start, end) = window_open_now()?;
    let id = deploy(
        &server,
        &[
            "--package",
            &format!("{PKG}=1.1"),
            "--window",
            &window,
            "--window-duration",
            "1h",
            "--catch-up-immediately",
        ],
    )?;
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(120),
        "the connected host to install",
        |v| Ok(results_row(v, "wret-on")?["state"] == "verified"),
    )?;
    server.clock.set(end + MINUTE_MS);
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(20),
        "device_offline",
        |v| Ok(results_row(v, "wret-away")?["state"] == "device_offline"),
    )?;
    assert_eq!(version(&host, PKG)?, ("1.0".into(), "ii".into()));

    // Back outside any window: the policy says catch up at once.
    let back_at = server.clock.now();
    link.restore()?;
    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(120),
        "the catch-up on return",
        |v| Ok(v["status"] == "completed"),
    )?;
    let row = results_row(&view, "wret-away")?;
    assert_eq!(row["state"], "verified", "{row:#}");
    let started = ms(job_row(&view, "wret-away")?["started_at"]
        .as_str()
        .context("started_at")?)?;
    assert!(
        started >= back_at && started < start + DAY_MS,
        "caught up on return, not in the next window"
    );
    assert_eq!(version(&host, PKG)?, ("1.1".into(), "ii".into()));
    assert_eq!(upgrades(&host, PKG)?, 1);
    assert_eq!(outbox_len(&host)?, 0);
    assert_eq!(agents[1].logs().matches("running job").count(), 1);
    assert_eq!(
        server.attempts(&away_id, &id)?,
        vec![
            ("device_offline".to_owned(), "device_offline".to_owned()),
            ("verified".to_owned(), String::new())
        ]
    );
    drop(agents);
    drop(host);
    drop(link);
    Ok(())
}
