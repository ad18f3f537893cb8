//! CISA Known Exploited Vulnerabilities catalog JSON
//! (<https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json>).

use super::{from_value, parse_date, parse_json, FeedError, FeedKind, Location};
use crate::model::is_cve_id;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use time::Date;

const FEED: FeedKind = FeedKind::Kev;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KevEntry {
    pub cve: String,
    pub vendor_project: String,
    pub product: String,
    pub vulnerability_name: String,
    pub date_added: Date,
    /// The remediation deadline CISA sets for US federal agencies.
    pub due_date: Option<Date>,
    /// `knownRansomwareCampaignUse` is `Known`.
    pub known_ransomware: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KevCatalog {
    pub catalog_version: String,
    pub date_released: String,
    pub entries: HashMap<String, KevEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCatalog {
    catalog_version: String,
    date_released: String,
    #[serde(default)]
    count: Option<usize>,
    vulnerabilities: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVuln {
    #[serde(rename = "cveID")]
    cve_id: String,
    vendor_project: String,
    product: String,
    #[serde(default)]
    vulnerability_name: String,
    date_added: String,
    #[serde(default)]
    due_date: Option<String>,
    #[serde(default)]
    known_ransomware_campaign_use: Option<String>,
}

pub fn parse_kev(bytes: &[u8]) -> Result<KevCatalog, FeedError> {
    let raw: RawCatalog = parse_json(FEED, bytes)?;
    if let Some(count) = raw.count {
        if count != raw.vulnerabilities.len() {
            return Err(FeedError::new(
                FEED,
                Location {
                    path: Some(".count".into()),
                    ..Location::default()
                },
                format!(
                    "count says {count} entries but vulnerabilities has {} (truncated or edited catalog)",
                    raw.vulnerabilities.len()
                ),
            ));
        }
    }
    let mut entries = HashMap::with_capacity(raw.vulnerabilities.len());
    for (i, v) in raw.vulnerabilities.into_iter().enumerate() {
        let id = v.get("cveID").and_then(Value::as_str).map(str::to_owned);
        let r: RawVuln = from_value(FEED, v, Some(i), id).map_err(|mut e| {
            let p = e.location.path.take().unwrap_or_default();
            e.location.path = Some(format!(".vulnerabilities[{i}]{p}"));
            e
        })?;
        let loc = |field: &str| Location {
            record: Some(i),
            id: Some(r.cve_id.clone()),
            path: Some(format!(".vulnerabilities[{i}].{field}")),
            ..Location::default()
        };
        if !is_cve_id(&r.cve_id) {
            return Err(FeedError::new(
                FEED,
                loc("cveID"),
                format!("{:?} is not a CVE id", r.cve_id),
            ));
        }
        let date_added =
            parse_date(&r.date_added).map_err(|m| FeedError::new(FEED, loc("dateAdded"), m))?;
        let due_date = match r.due_date.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => Some(parse_date(d).map_err(|m| FeedError::new(FEED, loc("dueDate"), m))?),
            None => None,
        };
        let known_ransomware = match r.known_ransomware_campaign_use.as_deref() {
            Some("Known") => true,
            Some("Unknown") | None => false,
            Some(other) => {
                return Err(FeedError::new(
                    FEED,
                    loc("knownRansomwareCampaignUse"),
                    format!("{other:?} is neither Known nor Unknown"),
                ))
            }
        };
        let entry = KevEntry {
            cve: r.cve_id.clone(),
            vendor_project: r.vendor_project,
            product: r.product,
            vulnerability_name: r.vulnerability_name,
            date_added,
            due_date,
            known_ransomware,
        };
        if entries.insert(r.cve_id.clone(), entry).is_some() {
            return Err(FeedError::new(FEED, loc("cveID"), "CVE listed twice"));
        }
    }
    Ok(KevCatalog {
        catalog_version: raw.catalog_version,
        date_released: raw.date_released,
        entries,
    })
}
