//! Vulnerability exposure end to end on a real lab host: an old demo package is shown
//! exposed to a test advisory, a deployment fixes it, and the exposure closes with its close
//! time. Needs root (skips with a reason).

use anyhow::{Context, Result};
use patchwarden_lab::fleet::{enroll_agent, install_agent, run_agent_once, ServerProcess};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host};
use serde_json::Value;

/// A Debian Security Tracker document (its real format) with one test advisory against the
/// demo package's source in bookworm, fixed in 1.1.
const TRACKER: &str = r#"{
  "pw-demo": {
    "CVE-2099-0001": {
      "description": "Test advisory: pw-demo before 1.1 mishandles its demo input.",
      "scope": "remote",
      "releases": {
        "bookworm": {
          "status": "resolved",
          "repositories": {"bookworm": "1.1"},
          "fixed_version": "1.1",
          "urgency": "high"
        }
      }
    }
  }
}"#;

fn exposures(server: &ServerProcess) -> Result<Vec<Value>> {
    let v = server.cli_json(&["vuln", "show", "CVE-2099-0001", "--json"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

#[test]
fn lab_an_exposure_opens_on_an_old_package_and_closes_after_the_fix_is_deployed() -> Result<()> {
    require_lab!(Ok(()));
    let server = ServerProcess::start()?;
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    repo.add(&DebPackage::new("pw-demo", "1.0"))?;
    repo.add(&DebPackage::new("pw-demo", "1.1"))?;
    repo.publish()?;
    let host = Host::create(&base, "vuln-a")?;
    host.set_apt_sources(&[repo.source_line()])?;
    host.exec_ok(&["apt-get", "update"])?;
    host.exec_ok(&["apt-get", "install", "-y", "pw-demo=1.0"])?;
    install_agent(&host)?;
    enroll_agent(&host, server.url(), &server.enroll_token(&[])?)?;
    let out = run_agent_once(&host, &[])?;
    anyhow::ensure!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let feed = tempfile::NamedTempFile::new()?;
    std::fs::write(feed.path(), TRACKER)?;
    let path = feed.path().to_string_lossy().into_owned();
    server.cli_ok(&["feeds", "import", "--kind", "debian-tracker", &path])?;

    let open = exposures(&server)?;
    assert_eq!(open.len(), 1, "{open:#?}");
    let e = &open[0];
    assert_eq!(
        (e["hostname"].as_str(), e["package"].as_str()),
        (Some("vuln-a"), Some("pw-demo"))
    );
    assert_eq!(
        (e["installed_version"].as_str(), e["fixed_version"].as_str()),
        (Some("1.0"), Some("1.1"))
    );
    assert_eq!(
        e["fixed_by_update"], "1.1",
        "the device's pending update closes it: {e:#}"
    );
    assert_eq!(e["severity"], "high");
    assert!(e["closed_at"].is_null());
    let listed = server.cli_ok(&["vulns", "--severity", "high"])?;
    assert!(listed.contains("CVE-2099-0001"), "{listed}");

    // Deploy the fix; the agent's next inventory closes the exposure.
    let id = server
        .cli_ok(&["deploy", "--all", "--package", "pw-demo"])?
        .trim()
        .to_owned();
    let out = run_agent_once(&host, &[])?;
    anyhow::ensure!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = server.cli_json(&["deployment", "show", &id, "--json"])?;
    assert_eq!(view["results"][0]["state"], "verified", "{view:#}");
    assert_eq!(
        host.dpkg_version("pw-demo")?.context("installed")?.version,
        "1.1"
    );
    let closed = exposures(&server)?;
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert!(closed[0]["closed_at"].is_string(), "{closed:#?}");
    let still_open = server.cli_json(&["vulns", "--json"])?;
    assert_eq!(
        still_open.as_array().map(Vec::len),
        Some(0),
        "{still_open:#}"
    );
    Ok(())
}
