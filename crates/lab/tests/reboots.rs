//! Reboots after installs on real lab hosts (issue 4): a package whose postinst requests a
//! reboot (/run/reboot-required and reboot-required.pkgs) deployed with `--reboot
//! when-required` makes the agent reboot once (the lab's reboot command writes a new boot id
//! and clears /run/reboot-required, as a real boot does) and the package ends `verified`; with
//! `never` it stays `pending_reboot` and nothing reboots; a "reboot" that does not clear the
//! requirement is flagged `reboot_loop` and the device is not rebooted again for the package.
//! The agent runs as `run --once` with the lab's reboot command (`fleet::LAB_REBOOT_COMMAND`),
//! or a broken one for the loop.
//! Needs root (skips with a printed reason otherwise).

use anyhow::{bail, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, ServerProcess, LAB_REBOOT_COMMAND, LAB_REBOOT_LOG,
};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host};
use serde_json::Value;

/// A "reboot" after which the device still requires one: a new boot id, but
/// /run/reboot-required is not cleared. Replaces the lab's reboot command in the loop host.
const BROKEN_REBOOT: &str = "#!/bin/sh\nset -e\necho \"reboot $(date +%s%N)\" >> /var/log/patchwarden-lab-reboots\necho \"lab-boot-$(date +%s%N)-$$\" > /etc/patchwarden-lab/boot_id\n";

fn repo() -> Result<AptRepo> {
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-reboot", "1.0"))?;
    repo.add(&DebPackage::new("pw-reboot", "2.0").reboot_required())?;
    repo.add(&DebPackage::new("pw-reboot", "3.0").reboot_required())?;
    repo.publish()?;
    Ok(repo)
}

/// One host with pw-reboot 1.0 and the agent enrolled with `server` (with the lab's reboot
/// command, or a broken one).
fn host(
    base: &BaseRoot,
    repo: &AptRepo,
    server: &ServerProcess,
    name: &str,
    broken_reboot: bool,
) -> Result<Host> {
    let host = Host::create(base, name)?;
    host.set_apt_sources(&[repo.source_line()])?;
    host.exec_ok(&["apt-get", "update"])?;
    host.exec_ok(&["apt-get", "install", "-y", "pw-reboot=1.0"])?;
    install_agent(&host)?;
    if broken_reboot {
        host.write_file(LAB_REBOOT_COMMAND, BROKEN_REBOOT, 0o755)?;
    }
    let token = server.enroll_token(&[])?;
    enroll_agent(&host, server.url(), &token)?;
    agent_once(&host)?;
    Ok(host)
}

/// `patchwarden-agent run --once` (with the lab's reboot command); its log.
fn agent_once(host: &Host) -> Result<String> {
    let out = run_agent_once(host, &[])?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!(
            "agent run --once failed in {} ({}): {log}",
            host.name(),
            out.status
        );
    }
    Ok(log)
}

fn reboots(host: &Host) -> usize {
    host.read_file(LAB_REBOOT_LOG)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn deploy(server: &ServerProcess, host: &Host, package: &str, reboot: &str) -> Result<String> {
    Ok(server
        .cli_ok(&[
            "deploy",
            "--device",
            host.name(),
            "--package",
            package,
            "--reboot",
            reboot,
        ])?
        .trim()
        .to_owned())
}

fn row(server: &ServerProcess, dep: &str) -> Result<Value> {
    let view = server.cli_json(&["deployment", "show", dep, "--json"])?;
    match view["results"].as_array().and_then(|r| r.first()) {
        Some(r) => Ok(r.clone()),
        None => bail!("no result row in {view:#}"),
    }
}

fn evidence(r: &Value) -> String {
    r["evidence"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn installed(host: &Host) -> Result<String> {
    Ok(host
        .dpkg_version("pw-reboot")?
        .map(|p| p.version)
        .unwrap_or_default())
}

/// `when_required`: one reboot, then verified with the new boot id; never a second reboot for
/// the job.
fn when_required(base: &BaseRoot, repo: &AptRepo, server: &ServerProcess) -> Result<()> {
    let h = host(base, repo, server, "rb-when", false)?;
    let boot_before = h.boot_id()?;
    let dep = deploy(server, &h, "pw-reboot=2.0", "when-required")?;
    let log = agent_once(&h)?;
    assert_eq!(reboots(&h), 1, "one reboot: {log}");
    assert!(
        log.contains("rebooting the device after the install"),
        "{log}"
    );
    assert_ne!(h.boot_id()?, boot_before);
    assert_eq!(installed(&h)?, "2.0");
    let r = row(server, &dep)?;
    assert_eq!(r["state"], "verified", "{r:#}\n{log}");
    assert!(evidence(&r).contains("verified after reboot"), "{r:#}");
    // The agent runs again (and the job is re-offered nowhere): no second reboot.
    agent_once(&h)?;
    assert_eq!(reboots(&h), 1);
    Ok(())
}

/// `never`: pending_reboot, no reboot, same boot.
fn never(base: &BaseRoot, repo: &AptRepo, server: &ServerProcess) -> Result<()> {
    let h = host(base, repo, server, "rb-never", false)?;
    let boot_before = h.boot_id()?;
    let dep = deploy(server, &h, "pw-reboot=2.0", "never")?;
    let log = agent_once(&h)?;
    agent_once(&h)?;
    assert_eq!(reboots(&h), 0, "{log}");
    assert_eq!(h.boot_id()?, boot_before);
    assert!(h.root().join("run/reboot-required").exists());
    let r = row(server, &dep)?;
    assert_eq!(r["state"], "pending_reboot", "{r:#}");
    assert_eq!(r["class"], "reboot_pending", "{r:#}");
    Ok(())
}

/// A reboot that leaves the requirement in place: flagged, and the next deployment of the
/// package is not followed by a reboot.
fn reboot_loop(base: &BaseRoot, repo: &AptRepo, server: &ServerProcess) -> Result<()> {
    let h = host(base, repo, server, "rb-loop", true)?;
    let dep = deploy(server, &h, "pw-reboot=2.0", "when-required")?;
    let log = agent_once(&h)?;
    assert_eq!(reboots(&h), 1, "{log}");
    let r = row(server, &dep)?;
    assert_eq!(r["state"], "pending_reboot", "{r:#}\n{log}");
    assert_eq!(r["class"], "reboot_loop", "{r:#}");
    assert!(
        evidence(&r).contains("still requires a reboot for pw-reboot"),
        "{r:#}"
    );
    let dep2 = deploy(server, &h, "pw-reboot=3.0", "when-required")?;
    let log = agent_once(&h)?;
    assert_eq!(installed(&h)?, "3.0");
    assert_eq!(reboots(&h), 1, "not rebooted again: {log}");
    let r = row(server, &dep2)?;
    assert_eq!(r["state"], "pending_reboot", "{r:#}");
    assert!(
        evidence(&r).contains("did not clear the requirement for pw-reboot"),
        "{r:#}"
    );
    Ok(())
}

#[test]
fn lab_reboots_when_required_never_and_the_loop_guard() -> Result<()> {
    require_lab!(Ok(()));
    let base = BaseRoot::get(&[])?;
    let repo = repo()?;
    let server = ServerProcess::start()?;
    // The three hosts run side by side.
    std::thread::scope(|s| {
        let a = s.spawn(|| when_required(&base, &repo, &server));
        let b = s.spawn(|| never(&base, &repo, &server));
        let c = s.spawn(|| reboot_loop(&base, &repo, &server));
        for (name, t) in [("when_required", a), ("never", b), ("loop", c)] {
            match t.join() {
                Ok(r) => r.map_err(|e| e.context(name))?,
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        Ok(())
    })
}
