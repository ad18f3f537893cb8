//! `patchwarden policy create|list|show|edit|delete`, `patchwarden apply FILE` (policies as
//! TOML or YAML files, GitOps-style: applying the same file twice changes nothing), and
//! rejected updates (`rejected`, `unreject`).

use crate::client::Client;
use crate::encode;
use crate::output;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use patchwarden_wire::agent::PackageTarget;
use patchwarden_wire::api::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy, from a file (TOML, YAML or JSON) or from options
    Create(PolicyArgs),
    /// List policies
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One policy: its specification (as TOML), next cycle, and the deployments it created
    Show {
        /// Id or name
        policy: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a policy: replace it from a file, or change single settings
    Edit {
        /// Id or name
        policy: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Replace the whole specification with this file's (the name may change)
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long, value_parser = crate::parse_duration)]
        window_duration: Option<Duration>,
        /// automatic, manual or severity
        #[arg(long)]
        approval: Option<String>,
        #[arg(long = "exclude")]
        exclude: Vec<String>,
    },
    /// Delete a policy (the deployments it created stay)
    Delete {
        policy: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Name (unique in the tenant); not needed with --file
    pub name: Option<String>,
    /// A policy file (TOML, YAML or JSON) holding exactly one policy
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long = "device")]
    pub devices: Vec<String>,
    #[arg(long = "label", value_parser = crate::parse_label)]
    pub labels: Vec<(String, String)>,
    #[arg(long)]
    pub all: bool,
    /// What: security, all-updates, vulnerabilities or packages (with --package)
    #[arg(long, default_value = "security")]
    pub what: String,
    /// With --what vulnerabilities: at or above this severity
    #[arg(long)]
    pub min_severity: Option<String>,
    #[arg(long = "package", value_parser = crate::parse_package)]
    pub packages: Vec<PackageTarget>,
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// When, in each device's zone: "monthly second tuesday +2d 22:00", "weekly saturday 02:00"
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long, value_parser = crate::parse_duration)]
    pub window_duration: Option<Duration>,
    #[arg(long = "ring", value_parser = crate::parse_ring)]
    pub rings: Vec<RingRequest>,
    /// automatic (default), manual, or severity (with --approval-min-severity)
    #[arg(long)]
    pub approval: Option<String>,
    #[arg(long)]
    pub approval_min_severity: Option<String>,
    /// Expedite fixes for vulnerabilities at or above this severity
    #[arg(long)]
    pub expedite_severity: Option<String>,
    /// Expedite fixes for known exploited vulnerabilities
    #[arg(long)]
    pub expedite_kev: bool,
    #[arg(long)]
    pub disabled: bool,
}

/// Reads policies from a file: TOML (`[[policy]]` tables, or one policy at the top level),
/// YAML (`policies:` list, a list, or one mapping) or JSON, by extension (else by content).
pub fn parse_policy_file(path: &Path, text: &str) -> anyhow::Result<Vec<PolicySpec>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TomlMany {
        policy: Vec<PolicySpec>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct YamlMany {
        policies: Vec<PolicySpec>,
    }
    let name = path.display();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let policies = match ext.as_str() {
        "toml" => {
            let value: toml::Table =
                toml::from_str(text).with_context(|| format!("{name}: not valid TOML"))?;
            if value.contains_key("policy") {
                toml::from_str::<TomlMany>(text)
                    .with_context(|| format!("{name}: invalid policy"))?
                    .policy
            } else {
                vec![toml::from_str::<PolicySpec>(text)
                    .with_context(|| format!("{name}: invalid policy"))?]
            }
        }
        "yaml" | "yml" => {
            let value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).with_context(|| format!("{name}: not valid YAML"))?;
            if value.get("policies").is_some() {
                serde_yaml_ng::from_str::<YamlMany>(text)
                    .with_context(|| format!("{name}: invalid policy"))?
                    .policies
            } else if value.is_sequence() {
                serde_yaml_ng::from_str::<Vec<PolicySpec>>(text)
                    .with_context(|| format!("{name}: invalid policy"))?
            } else {
                vec![serde_yaml_ng::from_str::<PolicySpec>(text)
                    .with_context(|| format!("{name}: invalid policy"))?]
            }
        }
        "json" => {
            let value: serde_json::Value =
                serde_json::from_str(text).with_context(|| format!("{name}: not valid JSON"))?;
            if value.is_array() {
                serde_json::from_value(value).with_context(|| format!("{name}: invalid policy"))?
            } else {
                vec![serde_json::from_value(value)
                    .with_context(|| format!("{name}: invalid policy"))?]
            }
        }
        other => {
            bail!("{name}: unknown policy file type {other:?}: use .toml, .yaml, .yml or .json")
        }
    };
    if policies.is_empty() {
        bail!("{name}: no policy in the file");
    }
    Ok(policies)
}

fn read_policies(path: &Path) -> anyhow::Result<Vec<PolicySpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_policy_file(path, &text)
}

fn with_tenant(path: String, tenant: &Option<String>) -> String {
    match tenant {
        Some(t) => format!("{path}?tenant={}", encode(t)),
        None => path,
    }
}

pub fn apply(client: &Client, file: &Path, json: bool) -> anyhow::Result<i32> {
    let policies = read_policies(file)?;
    let out: Vec<ApplyOutcome> = client.post("/api/v1/apply", &ApplyRequest { policies })?;
    if json {
        output::print_json(&out)?;
    } else {
        for o in &out {
            println!("{:<9} {} ({}, tenant {})", o.action, o.name, o.id, o.tenant);
        }
    }
    Ok(0)
}

fn spec_from_args(a: PolicyArgs) -> anyhow::Result<PolicySpec> {
    if let Some(file) = &a.file {
        let mut list = read_policies(file)?;
        if list.len() != 1 {
            bail!(
                "{} holds {} policies: use `patchwarden apply` for several",
                file.display(),
                list.len()
            );
        }
        return Ok(list.remove(0));
    }
    let Some(name) = a.name else {
        bail!("give the policy a name, or --file FILE");
    };
    let what = match a.what.as_str() {
        "security" => Selection::Security,
        "all-updates" | "all_updates" | "all" => Selection::AllUpdates,
        "vulnerabilities" => Selection::Vulnerabilities {
            min_severity: a.min_severity.clone(),
            kev: false,
            cves: vec![],
        },
        "packages" => Selection::Packages {
            packages: a.packages.clone(),
        },
        other => bail!(
            "unknown --what {other:?}: use security, all-updates, vulnerabilities or packages"
        ),
    };
    Ok(PolicySpec {
        name,
        tenant: a.tenant,
        description: None,
        enabled: !a.disabled,
        target: TargetSpec {
            devices: a.devices,
            labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
            all: a.all,
        },
        what,
        exclude: a.exclude,
        respect_holds: true,
        schedule: a.schedule,
        window_duration_secs: a.window_duration.map(|d| d.as_secs()),
        lead_secs: None,
        rings: a.rings,
        gate: None,
        halt_failure_rate: None,
        halt_min_finished: None,
        concurrency: None,
        spread: true,
        approval: a.approval,
        approval_min_severity: a.approval_min_severity,
        reboot: None,
        retry: None,
        offline: None,
        preflight: None,
        expedite: (a.expedite_severity.is_some() || a.expedite_kev).then_some(ExpeditePolicy {
            min_severity: a.expedite_severity,
            kev: a.expedite_kev,
        }),
        timeout_secs: None,
    })
}

pub fn policy(client: &Client, cmd: PolicyCommand) -> anyhow::Result<i32> {
    match cmd {
        PolicyCommand::Create(a) => {
            let spec = spec_from_args(a)?;
            let out: ApplyOutcome = client.post("/api/v1/policies", &spec)?;
            println!("{}", out.id);
        }
        PolicyCommand::List { tenant, json } => {
            let list: Vec<PolicyView> =
                client.get(&with_tenant("/api/v1/policies".into(), &tenant))?;
            if json {
                output::print_json(&list)?;
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::NOTHING);
                t.set_header([
                    "NAME",
                    "TENANT",
                    "ENABLED",
                    "SCHEDULE",
                    "NEXT CYCLE",
                    "APPROVAL",
                    "RUNS",
                    "PROBLEM",
                ]);
                for p in &list {
                    t.add_row([
                        p.spec.name.clone(),
                        p.tenant.clone(),
                        if p.spec.enabled { "yes" } else { "no" }.into(),
                        p.spec.schedule.clone().unwrap_or_else(|| "-".into()),
                        p.next_cycle.clone().unwrap_or_else(|| "-".into()),
                        p.spec
                            .approval
                            .clone()
                            .unwrap_or_else(|| "automatic".into()),
                        p.runs.len().to_string(),
                        p.problem
                            .as_ref()
                            .map_or_else(|| "-".into(), |x| x.message.clone()),
                    ]);
                }
                println!("{t}");
            }
        }
        PolicyCommand::Show {
            policy,
            tenant,
            json,
        } => {
            let p: PolicyView = client.get(&with_tenant(
                format!("/api/v1/policies/{}", encode(&policy)),
                &tenant,
            ))?;
            if json {
                output::print_json(&p)?;
            } else {
                println!(
                    "# policy {} (tenant {}, revision {})",
                    p.id, p.tenant, p.revision
                );
                if let Some(x) = &p.problem {
                    println!("# CANNOT RUN since {}: {}", x.at, x.message);
                }
                if let (Some(c), Some(w)) = (&p.next_cycle, &p.next_window_start) {
                    println!("# next cycle {c}: first window opens {w}");
                }
                for r in &p.runs {
                    println!(
                        "# cycle {}: deployment {} ({})",
                        r.cycle, r.deployment, r.created_at
                    );
                }
                print!(
                    "{}",
                    toml::to_string_pretty(&p.spec).context("cannot print the policy as TOML")?
                );
            }
        }
        PolicyCommand::Edit {
            policy,
            tenant,
            file,
            enable,
            disable,
            schedule,
            window_duration,
            approval,
            exclude,
        } => {
            let path = with_tenant(format!("/api/v1/policies/{}", encode(&policy)), &tenant);
            let current: PolicyView = client.get(&path)?;
            let mut spec = match &file {
                Some(f) => {
                    let mut list = read_policies(f)?;
                    if list.len() != 1 {
                        bail!("{} must hold exactly one policy", f.display());
                    }
                    list.remove(0)
                }
                None => current.spec.clone(),
            };
            if enable {
                spec.enabled = true;
            }
            if disable {
                spec.enabled = false;
            }
            if schedule.is_some() {
                spec.schedule = schedule;
            }
            if let Some(d) = window_duration {
                spec.window_duration_secs = Some(d.as_secs());
            }
            if approval.is_some() {
                spec.approval = approval;
            }
            if !exclude.is_empty() {
                spec.exclude = exclude;
            }
            let out: ApplyOutcome = client.put(
                &with_tenant(format!("/api/v1/policies/{}", current.id), &tenant),
                &spec,
            )?;
            println!("{} {}", out.action, out.name);
        }
        PolicyCommand::Delete { policy, tenant } => {
            client.delete(&with_tenant(
                format!("/api/v1/policies/{}", encode(&policy)),
                &tenant,
            ))?;
            println!("deleted {policy}");
        }
    }
    Ok(0)
}

pub fn rejected(client: &Client, tenant: Option<String>, json: bool) -> anyhow::Result<i32> {
    let list: Vec<RejectedUpdateView> =
        client.get(&with_tenant("/api/v1/rejected-updates".into(), &tenant))?;
    if json {
        output::print_json(&list)?;
    } else {
        for r in &list {
            println!(
                "{}={} (tenant {}) rejected by {} at {}{}",
                r.package,
                r.version,
                r.tenant,
                r.rejected_by,
                r.rejected_at,
                r.reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}

pub fn unreject(
    client: &Client,
    tenant: Option<String>,
    target: PackageTarget,
) -> anyhow::Result<i32> {
    #[derive(serde::Serialize)]
    struct Req {
        tenant: Option<String>,
        package: String,
        version: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Out {
        lifted: u64,
    }
    let out: Out = client.post(
        "/api/v1/rejected-updates/unreject",
        &Req {
            tenant,
            package: target.name,
            version: target.version,
        },
    )?;
    println!("lifted {} rejection(s)", out.lifted);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_every_form() {
        let toml_one = r#"
name = "monthly"
schedule = "monthly second tuesday +2d 22:00"
target = { labels = { env = "prod" } }
what = { kind = "security" }
exclude = ["linux-image-*"]
"#;
        let toml_many = r#"
[[policy]]
name = "pilot"
target = { all = true }
what = { kind = "all_updates" }
schedule = "weekly saturday 02:00"

[[policy]]
name = "critical"
target = { all = true }
what = { kind = "vulnerabilities", min_severity = "critical" }
expedite = { kev = true }
"#;
        let yaml_many = "policies:\n  - name: a\n    target: {all: true}\n    what: {kind: security}\n    schedule: daily 03:00\n  - name: b\n    target: {devices: [web1]}\n    what: {kind: packages, packages: [{name: curl}]}\n    schedule: daily 04:00\n";
        let yaml_one =
            "name: a\ntarget: {all: true}\nwhat: {kind: security}\nschedule: daily 03:00\n";
        let json = r#"{"name":"j","target":{"all":true},"what":{"kind":"security"},"schedule":"daily 01:00"}"#;
        let cases: [(&str, &str, &[&str]); 5] = [
            ("p.toml", toml_one, &["monthly"]),
            ("p.toml", toml_many, &["pilot", "critical"]),
            ("p.yaml", yaml_many, &["a", "b"]),
            ("p.yml", yaml_one, &["a"]),
            ("p.json", json, &["j"]),
        ];
        for (file, text, names) in cases {
            let got = parse_policy_file(Path::new(file), text).expect(file);
            let got: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(got, names, "{file}");
        }
        let one = parse_policy_file(Path::new("p.toml"), toml_one).expect("present");
        assert!(one[0].respect_holds && one[0].enabled && one[0].spread);
        assert_eq!(one[0].exclude, ["linux-image-*"]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("p.toml", "name = \"x\"\nschedul = \"daily 01:00\"\ntarget = {all=true}\nwhat={kind=\"security\"}\n", "schedul"),
            ("p.toml", "name = \"x\"\ntarget = {all=true}\nwhat={kind=\"everything\"}\n", "everything"),
            ("p.yaml", "name: [unclosed\n", "YAML"),
            ("p.ini", "", "unknown policy file type"),
            ("p.yaml", "policies: []\n", "no policy"),
        ];
        for (file, text, needle) in cases {
            let err = format!(
                "{:#}",
                parse_policy_file(Path::new(file), text).expect_err("an error")
            );
            assert!(
                err.contains(needle),
                "{file}: {err:?} should mention {needle:?}"
            );
        }
    }
}
