//! Human-readable tables (the `--json` forms print the API's own JSON).

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use patchwarden_wire::api::*;

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

pub fn print_enroll_tokens(tokens: &[EnrollTokenInfo]) {
    let mut t = table(&["ID", "TENANT", "LABELS", "EXPIRES", "REVOKED", "USES"]);
    for k in tokens {
        let labels: Vec<String> = k.labels.iter().map(|(a, b)| format!("{a}={b}")).collect();
        let uses = match k.max_uses {
            Some(m) => format!("{}/{m}", k.uses),
            None => k.uses.to_string(),
        };
        t.add_row(vec![
            k.id.clone(),
            k.tenant.clone(),
            labels.join(","),
            k.expires_at.clone(),
            opt(&k.revoked_at),
            uses,
        ]);
    }
    println!("{t}");
}

pub fn print_devices(devices: &[DeviceSummary]) {
    let mut t = table(&[
        "ID",
        "HOSTNAME",
        "STATUS",
        "LAST SEEN",
        "OS",
        "UPDATES",
        "SECURITY",
        "REBOOT",
    ]);
    for d in devices {
        t.add_row(vec![
            d.id.clone(),
            d.hostname.clone(),
            d.status.to_string(),
            opt(&d.last_seen),
            d.os.clone(),
            d.pending_updates.to_string(),
            d.security_updates.to_string(),
            if d.reboot_required {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    println!("{t}");
    println!("{} device(s)", devices.len());
}

pub fn print_device(d: &DeviceDetail) {
    let s = &d.summary;
    println!("device    {}\nhostname  {}\ntenant    {}\nstatus    {}\nlast seen {}\nos        {}\nkernel    {}",
        s.id, s.hostname, s.tenant, s.status, opt(&s.last_seen), s.os, s.kernel);
    let Some(inv) = &d.inventory else {
        println!("no inventory received yet");
        print_history(d);
        return;
    };
    println!(
        "packages  {} installed, {} upgradable ({} security), {} held",
        inv.packages.len(),
        inv.upgradable.len(),
        inv.upgradable.iter().filter(|u| u.security).count(),
        inv.held.len()
    );
    println!(
        "reboot    {}{}",
        if inv.reboot_required {
            "required"
        } else {
            "not required"
        },
        if inv.reboot_required_packages.is_empty() {
            String::new()
        } else {
            format!(" (by {})", inv.reboot_required_packages.join(", "))
        }
    );
    if inv.health.interrupted || !inv.health.broken_packages.is_empty() {
        println!(
            "health    interrupted={} broken={}",
            inv.health.interrupted,
            inv.health.broken_packages.join(",")
        );
    }
    if !inv.upgradable.is_empty() {
        let mut t = table(&["PACKAGE", "INSTALLED", "CANDIDATE", "SECURITY", "HELD"]);
        for u in &inv.upgradable {
            t.add_row(vec![
                u.name.clone(),
                u.installed_version.clone(),
                u.candidate_version.clone(),
                if u.security {
                    "yes".into()
                } else {
                    String::new()
                },
                if u.held { "held".into() } else { String::new() },
            ]);
        }
        println!("pending updates:\n{t}");
    }
    let mut t = table(&["PACKAGE", "VERSION", "SOURCE", "ARCH", "STATUS"]);
    for p in &inv.packages {
        t.add_row(vec![
            p.name.clone(),
            p.version.clone(),
            p.source.clone(),
            p.arch.clone(),
            p.status.clone(),
        ]);
    }
    println!("installed packages:\n{t}");
    print_history(d);
}

pub fn print_deployment(v: &DeploymentView) {
    let c = &v.counts;
    if let Some(reason) = &v.status_reason {
        println!("{}: {reason}", v.status);
    }
    if let Some(reboot) = &v.reboot {
        println!("reboots: {reboot}");
    }
    if v.rings.len() > 1 {
        for (i, r) in v.rings.iter().enumerate() {
            println!(
                "ring {} {:<10} {:<8} devices {:>3}  released {:>3}  done {:>3}  ok {:>3}  failed (patch) {:>3}  failed (other) {:>3}{}",
                i + 1,
                r.name,
                r.state,
                r.devices,
                r.released,
                r.done,
                r.succeeded,
                r.failed_patch,
                r.failed_other,
                if i as u32 == v.current_ring { "  <- current" } else { "" }
            );
        }
    }
    println!(
        "deployment {}  tenant {}  created {}  {}  devices {}/{}",
        v.id, v.tenant, v.created_at, v.status, v.devices_done, v.devices_total
    );
    println!("verified {}  pending_reboot {}  failed {}  not_applicable {}  skipped {}  device_offline {}  pending {}",
        c.verified, c.pending_reboot, c.failed, c.not_applicable, c.skipped, c.device_offline, c.pending);
    let mut t = table(&[
        "DEVICE",
        "PACKAGE",
        "STATE",
        "CLASS",
        "FROM",
        "TO",
        "INSTALLED",
        "EXIT",
        "EVIDENCE",
    ]);
    for r in &v.results {
        t.add_row(vec![
            if r.hostname.is_empty() {
                r.device.clone()
            } else {
                r.hostname.clone()
            },
            r.package.clone(),
            r.state.to_string(),
            r.class.map(|c| c.to_string()).unwrap_or_default(),
            opt(&r.from_version),
            opt(&r.to_version),
            opt(&r.installed_version),
            r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            r.evidence.first().cloned().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

pub fn print_deployments(list: &[DeploymentSummary]) {
    let mut t = table(&[
        "ID", "TENANT", "CREATED", "STATUS", "DEVICES", "VERIFIED", "FAILED", "PENDING",
    ]);
    for d in list {
        t.add_row(vec![
            d.id.clone(),
            d.tenant.clone(),
            d.created_at.clone(),
            d.status.to_string(),
            format!("{}/{}", d.devices_done, d.devices_total),
            d.counts.verified.to_string(),
            d.counts.failed.to_string(),
            d.counts.pending.to_string(),
        ]);
    }
    println!("{t}");
}

fn first(v: &[String]) -> String {
    v.first().cloned().unwrap_or_default()
}

/// `3d 4h`, `5h 12m`, `40m`.
fn age(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

pub fn print_failures(view: &FailuresView) {
    if view.groups.is_empty() {
        println!("no current failures");
        return;
    }
    for g in &view.groups {
        println!("{} ({})", g.class, g.count);
        let mut t = table(&[
            "DEVICE", "PACKAGE", "STATUS", "ASSIGNEE", "AGE", "ATTEMPTS", "DEADLINE", "EXIT",
            "EVIDENCE",
        ]);
        for f in &g.failures {
            t.add_row(vec![
                if f.hostname.is_empty() {
                    f.device.clone()
                } else {
                    f.hostname.clone()
                },
                f.package.clone(),
                f.status.as_str().to_owned(),
                f.assignee.clone().unwrap_or_else(|| "-".to_owned()),
                age(f.age_secs),
                f.attempts.to_string(),
                match &f.deadline {
                    Some(d) if f.breached => format!("{} BREACHED", d.get(..10).unwrap_or(d)),
                    Some(d) => d.get(..10).unwrap_or(d).to_owned(),
                    None => String::new(),
                },
                f.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                first(&f.evidence),
            ]);
        }
        println!("{t}");
    }
    println!("{} current failure(s)", view.total);
}

pub fn print_history(d: &DeviceDetail) {
    if !d.failures.is_empty() {
        println!("current failures:");
        let mut t = table(&["PACKAGE", "CLASS", "SINCE", "EVIDENCE"]);
        for f in &d.failures {
            t.add_row(vec![
                f.package.clone(),
                f.class.to_string(),
                f.at.clone(),
                first(&f.evidence),
            ]);
        }
        println!("{t}");
    }
    if d.history.is_empty() {
        println!("no attempts yet");
        return;
    }
    println!("attempt history (newest first):");
    let mut t = table(&[
        "AT",
        "PACKAGE",
        "STATE",
        "CLASS",
        "INSTALLED",
        "DEPLOYMENT",
        "ACTION",
        "EVIDENCE",
    ]);
    for a in &d.history {
        t.add_row(vec![
            a.at.clone(),
            a.package.clone(),
            a.state.to_string(),
            a.class.map(|c| c.to_string()).unwrap_or_default(),
            opt(&a.installed_version),
            a.deployment.clone(),
            a.action.clone(),
            first(&a.evidence),
        ]);
    }
    println!("{t}");
}

pub fn print_feeds(feeds: &[FeedStatus]) {
    let mut t = table(&["SOURCE", "KIND", "RECORDS", "LAST SUCCESS", "LAST ERROR"]);
    for f in feeds {
        t.add_row(vec![
            f.source.clone(),
            f.kind.clone(),
            f.records.to_string(),
            opt(&f.last_success),
            opt(&f.last_error),
        ]);
    }
    println!("{t}");
}

/// `on_track, 12d 4h left` / `breached, 3d 2h overdue`.
fn sla_state(r: &VulnRow) -> String {
    let span = |secs: i64| {
        let (d, h) = (secs / 86_400, secs % 86_400 / 3600);
        if d > 0 {
            format!("{d}d {h}h")
        } else {
            format!("{h}h {}m", secs % 3600 / 60)
        }
    };
    match r.sla_seconds_left {
        Some(s) if s >= 0 => format!("{}, {} left", r.sla_state, span(s)),
        Some(s) => format!("{}, {} overdue", r.sla_state, span(-s)),
        None => r.sla_state.clone(),
    }
}

pub fn print_vulns(rows: &[VulnRow]) {
    let mut t = table(&[
        "PRIORITY",
        "CVE",
        "DEVICE",
        "PACKAGE",
        "INSTALLED",
        "FIX",
        "UPDATE",
        "SEVERITY",
        "KEV",
        "EPSS",
        "SLA DUE",
        "STATE",
    ]);
    for r in rows {
        t.add_row(vec![
            format!("{:.1}", r.priority),
            r.cve.clone(),
            if r.hostname.is_empty() {
                r.device.clone()
            } else {
                r.hostname.clone()
            },
            r.package.clone(),
            r.installed_version.clone(),
            r.fixed_version.clone().unwrap_or_else(|| r.fix.clone()),
            opt(&r.fixed_by_update),
            r.cvss
                .map(|c| format!("{} {c:.1}", r.severity))
                .unwrap_or_else(|| r.severity.clone()),
            if r.kev { "KEV".into() } else { String::new() },
            r.epss.map(|e| format!("{e:.3}")).unwrap_or_default(),
            opt(&r.sla_due),
            if r.closed_at.is_some() {
                format!("closed {} ({})", opt(&r.closed_at), r.sla_state)
            } else {
                sla_state(r)
            },
        ]);
    }
    println!("{t}");
    println!("{} exposure(s)", rows.len());
}
