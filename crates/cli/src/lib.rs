//! The operator CLI: argument definitions and the commands that talk to the server's HTTP
//! API. The `patchwarden` binary parses [`Cli`] and runs the server itself for `server`.

mod client;
mod output;
mod policy;
mod preflight;
mod report;
mod sla;
mod triage;
mod users;

pub use client::Client;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use patchwarden_wire::agent::{PackageTarget, RebootMode};
use patchwarden_wire::api::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Data directory when none is given: /var/lib/patchwarden for root, else under $HOME.
pub fn default_data_dir() -> PathBuf {
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    match std::env::var_os("HOME") {
        Some(home) if !is_root => PathBuf::from(home).join(".local/share/patchwarden"),
        _ => PathBuf::from("/var/lib/patchwarden"),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "patchwarden",
    version,
    about = "Patchwarden: patch management that proves every update installed"
)]
pub struct Cli {
    /// Server URL [default: the local server's, from the data directory, else http://127.0.0.1:8080]
    #[arg(long, env = "PATCHWARDEN_URL", global = true)]
    pub server: Option<String>,
    /// Operator API token [default: the local server's administrator token file]
    #[arg(long, env = "PATCHWARDEN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of the server (where `server` keeps its database and credential)
    #[arg(long, env = "PATCHWARDEN_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded SQLite by default)
    Server(ServerArgs),
    /// Enrollment tokens: create, list, revoke
    #[command(subcommand)]
    EnrollToken(EnrollTokenCommand),
    /// List devices
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// One device
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Create a deployment
    Deploy(DeployArgs),
    /// Deployments: show, list
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Advisory feeds: import, status
    #[command(subcommand)]
    Feeds(FeedsCommand),
    /// Open exposures (device, CVE, package), highest priority first
    Vulns {
        /// Only known exploited (CISA KEV)
        #[arg(long)]
        kev: bool,
        /// Only at or above: low, medium, high, critical
        #[arg(long)]
        severity: Option<String>,
        /// Only this device (id or hostname)
        #[arg(long)]
        device: Option<String>,
        /// Include closed exposures
        #[arg(long)]
        closed: bool,
        #[arg(long)]
        json: bool,
    },
    /// One CVE: which devices, versions, fixes, deadlines
    #[command(subcommand)]
    Vuln(VulnCommand),
    /// SLA policy of a tenant: remediation deadlines per severity and for KEV
    #[command(subcommand)]
    Sla(sla::SlaCommand),
    /// Version tools (no server needed)
    #[command(subcommand)]
    Version(VersionCommand),
    /// Policies: create, list, show, edit, delete
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Create or update the policies in a TOML, YAML or JSON file (idempotent)
    Apply {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Rejected updates: never installed until un-rejected
    Rejected {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Lift the rejection of an update: PACKAGE (every version) or PACKAGE=VERSION
    Unreject {
        #[arg(value_parser = parse_package)]
        package: PackageTarget,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Users: create, list, disable (admins; a tenant admin within their tenant)
    #[command(subcommand)]
    User(users::UserCommand),
    /// API tokens: create, list, revoke (admins; a tenant admin within their tenant)
    #[command(subcommand)]
    Token(users::TokenCommand),
    /// The audit log: who did what, when, in which tenant, from where (admins, approvers)
    Audit(users::AuditArgs),
    /// Compliance report of a tenant over a period: pdf, csv, json or html
    Report(report::ReportArgs),
    /// A failure's actions: assign, resolve, accept-risk, retry
    #[command(subcommand)]
    Failure(triage::FailureCommand),
    /// Current failures (latest attempt failed), grouped by class
    Failures {
        /// Only this class, e.g. lock_held
        #[arg(long)]
        class: Option<String>,
        /// Only this device (id or hostname)
        #[arg(long)]
        device: Option<String>,
        /// Also resolved failures and accepted risks (default: the open queue)
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FeedsCommand {
    /// Import a feed from a file (uploaded) or a URL (fetched by the server); a malformed feed
    /// is rejected whole and the previous data stays in force
    Import {
        /// osv, osv-zip, debian-tracker, cisa-kev, epss, alpine-secdb
        #[arg(long)]
        kind: String,
        /// Name of the source [default: the kind]
        #[arg(long)]
        source: Option<String>,
        #[arg(long, conflicts_with = "file")]
        url: Option<String>,
        /// With --url: refetch it on this schedule, e.g. 6h
        #[arg(long, requires = "url", value_parser = parse_duration)]
        every: Option<Duration>,
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Sources, record counts, last success, errors
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VulnCommand {
    Show {
        cve: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// Prints <, = or > as the scheme orders A and B
    Compare {
        #[arg(long, value_parser = ["deb", "rpm", "apk"])]
        scheme: String,
        a: String,
        b: String,
    },
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database URL [default: sqlite in the data directory]
    #[arg(long, env = "PATCHWARDEN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Agents' check-in interval, in seconds
    #[arg(long, default_value_t = 60)]
    pub checkin_interval: u64,
    /// A device not seen for this long is shown as stale, e.g. 15m [default: 3 check-in
    /// intervals + 30s]
    #[arg(long, value_parser = parse_duration)]
    pub stale_after: Option<Duration>,
    /// A device not seen for this long is shown as offline [default: 24h]
    #[arg(long, value_parser = parse_duration)]
    pub offline_after: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create a token; prints it alone on stdout
    Create {
        #[arg(long)]
        tenant: Option<String>,
        /// Label for enrolled devices, key=value (repeatable)
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Lifetime, e.g. 24h, 7d, 30m
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// How many devices may use it [default: unlimited until it expires]
        #[arg(long)]
        max_uses: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never shows the tokens themselves)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// A device's summary and inventory
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Clear a device's current failures (the history keeps them, and who reset them)
    ResetFailures { id: String },
    /// Set or remove a device's labels; `timezone=Europe/Paris` overrides its reported zone
    Label {
        id: String,
        /// key=value (repeatable)
        #[arg(value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Remove this label (repeatable)
        #[arg(long = "unset")]
        unset: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Device id or hostname (repeatable)
    #[arg(long = "device", group = "target")]
    pub devices: Vec<String>,
    /// Devices carrying this label, key=value (repeatable; all must match)
    #[arg(long = "label", value_parser = parse_label, group = "target")]
    pub labels: Vec<(String, String)>,
    /// Every device of the tenant
    #[arg(long, group = "target")]
    pub all: bool,
    /// Pending security updates
    #[arg(long, group = "what")]
    pub security: bool,
    /// All pending updates
    #[arg(long, group = "what")]
    pub all_updates: bool,
    /// NAME or NAME=VERSION (repeatable)
    #[arg(long = "package", value_parser = parse_package, group = "what")]
    pub packages: Vec<PackageTarget>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Time budget per device, e.g. 30m
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Ring, in order: NAME=PERCENT% | NAME=rest | NAME=DEVICE[,DEVICE...] (repeatable)
    #[arg(long = "ring", value_parser = parse_ring)]
    pub rings: Vec<RingRequest>,
    /// Gate before the next ring: minimum success rate of the ring (0 to 1)
    #[arg(long)]
    pub gate_success_rate: Option<f64>,
    /// Gate: minimum number of successful devices in the ring
    #[arg(long)]
    pub gate_min_successes: Option<u32>,
    /// Gate: soak time after a ring finishes, e.g. 1h
    #[arg(long, value_parser = parse_duration)]
    pub soak: Option<Duration>,
    /// Halt by itself when this share (0 to 1) of finished devices failed because of the patch
    #[arg(long)]
    pub halt_failure_rate: Option<f64>,
    /// ...once at least this many devices finished
    #[arg(long)]
    pub halt_min_finished: Option<u32>,
    /// At most this many devices at once per ring: 5 or 10%
    #[arg(long)]
    pub concurrency: Option<String>,
    /// Nothing installs until an approver runs `deployment approve`
    #[arg(long)]
    pub require_approval: bool,
    /// Install only in this maintenance window, in each device's time zone: "daily 02:00",
    /// "weekly saturday 02:00", "monthly second tuesday +2d 22:00", "cron 0 2 * * sat"
    #[arg(long)]
    pub window: Option<String>,
    /// Length of the window, e.g. 4h [default: 4h]
    #[arg(long, value_parser = parse_duration)]
    pub window_duration: Option<Duration>,
    /// Wait until every device has an outcome or the deployment stops (exit status: 0 all
    /// good, 2 a package failed, 3 gave up waiting, 4 halted, 5 cancelled)
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long, e.g. 1h
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// Request the pre-flight check of every device right after creation
    #[arg(long)]
    pub preflight: bool,
    /// Never install packages whose name matches this pattern (`*`, `?`); repeatable
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// Upgrade held packages too (by default holds are respected)
    #[arg(long)]
    pub ignore_holds: bool,
    /// Expedite: do not wait for the maintenance window (rings and approval still apply)
    #[arg(long)]
    pub expedite: bool,
    /// Reboot after installing: never, when-required or always [default: never]
    #[arg(long, value_parser = ["never", "when-required", "always"])]
    pub reboot: Option<String>,
    /// Reboot loop guard: at most this many reboots of a device per day [default: 2]
    #[arg(long)]
    pub max_reboots_per_day: Option<u32>,
    /// How long a rebooted device has to come back (a new boot id) before its packages are
    /// flagged, e.g. 15m [default: 15m]
    #[arg(long, value_parser = parse_duration)]
    pub reboot_come_back: Option<Duration>,
    /// Retry failed installs: attempts in all, the first included (e.g. 3)
    #[arg(long)]
    pub retries: Option<u32>,
    /// Delay before the first retry, doubled each time [default: 60s]
    #[arg(long, value_parser = parse_duration)]
    pub retry_backoff: Option<Duration>,
    /// Failure class worth a retry; repeatable [default: lock_held, repo_unreachable, timeout]
    #[arg(long = "retry-class")]
    pub retry_classes: Vec<String>,
    /// A device that missed its window catches up at its next check-in instead of waiting
    /// for the next window
    #[arg(long)]
    pub catch_up_immediately: bool,
    /// Spread device start times across the window by a hash of the device id
    #[arg(long, requires = "window")]
    pub spread: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// The per-device, per-package outcome table
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// All deployments, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Let a deployment waiting for approval run
    Approve(ActionArgs),
    /// Refuse a deployment waiting for approval (nothing installs)
    Reject(ActionArgs),
    /// Stop releasing work (running installs finish)
    Halt(ActionArgs),
    /// Continue a halted deployment (overrides the gate or breaker that halted it)
    Resume(ActionArgs),
    /// Stop for good: work not started is skipped
    Cancel(ActionArgs),
    /// Predict each device's outcome now, changing nothing (exit status with --wait: 0 no
    /// failure predicted, 2 a failure predicted, 3 gave up waiting)
    Preflight {
        id: String,
        /// Wait for every device's answer and print the predictions
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long, e.g. 10m
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        wait_timeout: Duration,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    pub id: String,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

fn parse_package(s: &str) -> Result<PackageTarget, String> {
    let (name, version) = match s.split_once('=') {
        Some((n, v)) if !v.is_empty() => (n, Some(v.to_owned())),
        Some(_) => return Err(format!("empty version in {s:?}: use NAME or NAME=VERSION")),
        None => (s, None),
    };
    if name.is_empty() {
        return Err(format!("empty package name in {s:?}"));
    }
    Ok(PackageTarget {
        name: name.to_owned(),
        version,
    })
}

fn parse_ring(s: &str) -> Result<RingRequest, String> {
    let (name, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=SPEC, got {s:?}"))?;
    let mut ring = RingRequest {
        name: name.to_owned(),
        devices: vec![],
        percent: None,
        rest: false,
    };
    if spec == "rest" {
        ring.rest = true;
    } else if let Some(p) = spec.strip_suffix('%') {
        ring.percent = Some(
            p.parse()
                .map_err(|_| format!("invalid percentage in {s:?}"))?,
        );
    } else if !spec.is_empty() {
        ring.devices = spec.split(',').map(str::to_owned).collect();
    } else {
        return Err(format!(
            "empty ring spec in {s:?}: use 10%, rest, or device ids"
        ));
    }
    Ok(ring)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 30m, 24h, 7d"))
}

/// Percent-encodes a query value (the few characters that matter in our ids and names).
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unreachable_version() -> anyhow::Result<()> {
    bail!("`version` runs without a server")
}

/// Process exit status of a client command.
pub type ExitCode = i32;

/// Runs a client command (anything but `server`).
pub fn run_client(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Version(VersionCommand::Compare { scheme, a, b }) = &cli.command {
        let scheme = match scheme.as_str() {
            "deb" => patchwarden_vuln::Scheme::Deb,
            "rpm" => patchwarden_vuln::Scheme::Rpm,
            _ => patchwarden_vuln::Scheme::Apk,
        };
        let ord = patchwarden_vuln::compare(scheme, a, b).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "{}",
            match ord {
                std::cmp::Ordering::Less => "<",
                std::cmp::Ordering::Equal => "=",
                std::cmp::Ordering::Greater => ">",
            }
        );
        return Ok(0);
    }
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let client = Client::discover(cli.server.as_deref(), cli.token.as_deref(), &data_dir)?;
    match cli.command {
        Command::Server(_) => bail!("`server` is run by the binary, not the client"),
        Command::EnrollToken(EnrollTokenCommand::Create {
            tenant,
            labels,
            ttl,
            max_uses,
            json,
        }) => {
            let req = CreateEnrollTokenRequest {
                tenant,
                labels: labels.into_iter().collect(),
                ttl_secs: Some(ttl.as_secs().max(1)),
                max_uses,
            };
            let created: EnrollTokenCreated = client.post("/api/v1/enroll-tokens", &req)?;
            if json {
                output::print_json(&created)?;
            } else {
                println!("{}", created.token);
                eprintln!(
                    "enrollment token {} for tenant {:?}, expires {}",
                    created.id, created.tenant, created.expires_at
                );
            }
        }
        Command::EnrollToken(EnrollTokenCommand::List { json }) => {
            let tokens: Vec<EnrollTokenInfo> = client.get("/api/v1/enroll-tokens")?;
            if json {
                output::print_json(&tokens)?;
            } else {
                output::print_enroll_tokens(&tokens);
            }
        }
        Command::EnrollToken(EnrollTokenCommand::Revoke { id }) => {
            client.delete(&format!("/api/v1/enroll-tokens/{id}"))?;
            eprintln!("revoked {id}");
        }
        Command::Devices { json } => {
            let devices: Vec<DeviceSummary> = client.get("/api/v1/devices")?;
            if json {
                output::print_json(&devices)?;
            } else {
                output::print_devices(&devices);
            }
        }
        Command::Device(DeviceCommand::ResetFailures { id }) => {
            let r: serde_json::Value = client.post(
                &format!("/api/v1/devices/{id}/reset-failures"),
                &serde_json::json!({}),
            )?;
            println!("{} failure(s) reset", r["reset"]);
        }
        Command::Device(DeviceCommand::Label { id, labels, unset }) => {
            let device: DeviceDetail = client.get(&format!("/api/v1/devices/{id}"))?;
            let mut all = device.summary.labels.clone();
            for k in &unset {
                all.remove(k);
            }
            all.extend(labels);
            let out: DeviceLabels = client.put(
                &format!("/api/v1/devices/{}/labels", device.summary.id),
                &DeviceLabels { labels: all },
            )?;
            for (k, v) in &out.labels {
                println!("{k}={v}");
            }
        }
        Command::Device(DeviceCommand::Show { id, json }) => {
            let device: DeviceDetail = client.get(&format!("/api/v1/devices/{id}"))?;
            if json {
                output::print_json(&device)?;
            } else {
                output::print_device(&device);
            }
        }
        Command::Deploy(args) => return deploy(&client, args),
        Command::Version(_) => unreachable_version()?,
        Command::Feeds(FeedsCommand::Import {
            kind,
            source,
            url,
            file,
            every,
            json,
        }) => {
            let content_base64 = match (&file, &url) {
                (Some(path), None) => {
                    use base64::Engine;
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                (None, Some(_)) => None,
                _ => bail!("give a FILE or --url URL"),
            };
            let req = FeedImportRequest {
                kind,
                source,
                url,
                content_base64,
                refresh_secs: every.map(|d| d.as_secs()),
            };
            let status: FeedStatus = client.post("/api/v1/feeds", &req)?;
            if json {
                output::print_json(&status)?;
            } else {
                println!("{}: {} records imported", status.source, status.records);
            }
        }
        Command::Feeds(FeedsCommand::Status { json }) => {
            let feeds: Vec<FeedStatus> = client.get("/api/v1/feeds")?;
            if json {
                output::print_json(&feeds)?;
            } else {
                output::print_feeds(&feeds);
            }
        }
        Command::Vulns {
            kev,
            severity,
            device,
            closed,
            json,
        } => {
            let mut query = Vec::new();
            if kev {
                query.push("kev=true".to_owned());
            }
            if closed {
                query.push("closed=true".to_owned());
            }
            if let Some(s) = &severity {
                query.push(format!("severity={}", encode(s)));
            }
            if let Some(d) = &device {
                query.push(format!("device={}", encode(d)));
            }
            let rows: Vec<VulnRow> = client.get(&format!("/api/v1/vulns?{}", query.join("&")))?;
            if json {
                output::print_json(&rows)?;
            } else {
                output::print_vulns(&rows);
            }
        }
        Command::Sla(c) => return sla::run(&client, c),
        Command::Failure(c) => return triage::run(&client, c),
        Command::Vuln(VulnCommand::Show { cve, json }) => {
            let rows: Vec<VulnRow> = client.get(&format!("/api/v1/vulns/{}", encode(&cve)))?;
            if json {
                output::print_json(&rows)?;
            } else {
                output::print_vulns(&rows);
            }
        }
        Command::Failures {
            class,
            device,
            all,
            json,
        } => {
            let mut query = Vec::new();
            if all {
                query.push("all=true".to_owned());
            }
            if let Some(c) = &class {
                query.push(format!("class={}", encode(c)));
            }
            if let Some(d) = &device {
                query.push(format!("device={}", encode(d)));
            }
            let path = if query.is_empty() {
                "/api/v1/failures".to_owned()
            } else {
                format!("/api/v1/failures?{}", query.join("&"))
            };
            let view: FailuresView = client.get(&path)?;
            if json {
                output::print_json(&view)?;
            } else {
                output::print_failures(&view);
            }
        }
        Command::Policy(c) => return policy::policy(&client, c),
        Command::Apply { file, json } => return policy::apply(&client, &file, json),
        Command::Rejected { tenant, json } => return policy::rejected(&client, tenant, json),
        Command::Unreject { package, tenant } => return policy::unreject(&client, tenant, package),
        Command::User(c) => return users::user(&client, c),
        Command::Token(c) => return users::token(&client, c),
        Command::Audit(a) => return users::audit(&client, a),
        Command::Report(a) => report::run(&client, a)?,
        Command::Deployment(DeploymentCommand::Show { id, json }) => {
            let view: DeploymentView = client.get(&format!("/api/v1/deployments/{id}"))?;
            if json {
                output::print_json(&view)?;
            } else {
                output::print_deployment(&view);
                preflight::print_predictions(&view);
            }
        }
        Command::Deployment(DeploymentCommand::Preflight {
            id,
            wait,
            wait_timeout,
            json,
        }) => return preflight::run(&client, &id, wait, wait_timeout, json),
        Command::Deployment(DeploymentCommand::Approve(a)) => return action(&client, "approve", a),
        Command::Deployment(DeploymentCommand::Reject(a)) => return action(&client, "reject", a),
        Command::Deployment(DeploymentCommand::Halt(a)) => return action(&client, "halt", a),
        Command::Deployment(DeploymentCommand::Resume(a)) => return action(&client, "resume", a),
        Command::Deployment(DeploymentCommand::Cancel(a)) => return action(&client, "cancel", a),
        Command::Deployment(DeploymentCommand::List { json }) => {
            let list: Vec<DeploymentSummary> = client.get("/api/v1/deployments")?;
            if json {
                output::print_json(&list)?;
            } else {
                output::print_deployments(&list);
            }
        }
    }
    Ok(0)
}

fn deploy(client: &Client, args: DeployArgs) -> anyhow::Result<ExitCode> {
    if args.reboot.is_none()
        && (args.max_reboots_per_day.is_some() || args.reboot_come_back.is_some())
    {
        bail!("--max-reboots-per-day and --reboot-come-back need --reboot when-required or --reboot always");
    }
    let selection = if args.security {
        Selection::Security
    } else if args.all_updates {
        Selection::AllUpdates
    } else if !args.packages.is_empty() {
        Selection::Packages {
            packages: args.packages.clone(),
        }
    } else {
        bail!("say what to install: --security, --all-updates or --package NAME[=VERSION]");
    };
    if args.devices.is_empty() && args.labels.is_empty() && !args.all {
        bail!("say which devices: --device ID, --label key=value or --all");
    }
    let req = CreateDeploymentRequest {
        tenant: args.tenant.clone(),
        target: TargetSpec {
            devices: args.devices.clone(),
            labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            all: args.all,
        },
        selection,
        timeout_secs: args.timeout.map(|t| t.as_secs().max(1)),
        rings: args.rings.clone(),
        gate: (args.gate_success_rate.is_some()
            || args.gate_min_successes.is_some()
            || args.soak.is_some())
        .then(|| GateRequest {
            min_success_rate: args.gate_success_rate.unwrap_or(0.95),
            min_successes: args.gate_min_successes.unwrap_or(1),
            soak_secs: args.soak.map(|d| d.as_secs()).unwrap_or(0),
        }),
        halt_failure_rate: args.halt_failure_rate,
        halt_min_finished: args.halt_min_finished,
        concurrency: args.concurrency.clone(),
        require_approval: args.require_approval,
        window: args.window.clone(),
        window_duration_secs: args.window_duration.map(|d| d.as_secs()),
        exclude: args.exclude.clone(),
        respect_holds: args.ignore_holds.then_some(false),
        expedite: args.expedite,
        reboot: args.reboot.as_deref().map(|m| RebootRequest {
            mode: match m {
                "always" => RebootMode::Always,
                "when-required" => RebootMode::WhenRequired,
                _ => RebootMode::Never,
            },
            max_per_day: args.max_reboots_per_day,
            come_back_secs: args.reboot_come_back.map(|d| d.as_secs()),
        }),
        retry: (args.retries.is_some()
            || args.retry_backoff.is_some()
            || !args.retry_classes.is_empty())
        .then(|| RetryRequest {
            max_attempts: args.retries,
            backoff_secs: args.retry_backoff.map(|d| d.as_secs()),
            classes: args.retry_classes.clone(),
        }),
        offline: args.catch_up_immediately.then(|| "immediately".to_owned()),
        preflight: None,
        policy: None,
        spread: args.spread,
    };
    let created: DeploymentCreated = client.post("/api/v1/deployments", &req)?;
    if args.preflight {
        let _: PreflightStarted = client.post(
            &format!("/api/v1/deployments/{}/preflight", created.id),
            &serde_json::json!({}),
        )?;
    }
    if !args.wait {
        if args.json {
            output::print_json(&created)?;
        } else {
            println!("{}", created.id);
        }
        return Ok(0);
    }
    if !args.json {
        eprintln!("deployment {} to {} device(s)", created.id, created.devices);
    }
    let view = wait_for(client, &created.id, args.wait_timeout, !args.json)?;
    if args.json {
        output::print_json(&view)?;
    } else {
        println!("{}", created.id);
        output::print_deployment(&view);
    }
    Ok(exit_status(&view, args.wait_timeout))
}

/// 0 all good, 2 a package failed, 3 still going, 4 halted, 5 cancelled.
fn exit_status(view: &DeploymentView, waited: Duration) -> ExitCode {
    match view.status.as_str() {
        "completed" if view.counts.failed > 0 => 2,
        "completed" => 0,
        "halted" => {
            eprintln!("halted: {}", view.status_reason.clone().unwrap_or_default());
            4
        }
        "cancelled" => {
            eprintln!(
                "cancelled: {}",
                view.status_reason.clone().unwrap_or_default()
            );
            5
        }
        _ => {
            eprintln!(
                "gave up waiting after {}",
                humantime::format_duration(waited)
            );
            3
        }
    }
}

fn action(client: &Client, verb: &str, a: ActionArgs) -> anyhow::Result<ExitCode> {
    let body = DeploymentAction { reason: a.reason };
    let view: DeploymentView =
        client.post(&format!("/api/v1/deployments/{}/{verb}", a.id), &body)?;
    if a.json {
        output::print_json(&view)?;
    } else {
        output::print_deployment(&view);
    }
    Ok(0)
}

/// Polls a deployment until every device has an outcome, showing progress on a terminal.
fn wait_for(
    client: &Client,
    id: &str,
    limit: Duration,
    show_progress: bool,
) -> anyhow::Result<DeploymentView> {
    let start = Instant::now();
    let bar = if show_progress {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} devices  {msg}",
        )
        .context("progress template")?,
    );
    loop {
        let view: DeploymentView = client.get(&format!("/api/v1/deployments/{id}"))?;
        bar.set_length(u64::from(view.devices_total));
        bar.set_position(u64::from(view.devices_done));
        bar.set_message(format!(
            "verified {}  failed {}  pending {}",
            view.counts.verified, view.counts.failed, view.counts.pending
        ));
        let stopped = matches!(view.status.as_str(), "completed" | "halted" | "cancelled");
        if stopped || start.elapsed() >= limit {
            bar.finish_and_clear();
            return Ok(view);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
