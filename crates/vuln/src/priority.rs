//! A priority a person can explain.
//!
//! ```text
//! score = 100 × KEV            (listed in CISA's Known Exploited Vulnerabilities: +100)
//!       +   6 × CVSS base      (0–10  → 0–60; without CVSS, the rating's floor: critical 9.0,
//!                               high 7.0, medium 4.0, low 0.1, none 0; unknown counts as 4.0)
//!       +  40 × EPSS           (probability of exploitation in 30 days, 0–1 → 0–40)
//! ```
//!
//! Range 0–200. Known-exploited always comes first: a KEV exposure scores at least 100 and
//! any other at most 100 (CVSS 10 and EPSS 1.0); ties sort KEV first. Within a tier, a
//! likely-exploited medium (CVSS 5, EPSS 0.9: 66) outranks an unlikely critical (CVSS 9.8,
//! EPSS 0.01: 59.2) — EPSS is evidence, CVSS is potential.

use crate::matching::Exposure;
use crate::model::Rating;
use std::cmp::Ordering;

pub const KEV_POINTS: f64 = 100.0;
pub const CVSS_WEIGHT: f64 = 6.0;
pub const EPSS_WEIGHT: f64 = 40.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Priority {
    /// 0–200, see the module documentation.
    pub score: f64,
    pub kev: bool,
    pub kev_points: f64,
    /// The CVSS base score used (or the rating's floor), and whether it was a real CVSS.
    pub severity_score: f64,
    pub severity_from_cvss: bool,
    pub rating: Rating,
    pub severity_points: f64,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
    pub epss_points: f64,
}

/// The score standing in for a CVSS base score when only a rating is known.
pub fn rating_floor(r: Rating) -> f64 {
    match r {
        Rating::Critical => 9.0,
        Rating::High => 7.0,
        Rating::Medium | Rating::Unknown => 4.0,
        Rating::Low => 0.1,
        Rating::None => 0.0,
    }
}

pub fn priority(e: &Exposure) -> Priority {
    let kev = e.kev.is_some();
    let (sev, from_cvss) = match &e.severity.cvss {
        Some(c) => (c.base_score, true),
        None => (rating_floor(e.severity.rating), false),
    };
    let epss = e.epss.map(|x| x.score);
    let kev_points = if kev { KEV_POINTS } else { 0.0 };
    let severity_points = CVSS_WEIGHT * sev;
    let epss_points = EPSS_WEIGHT * epss.unwrap_or(0.0);
    Priority {
        score: round1(kev_points + severity_points + epss_points),
        kev,
        kev_points,
        severity_score: sev,
        severity_from_cvss: from_cvss,
        rating: e.severity.rating,
        severity_points: round1(severity_points),
        epss,
        epss_percentile: e.epss.map(|x| x.percentile),
        epss_points: round1(epss_points),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl Priority {
    /// Higher first: KEV, then score.
    pub fn cmp_desc(&self, other: &Priority) -> Ordering {
        other.kev.cmp(&self.kev).then(
            other
                .score
                .partial_cmp(&self.score)
                .unwrap_or(Ordering::Equal),
        )
    }

    /// One sentence: "Priority 159.7 = known exploited (CISA KEV, +100) + CVSS 9.8 critical
    /// (+58.8) + EPSS 0.97, percentile 99.9 (+38.9)."
    pub fn explain(&self) -> String {
        let mut parts = Vec::new();
        if self.kev {
            parts.push(format!(
                "known exploited (CISA KEV, +{})",
                fmt1(self.kev_points)
            ));
        } else {
            parts.push("not in CISA KEV (+0)".to_owned());
        }
        if self.severity_from_cvss {
            parts.push(format!(
                "CVSS {} {} (+{})",
                fmt1(self.severity_score),
                self.rating,
                fmt1(self.severity_points)
            ));
        } else {
            parts.push(format!(
                "no CVSS, distribution rating {} counted as {} (+{})",
                self.rating,
                fmt1(self.severity_score),
                fmt1(self.severity_points)
            ));
        }
        match (self.epss, self.epss_percentile) {
            (Some(s), Some(p)) => parts.push(format!(
                "EPSS {s:.2}, percentile {} (+{})",
                fmt1(p * 100.0),
                fmt1(self.epss_points)
            )),
            _ => parts.push("no EPSS score (+0)".to_owned()),
        }
        format!("Priority {} = {}.", fmt1(self.score), parts.join(" + "))
    }
}

fn fmt1(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}
