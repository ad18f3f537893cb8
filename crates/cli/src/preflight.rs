//! `patchwarden deployment preflight ID [--wait] [--json]` and the predictions table.

use crate::output::{print_json, table};
use crate::Client;
use patchwarden_wire::api::{DeploymentView, PreflightStarted};
use std::time::{Duration, Instant};

/// Requests the pre-flight check of every device of a deployment; with `wait`, polls until
/// every check has answered (or `limit`) and prints the predictions. Exit status with
/// `wait`: 0 nothing predicted to fail, 2 a failure predicted, 3 gave up waiting.
pub fn run(
    client: &Client,
    id: &str,
    wait: bool,
    limit: Duration,
    json: bool,
) -> anyhow::Result<crate::ExitCode> {
    let started: PreflightStarted = client.post(
        &format!("/api/v1/deployments/{id}/preflight"),
        &serde_json::json!({}),
    )?;
    if !wait {
        if json {
            print_json(&started)?;
        } else {
            println!(
                "pre-flight of deployment {}: {} check(s) queued, {} in total",
                started.deployment, started.queued, started.total
            );
        }
        return Ok(0);
    }
    let start = Instant::now();
    let view = loop {
        let view: DeploymentView = client.get(&format!("/api/v1/deployments/{id}"))?;
        if view.preflight_pending == 0 || start.elapsed() >= limit {
            break view;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if json {
        print_json(&view)?;
    } else {
        print_predictions(&view);
    }
    if view.preflight_pending > 0 {
        if !json {
            eprintln!(
                "{} pre-flight check(s) still pending",
                view.preflight_pending
            );
        }
        return Ok(3);
    }
    Ok(
        if view
            .predictions
            .iter()
            .any(|p| p.state == patchwarden_core::PackageState::Failed)
        {
            2
        } else {
            0
        },
    )
}

/// The predictions of a deployment (and the accuracy once it ran); nothing when none.
pub fn print_predictions(v: &DeploymentView) {
    if v.predictions.is_empty() && v.preflight_pending == 0 {
        return;
    }
    println!(
        "pre-flight predictions (nothing was installed){}",
        if v.preflight_pending > 0 {
            format!(", {} check(s) pending", v.preflight_pending)
        } else {
            String::new()
        }
    );
    let mut t = table(&["DEVICE", "PACKAGE", "PREDICTED", "CLASS", "AT", "EVIDENCE"]);
    for p in &v.predictions {
        t.add_row(vec![
            if p.hostname.is_empty() {
                p.device.clone()
            } else {
                p.hostname.clone()
            },
            p.package.clone(),
            p.state.to_string(),
            p.class.map(|c| c.to_string()).unwrap_or_default(),
            p.at.clone(),
            p.evidence.first().cloned().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    if let Some(a) = &v.prediction_accuracy {
        println!(
            "prediction accuracy: {:.0}%  packages {}/{}  devices {}/{}",
            a.percent,
            a.packages_matched,
            a.packages_compared,
            a.devices_matched,
            a.devices_compared
        );
    }
}
