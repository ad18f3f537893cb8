//! An agent runs only work the server confirmed (issue 10): while `POST jobs/{id}/start`
//! fails (the lab proxy answers HTTP 500, then closes the connection without a response), the
//! real agent daemon in a real lab host installs nothing (the dpkg database is unchanged),
//! asks again only after a pause, and once the proxy lets the start through the job runs and
//! is verified from the dpkg database.
//! Needs root (skips with a printed reason otherwise).

use anyhow::{bail, Context, Result};
use patchwarden_lab::fleet::{
    enroll_agent, install_agent, run_agent_once, spawn_agent, wait_until, ServerProcess,
};
use patchwarden_lab::proxy::{DroppingProxy, Fault};
use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host, HostProcess};
use std::time::{Duration, Instant};

const START: &str = "/start HTTP";

/// Keeps the start failing with `fault` for `period`, checking all along that nothing is
/// installed; returns how many start requests the agent made meanwhile.
fn failing_period(
    proxy: &DroppingProxy,
    host: &Host,
    agent: &HostProcess,
    fault: Fault,
    period: Duration,
) -> Result<usize> {
    let before = proxy.count(START);
    proxy.fail(START, fault);
    let end = Instant::now() + period;
    while Instant::now() < end {
        let dpkg = host.dpkg_version("pw-ok")?.context("pw-ok known to dpkg")?;
        if (dpkg.version.as_str(), dpkg.status.as_str()) != ("1.0", "ii") {
            bail!(
                "installed although the server never confirmed the start ({fault:?}): {dpkg:?}\n{}",
                agent.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(proxy.count(START) - before)
}

#[test]
fn lab_agent_runs_nothing_until_the_server_confirms_the_start() -> Result<()> {
    require_lab!(Ok(()));
    let base = BaseRoot::get(&[])?;
    let repo = AptRepo::new()?;
    for v in ["1.0", "2.0"] {
        repo.add(&DebPackage::new("pw-ok", v).file("/usr/share/pw-ok/version", v))?;
    }
    repo.publish()?;
    let server = ServerProcess::start()?;
    let proxy = DroppingProxy::start(server.url(), "/never-dropped", 0)?;
    let host = Host::create(&base, "start-unconfirmed")?;
    host.set_apt_sources(&[repo.source_line()])?;
    host.exec_ok(&["apt-get", "update"])?;
    host.exec_ok(&["apt-get", "install", "-y", "pw-ok=1.0"])?;
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

    proxy.fail(START, Fault::Status(500));
    let dep = server
        .cli_ok(&["deploy", "--device", host.name(), "--package", "pw-ok=2.0"])?
        .trim()
        .to_owned();
    let agent = spawn_agent(&host, &[])?;
    wait_until(
        Duration::from_secs(30),
        "the agent to try the start",
        || Ok(proxy.count(START) > 0),
    )
    .with_context(|| agent.logs())?;

    let period = Duration::from_secs(8);
    let on_500 = failing_period(&proxy, &host, &agent, Fault::Status(500), period)?;
    let on_disconnect = failing_period(&proxy, &host, &agent, Fault::Disconnect, period)?;
    // It asked again (the job stays on offer), but with a pause between tries: 1 s, 2 s, 4 s
    // ... (±10 %), a handful in 16 s, never a tight loop.
    assert!(
        on_500 + on_disconnect >= 2,
        "the agent stopped asking: {on_500} + {on_disconnect}\n{}",
        agent.logs()
    );
    assert!(
        on_500 + on_disconnect <= 10,
        "the agent retried the start without a pause: {on_500} + {on_disconnect}\n{}",
        agent.logs()
    );
    let view = server.cli_json(&["deployment", "show", &dep, "--json"])?;
    assert_eq!(view["results"][0]["state"], "pending", "{view:#}");
    assert!(!agent.logs().contains("running job"), "{}", agent.logs());

    proxy.heal();
    wait_until(
        Duration::from_secs(120),
        "the job to run once confirmed",
        || {
            let view = server.cli_json(&["deployment", "show", &dep, "--json"])?;
            Ok(view["status"] == "completed")
        },
    )
    .with_context(|| agent.logs())?;
    let view = server.cli_json(&["deployment", "show", &dep, "--json"])?;
    let row = &view["results"][0];
    assert_eq!(row["state"], "verified", "{view:#}\n{}", agent.logs());
    assert_eq!(row["installed_version"], "2.0", "{row:#}");
    let dpkg = host.dpkg_version("pw-ok")?.context("pw-ok known to dpkg")?;
    assert!(dpkg.is_ok() && dpkg.version == "2.0", "{dpkg:?}");
    assert_eq!(
        agent.logs().matches("running job").count(),
        1,
        "{}",
        agent.logs()
    );
    Ok(())
}
