use anyhow::Context;
use clap::Parser;
use patchwarden_agent::cli::{Cli, Command};
use patchwarden_agent::daemon::{Agent, Options};
use patchwarden_agent::jobs::AcceptUnsigned;
use patchwarden_agent::pkg::Settings;
use patchwarden_agent::state::StateDir;
use patchwarden_agent::{enroll, system_package_manager};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patchwarden-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inventory => {
            let inv = system_package_manager(&Settings::default()).collect_inventory();
            println!("{}", serde_json::to_string_pretty(&inv)?);
        }
        Command::Enroll {
            server,
            token,
            force,
        } => {
            let dir = open(&cli.state_dir)?;
            let st = enroll::enroll(&dir, &server, &token, force).context("enrollment failed")?;
            tracing::info!(device = %st.device_id, tenant = %st.tenant, "enrolled");
            println!("enrolled as device {} (tenant {})", st.device_id, st.tenant);
        }
        Command::Run {
            once,
            report_only,
            checkin_interval,
            lock_wait,
        } => {
            let dir = open(&cli.state_dir)?;
            let options = Options {
                report_only,
                checkin_interval: checkin_interval.map(Duration::from_secs),
            };
            let settings = Settings {
                lock_wait: Duration::from_secs(lock_wait),
            };
            let agent = Agent::new(
                dir,
                system_package_manager(&settings),
                Box::new(AcceptUnsigned),
                options,
            )?;
            if once {
                agent.run_once()?;
            } else {
                Arc::new(agent).run_forever()?;
            }
        }
    }
    Ok(())
}

fn open(path: &std::path::Path) -> anyhow::Result<StateDir> {
    StateDir::open(path).with_context(|| format!("cannot use state directory {}", path.display()))
}
