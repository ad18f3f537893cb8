//! `patchwarden sla show|set`: a tenant's SLA policy (remediation deadlines in days from an
//! exposure's first sighting, per severity and for known-exploited CVEs).

use crate::output::{print_json, table};
use crate::{encode, Client};
use clap::Subcommand;
use patchwarden_wire::api::{SlaPolicyUpdate, SlaPolicyView};

#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// Show a tenant's SLA policy (the defaults when it has none of its own)
    Show {
        /// Tenant name [default: the token's tenant, or `default`]
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's SLA policy: days from first seen, 1 to 3650; the others are kept
    Set {
        /// Tenant name [default: the token's tenant, or `default`]
        #[arg(long)]
        tenant: Option<String>,
        /// Days to fix a critical exposure
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        critical: Option<i64>,
        /// Days to fix a high exposure
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        high: Option<i64>,
        /// Days to fix a medium exposure
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        medium: Option<i64>,
        /// Days to fix a low exposure
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        low: Option<i64>,
        /// Days to fix a known-exploited (CISA KEV) exposure, unless CISA's due date is earlier
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        kev: Option<i64>,
        /// Days to fix an exposure not yet rated
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
        unrated: Option<i64>,
        /// Whether CISA's KEV due date sets the deadline when it is still ahead
        #[arg(long, value_name = "BOOL")]
        kev_due_date: Option<bool>,
        /// Start from the product defaults instead of the current policy
        #[arg(long)]
        reset: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(client: &Client, c: SlaCommand) -> anyhow::Result<crate::ExitCode> {
    let (view, json) = match c {
        SlaCommand::Show { tenant, json } => {
            let path = match &tenant {
                Some(t) => format!("/api/v1/sla-policy?tenant={}", encode(t)),
                None => "/api/v1/sla-policy".to_owned(),
            };
            let view: SlaPolicyView = client.get(&path)?;
            (view, json)
        }
        SlaCommand::Set {
            tenant,
            critical,
            high,
            medium,
            low,
            kev,
            unrated,
            kev_due_date,
            reset,
            json,
        } => {
            let req = SlaPolicyUpdate {
                tenant,
                kev_days: kev,
                honor_kev_due_date: kev_due_date,
                critical_days: critical,
                high_days: high,
                medium_days: medium,
                low_days: low,
                none_days: None,
                unknown_days: unrated,
                reset,
            };
            if req
                == (SlaPolicyUpdate {
                    tenant: req.tenant.clone(),
                    ..Default::default()
                })
            {
                anyhow::bail!(
                    "nothing to change: give --critical, --high, --medium, --low, --kev, --unrated, --kev-due-date or --reset"
                );
            }
            let view: SlaPolicyView = client.put("/api/v1/sla-policy", &req)?;
            (view, json)
        }
    };
    if json {
        print_json(&view)?;
    } else {
        print_policy(&view);
    }
    Ok(0)
}

fn days(d: Option<u32>) -> String {
    d.map_or_else(|| "no deadline".to_owned(), |d| format!("{d} days"))
}

pub fn print_policy(v: &SlaPolicyView) {
    let mut t = table(&["RATING", "DEADLINE (FROM FIRST SEEN)"]);
    let kev = if v.honor_kev_due_date {
        format!(
            "CISA due date, or {} days (the earlier of that and the rating's)",
            v.kev_days
        )
    } else {
        format!("{} days (or the rating's, if earlier)", v.kev_days)
    };
    t.add_row(vec!["known exploited (KEV)".to_owned(), kev]);
    for (rating, d) in [
        ("critical", v.critical_days),
        ("high", v.high_days),
        ("medium", v.medium_days),
        ("low", v.low_days),
        ("negligible", v.none_days),
        ("not yet rated", v.unknown_days),
    ] {
        t.add_row(vec![rating.to_owned(), days(d)]);
    }
    println!(
        "SLA policy of tenant {}{}",
        v.tenant,
        if v.default {
            " (the defaults)".to_owned()
        } else {
            format!(
                " (set by {} at {})",
                v.updated_by.as_deref().unwrap_or("?"),
                v.updated_at.as_deref().unwrap_or("?")
            )
        }
    );
    println!("{t}");
}
