//! The scheduler survives a server crash mid-deployment (issue 4, acceptance): the real
//! `patchwarden server` process is killed (SIGKILL, by pid) twice while a two-ring,
//! concurrency-1 deployment installs on real lab hosts, and started again on the same SQLite
//! file and address. Every device ends with exactly one install (the API's attempt history,
//! the host's dpkg database and dpkg.log, the agent's own log) and the deployment completes.
//! Needs root (skips with a reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, spawn_agent, wait_until, ServerProcess, AGENT_STATE_IN_HOST,
};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host, HostProcess};
use serde_json::Value;
use std::time::Duration;

const PKG: &str = "pw-restart";
const N: usize = 4;

fn deployment(server: &ServerProcess, id: &str) -> Result<Value> {
    server.cli_json(&["deployment", "show", id, "--json"])
}

/// Waits for `check` on the deployment view; on failure prints the view, the server's log
/// and the agents' logs.
fn wait_for(
    server: &ServerProcess,
    id: &str,
    agents: &[HostProcess],
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&Value) -> Result<bool>,
) -> Result<Value> {
    let mut last = Value::Null;
    let r = wait_until(limit, what, || {
        last = deployment(server, id)?;
        check(&last)
    });
    if let Err(e) = r {
        let logs: Vec<String> = agents.iter().map(HostProcess::logs).collect();
        bail!(
            "{e:#}\n{}\n--- server ---\n{}\n{}",
            brief(&last),
            server.logs(),
            logs.join("\n")
        );
    }
    Ok(last)
}

/// The hostname of a job of `ring` (0 pilot, 1 broad) that is running, if any.
fn running_in_ring(view: &Value, pilot: &str, ring: usize) -> Option<String> {
    view["jobs"].as_array()?.iter().find_map(|j| {
        let on_pilot = j["hostname"] == pilot;
        (j["status"] == "running" && on_pilot == (ring == 0))
            .then(|| j["hostname"].as_str().unwrap_or("").to_owned())
    })
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
fn lab_a_server_killed_twice_mid_rollout_neither_duplicates_nor_drops_work() -> Result<()> {
    require_lab!(Ok(()));
    let mut server = ServerProcess::start_with(&["--checkin-interval", "5"])?;
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new(PKG, "1.0"))?;
    // Slow enough to kill the server while an install runs.
    repo.add(&DebPackage::new(PKG, "1.1").postinst("#!/bin/sh\nsleep 3\n"))?;
    repo.publish()?;
    let hosts: Vec<Host> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (base, repo) = (&base, &repo);
                s.spawn(move || -> Result<Host> {
                    let host = Host::create(base, &format!("rst-{i}"))?;
                    host.set_apt_sources(&[repo.source_line()])?;
                    host.exec_ok(&["apt-get", "update"])?;
                    host.exec_ok(&["apt-get", "install", "-y", &format!("{PKG}=1.0")])?;
                    install_agent(&host)?;
                    Ok(host)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("host thread panicked")))
            })
            .collect::<Result<Vec<Host>>>()
    })?;
    let token = server.enroll_token(&["--ttl", "1h"])?;
    let mut agents = Vec::new();
    for host in &hosts {
        enroll_agent(host, server.url(), &token)?;
        agents.push(spawn_agent(host, &[])?);
    }
    wait_until(Duration::from_secs(120), "every inventory", || {
        let devices = server.devices()?;
        Ok(devices.len() == N
            && devices
                .iter()
                .all(|d| d["pending_updates"].as_u64() >= Some(1)))
    })?;
    let devices = server.devices()?;
    let id_of = |name: &str| -> Result<String> {
        devices
            .iter()
            .find(|d| d["hostname"] == name)
            .and_then(|d| d["id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no device {name}"))
    };
    let pilot = "rst-0";
    let view = server.cli_json(&[
        "deploy",
        "--all",
        "--package",
        &format!("{PKG}=1.1"),
        "--ring",
        &format!("pilot={}", id_of(pilot)?),
        "--ring",
        "broad=rest",
        "--concurrency",
        "1",
        "--json",
    ])?;
    let id = view["id"].as_str().context("deployment id")?.to_owned();

    // Crash 1: while the pilot installs. The agent finishes without the server and keeps
    // the result in its outbox.
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(60),
        "the pilot install to start",
        |v| Ok(running_in_ring(v, pilot, 0).is_some()),
    )?;
    let pid = server.pid();
    server.kill()?;
    // The install ends while the server is down: the result waits in the agent's outbox.
    wait_until(
        Duration::from_secs(60),
        "the pilot's result upload to fail",
        || Ok(agents[0].logs().contains("result upload failed")),
    )
    .with_context(|| agents[0].logs())?;
    let pkg = hosts[0].dpkg_version(PKG)?.context("installed")?;
    assert_eq!((pkg.version.as_str(), pkg.status.as_str()), ("1.1", "ii"));
    assert_eq!(
        std::fs::read_dir(hosts[0].path(&format!("{AGENT_STATE_IN_HOST}/outbox"))?)?.count(),
        1,
        "the result is kept in the outbox"
    );
    server.restart()?;
    assert_ne!(server.pid(), pid);

    // Crash 2: while a broad-ring host installs (the gate passed after the restart).
    wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(90),
        "a broad-ring install to start",
        |v| Ok(running_in_ring(v, pilot, 1).is_some()),
    )?;
    server.kill()?;
    server.restart()?;

    let view = wait_for(
        &server,
        &id,
        &agents,
        Duration::from_secs(180),
        "the deployment to complete",
        |v| Ok(v["status"] != "running"),
    )?;
    assert_eq!(view["status"], "completed", "{}", brief(&view));
    assert_eq!(view["counts"]["verified"], N as u64, "{}", brief(&view));
    assert_eq!(
        view["jobs"].as_array().map(Vec::len),
        Some(N),
        "one job per device: {}",
        brief(&view)
    );
    assert_eq!(
        (
            view["rings"][0]["succeeded"].as_u64(),
            view["rings"][1]["succeeded"].as_u64()
        ),
        (Some(1), Some(N as u64 - 1)),
        "{}",
        brief(&view)
    );
    // Concurrency 1 and ring order held across the crashes: the installs did not overlap.
    let mut spans: Vec<(String, String)> = view["jobs"]
        .as_array()
        .context("jobs")?
        .iter()
        .map(|j| {
            (
                j["started_at"].as_str().unwrap_or("").to_owned(),
                j["finished_at"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "installs overlapped: {spans:?}");
    }
    for (host, agent) in hosts.iter().zip(&agents) {
        let name = host.name();
        let pkg = host.dpkg_version(PKG)?.context("installed")?;
        assert_eq!(
            (pkg.version.as_str(), pkg.status.as_str()),
            ("1.1", "ii"),
            "{name}"
        );
        let log = host.read_file("/var/log/dpkg.log")?;
        let upgrades = log
            .lines()
            .filter(|l| l.contains(&format!(" upgrade {PKG}:all ")))
            .count();
        assert_eq!(upgrades, 1, "{name}: upgraded exactly once");
        assert_eq!(
            agent.logs().matches("running job").count(),
            1,
            "{name}: the agent ran one job\n{}",
            agent.logs()
        );
        let outbox = host.path(&format!("{AGENT_STATE_IN_HOST}/outbox"))?;
        assert_eq!(
            std::fs::read_dir(outbox).map(|d| d.count()).unwrap_or(0),
            0,
            "{name}: every result delivered"
        );
        let detail = server.cli_json(&["device", "show", &id_of(name)?, "--json"])?;
        let attempts: Vec<&str> = detail["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter(|h| h["deployment"] == id.as_str())
            .filter_map(|h| h["state"].as_str())
            .collect();
        assert_eq!(attempts, vec!["verified"], "{name}: one attempt, verified");
    }
    Ok(())
}
