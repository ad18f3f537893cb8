//! End to end on real lab hosts: the real server process, the real agent inside sandboxed
//! Debian hosts, real apt and dpkg, the operator CLI. Needs root (skips with a reason).

use anyhow::{Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, spawn_agent, wait_until, ServerProcess,
};
use patchwarden_lab::proxy::DroppingProxy;
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host};
use serde_json::Value;
use std::time::Duration;

/// pw-demo 1.0 → 1.1 upgrades cleanly; pw-tool 1.1's postinst fails on a host that has
/// /etc/pw-tool-fail (so one package fails on one host only).
fn demo_repo() -> Result<AptRepo> {
    let repo = AptRepo::new()?;
    for version in ["1.0", "1.1"] {
        repo.add(&DebPackage::new("pw-demo", version).file("/usr/share/pw-demo/version", version))?;
    }
    repo.add(&DebPackage::new("pw-tool", "1.0"))?;
    repo.add(&DebPackage::new("pw-tool", "1.1").postinst(
        "#!/bin/sh\nif [ -e /etc/pw-tool-fail ]; then echo 'pw-tool: cannot configure on this host' >&2; exit 1; fi\nexit 0\n",
    ))?;
    repo.publish()?;
    Ok(repo)
}

/// A host with the repository configured, pw-demo 1.0 and pw-tool 1.0 installed, and the agent.
fn prepare_host(base: &BaseRoot, name: &str, repo: &AptRepo) -> Result<Host> {
    let host = Host::create(base, name)?;
    host.set_apt_sources(&[repo.source_line()])?;
    host.exec_ok(&["apt-get", "update"])?;
    host.exec_ok(&["apt-get", "install", "-y", "pw-demo=1.0", "pw-tool=1.0"])?;
    install_agent(&host)?;
    Ok(host)
}

fn rows(view: &Value) -> Vec<Value> {
    view["results"].as_array().cloned().unwrap_or_default()
}

fn row_for<'a>(rows: &'a [Value], hostname: &str, package: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["hostname"] == hostname && r["package"] == package)
        .unwrap_or_else(|| panic!("no row for {hostname}/{package} in {rows:#?}"))
}

fn deploy_and_wait(server: &ServerProcess, args: &[&str]) -> Result<Value> {
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--wait", "--wait-timeout", "5m", "--json"]);
    let out = server.cli(&all)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).with_context(|| {
        format!(
            "deploy printed no JSON ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn lab_three_hosts_enroll_report_upgrade_and_verify() -> Result<()> {
    require_lab!(Ok(()));
    let server = ServerProcess::start_with(&["--checkin-interval", "5"])?;
    let base = BaseRoot::get(&[])?;
    let repo = demo_repo()?;
    let names = ["e2e-a", "e2e-b", "e2e-c"];
    let hosts: Vec<Host> = names
        .iter()
        .map(|n| prepare_host(&base, n, &repo))
        .collect::<Result<_>>()?;
    hosts[2].write_file("/etc/pw-tool-fail", "", 0o644)?;

    let token = server.enroll_token(&["--label", "fleet=e2e", "--ttl", "1h"])?;
    let mut agents = Vec::new();
    for host in &hosts {
        enroll_agent(host, server.url(), &token)?;
        agents.push(spawn_agent(host, &[])?);
    }
    let agent_logs = |agents: &Vec<patchwarden_lab::HostProcess>| {
        agents
            .iter()
            .map(|a| a.logs())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Every device reports its inventory, with both demo packages upgradable.
    let wait = wait_until(
        Duration::from_secs(90),
        "three devices with 2 pending updates",
        || {
            let devices = server.devices()?;
            Ok(devices.len() == 3
                && devices
                    .iter()
                    .all(|d| d["pending_updates"].as_u64() >= Some(2)))
        },
    );
    wait.with_context(|| agent_logs(&agents))?;
    let devices = server.devices()?;
    for d in &devices {
        assert!(names.contains(&d["hostname"].as_str().unwrap_or("")), "{d}");
        assert_eq!(d["status"], "online");
        assert!(d["os"].as_str().unwrap_or("").contains("Debian"), "{d}");
        assert_eq!(d["labels"]["fleet"], "e2e");
    }
    let detail = server.cli_json(&[
        "device",
        "show",
        devices[0]["id"].as_str().unwrap_or(""),
        "--json",
    ])?;
    let upgradable = detail["inventory"]["upgradable"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let demo = upgradable
        .iter()
        .find(|u| u["name"] == "pw-demo")
        .context("pw-demo upgradable")?;
    assert_eq!(
        (
            demo["installed_version"].as_str(),
            demo["candidate_version"].as_str()
        ),
        (Some("1.0"), Some("1.1"))
    );

    // First deployment: a clean upgrade everywhere, verified from dpkg's database.
    let view = deploy_and_wait(&server, &["--label", "fleet=e2e", "--package", "pw-demo"])
        .with_context(|| agent_logs(&agents))?;
    assert_eq!(view["status"], "completed", "{view:#}");
    let results = rows(&view);
    assert_eq!(results.len(), 3, "{view:#}");
    for host in &hosts {
        let row = row_for(&results, host.name(), "pw-demo");
        let dpkg = host.dpkg_version("pw-demo")?.context("pw-demo installed")?;
        assert_eq!(row["state"], "verified", "{row:#}");
        assert_eq!(
            row["installed_version"].as_str(),
            Some(dpkg.version.as_str()),
            "{row:#}"
        );
        assert_eq!(dpkg.version, "1.1");
        assert_eq!(
            (row["from_version"].as_str(), row["to_version"].as_str()),
            (Some("1.0"), Some("1.1"))
        );
        assert_eq!(row["exit_code"], 0);
        assert!(row["class"].is_null());
    }

    // Second deployment: pw-tool's postinst fails on one host only.
    let view = deploy_and_wait(
        &server,
        &["--label", "fleet=e2e", "--package", "pw-tool=1.1"],
    )
    .with_context(|| agent_logs(&agents))?;
    let results = rows(&view);
    assert_eq!(view["counts"]["failed"], 1, "{view:#}");
    assert_eq!(view["counts"]["verified"], 2, "{view:#}");
    for host in &hosts[..2] {
        assert_eq!(
            row_for(&results, host.name(), "pw-tool")["state"],
            "verified"
        );
    }
    let failed = row_for(&results, "e2e-c", "pw-tool");
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(failed["class"], "install_script_failed", "{failed:#}");
    assert_ne!(failed["exit_code"], 0);
    let evidence = failed["evidence"].to_string();
    assert!(evidence.contains("post-installation script"), "{evidence}");
    let dpkg = hosts[2]
        .dpkg_version("pw-tool")?
        .context("pw-tool known to dpkg")?;
    assert!(!dpkg.is_ok(), "dpkg agrees it is not configured: {dpkg:?}");
    let job = view["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["hostname"] == "e2e-c"))
        .context("job of e2e-c")?;
    assert!(
        job["output"]
            .as_str()
            .unwrap_or("")
            .contains("cannot configure on this host"),
        "{job:#}"
    );

    // `deployment show` serves the same table.
    let id = view["id"].as_str().context("id")?;
    let shown = server.cli_json(&["deployment", "show", id, "--json"])?;
    assert_eq!(rows(&shown).len(), 3);
    let table = server.cli_ok(&["deployment", "show", id])?;
    assert!(table.contains("install_script_failed"), "{table}");
    Ok(())
}

#[test]
fn lab_a_result_whose_acknowledgement_is_lost_is_stored_exactly_once() -> Result<()> {
    require_lab!(Ok(()));
    let server = ServerProcess::start()?;
    let base = BaseRoot::get(&[])?;
    let repo = demo_repo()?;
    let host = prepare_host(&base, "retry-a", &repo)?;
    let upstream = server.url().trim_start_matches("http://").to_owned();
    let proxy = DroppingProxy::start(&upstream, "/result", 1)?;

    let token = server.enroll_token(&[])?;
    enroll_agent(&host, &proxy.url(), &token)?;
    let out = run_agent_once(&host, &[])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = server
        .cli_ok(&["deploy", "--all", "--package", "pw-demo"])?
        .trim()
        .to_owned();

    // The first upload reaches the server but its response is dropped; the agent retries.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let out = run_agent_once(&host, &[])?;
        runs.push(String::from_utf8_lossy(&out.stderr).into_owned());
        let posts = proxy
            .requests()
            .iter()
            .filter(|(line, _)| line.contains("/result"))
            .count();
        if posts >= 2 {
            break;
        }
    }
    let posts: Vec<(String, bool)> = proxy
        .requests()
        .into_iter()
        .filter(|(line, _)| line.contains("/result"))
        .collect();
    assert_eq!(
        posts.len(),
        2,
        "one dropped upload and one retry: {posts:?}\n{}",
        runs.join("\n")
    );
    assert!(posts[0].1 && !posts[1].1, "{posts:?}");

    let view = server.cli_json(&["deployment", "show", &id, "--json"])?;
    let results = rows(&view);
    assert_eq!(results.len(), 1, "{view:#}");
    assert_eq!(results[0]["state"], "verified");
    assert_eq!(view["jobs"].as_array().map(Vec::len), Some(1));
    let logs = server.logs();
    assert_eq!(logs.matches("job result stored").count(), 1, "{logs}");
    assert_eq!(logs.matches("already stored").count(), 1, "{logs}");
    // Nothing left to send, nothing run twice.
    let out = run_agent_once(&host, &[])?;
    assert!(out.status.success());
    assert_eq!(
        proxy
            .requests()
            .iter()
            .filter(|(line, _)| line.contains("/result"))
            .count(),
        2
    );
    Ok(())
}
