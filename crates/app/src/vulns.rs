//! Vulnerability management glue: feed imports (all-or-nothing, the previous content stays in
//! force on error), the in-memory advisory index, incremental matching (a new inventory
//! rematches its device; a new feed rematches only devices having changed packages), and the
//! vulnerability views. The logic itself is `patchwarden-vuln`'s (pure).

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
use patchwarden_store::{Device, ExposureFilter, ExposureRecord, FeedRecord};
use patchwarden_vuln::feeds::{
    parse_alpine_secdb, parse_debian_tracker, parse_epss_csv, parse_kev, parse_osv, parse_osv_zip,
};
use patchwarden_vuln::{
    feeds::EpssScores, feeds::KevCatalog, AdvisoryIndex, DeviceFacts, Exposure, Fix, Matcher,
    PackageAdvisory,
};
use patchwarden_wire::agent::Inventory;
use patchwarden_wire::api::{FeedImportRequest, FeedStatus, VulnQuery, VulnRow};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

/// What one feed contributes to the index.
enum Parsed {
    Advisories(Vec<PackageAdvisory>, usize),
    Kev(KevCatalog),
    Epss(EpssScores),
}

const KINDS: &str = "osv, osv-zip, debian-tracker, cisa-kev, epss, alpine-secdb";

fn parse(kind: &str, bytes: &[u8]) -> Result<Parsed, String> {
    let err = |e: patchwarden_vuln::FeedError| e.to_string();
    Ok(match kind {
        "osv" => {
            let i = parse_osv(bytes).map_err(err)?;
            let n = i.records;
            Parsed::Advisories(i.advisories, n)
        }
        "osv-zip" => {
            let i = parse_osv_zip(bytes).map_err(err)?;
            let n = i.records;
            Parsed::Advisories(i.advisories, n)
        }
        "debian-tracker" => {
            let i = parse_debian_tracker(bytes).map_err(err)?;
            let n = i.issues;
            Parsed::Advisories(i.advisories, n)
        }
        "alpine-secdb" => {
            let i = parse_alpine_secdb(bytes).map_err(err)?;
            let n = i.advisories.len();
            Parsed::Advisories(i.advisories, n)
        }
        "cisa-kev" => Parsed::Kev(parse_kev(bytes).map_err(err)?),
        "epss" => Parsed::Epss(parse_epss_csv(bytes).map_err(err)?),
        other => return Err(format!("unknown feed kind {other:?}: one of {KINDS}")),
    })
}

fn records(p: &Parsed) -> usize {
    match p {
        Parsed::Advisories(_, n) => *n,
        Parsed::Kev(k) => k.entries.len(),
        Parsed::Epss(e) => e.scores.len(),
    }
}

/// Builds the index from every stored feed. A stored feed that no longer parses (it did when
/// it was imported) is logged and left out.
pub async fn build_index(state: &App) -> Result<AdvisoryIndex, String> {
    let contents = state
        .store
        .feed_contents()
        .await
        .map_err(|e| e.to_string())?;
    let mut advisories = Vec::new();
    let mut kev = None;
    let mut epss = None;
    for (kind, bytes) in contents {
        match parse(&kind, &bytes) {
            Ok(Parsed::Advisories(a, _)) => advisories.extend(a),
            Ok(Parsed::Kev(k)) => kev = Some(k),
            Ok(Parsed::Epss(e)) => epss = Some(e),
            Err(e) => tracing::error!(kind = %kind, error = %e, "a stored feed no longer parses"),
        }
    }
    AdvisoryIndex::build(advisories.iter(), kev.as_ref(), epss.as_ref()).map_err(|e| e.to_string())
}

pub fn facts_of(inv: &Inventory) -> DeviceFacts {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    DeviceFacts {
        os_id: inv.os.id.clone(),
        os_version_id: some(&inv.os.version),
        os_codename: some(&inv.os.codename),
        running_kernel: some(&inv.kernel),
        installed: inv
            .packages
            .iter()
            .filter(|p| {
                patchwarden_core::apt::is_present_status(&p.status) || inv.package_manager != "apt"
            })
            .map(|p| patchwarden_vuln::InstalledPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                source: some(&p.source),
                source_version: some(&p.source_version),
            })
            .collect(),
        upgradable: inv
            .upgradable
            .iter()
            .map(|u| patchwarden_vuln::UpdateCandidate {
                name: u.name.clone(),
                version: u.candidate_version.clone(),
                source: None,
                source_version: None,
            })
            .collect(),
    }
}

fn record(device: &Device, e: &Exposure) -> ExposureRecord {
    let p = patchwarden_vuln::priority(e);
    let (fix_state, fixed_version) = match &e.fix {
        Fix::Fixed { version } => ("fixed", Some(version.clone())),
        Fix::NoFixYet => ("no_fix_yet", None),
        Fix::WillNotFix { .. } => ("will_not_fix", None),
        Fix::Undetermined => ("undetermined", None),
    };
    ExposureRecord {
        device_id: device.id.clone(),
        tenant_id: device.tenant_id.clone(),
        cve: e.cve.clone(),
        package: e.package.clone(),
        binaries: e.binaries.clone(),
        installed_version: e.installed_version.clone(),
        fix_state: fix_state.to_owned(),
        fixed_version,
        fixed_by_update: e.fixed_by_update.clone(),
        rating: e.severity.rating.as_str().to_owned(),
        cvss: e.severity.cvss.as_ref().map(|c| c.base_score),
        kev: e.kev.is_some(),
        kev_due: e
            .kev
            .as_ref()
            .and_then(|k| k.due_date)
            .map(|d| d.to_string()),
        ransomware: e.kev.as_ref().is_some_and(|k| k.known_ransomware),
        epss: e.epss.map(|x| x.score),
        epss_percentile: e.epss.map(|x| x.percentile),
        priority: p.score,
        summary: e.summary.clone(),
        first_seen: 0,
        closed_at: None,
        updated_at: 0,
    }
}

/// Rematches one device against the current index and records what opened and closed.
pub async fn rematch_device(
    state: &App,
    device: &Device,
    inv: &Inventory,
) -> Result<(u64, u64), String> {
    let index = state
        .vulns
        .read()
        .map(|i| Arc::clone(&i))
        .map_err(|_| "index lock poisoned".to_owned())?;
    let facts = facts_of(inv);
    let mut matcher = Matcher::new(&index);
    store_matches(state, device, matcher.match_device(&facts)).await
}

/// Records one device's matches: what opened and closed.
async fn store_matches(
    state: &App,
    device: &Device,
    matches: patchwarden_vuln::Matches<'_>,
) -> Result<(u64, u64), String> {
    let open: Vec<ExposureRecord> = matches
        .iter()
        .map(|e| record(device, &e.to_exposure()))
        .collect();
    let now = state.clock.now_ms();
    state
        .store
        .sync_device_exposures(&device.id, now, &open)
        .await
        .map_err(|e| e.to_string())
}

async fn inventory(state: &App, id: &str) -> Option<Inventory> {
    let json = state.store.device_inventory_json(id).await.ok()??;
    serde_json::from_str(&json).ok()
}

/// Loads the index at start and matches every device.
pub async fn load(state: &App) {
    match build_index(state).await {
        Ok(index) => {
            if let Ok(mut slot) = state.vulns.write() {
                *slot = Arc::new(index);
            }
            rematch_all(state, None).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot build the advisory index"),
    }
}

/// Rematches every device, or only those whose packages the changed keys concern.
async fn rematch_all(state: &App, only: Option<&patchwarden_vuln::ChangedKeys>) -> usize {
    let Ok(devices) = state.store.list_devices(None).await else {
        return 0;
    };
    let index = match state.vulns.read() {
        Ok(i) => Arc::clone(&i),
        Err(_) => return 0,
    };
    let mut n = 0;
    // One matcher for the whole run (the fast path: verdicts remembered across devices).
    let mut matcher = Matcher::new(&index);
    for d in devices {
        let Some(inv) = inventory(state, &d.id).await else {
            continue;
        };
        let facts = facts_of(&inv);
        if let Some(changed) = only {
            let keys: HashSet<_> = patchwarden_vuln::matching::device_keys(&index, &facts)
                .into_iter()
                .collect();
            let touched = changed.packages.iter().any(|k| keys.contains(k));
            let rescored = !changed.cves.is_empty();
            if !touched && !rescored {
                continue;
            }
        }
        if let Err(e) = store_matches(state, &d, matcher.match_device(&facts)).await {
            tracing::error!(device = %d.id, error = %e, "rematch failed");
        }
        n += 1;
    }
    n
}

/// An operator imports a feed (its content, or a URL to fetch now and, with
/// `refresh_secs`, again on that schedule).
pub async fn import_feed(
    state: &App,
    op: &Actor,
    req: &FeedImportRequest,
) -> AppResult<FeedStatus> {
    // Feeds are shared by every tenant: a provider-wide role is needed.
    op.require_provider(Permission::Remediate)?;
    if let Some(r) = req.refresh_secs {
        if req.url.is_none() || r < 60 {
            return Err(AppError::invalid(
                "refresh_secs",
                "refresh_secs needs a url and at least 60 seconds",
            ));
        }
    }
    let content = match (&req.content_base64, &req.url) {
        (Some(b64), None) => {
            use base64::Engine;
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| {
                        AppError::invalid(
                            "content_base64",
                            format!("content_base64 is not base64: {e}"),
                        )
                    })?,
            )
        }
        (None, Some(_)) => None,
        _ => {
            return Err(AppError::invalid(
                "content_base64",
                "give exactly one of content_base64 or url",
            ))
        }
    };
    let source = req.source.clone().unwrap_or_else(|| req.kind.clone());
    let refresh = req.refresh_secs.map(|r| r as i64);
    import(
        state,
        &source,
        &req.kind,
        req.url.as_deref(),
        content,
        refresh,
    )
    .await
}

/// Imports one feed: fetch (when no content is given), parse all-or-nothing, store, rebuild
/// the index, rematch the devices the change concerns. On any error the previous data stays.
pub async fn import(
    state: &App,
    source: &str,
    kind: &str,
    url: Option<&str>,
    content: Option<Vec<u8>>,
    refresh_secs: Option<i64>,
) -> AppResult<FeedStatus> {
    let now = state.clock.now_ms();
    let fail = |e: String| async move {
        state.store.feed_failed(source, kind, url, now, &e).await?;
        tracing::warn!(source = %source, error = %e, "feed rejected; the previous data stays in force");
        Err::<FeedStatus, AppError>(AppError::invalid(
            "feed",
            format!("feed {source} rejected: {e}; the previous data stays in force"),
        ))
    };
    let bytes = match (content, url) {
        (Some(b), _) => b,
        (None, Some(u)) => {
            let u = u.to_owned();
            match tokio::task::spawn_blocking(move || fetch(&u)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return fail(e).await,
                Err(e) => return fail(e.to_string()).await,
            }
        }
        (None, None) => return Err(AppError::invalid("url", "no content and no url")),
    };
    let kind_owned = kind.to_owned();
    let parse_bytes = bytes.clone();
    let parsed =
        tokio::task::spawn_blocking(move || parse(&kind_owned, &parse_bytes).map(|p| records(&p)))
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
    let count = match parsed {
        Ok(n) => n,
        Err(e) => return fail(e).await,
    };
    let record = FeedRecord {
        source: source.to_owned(),
        kind: kind.to_owned(),
        url: url.map(str::to_owned),
        sha256: Some(hex::encode(Sha256::digest(&bytes))),
        records: count as i64,
        imported_at: Some(now),
        last_attempt_at: Some(now),
        last_error: None,
        refresh_secs,
    };
    state.store.put_feed(&record, &bytes).await?;
    let new_index = build_index(state).await.map_err(AppError::internal)?;
    let changed = {
        let mut slot = state
            .vulns
            .write()
            .map_err(|_| AppError::internal("index lock poisoned"))?;
        let changed = new_index.changed_keys(&slot);
        *slot = Arc::new(new_index);
        changed
    };
    let rematched = rematch_all(state, Some(&changed)).await;
    tracing::info!(source = %source, records = count, changed_packages = changed.packages.len(), rematched, "feed imported");
    Ok(feed_status(record))
}

/// Refetches every URL feed whose refresh interval has passed since its last attempt.
pub async fn refresh_due(state: &App) {
    let Ok(feeds) = state.store.list_feeds().await else {
        return;
    };
    let now = state.clock.now_ms();
    for f in feeds {
        let (Some(url), Some(every)) = (f.url.as_deref(), f.refresh_secs) else {
            continue;
        };
        if f.last_attempt_at.is_some_and(|t| t + every * 1000 > now) {
            continue;
        }
        if let Err(e) = import(state, &f.source, &f.kind, Some(url), None, Some(every)).await {
            tracing::warn!(source = %f.source, error = %e, "scheduled feed refresh failed");
        }
    }
}

fn feed_status(f: FeedRecord) -> FeedStatus {
    FeedStatus {
        source: f.source,
        kind: f.kind,
        url: f.url,
        records: f.records as u64,
        last_success: f.imported_at.map(rfc3339),
        last_attempt: f.last_attempt_at.map(rfc3339),
        last_error: f.last_error,
        refresh_secs: f.refresh_secs.map(|r| r as u64),
    }
}

/// Fetches a feed over HTTP(S) with a bounded time.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(120))
        .build();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("fetching {url}: {e}"))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader().take(1 << 30), &mut bytes)
        .map_err(|e| format!("reading {url}: {e}"))?;
    Ok(bytes)
}

use std::io::Read as _;

pub async fn list_feeds(state: &App, op: &Actor) -> AppResult<Vec<FeedStatus>> {
    op.require_scoped(Permission::View)?;
    Ok(state
        .store
        .list_feeds()
        .await?
        .into_iter()
        .map(feed_status)
        .collect())
}

fn rating_rank(r: &str) -> u8 {
    match r {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        "low" => 2,
        "none" => 1,
        _ => 0,
    }
}

async fn rows(
    state: &App,
    op: &Actor,
    filter: ExposureFilter,
    q: &VulnQuery,
) -> AppResult<Vec<VulnRow>> {
    let min = match &q.severity {
        None => 0,
        Some(s) => match rating_rank(s) {
            0 | 1 => {
                return Err(AppError::invalid(
                    "severity",
                    format!("unknown severity {s:?}: low, medium, high or critical"),
                ))
            }
            n => n,
        },
    };
    let devices = state.store.list_devices(op.tenant_scope()).await?;
    let devices: std::collections::HashMap<&str, &Device> =
        devices.iter().map(|d| (d.id.as_str(), d)).collect();
    // Each exposure's deadline follows its tenant's SLA policy.
    let policies = crate::sla::Policies::load(state).await?;
    let now = time::OffsetDateTime::from_unix_timestamp(state.clock.now_ms() / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut out = Vec::new();
    for e in state.store.list_exposures(&filter).await? {
        if (q.kev && !e.kev) || rating_rank(&e.rating) < min {
            continue;
        }
        let policy = policies.of(&e.tenant_id);
        let Some(device) = devices.get(e.device_id.as_str()) else {
            continue;
        };
        let clock = crate::sla::sla_of(policy, &e, now);
        out.push(VulnRow {
            cve: e.cve,
            device: e.device_id,
            hostname: device.hostname.clone(),
            package: e.package,
            binaries: e.binaries,
            installed_version: e.installed_version,
            fix: e.fix_state,
            fixed_version: e.fixed_version,
            fixed_by_update: e.fixed_by_update,
            severity: e.rating,
            cvss: e.cvss,
            kev: e.kev,
            kev_due: e.kev_due,
            ransomware: e.ransomware,
            epss: e.epss,
            epss_percentile: e.epss_percentile,
            priority: (e.priority * 10.0).round() / 10.0,
            first_seen: rfc3339(e.first_seen),
            closed_at: e.closed_at.map(rfc3339),
            sla_due: clock.due.map(|d| d.date().to_string()),
            sla_state: crate::sla::sla_state_name(&clock.state).to_owned(),
            sla_seconds_left: crate::sla::sla_seconds_left(&clock.state),
            sla_basis: clock.basis,
            summary: e.summary,
        });
    }
    Ok(out)
}

/// Exposures in the caller's scope, filtered, each with its SLA deadline.
pub async fn list(state: &App, op: &Actor, q: &VulnQuery) -> AppResult<Vec<VulnRow>> {
    op.require_scoped(Permission::View)?;
    let device_id = match &q.device {
        None => None,
        Some(d) => {
            let devices = state.store.list_devices(op.tenant_scope()).await?;
            Some(crate::scope::pick_device(&devices, d)?.id.clone())
        }
    };
    let filter = ExposureFilter {
        tenant_id: op.tenant_scope().map(str::to_owned),
        device_id,
        cve: None,
        include_closed: q.closed,
        // The filters in SQL too: only the matching rows are read and scored.
        kev_only: q.kev,
        ratings: q.severity.as_deref().map(|s| {
            let min = rating_rank(s);
            ["critical", "high", "medium", "low"]
                .iter()
                .filter(|r| rating_rank(r) >= min)
                .map(|r| (*r).to_owned())
                .collect()
        }),
    };
    rows(state, op, filter, q).await
}

/// One CVE: every exposure to it in the caller's scope, closed ones too.
pub async fn show(state: &App, op: &Actor, cve: &str) -> AppResult<Vec<VulnRow>> {
    op.require_scoped(Permission::View)?;
    let filter = ExposureFilter {
        tenant_id: op.tenant_scope().map(str::to_owned),
        device_id: None,
        cve: Some(cve.to_owned()),
        include_closed: true,
        ..Default::default()
    };
    let q = VulnQuery {
        closed: true,
        ..Default::default()
    };
    rows(state, op, filter, &q).await
}
