//! `patchwarden-lab`: a sandboxed demo fleet for newcomers, and the deployment benchmark.
//!
//!   patchwarden-lab demo --data-dir DIR --hosts 3
//!   patchwarden-lab bench-deploy --hosts 20 --rounds 3
//!
//! Both need root (real Debian roots in namespaces; see crates/lab).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use patchwarden_lab::fleet::{enroll_agent, install_agent, spawn_agent, wait_until, ServerProcess};
use patchwarden_lab::{AptRepo, BaseRoot, DebPackage, Host, HostProcess};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "patchwarden-lab",
    about = "Sandboxed Debian lab hosts: a demo fleet and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lab hosts with real agents enrolled in a running local server, until Ctrl-C
    Demo {
        /// The server's data directory (its URL and administrator token are read there)
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        hosts: usize,
    },
    /// Deploy one small package to N hosts with running agents, against the same apt
    /// commands run directly in all N hosts in parallel, alternating, in one run
    BenchDeploy {
        #[arg(long, default_value_t = 20)]
        hosts: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    if let Some(reason) = patchwarden_lab::lab_unavailable() {
        bail!("the lab cannot run here: {reason}");
    }
    match Cli::parse().command {
        Cmd::Demo { data_dir, hosts } => demo(&data_dir, hosts),
        Cmd::BenchDeploy { hosts, rounds } => bench_deploy(hosts, rounds),
    }
}

/// The demo repository: pw-demo 1.0 → 1.1 (clean), pw-tool 1.0 → 1.1 whose postinst fails on
/// hosts that have /etc/pw-tool-fail.
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

fn prepare_hosts(
    base: &BaseRoot,
    repo: &AptRepo,
    prefix: &str,
    n: usize,
    install: &[&str],
) -> Result<Vec<Host>> {
    // In parallel: each host's apt-get update + install takes a second or two.
    let results: Vec<Result<Host>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=n)
            .map(|i| {
                s.spawn(move || -> Result<Host> {
                    let host = Host::create(base, &format!("{prefix}{i:02}"))?;
                    host.set_apt_sources(&[repo.source_line()])?;
                    host.exec_ok(&["apt-get", "update"])?;
                    let mut args = vec!["apt-get", "install", "-y"];
                    args.extend_from_slice(install);
                    host.exec_ok(&args)?;
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
            .collect()
    });
    results.into_iter().collect()
}

fn cli(data_dir: &Path, args: &[&str]) -> Result<String> {
    let bin = patchwarden_lab::workspace_bin("patchwarden")?;
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "patchwarden {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn demo(data_dir: &Path, n: usize) -> Result<()> {
    let url = std::fs::read_to_string(data_dir.join("server-url")).with_context(|| {
        format!(
            "no server-url in {}: is the server running?",
            data_dir.display()
        )
    })?;
    let url = url.trim();
    eprintln!("building the demo fleet ({n} hosts; the first run builds a Debian base root, about a minute)...");
    let base = BaseRoot::get(&[])?;
    let repo = demo_repo()?;
    let hosts = prepare_hosts(&base, &repo, "demo-", n, &["pw-demo=1.0", "pw-tool=1.0"])?;
    if let Some(last) = hosts.last() {
        last.write_file("/etc/pw-tool-fail", "", 0o644)?;
    }
    let token = cli(
        data_dir,
        &[
            "enroll-token",
            "create",
            "--label",
            "fleet=demo",
            "--ttl",
            "10m",
        ],
    )?;
    let mut agents: Vec<HostProcess> = Vec::new();
    for host in &hosts {
        enroll_agent(host, url, &token)?;
        agents.push(spawn_agent(host, &[])?);
    }
    eprintln!(
        "demo fleet ready: {n} hosts (label fleet=demo) with pw-demo 1.0 → 1.1 and pw-tool 1.0 → 1.1 \
         (whose postinst fails on {}). Ctrl-C removes it.",
        hosts.last().map(|h| h.name()).unwrap_or_default()
    );
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("removing the demo fleet");
    drop(agents);
    drop(hosts);
    Ok(())
}

/// The apt commands the agent runs for `--package pw-demo=VERSION`, run directly.
fn direct_upgrade(host: &Host, version: &str) -> Result<()> {
    let script = format!(
        "dpkg-query -W -f='${{Package}} ${{Version}}\\n' pw-demo >/dev/null && apt-mark showhold >/dev/null && \
         apt-get update -o APT::Update::Error-Mode=any >/dev/null && \
         apt-get install -y --no-remove --only-upgrade -o Dpkg::Options::=--force-confdef \
           -o Dpkg::Options::=--force-confold pw-demo={version} >/dev/null && \
         dpkg-query -W -f='${{Version}}' pw-demo"
    );
    let out = host.sh(&script)?;
    let got = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || got.trim() != version {
        bail!(
            "direct upgrade in {} failed: {got} {}",
            host.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn reset(hosts: &[Host]) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                s.spawn(move || {
                    h.exec_ok(&[
                        "apt-get",
                        "install",
                        "-y",
                        "--allow-downgrades",
                        "pw-demo=1.0",
                    ])
                    .map(|_| ())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("reset thread panicked")))
        })
    })
}

fn seconds(v: &serde_json::Value) -> Option<f64> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// When the agents started and finished, relative to the deployment's creation.
fn job_spread(view: &serde_json::Value) -> String {
    let Some(created) = seconds(&view["created_at"]) else {
        return String::new();
    };
    let jobs = view["jobs"].as_array().cloned().unwrap_or_default();
    let last = |field: &str| {
        jobs.iter()
            .filter_map(|j| seconds(&j[field]))
            .map(|t| t - created)
            .fold(0.0, f64::max)
    };
    let longest = jobs
        .iter()
        .filter_map(|j| j["duration_ms"].as_f64())
        .fold(0.0, f64::max)
        / 1000.0;
    format!(
        "last job started +{:.2} s, last finished +{:.2} s, longest job {longest:.2} s",
        last("started_at"),
        last("finished_at")
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench_deploy(n: usize, rounds: usize) -> Result<()> {
    let server = ServerProcess::start()?;
    let base = BaseRoot::get(&[])?;
    let repo = demo_repo()?;
    eprintln!("preparing {n} hosts...");
    let hosts = prepare_hosts(&base, &repo, "bench-", n, &["pw-demo=1.0"])?;
    let token = server.enroll_token(&["--ttl", "1h"])?;
    let mut agents = Vec::new();
    for host in &hosts {
        enroll_agent(host, server.url(), &token)?;
        agents.push(spawn_agent(host, &[])?);
    }
    wait_until(Duration::from_secs(120), "every agent's inventory", || {
        let devices = server.devices()?;
        Ok(devices.len() == n
            && devices
                .iter()
                .all(|d| d["pending_updates"].as_u64() >= Some(1)))
    })?;

    let mut direct = Vec::new();
    let mut patchwarden = Vec::new();
    for round in 1..=rounds {
        reset(&hosts)?;
        let t = Instant::now();
        std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|h| s.spawn(move || direct_upgrade(h, "1.1")))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("direct thread panicked")))
            })
        })?;
        let d = t.elapsed().as_secs_f64();
        direct.push(d);

        reset(&hosts)?;
        let t = Instant::now();
        let out = server.cli(&[
            "deploy",
            "--all",
            "--package",
            "pw-demo=1.1",
            "--wait",
            "--json",
        ])?;
        let p = t.elapsed().as_secs_f64();
        let view: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("deploy output: {}", String::from_utf8_lossy(&out.stderr)))?;
        let verified = view["counts"]["verified"].as_u64().unwrap_or(0) as usize;
        if verified != n {
            bail!("round {round}: only {verified}/{n} verified: {view:#}");
        }
        patchwarden.push(p);
        if std::env::var_os("BENCH_DEBUG").is_some() {
            let logs = server.logs();
            let tail: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("deployment created") || l.contains("result stored"))
                .collect();
            eprintln!("{}", tail[tail.len().saturating_sub(21)..].join("\n"));
        }
        println!(
            "round {round}: direct {d:.2} s, patchwarden {p:.2} s, ratio {:.2}  ({})",
            p / d,
            job_spread(&view)
        );
    }
    let (d, p) = (median(direct), median(patchwarden));
    println!("hosts {n}, rounds {rounds}: median direct {d:.2} s, median patchwarden {p:.2} s, ratio {:.2} (target <= 1.25)", p / d);
    drop(agents);
    Ok(())
}
