//! Retries on a real lab host (issue 10): a deployment with a retry policy for `lock_held`
//! whose first attempt meets the dpkg lock held by another apt inside the host; the lock is
//! then released and a later attempt, offered to the agent as a new work id (`job_…~2`),
//! runs and ends `verified`, the package at the new version in the dpkg database.
//!
//! The real agent daemon (`run`) talks to the real server process through the lab's proxy,
//! which counts its requests: an agent that refused the retry's id would ask for work again
//! at once, hundreds of times a second.
//! Needs root (skips with a printed reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, spawn_agent, wait_until, ServerProcess,
};
use patchwarden_lab::proxy::DroppingProxy;
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A postinst that holds dpkg (and so apt's locks) until the test releases it.
const HOLDING_POSTINST: &str = "#!/bin/sh\ntouch /run/pw-hold-started\nwhile [ ! -e /run/pw-hold-release ]; do sleep 0.1; done\n";
const STARTED: &str = "/run/pw-hold-started";
const RELEASE: &str = "/run/pw-hold-release";

fn rows_for(history: &Value, deployment: &str) -> Vec<(String, Option<String>)> {
    let mut rows: Vec<(String, Option<String>)> = history
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|a| a["deployment"] == deployment && a["package"] == "pw-ok")
                .map(|a| {
                    (
                        a["state"].as_str().unwrap_or("").to_owned(),
                        a["class"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // The history is newest first.
    rows.reverse();
    rows
}

#[test]
fn lab_retry_after_lock_held_runs_again_and_is_verified() -> Result<()> {
    require_lab!(Ok(()));
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    for v in ["1.0", "2.0"] {
        repo.add(&DebPackage::new("pw-ok", v).file("/usr/share/pw-ok/version", v))?;
    }
    repo.add(&DebPackage::new("pw-hold", "1.0"))?;
    repo.add(&DebPackage::new("pw-hold", "2.0").postinst(HOLDING_POSTINST))?;
    repo.publish()?;
    let server = ServerProcess::start()?;
    let proxy = DroppingProxy::start(server.url(), "/never-dropped", 0)?;
    let host = Host::create(&base, "retry-lock")?;
    host.set_apt_sources(&[repo.source_line()])?;
    host.exec_ok(&["apt-get", "update"])?;
    host.exec_ok(&["apt-get", "install", "-y", "pw-ok=1.0", "pw-hold=1.0"])?;
    install_agent(&host)?;
    let token = server.enroll_token(&[])?;
    enroll_agent(&host, &proxy.url(), &token)?;
    let first = run_agent_once(&host, &[])?;
    if !first.status.success() {
        bail!(
            "first agent run failed: {}",
            String::from_utf8_lossy(&first.stderr)
        );
    }

    // Another apt inside the host holds dpkg's locks (mid-postinst).
    let mut holder = host.spawn(&["apt-get", "install", "-y", "pw-hold=2.0"], &[])?;
    let started = host.path(STARTED)?;
    wait_until(
        Duration::from_secs(30),
        "the holding postinst to start",
        || Ok(started.exists()),
    )
    .with_context(|| holder.logs())?;

    let dep = server
        .cli_ok(&[
            "deploy",
            "--device",
            host.name(),
            "--package",
            "pw-ok=2.0",
            "--retries",
            "3",
            "--retry-backoff",
            "2s",
            "--retry-class",
            "lock_held",
        ])?
        .trim()
        .to_owned();
    let device = server
        .devices()?
        .iter()
        .find(|d| d["hostname"] == host.name())
        .and_then(|d| d["id"].as_str())
        .map(str::to_owned)
        .context("the enrolled device")?;
    let agent = spawn_agent(&host, &["--lock-wait", "2"])?;
    let history = || -> Result<Value> {
        Ok(server.cli_json(&["device", "show", &device, "--json"])?["history"].clone())
    };

    // The first attempt fails lock_held, and nothing is installed.
    wait_until(
        Duration::from_secs(60),
        "the first attempt's result",
        || Ok(!rows_for(&history()?, &dep).is_empty()),
    )
    .with_context(|| agent.logs())?;
    let rows = rows_for(&history()?, &dep);
    assert_eq!(
        rows[0],
        ("failed".to_owned(), Some("lock_held".to_owned())),
        "{rows:?}\n{}",
        agent.logs()
    );
    assert_eq!(
        host.dpkg_version("pw-ok")?.map(|p| p.version).as_deref(),
        Some("1.0")
    );

    // The lock is released: the other apt finishes cleanly.
    let released_at = Instant::now();
    host.write_file(RELEASE, "", 0o644)?;
    match holder.wait_timeout(Duration::from_secs(60))? {
        Some(status) if status.success() => {}
        other => bail!(
            "the holding apt did not finish: {other:?}\n{}",
            holder.logs()
        ),
    }

    // A later attempt (a new work id) runs and is verified from the dpkg database.
    wait_until(Duration::from_secs(120), "a verified retry", || {
        let view = server.cli_json(&["deployment", "show", &dep, "--json"])?;
        Ok(view["results"]
            .as_array()
            .and_then(|r| r.first())
            .is_some_and(|r| r["state"] == "verified"))
    })
    .with_context(|| {
        format!(
            "{}\nwork requests seen by the proxy: {}",
            agent.logs(),
            proxy.count("/agent/work")
        )
    })?;
    let view = server.cli_json(&["deployment", "show", &dep, "--json"])?;
    let row = &view["results"][0];
    assert_eq!(row["installed_version"], "2.0", "{row:#}");
    let dpkg = host.dpkg_version("pw-ok")?.context("pw-ok known to dpkg")?;
    assert!(dpkg.is_ok() && dpkg.version == "2.0", "{dpkg:?}");
    let rows = rows_for(&history()?, &dep);
    assert_eq!(
        rows.first(),
        Some(&("failed".to_owned(), Some("lock_held".to_owned()))),
        "{rows:?}"
    );
    assert_eq!(
        rows.last(),
        Some(&("verified".to_owned(), None)),
        "{rows:?}"
    );
    let logs = agent.logs();
    assert!(
        logs.contains("~2") && !logs.contains("ignoring work item"),
        "the retry ran under its own work id:\n{logs}"
    );
    // Without a pause, an agent that refused an item would poll a few hundred times a second;
    // a long-polling agent asks a handful of times in this test.
    let polls = proxy.count("/agent/work");
    let took = released_at.elapsed().as_secs() + 60;
    assert!(
        polls < 20 + took as usize,
        "{polls} work requests: the agent polled without a pause\n{logs}"
    );
    Ok(())
}
