//! `patchwarden`: runs the server (`patchwarden server`) or an operator command.

use clap::Parser;
use patchwarden_cli::{Cli, Command};

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Server(args) = &cli.command {
        init_logging();
        let config = patchwarden_server::ServerConfig {
            listen: args.listen,
            data_dir: cli
                .data_dir
                .clone()
                .unwrap_or_else(patchwarden_cli::default_data_dir),
            database_url: args.database_url.clone(),
            checkin_interval_secs: args.checkin_interval.max(1),
            stale_after_secs: args.stale_after.map(|d| d.as_secs()),
            offline_after_secs: args.offline_after.map(|d| d.as_secs()),
        };
        if let (Some(stale), Some(offline)) = (args.stale_after, args.offline_after) {
            if offline <= stale {
                anyhow::bail!("--offline-after must be longer than --stale-after");
            }
        }
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(patchwarden_server::run(config, shutdown_signal()));
    }
    match patchwarden_cli::run_client(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
