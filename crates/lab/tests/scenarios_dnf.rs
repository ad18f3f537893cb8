//! dnf scenarios on real lab rpm hosts: the real server process, the real agent (`run --once`)
//! inside a Debian overlay host that presents itself as Rocky Linux 9, real dnf and rpm, tiny
//! rpm packages served by a loopback repository. Each test builds its own packages and
//! repository, and checks the agent's verdict against `rpm -q` inside the host. Needs root
//! and rpmbuild/createrepo_c (skips with a printed reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{enroll_agent, install_agent, run_agent_once, ServerProcess};
use patchwarden_lab::rpm::{dnf_ok, make_rpm_host, rpm_base, rpm_evr, rpm_lab_unavailable};
use patchwarden_lab::{print_skip, Host, RpmPackage, RpmRepo};
use serde_json::Value;

/// Skips the test, printing why, when rpm hosts cannot be built here.
macro_rules! require_rpm_lab {
    () => {
        if let Some(reason) = rpm_lab_unavailable() {
            print_skip(&reason);
            return Ok(());
        }
    };
}

/// A served repository with `packages`, a server, and one enrolled rpm host on which
/// `install` (NAME-EVR specs) are installed and whose agent has reported its inventory.
struct Scenario {
    server: ServerProcess,
    repo: RpmRepo,
    host: Host,
}

fn scenario(name: &str, packages: &[RpmPackage], install: &[&str]) -> Result<Scenario> {
    scenario_with(name, packages, install, None)
}

fn scenario_with(
    name: &str,
    packages: &[RpmPackage],
    install: &[&str],
    updateinfo: Option<&str>,
) -> Result<Scenario> {
    let repo = RpmRepo::new()?;
    for p in packages {
        repo.add(p)?;
    }
    repo.publish()?;
    if let Some(xml) = updateinfo {
        repo.add_updateinfo(xml)?;
    }
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
    agent_once(&host)?;
    Ok(Scenario { server, repo, host })
}

fn agent_once(host: &Host) -> Result<String> {
    let out = run_agent_once(host, &[])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("agent run --once failed ({}): {stderr}", out.status);
    }
    Ok(stderr)
}

impl Scenario {
    /// Deploys `--package SPEC` to every device, runs the agent once, and returns the one
    /// result row for `package`.
    fn deploy(&self, spec: &str, package: &str) -> Result<Value> {
        let id = self
            .server
            .cli_ok(&["deploy", "--all", "--package", spec])?
            .trim()
            .to_owned();
        let logs = agent_once(&self.host)?;
        let view = self
            .server
            .cli_json(&["deployment", "show", &id, "--json"])?;
        let rows = view["results"].as_array().cloned().unwrap_or_default();
        rows.into_iter()
            .find(|r| r["package"] == package)
            .with_context(|| format!("no result for {package}: {view:#}\nagent: {logs}"))
    }

    fn rpm(&self, name: &str) -> Result<Option<String>> {
        rpm_evr(&self.host, name)
    }
}

fn evidence_has(row: &Value, needle: &str) -> bool {
    row["evidence"].as_array().is_some_and(|e| {
        e.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(needle)))
    })
}

fn assert_row(row: &Value, state: &str, class: Option<&str>, needle: &str) {
    assert_eq!(row["state"], state, "{row:#}");
    match class {
        Some(c) => assert_eq!(row["class"], c, "{row:#}"),
        None => assert!(row["class"].is_null(), "{row:#}"),
    }
    assert!(
        evidence_has(row, needle),
        "evidence lacks {needle:?}: {row:#}"
    );
}

#[test]
fn lab_dnf_inventory_reports_rpm_packages_upgrades_and_security() -> Result<()> {
    require_rpm_lab!();
    let s = scenario_with(
        "dnf-inv",
        &[
            RpmPackage::new("pw-ok", "1.0"),
            RpmPackage::new("pw-ok", "2.0"),
            RpmPackage::new("pw-sec", "1.0"),
            RpmPackage::new("pw-sec", "1.1"),
            RpmPackage::new("pw-epoch", "1.0").epoch(2),
        ],
        &["pw-ok-1.0-1", "pw-sec-1.0-1", "pw-epoch-2:1.0-1"],
        Some(UPDATEINFO),
    )?;
    let devices = s.server.devices()?;
    assert_eq!(devices.len(), 1, "{devices:#?}");
    let detail = s.server.cli_json(&[
        "device",
        "show",
        devices[0]["id"].as_str().unwrap_or(""),
        "--json",
    ])?;
    let inv = &detail["inventory"];
    assert_eq!(inv["package_manager"], "dnf", "{inv:#}");
    assert_eq!(inv["os"]["id"], "rocky", "{inv:#}");
    let pkgs = inv["packages"].as_array().cloned().unwrap_or_default();
    let epoch = pkgs
        .iter()
        .find(|p| p["name"] == "pw-epoch")
        .context("pw-epoch in inventory")?;
    assert_eq!(epoch["version"], "2:1.0-1");
    let up = inv["upgradable"].as_array().cloned().unwrap_or_default();
    let ok = up
        .iter()
        .find(|u| u["name"] == "pw-ok")
        .context("pw-ok upgradable")?;
    assert_eq!(
        (
            ok["installed_version"].as_str(),
            ok["candidate_version"].as_str()
        ),
        (Some("1.0-1"), Some("2.0-1"))
    );
    assert_eq!(ok["security"], false, "{ok:#}");
    let sec = up
        .iter()
        .find(|u| u["name"] == "pw-sec")
        .context("pw-sec upgradable")?;
    assert_eq!(sec["security"], true, "{sec:#}");
    Ok(())
}

/// One security advisory, for pw-sec 1.1-1 (the updateinfo.xml format of yum repositories).
const UPDATEINFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="lab@patchwarden" status="stable" type="security" version="1">
    <id>PW-2026-0001</id>
    <title>pw-sec security update</title>
    <severity>Important</severity>
    <issued date="2026-11-01 00:00:00"/>
    <description>Fixes a lab vulnerability.</description>
    <pkglist><collection short="lab"><name>lab</name>
      <package name="pw-sec" version="1.1" release="1" epoch="0" arch="noarch"><filename>pw-sec-1.1-1.noarch.rpm</filename></package>
    </collection></pkglist>
  </update>
</updates>
"#;

#[test]
fn lab_dnf_plain_upgrade_is_verified() -> Result<()> {
    require_rpm_lab!();
    let s = scenario(
        "dnf-ok",
        &[
            RpmPackage::new("pw-ok", "1.0").file("/usr/share/pw-ok/v", "1.0"),
            RpmPackage::new("pw-ok", "2.0").file("/usr/share/pw-ok/v", "2.0"),
        ],
        &["pw-ok-1.0-1"],
    )?;
    let row = s.deploy("pw-ok", "pw-ok")?;
    assert_row(&row, "verified", None, "rpm: pw-ok 2.0-1 installed");
    assert_eq!(s.rpm("pw-ok")?.as_deref(), Some("2.0-1"));
    assert_eq!(row["installed_version"], "2.0-1", "{row:#}");
    assert_eq!(row["from_version"], "1.0-1", "{row:#}");
    assert_eq!(s.host.read_file("/usr/share/pw-ok/v")?, "2.0");
    Ok(())
}

#[test]
fn lab_dnf_failed_post_scriptlet_is_install_script_failed_although_rpm_has_it() -> Result<()> {
    require_rpm_lab!();
    let s = scenario(
        "dnf-postfail",
        &[
            RpmPackage::new("pw-postfail", "1.0"),
            RpmPackage::new("pw-postfail", "2.0")
                .post("echo 'pw-postfail: configuring failed on purpose' >&2\nexit 1\n"),
        ],
        &["pw-postfail-1.0-1"],
    )?;
    let row = s.deploy("pw-postfail=2.0-1", "pw-postfail")?;
    assert_row(
        &row,
        "failed",
        Some("install_script_failed"),
        "%post(pw-postfail-2.0-1.noarch) scriptlet failed",
    );
    // dnf exited 0 and rpm shows the new version: only the scriptlet line tells the truth.
    assert_eq!(row["exit_code"], 0, "{row:#}");
    assert_eq!(s.rpm("pw-postfail")?.as_deref(), Some("2.0-1"));
    Ok(())
}

#[test]
fn lab_dnf_unmet_dependency_is_dependency_conflict() -> Result<()> {
    require_rpm_lab!();
    let s = scenario(
        "dnf-dep",
        &[
            RpmPackage::new("pw-dep", "1.0"),
            RpmPackage::new("pw-dep", "2.0").requires("pw-missing >= 1"),
        ],
        &["pw-dep-1.0-1"],
    )?;
    let row = s.deploy("pw-dep", "pw-dep")?;
    assert_row(
        &row,
        "failed",
        Some("dependency_conflict"),
        "nothing provides pw-missing >= 1 needed by pw-dep-2.0-1.noarch",
    );
    assert_eq!(s.rpm("pw-dep")?.as_deref(), Some("1.0-1"));
    Ok(())
}

#[test]
fn lab_dnf_version_not_in_the_repository_is_package_not_found() -> Result<()> {
    require_rpm_lab!();
    let s = scenario(
        "dnf-notfound",
        &[
            RpmPackage::new("pw-ok", "1.0"),
            RpmPackage::new("pw-ok", "2.0"),
        ],
        &["pw-ok-1.0-1"],
    )?;
    let row = s.deploy("pw-ok=9.9-1", "pw-ok")?;
    assert_row(
        &row,
        "failed",
        Some("package_not_found"),
        "No match for argument: pw-ok-9.9-1",
    );
    assert_eq!(s.rpm("pw-ok")?.as_deref(), Some("1.0-1"));
    // A package the device does not have is not applicable, whatever the repository holds.
    let row = s.deploy("pw-absent", "pw-absent")?;
    assert_eq!(row["state"], "not_applicable", "{row:#}");
    Ok(())
}

#[test]
fn lab_dnf_repository_down_is_repo_unreachable() -> Result<()> {
    require_rpm_lab!();
    let mut s = scenario(
        "dnf-repodown",
        &[
            RpmPackage::new("pw-ok", "1.0"),
            RpmPackage::new("pw-ok", "2.0"),
        ],
        &["pw-ok-1.0-1"],
    )?;
    s.repo.stop()?;
    let row = s.deploy("pw-ok=2.0-1", "pw-ok")?;
    assert_row(
        &row,
        "failed",
        Some("repo_unreachable"),
        "Failed to download metadata for repo 'lab'",
    );
    assert_eq!(s.rpm("pw-ok")?.as_deref(), Some("1.0-1"));
    Ok(())
}
