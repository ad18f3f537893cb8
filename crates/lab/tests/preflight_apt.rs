//! Pre-flight on real hosts (issue 4): for each failure case of the apt scenarios, one host,
//! one deployment pending approval. The pre-flight check predicts the failure without
//! changing any package (dpkg's view and apt's lists are compared before and after), then
//! the approved deployment runs for real and its outcome matches the prediction (accuracy
//! 100%). Needs root (skips with a printed reason otherwise).

use anyhow::{bail, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, wait_until, ServerProcess,
};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host, HostProcess};
use serde_json::Value;
use std::time::Duration;

struct Case {
    server: ServerProcess,
    host: Host,
}

impl Case {
    fn new(name: &str, repo: &AptRepo, preinstalled: &[&str]) -> Result<Case> {
        let base = BaseRoot::get(&[])?;
        let server = ServerProcess::start()?;
        let host = Host::create(&base, name)?;
        if repo.is_signed() {
            repo.install_key(&host)?;
        }
        host.set_apt_sources(&[repo.source_line()])?;
        host.exec_ok(&["apt-get", "update"])?;
        let mut args = vec!["apt-get", "install", "-y"];
        args.extend_from_slice(preinstalled);
        host.exec_ok(&args)?;
        install_agent(&host)?;
        let token = server.enroll_token(&[])?;
        enroll_agent(&host, server.url(), &token)?;
        let c = Case { server, host };
        c.agent_once(&[])?;
        Ok(c)
    }

    fn agent_once(&self, flags: &[&str]) -> Result<String> {
        let out = run_agent_once(&self.host, flags)?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("agent run --once failed ({}): {log}", out.status);
        }
        Ok(log)
    }

    fn show(&self, id: &str) -> Result<Value> {
        self.server.cli_json(&["deployment", "show", id, "--json"])
    }

    /// Every package dpkg knows with its version and status, and apt's lists directory.
    fn system_state(&self) -> Result<String> {
        let dpkg = self.host.exec_ok(&[
            "dpkg-query",
            "-W",
            "-f=${Package} ${Version} ${db:Status-Abbrev}\n",
        ])?;
        let lists =
            self.host
                .exec_ok(&["ls", "-l", "--time-style=full-iso", "/var/lib/apt/lists"])?;
        Ok(format!(
            "{}\n{}",
            String::from_utf8_lossy(&dpkg.stdout),
            String::from_utf8_lossy(&lists.stdout)
        ))
    }

    /// Deploys `package` pending approval, runs the pre-flight check (nothing may change),
    /// asserts the prediction, approves, runs the deployment, asserts the same real outcome
    /// and an accuracy of 100%.
    fn predict_then_run(
        &self,
        package: &str,
        spec: &str,
        state: &str,
        class: &str,
        agent_flags: &[&str],
    ) -> Result<()> {
        let id = self
            .server
            .cli_ok(&["deploy", "--all", "--package", spec, "--require-approval"])?
            .trim()
            .to_owned();
        let before = self.system_state()?;
        self.server.cli_ok(&["deployment", "preflight", &id])?;
        let log = self.agent_once(agent_flags)?;
        let view = self.show(&id)?;
        assert_eq!(view["status"], "pending_approval", "{view:#}");
        assert_eq!(view["preflight_pending"], 0, "{view:#}\n{log}");
        let p = view["predictions"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["package"] == package))
            .unwrap_or_else(|| panic!("no prediction for {package}: {view:#}\n{log}"))
            .clone();
        assert_eq!(
            (p["state"].as_str(), p["class"].as_str()),
            (Some(state), Some(class)),
            "prediction: {p:#}\nagent log:\n{log}"
        );
        for line in p["evidence"].as_array().expect("evidence") {
            assert!(
                line.as_str().unwrap_or("").starts_with("prediction:"),
                "{line}"
            );
        }
        assert_eq!(
            before,
            self.system_state()?,
            "the pre-flight check changed the system"
        );
        for r in view["results"].as_array().expect("results") {
            assert_eq!(r["state"], "pending", "{r}");
        }

        self.server.cli_ok(&["deployment", "approve", &id])?;
        let log = self.agent_once(agent_flags)?;
        let view = self.show(&id)?;
        if view["status"] != "completed" {
            bail!("deployment not completed: {view:#}\n{log}");
        }
        let r = view["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["package"] == package))
            .expect("result row")
            .clone();
        assert_eq!(
            (r["state"].as_str(), r["class"].as_str()),
            (Some(state), Some(class)),
            "real outcome: {r:#}\n{log}"
        );
        assert_eq!(r["predicted_class"], class);
        let acc = &view["prediction_accuracy"];
        assert_eq!(acc["packages_compared"], 1, "{view:#}");
        assert_eq!(acc["packages_matched"], 1, "{view:#}");
        assert_eq!(acc["percent"].as_f64(), Some(100.0), "{view:#}");
        Ok(())
    }
}

fn add_ok(repo: &AptRepo) -> Result<()> {
    for v in ["1.0", "2.0"] {
        repo.add(&DebPackage::new("pw-ok", v).file("/usr/share/pw-ok/version", v))?;
    }
    Ok(())
}

#[test]
fn lab_preflight_predicts_dependency_conflict() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-dep", "1.0"))?;
    repo.add(&DebPackage::new("pw-dep", "2.0").depends("pw-missing (>= 1)"))?;
    repo.publish()?;
    let c = Case::new("pf-dep", &repo, &["pw-dep=1.0"])?;
    c.predict_then_run("pw-dep", "pw-dep=2.0", "failed", "dependency_conflict", &[])
}

#[test]
fn lab_preflight_predicts_held_back() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.publish()?;
    let c = Case::new("pf-held", &repo, &["pw-ok=1.0"])?;
    c.host.exec_ok(&["apt-mark", "hold", "pw-ok"])?;
    c.predict_then_run("pw-ok", "pw-ok=2.0", "skipped", "held_back", &[])
}

#[test]
fn lab_preflight_predicts_disk_full() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-big", "1.0"))?;
    repo.add(&DebPackage::new("pw-big", "2.0").size_bytes(4 << 20))?;
    repo.publish()?;
    let c = Case::new("pf-disk", &repo, &["pw-big=1.0"])?;
    c.host.mount_tmpfs("/var/cache/apt/archives", 2 << 20)?;
    let r = c.predict_then_run("pw-big", "pw-big=2.0", "failed", "disk_full", &[]);
    c.host.unmount_tmpfs("/var/cache/apt/archives")?;
    r
}

#[test]
fn lab_preflight_predicts_repo_unreachable() -> Result<()> {
    require_lab!(Ok(()));
    let mut repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.publish()?;
    let c = Case::new("pf-repo-down", &repo, &["pw-ok=1.0"])?;
    repo.stop()?;
    c.predict_then_run("pw-ok", "pw-ok=2.0", "failed", "repo_unreachable", &[])
}

const SLOW_POSTINST: &str = "#!/bin/sh\ntouch /run/pw-slow-started\nsleep 120\n";

#[test]
fn lab_preflight_predicts_lock_held() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.add(&DebPackage::new("pw-slow", "1.0"))?;
    repo.add(&DebPackage::new("pw-slow", "2.0").postinst(SLOW_POSTINST))?;
    repo.publish()?;
    let c = Case::new("pf-lock", &repo, &["pw-ok=1.0", "pw-slow=1.0"])?;
    let apt: HostProcess = c
        .host
        .spawn(&["apt-get", "install", "-y", "pw-slow=2.0"], &[])?;
    let marker = c.host.path("/run/pw-slow-started")?;
    wait_until(
        Duration::from_secs(30),
        "the slow postinst to start",
        || Ok(marker.exists()),
    )?;
    // dpkg is mid-install (pw-slow): compare only pw-ok, which nothing touches.
    let r = c.predict_then_run(
        "pw-ok",
        "pw-ok=2.0",
        "failed",
        "lock_held",
        &["--lock-wait", "3"],
    );
    drop(apt);
    r
}

#[test]
fn lab_preflight_predicts_interrupted_state() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    add_ok(&repo)?;
    repo.add(&DebPackage::new("pw-slow", "1.0"))?;
    repo.add(&DebPackage::new("pw-slow", "2.0").postinst(SLOW_POSTINST))?;
    repo.publish()?;
    let c = Case::new("pf-interrupted", &repo, &["pw-ok=1.0", "pw-slow=1.0"])?;
    // Power loss in the middle of a postinst: dpkg's journal is left behind.
    let mut apt: HostProcess = c
        .host
        .spawn(&["apt-get", "install", "-y", "pw-slow=2.0"], &[])?;
    let marker = c.host.path("/run/pw-slow-started")?;
    wait_until(
        Duration::from_secs(30),
        "the slow postinst to start",
        || Ok(marker.exists()),
    )?;
    apt.kill()?;
    c.predict_then_run("pw-ok", "pw-ok=2.0", "failed", "interrupted_state", &[])
}
