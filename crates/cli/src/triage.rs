//! `patchwarden failure assign|resolve|accept-risk|retry DEVICE PACKAGE`: the failure queue's
//! actions (the server checks the role: operator for assign, resolve and retry; approver for
//! accept-risk).

use crate::output::print_json;
use crate::Client;
use clap::Subcommand;
use patchwarden_wire::api::{FailureActionRequest, FailureActionResult};

#[derive(Debug, Subcommand)]
pub enum FailureCommand {
    /// Assign a failure to a person (their login); --to "" unassigns
    Assign {
        /// Device id or hostname
        device: String,
        package: String,
        /// The login of the person who takes it
        #[arg(long = "to", value_name = "LOGIN")]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Mark a failure resolved: it leaves the queue until the package fails again
    Resolve {
        /// Device id or hostname
        device: String,
        package: String,
        /// What was done
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Accept the risk of a failure until a date (approvers): it leaves the queue until then
    AcceptRisk {
        /// Device id or hostname
        device: String,
        package: String,
        /// Why the risk is acceptable
        #[arg(long)]
        reason: String,
        /// Until when: YYYY-MM-DD (end of that day, UTC) or RFC 3339; at most a year ahead
        #[arg(long, value_name = "DATE")]
        until: String,
        #[arg(long)]
        json: bool,
    },
    /// Retry: a deployment of this package to this device alone
    Retry {
        /// Device id or hostname
        device: String,
        package: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, c: FailureCommand) -> anyhow::Result<crate::ExitCode> {
    let (path, req, json) = match c {
        FailureCommand::Assign {
            device,
            package,
            to,
            json,
        } => (
            "assign",
            FailureActionRequest {
                device,
                package,
                assignee: Some(to),
                ..Default::default()
            },
            json,
        ),
        FailureCommand::Resolve {
            device,
            package,
            reason,
            json,
        } => (
            "resolve",
            FailureActionRequest {
                device,
                package,
                reason,
                ..Default::default()
            },
            json,
        ),
        FailureCommand::AcceptRisk {
            device,
            package,
            reason,
            until,
            json,
        } => (
            "accept-risk",
            FailureActionRequest {
                device,
                package,
                reason: Some(reason),
                until: Some(until),
                ..Default::default()
            },
            json,
        ),
        FailureCommand::Retry {
            device,
            package,
            json,
        } => (
            "retry",
            FailureActionRequest {
                device,
                package,
                ..Default::default()
            },
            json,
        ),
    };
    let r: FailureActionResult = client.post(&format!("/api/v1/failures/{path}"), &req)?;
    if json {
        print_json(&r)?;
        return Ok(0);
    }
    let host = if r.hostname.is_empty() {
        &r.device
    } else {
        &r.hostname
    };
    let mut line = format!("{host} {}: {}", r.package, r.status.as_str());
    if let Some(u) = &r.accepted_until {
        line.push_str(&format!(" until {u}"));
    }
    match &r.assignee {
        Some(a) => line.push_str(&format!(", assigned to {a}")),
        None => line.push_str(", unassigned"),
    }
    if let Some(why) = &r.reason {
        line.push_str(&format!(" ({why})"));
    }
    println!("{line}");
    if let Some(d) = &r.deployment {
        println!("retry deployment {d} created (patchwarden deployment show {d})");
    }
    Ok(0)
}
