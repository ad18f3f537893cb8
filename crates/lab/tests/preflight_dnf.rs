//! dnf pre-flight and holds on real lab rpm hosts (issue 4): for each failure case of the dnf
//! scenarios, one host, one deployment pending approval. The pre-flight check predicts the
//! outcome without changing any package (`rpm -qa` with install times, and the versionlock
//! list, are compared before and after), then the approved deployment runs for real and its
//! outcome matches the prediction (accuracy 100%). Then `respect_holds: false`
//! (`deploy --ignore-holds`) on dnf and apt hosts: the held package is upgraded and stays held.
//! Needs root and rpmbuild/createrepo_c (skips with a printed reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, wait_until, ServerProcess,
};
use patchwarden_lab::rpm::{dnf_ok, make_rpm_host, rpm_base, rpm_evr, rpm_lab_unavailable};
use patchwarden_lab::{
    print_skip, require_lab, AptRepo, BaseRoot, DebPackage, Host, HostProcess, RpmPackage, RpmRepo,
};
use serde_json::Value;
use std::time::Duration;

macro_rules! require_rpm_lab {
    () => {
        if let Some(reason) = rpm_lab_unavailable() {
            print_skip(&reason);
            return Ok(());
        }
    };
}

struct Case {
    server: ServerProcess,
    repo: RpmRepo,
    host: Host,
}

impl Case {
    /// A repository with `packages`, a host with `install` (NAME-EVR specs) installed, a
    /// server, the agent enrolled and its inventory reported.
    fn new(name: &str, packages: &[RpmPackage], install: &[&str]) -> Result<Case> {
        let repo = RpmRepo::new()?;
        for p in packages {
            repo.add(p)?;
        }
        repo.publish()?;
        let base = rpm_base()?;
        let host = Host::create(&base, name)?;
        make_rpm_host(&host, &repo)?;
        let mut args = vec!["install"];
        args.extend_from_slice(install);
        dnf_ok(&host, &args)?;
        install_agent(&host)?;
        let server = ServerProcess::start()?;
        let token = server.enroll_token(&[])?;
        enroll_agent(&host, server.url(), &token)?;
        let c = Case { server, repo, host };
        c.agent_once(&[])?;
        Ok(c)
    }

    fn agent_once(&self, flags: &[&str]) -> Result<String> {
        agent_once(&self.host, flags)
    }

    /// Every package rpm knows with its install time, and the versionlock list.
    fn system_state(&self) -> Result<String> {
        let rpm =
            self.host
                .exec_ok(&["rpm", "-qa", "--queryformat", "%{NEVRA} %{INSTALLTIME}\n"])?;
        let mut lines: Vec<String> = String::from_utf8_lossy(&rpm.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        let locks = self
            .host
            .read_file("/etc/dnf/plugins/versionlock.list")
            .unwrap_or_default();
        Ok(format!("{}\n--- versionlock\n{locks}", lines.join("\n")))
    }

    /// Deploys `specs` pending approval, runs the pre-flight check (nothing may change),
    /// asserts the prediction of every `(package, state, class)`, approves, runs the
    /// deployment, asserts the same real outcomes and an accuracy of 100%.
    fn predict_then_run(
        &self,
        specs: &[&str],
        expect: &[(&str, &str, &str)],
        agent_flags: &[&str],
    ) -> Result<Value> {
        let mut args = vec!["deploy", "--all", "--require-approval"];
        for s in specs {
            args.extend(["--package", s]);
        }
        let id = self.server.cli_ok(&args)?.trim().to_owned();
        let before = self.system_state()?;
        self.server
            .cli_ok(&["deployment", "preflight", &id])
            .with_context(|| format!("server log:\n{}", self.server.logs()))?;
        let log = self.agent_once(agent_flags)?;
        let view = show(&self.server, &id)?;
        assert_eq!(view["status"], "pending_approval", "{view:#}");
        assert_eq!(view["preflight_pending"], 0, "{view:#}\n{log}");
        for (package, state, class) in expect {
            let p = view["predictions"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["package"] == *package))
                .with_context(|| format!("no prediction for {package}: {view:#}\n{log}"))?
                .clone();
            assert_eq!(
                (p["state"].as_str(), p["class"].as_str()),
                (Some(*state), (!class.is_empty()).then_some(*class)),
                "prediction: {p:#}\nagent log:\n{log}"
            );
            for line in p["evidence"].as_array().expect("evidence") {
                assert!(
                    line.as_str().unwrap_or("").starts_with("prediction:"),
                    "{line}"
                );
            }
        }
        assert_eq!(
            before,
            self.system_state()?,
            "the pre-flight check changed the system"
        );

        self.server.cli_ok(&["deployment", "approve", &id])?;
        let log = self.agent_once(agent_flags)?;
        let view = show(&self.server, &id)?;
        if view["status"] != "completed" {
            bail!("deployment not completed: {view:#}\n{log}");
        }
        for (package, state, class) in expect {
            let r = view["results"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["package"] == *package))
                .with_context(|| format!("no result for {package}: {view:#}"))?
                .clone();
            assert_eq!(
                (r["state"].as_str(), r["class"].as_str()),
                (Some(*state), (!class.is_empty()).then_some(*class)),
                "real outcome: {r:#}\n{log}\njob output:\n{}",
                view["jobs"][0]["output"].as_str().unwrap_or("")
            );
        }
        let acc = &view["prediction_accuracy"];
        assert_eq!(acc["packages_compared"], expect.len(), "{view:#}");
        assert_eq!(acc["packages_matched"], expect.len(), "{view:#}");
        assert_eq!(acc["percent"].as_f64(), Some(100.0), "{view:#}");
        Ok(view)
    }
}

fn agent_once(host: &Host, flags: &[&str]) -> Result<String> {
    let out = run_agent_once(host, flags)?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("agent run --once failed ({}): {log}", out.status);
    }
    Ok(log)
}

fn show(server: &ServerProcess, id: &str) -> Result<Value> {
    server.cli_json(&["deployment", "show", id, "--json"])
}

fn ok_packages() -> Vec<RpmPackage> {
    vec![
        RpmPackage::new("pw-ok", "1.0").file("/usr/share/pw-ok/v", "1.0"),
        RpmPackage::new("pw-ok", "2.0").file("/usr/share/pw-ok/v", "2.0"),
    ]
}

fn result_row<'a>(view: &'a Value, package: &str) -> &'a Value {
    view["results"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["package"] == package))
        .unwrap_or_else(|| panic!("no result for {package}: {view:#}"))
}

fn evidence_has(row: &Value, needle: &str) -> bool {
    row["evidence"].as_array().is_some_and(|e| {
        e.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(needle)))
    })
}

#[test]
fn lab_dnf_preflight_predicts_success_and_dependency_conflict() -> Result<()> {
    require_rpm_lab!();
    let mut packages = ok_packages();
    packages.push(RpmPackage::new("pw-dep", "1.0"));
    packages.push(RpmPackage::new("pw-dep", "2.0").requires("pw-missing >= 1"));
    let c = Case::new("dpf-dep", &packages, &["pw-ok-1.0-1", "pw-dep-1.0-1"])?;
    // Two targets: one transaction fails as a whole, like the real run.
    let view = c.predict_then_run(
        &["pw-dep=2.0-1"],
        &[("pw-dep", "failed", "dependency_conflict")],
        &[],
    )?;
    assert!(evidence_has(
        result_row(&view, "pw-dep"),
        "nothing provides pw-missing >= 1"
    ));
    c.predict_then_run(&["pw-ok=2.0-1"], &[("pw-ok", "verified", "")], &[])?;
    assert_eq!(rpm_evr(&c.host, "pw-ok")?.as_deref(), Some("2.0-1"));
    assert_eq!(rpm_evr(&c.host, "pw-dep")?.as_deref(), Some("1.0-1"));
    Ok(())
}

#[test]
fn lab_dnf_preflight_predicts_held_back_by_versionlock_and_exclude() -> Result<()> {
    require_rpm_lab!();
    let mut packages = ok_packages();
    packages.push(RpmPackage::new("pw-ex", "1.0"));
    packages.push(RpmPackage::new("pw-ex", "2.0"));
    let c = Case::new("dpf-held", &packages, &["pw-ok-1.0-1", "pw-ex-1.0-1"])?;
    dnf_ok(&c.host, &["versionlock", "add", "pw-ok"])?;
    let conf = c.host.read_file("/etc/dnf/dnf.conf")?;
    c.host.write_file(
        "/etc/dnf/dnf.conf",
        format!("{conf}\nexclude=pw-ex\n"),
        0o644,
    )?;
    let view = c.predict_then_run(
        &["pw-ok=2.0-1", "pw-ex=2.0-1"],
        &[
            ("pw-ok", "skipped", "held_back"),
            ("pw-ex", "skipped", "held_back"),
        ],
        &[],
    )?;
    assert!(evidence_has(result_row(&view, "pw-ok"), "dnf versionlock"));
    assert!(evidence_has(
        result_row(&view, "pw-ex"),
        "excluded by `pw-ex`"
    ));
    assert_eq!(rpm_evr(&c.host, "pw-ok")?.as_deref(), Some("1.0-1"));
    assert_eq!(rpm_evr(&c.host, "pw-ex")?.as_deref(), Some("1.0-1"));

    // The inventory lists both upgrades as held (dnf itself hides them).
    let devices = c.server.devices()?;
    let detail = c.server.cli_json(&[
        "device",
        "show",
        devices[0]["id"].as_str().unwrap_or(""),
        "--json",
    ])?;
    let inv = &detail["inventory"];
    for name in ["pw-ok", "pw-ex"] {
        assert!(
            inv["held"]
                .as_array()
                .is_some_and(|h| h.iter().any(|n| n == name)),
            "{name} not held: {inv:#}"
        );
        let u = inv["upgradable"]
            .as_array()
            .and_then(|us| us.iter().find(|u| u["name"] == name))
            .unwrap_or_else(|| panic!("{name} not upgradable: {inv:#}"));
        assert_eq!(
            (u["candidate_version"].as_str(), u["held"].as_bool()),
            (Some("2.0-1"), Some(true)),
            "{u:#}"
        );
    }

    // The deployment of all updates overrides holds: both are upgraded, predicted so, and
    // stay held.
    let id = c
        .server
        .cli_ok(&[
            "deploy",
            "--all",
            "--require-approval",
            "--ignore-holds",
            "--all-updates",
        ])?
        .trim()
        .to_owned();
    c.server.cli_ok(&["deployment", "preflight", &id])?;
    let log = c.agent_once(&[])?;
    let view = show(&c.server, &id)?;
    for p in view["predictions"].as_array().expect("predictions") {
        assert_eq!(p["state"], "verified", "{p:#}\n{log}");
    }
    c.server.cli_ok(&["deployment", "approve", &id])?;
    let log = c.agent_once(&[])?;
    let view = show(&c.server, &id)?;
    for name in ["pw-ok", "pw-ex"] {
        let r = result_row(&view, name);
        assert_eq!(r["state"], "verified", "{r:#}\n{log}");
        assert!(evidence_has(r, "overrides holds"), "{r:#}");
        assert_eq!(rpm_evr(&c.host, name)?.as_deref(), Some("2.0-1"));
    }
    assert_eq!(c.host.read_file("/usr/share/pw-ok/v")?, "2.0");
    let locks = c.host.read_file("/etc/dnf/plugins/versionlock.list")?;
    assert!(locks.contains("pw-ok-0:2.0-1"), "lock not moved: {locks}");
    assert!(c
        .host
        .read_file("/etc/dnf/dnf.conf")?
        .contains("exclude=pw-ex"));
    assert_eq!(view["prediction_accuracy"]["percent"].as_f64(), Some(100.0));
    Ok(())
}

#[test]
fn lab_dnf_preflight_predicts_repo_invalid_and_repo_unreachable() -> Result<()> {
    require_rpm_lab!();
    let mut c = Case::new("dpf-repo", &ok_packages(), &["pw-ok-1.0-1"])?;
    // A broken repository: repomd.xml names primary metadata the server does not have. It
    // is republished first (with one more package), so that the host's cached metadata is
    // stale and the real install has to download the new one too.
    c.repo.add(&RpmPackage::new("pw-other", "1.0"))?;
    c.repo.publish()?;
    let repodata = c.repo.dir().join("repodata");
    let primary = std::fs::read_dir(&repodata)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("primary.xml"))
        .context("no primary metadata")?;
    std::fs::remove_file(&primary)?;
    let view = c.predict_then_run(
        &["pw-ok=2.0-1"],
        &[("pw-ok", "failed", "repo_invalid")],
        &[],
    )?;
    assert!(
        evidence_has(result_row(&view, "pw-ok"), "Status code: 404"),
        "{view:#}"
    );
    c.repo.publish()?;
    // A package whose bytes do not match the checksum the metadata gives: the pre-flight
    // check downloads it into its throwaway cache and finds out, as the install does.
    let rpm = c.repo.dir().join("pw-ok-2.0-1.noarch.rpm");
    let mut bytes = std::fs::read(&rpm).with_context(|| rpm.display().to_string())?;
    let n = bytes.len();
    bytes[n - 100..].fill(0x5a);
    std::fs::write(&rpm, &bytes)?;
    let view = c.predict_then_run(
        &["pw-ok=2.0-1"],
        &[("pw-ok", "failed", "repo_invalid")],
        &[],
    )?;
    assert!(
        evidence_has(result_row(&view, "pw-ok"), "checksum doesn't match"),
        "{view:#}"
    );
    assert!(
        evidence_has(&view["predictions"][0], "downloading the packages fails"),
        "{view:#}"
    );
    c.repo.stop()?;
    c.predict_then_run(
        &["pw-ok=2.0-1"],
        &[("pw-ok", "failed", "repo_unreachable")],
        &[],
    )?;
    assert_eq!(rpm_evr(&c.host, "pw-ok")?.as_deref(), Some("1.0-1"));
    Ok(())
}

/// `n` bytes that compression cannot shrink (rpm compresses its payload).
fn incompressible(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn lab_dnf_preflight_predicts_disk_full() -> Result<()> {
    require_rpm_lab!();
    let mut packages = ok_packages();
    packages.push(RpmPackage::new("pw-big", "1.0"));
    packages.push(
        RpmPackage::new("pw-big", "2.0").file("/usr/share/pw-big/blob", incompressible(4 << 20)),
    );
    let c = Case::new("dpf-disk", &packages, &["pw-big-1.0-1"])?;
    c.host.mount_tmpfs("/var/cache/dnf", 2 << 20)?;
    let r = c.predict_then_run(&["pw-big=2.0-1"], &[("pw-big", "failed", "disk_full")], &[]);
    c.host.unmount_tmpfs("/var/cache/dnf")?;
    let view = r?;
    let p = view["predictions"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["package"] == "pw-big"))
        .expect("prediction");
    assert!(evidence_has(p, "into /var/cache/dnf"), "{p:#}");
    assert!(
        evidence_has(result_row(&view, "pw-big"), "Curl error (23)"),
        "{view:#}"
    );
    assert_eq!(rpm_evr(&c.host, "pw-big")?.as_deref(), Some("1.0-1"));
    Ok(())
}

const SLOW_POST: &str = "touch /run/pw-slow-started\nsleep 120\n";

#[test]
fn lab_dnf_preflight_predicts_lock_held_and_the_install_waits_a_bounded_time() -> Result<()> {
    require_rpm_lab!();
    let mut packages = ok_packages();
    packages.push(RpmPackage::new("pw-slow", "1.0"));
    packages.push(RpmPackage::new("pw-slow", "2.0").post(SLOW_POST));
    let c = Case::new("dpf-lock", &packages, &["pw-ok-1.0-1", "pw-slow-1.0-1"])?;
    let mut dnf: HostProcess = c.host.spawn(
        &["dnf", "-y", "--releasever=9", "upgrade", "pw-slow-2.0-1"],
        &[],
    )?;
    let marker = c.host.path("/run/pw-slow-started")?;
    wait_until(Duration::from_secs(60), "the slow %post to start", || {
        Ok(marker.exists())
    })?;
    // rpm is mid-transaction (pw-slow): compare only pw-ok, which nothing touches.
    let started = std::time::Instant::now();
    let r = c.predict_then_run(
        &["pw-ok=2.0-1"],
        &[("pw-ok", "failed", "lock_held")],
        &["--lock-wait", "3"],
    );
    let elapsed = started.elapsed();
    dnf.kill()?;
    let view = r?;
    assert!(
        evidence_has(result_row(&view, "pw-ok"), "still held after waiting 3 s"),
        "{view:#}"
    );
    // dnf 4 alone would wait forever; the agent gave up after its lock wait.
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert_eq!(rpm_evr(&c.host, "pw-ok")?.as_deref(), Some("1.0-1"));
    Ok(())
}

#[test]
fn lab_dnf_preflight_predicts_interrupted_state() -> Result<()> {
    require_rpm_lab!();
    let mut packages = ok_packages();
    packages.push(RpmPackage::new("pw-dup", "1.0"));
    let dup2 = RpmPackage::new("pw-dup", "2.0");
    let c = Case::new("dpf-dup", &packages, &["pw-ok-1.0-1", "pw-dup-1.0-1"])?;
    // An interrupted transaction: the new version installed next to the old one.
    let built = dup2.build(&c.host.path("/tmp")?)?;
    let in_host = format!("/tmp/{}", dup2.file_name());
    assert!(built.ends_with(dup2.file_name()), "{}", built.display());
    c.host.exec_ok(&["rpm", "-i", "--nodeps", &in_host])?;
    let view = c.predict_then_run(
        &["pw-ok=2.0-1"],
        &[("pw-ok", "failed", "interrupted_state")],
        &[],
    )?;
    assert!(
        evidence_has(
            result_row(&view, "pw-ok"),
            "pw-dup.noarch installed at 2 versions"
        ),
        "{view:#}"
    );
    assert_eq!(rpm_evr(&c.host, "pw-ok")?.as_deref(), Some("1.0-1"));
    Ok(())
}

#[test]
fn lab_apt_ignore_holds_upgrades_a_held_package_and_keeps_the_hold() -> Result<()> {
    require_lab!(Ok(()));
    let repo = AptRepo::new()?;
    for v in ["1.0", "2.0"] {
        repo.add(&DebPackage::new("pw-ok", v).file("/usr/share/pw-ok/version", v))?;
    }
    repo.publish()?;
    let base = BaseRoot::get(&[])?;
    let server = ServerProcess::start()?;
    let host = Host::create(&base, "apt-ignore-holds")?;
    host.set_apt_sources(&[repo.source_line()])?;
    host.exec_ok(&["apt-get", "update"])?;
    host.exec_ok(&["apt-get", "install", "-y", "pw-ok=1.0"])?;
    host.exec_ok(&["apt-mark", "hold", "pw-ok"])?;
    install_agent(&host)?;
    let token = server.enroll_token(&[])?;
    enroll_agent(&host, server.url(), &token)?;
    agent_once(&host, &[])?;

    // Default: the hold is respected.
    let id = server
        .cli_ok(&["deploy", "--all", "--package", "pw-ok=2.0"])?
        .trim()
        .to_owned();
    agent_once(&host, &[])?;
    let view = show(&server, &id)?;
    let r = result_row(&view, "pw-ok");
    assert_eq!(
        (r["state"].as_str(), r["class"].as_str()),
        (Some("skipped"), Some("held_back")),
        "{r:#}"
    );
    assert_eq!(
        host.dpkg_version("pw-ok")?.map(|p| p.version).as_deref(),
        Some("1.0")
    );

    // --ignore-holds: predicted, upgraded, still held.
    let id = server
        .cli_ok(&[
            "deploy",
            "--all",
            "--ignore-holds",
            "--require-approval",
            "--package",
            "pw-ok=2.0",
        ])?
        .trim()
        .to_owned();
    server.cli_ok(&["deployment", "preflight", &id])?;
    let log = agent_once(&host, &[])?;
    let view = show(&server, &id)?;
    let p = &view["predictions"][0];
    assert_eq!(p["state"], "verified", "{p:#}\n{log}");
    server.cli_ok(&["deployment", "approve", &id])?;
    let log = agent_once(&host, &[])?;
    let view = show(&server, &id)?;
    let r = result_row(&view, "pw-ok");
    assert_eq!(r["state"], "verified", "{r:#}\n{log}");
    assert!(evidence_has(r, "overrides holds"), "{r:#}");
    assert_eq!(
        host.dpkg_version("pw-ok")?.map(|p| p.version).as_deref(),
        Some("2.0")
    );
    assert_eq!(host.read_file("/usr/share/pw-ok/version")?, "2.0");
    let held = host.exec_ok(&["apt-mark", "showhold"])?;
    assert_eq!(String::from_utf8_lossy(&held.stdout).trim(), "pw-ok");
    Ok(())
}
