//! Rings on real lab hosts: a patch whose postinst fails on the pilot ring halts the
//! deployment before the broad ring is touched; a good patch reaches the broad ring after the
//! gate. Ten hosts, real agents (daemons), real apt. Needs root (skips with a reason).

use anyhow::{Context, Result};
use patchwarden_lab::fleet::{enroll_agent, install_agent, spawn_agent, wait_until, ServerProcess};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host, HostProcess};
use serde_json::Value;
use std::time::Duration;

const HOSTS: usize = 10;

struct Fleet {
    server: ServerProcess,
    hosts: Vec<Host>,
    _agents: Vec<HostProcess>,
    _repo: AptRepo,
}

fn fleet(prefix: &str) -> Result<Fleet> {
    let server = ServerProcess::start_with(&["--checkin-interval", "5"])?;
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-good", "1.0"))?;
    repo.add(&DebPackage::new("pw-good", "1.1"))?;
    repo.add(&DebPackage::new("pw-bad", "1.0"))?;
    repo.add(
        &DebPackage::new("pw-bad", "1.1")
            .postinst("#!/bin/sh\necho 'pw-bad: broken release' >&2\nexit 1\n"),
    )?;
    repo.publish()?;
    let hosts: Vec<Host> = std::thread::scope(|s| -> Result<Vec<Host>> {
        let handles: Vec<_> = (0..HOSTS)
            .map(|i| {
                let (base, repo) = (&base, &repo);
                s.spawn(move || -> Result<Host> {
                    let host = Host::create(base, &format!("{prefix}{i:02}"))?;
                    host.set_apt_sources(&[repo.source_line()])?;
                    host.exec_ok(&["apt-get", "update"])?;
                    host.exec_ok(&["apt-get", "install", "-y", "pw-good=1.0", "pw-bad=1.0"])?;
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
    wait_until(
        Duration::from_secs(120),
        "ten devices with their inventory",
        || {
            let devices = server.devices()?;
            Ok(devices.len() == HOSTS
                && devices
                    .iter()
                    .all(|d| d["pending_updates"].as_u64() >= Some(2)))
        },
    )?;
    Ok(Fleet {
        server,
        hosts,
        _agents: agents,
        _repo: repo,
    })
}

/// Pilot = the first two hosts (by hostname), broad = the rest.
fn pilot_ring(server: &ServerProcess, prefix: &str) -> Result<String> {
    let devices = server.devices()?;
    let mut pilot: Vec<String> = devices
        .iter()
        .filter(|d| {
            d["hostname"] == format!("{prefix}00") || d["hostname"] == format!("{prefix}01")
        })
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    pilot.sort();
    anyhow::ensure!(pilot.len() == 2, "pilot devices not found in {devices:?}");
    Ok(format!("pilot={}", pilot.join(",")))
}

fn deploy(server: &ServerProcess, args: &[&str]) -> Result<Value> {
    let mut all = vec![
        "deploy",
        "--all",
        "--wait",
        "--wait-timeout",
        "4m",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = server.cli(&all)?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "deploy: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn lab_two_rings_a_broken_patch_halts_on_the_pilot_and_a_good_one_reaches_broad() -> Result<()> {
    require_lab!(Ok(()));
    let prefix = "ring-";
    let f = fleet(prefix)?;
    let pilot = pilot_ring(&f.server, prefix)?;

    // Broken patch: both pilot hosts fail in their postinst; the gate holds; broad untouched.
    let view = deploy(
        &f.server,
        &[
            "--package",
            "pw-bad=1.1",
            "--ring",
            &pilot,
            "--ring",
            "broad=rest",
        ],
    )?;
    assert_eq!(view["status"], "halted", "{view:#}");
    assert!(
        view["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("gate of ring pilot"),
        "{view:#}"
    );
    assert_eq!(view["rings"][0]["failed_patch"], 2, "{view:#}");
    assert_eq!(view["rings"][1]["released"], 0, "{view:#}");
    for host in &f.hosts[2..] {
        let pkg = host.dpkg_version("pw-bad")?.context("pw-bad installed")?;
        assert_eq!(
            (pkg.version.as_str(), pkg.status.as_str()),
            ("1.0", "ii"),
            "{} was touched",
            host.name()
        );
    }
    for row in view["results"].as_array().cloned().unwrap_or_default() {
        let on_pilot =
            row["hostname"] == format!("{prefix}00") || row["hostname"] == format!("{prefix}01");
        let want = if on_pilot { "failed" } else { "pending" };
        assert_eq!(row["state"], want, "{row:#}");
    }
    let id = view["id"].as_str().context("id")?.to_owned();
    let cancelled = f.server.cli_json(&[
        "deployment",
        "cancel",
        &id,
        "--reason",
        "broken release",
        "--json",
    ])?;
    assert_eq!(cancelled["counts"]["skipped"], 8, "{cancelled:#}");

    // Good patch: the pilot passes the gate and the broad ring follows.
    let view = deploy(
        &f.server,
        &[
            "--package",
            "pw-good=1.1",
            "--ring",
            &pilot,
            "--ring",
            "broad=rest",
            "--gate-min-successes",
            "2",
        ],
    )?;
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(view["counts"]["verified"], 10, "{view:#}");
    let pilot_done = view["rings"][0]["succeeded"].as_u64();
    assert_eq!(
        (pilot_done, view["rings"][1]["succeeded"].as_u64()),
        (Some(2), Some(8))
    );
    for host in &f.hosts {
        assert_eq!(
            host.dpkg_version("pw-good")?.map(|p| p.version),
            Some("1.1".to_owned()),
            "{}",
            host.name()
        );
    }
    // The broad ring started only after the pilot finished.
    let jobs = view["jobs"].as_array().cloned().unwrap_or_default();
    let on = |prefixes: &[&str], field: &str| -> Vec<String> {
        jobs.iter()
            .filter(|j| {
                prefixes
                    .iter()
                    .any(|p| j["hostname"].as_str().unwrap_or("").ends_with(p))
            })
            .filter_map(|j| j[field].as_str().map(str::to_owned))
            .collect()
    };
    let last_pilot_finish = on(&["00", "01"], "finished_at")
        .into_iter()
        .max()
        .context("pilot finished")?;
    let first_broad_start = on(
        &["02", "03", "04", "05", "06", "07", "08", "09"],
        "started_at",
    )
    .into_iter()
    .min()
    .context("broad started")?;
    assert!(
        first_broad_start >= last_pilot_finish,
        "broad started {first_broad_start} before the pilot finished {last_pilot_finish}"
    );
    Ok(())
}
