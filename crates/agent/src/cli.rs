//! Command-line interface.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "patchwarden-agent",
    version,
    about = "Patchwarden endpoint agent: reports inventory, installs updates on request, proves the result"
)]
pub struct Cli {
    /// Where the agent keeps its identity and undelivered results.
    #[arg(long, global = true, env = "PATCHWARDEN_AGENT_STATE_DIR", default_value = crate::state::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this device with a server, using a one-time token.
    Enroll {
        /// Server base URL, e.g. http://patchwarden.example:8080
        #[arg(long)]
        server: String,
        #[arg(long, env = "PATCHWARDEN_ENROLL_TOKEN")]
        token: String,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Check in, pick up work and run it; loops unless --once.
    Run {
        /// One cycle: deliver results, check in, run queued work, check in again, exit.
        #[arg(long)]
        once: bool,
        /// Never install: every install job reports its packages as skipped.
        #[arg(long)]
        report_only: bool,
        /// Seconds between check-ins (default: what the server says).
        #[arg(long)]
        checkin_interval: Option<u64>,
        /// Seconds to wait for another apt/dpkg (or dnf/rpm) to release its lock before a
        /// job's packages fail as `lock_held`.
        #[arg(long, value_name = "SECS", default_value_t = crate::pkg::DEFAULT_LOCK_WAIT.as_secs())]
        lock_wait: u64,
    },
    /// Print this device's inventory as JSON (for debugging; contacts no server).
    Inventory,
}
