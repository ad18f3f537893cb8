//! FIRST EPSS scores CSV (<https://epss.cyentia.com/epss_scores-current.csv.gz>, decompressed
//! by the caller): `#model_version:v2023.03.01,score_date:2024-07-10T00:00:00+0000`, then
//! `cve,epss,percentile`, then one row per CVE.

use super::{FeedError, FeedKind, Location};
use crate::model::is_cve_id;
use std::collections::HashMap;

const FEED: FeedKind = FeedKind::Epss;

/// Probability of exploitation activity in the next 30 days, and its percentile rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epss {
    pub score: f64,
    pub percentile: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpssScores {
    pub model_version: Option<String>,
    pub score_date: Option<String>,
    pub scores: HashMap<String, Epss>,
}

fn err(line: usize, path: Option<&str>, id: Option<&str>, reason: impl Into<String>) -> FeedError {
    FeedError::new(
        FEED,
        Location {
            line: Some(line),
            path: path.map(str::to_owned),
            id: id.map(str::to_owned),
            ..Location::default()
        },
        reason,
    )
}

/// Parses the EPSS CSV. The input must end with a newline: a download cut inside the last
/// row (`CVE-2024-1234,0.0`) would otherwise parse as a wrong score.
pub fn parse_epss_csv(bytes: &[u8]) -> Result<EpssScores, FeedError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        err(
            bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1,
            None,
            None,
            format!("not UTF-8: {e}"),
        )
    })?;
    if !text.ends_with('\n') {
        return Err(err(
            text.lines().count().max(1),
            None,
            None,
            "truncated input: the last line has no newline",
        ));
    }
    let mut out = EpssScores::default();
    let mut body = text;
    let mut line_offset = 0;
    if let Some(rest) = text.strip_prefix('#') {
        let (comment, after) = rest.split_once('\n').unwrap_or((rest, ""));
        for kv in comment.trim_end_matches('\r').split(',') {
            match kv.split_once(':') {
                Some(("model_version", v)) => out.model_version = Some(v.to_owned()),
                Some(("score_date", v)) => out.score_date = Some(v.to_owned()),
                _ => {}
            }
        }
        body = after;
        line_offset = 1;
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| {
            err(
                line_offset + 1,
                None,
                None,
                format!("unreadable header: {e}"),
            )
        })?
        .clone();
    if headers.iter().collect::<Vec<_>>() != ["cve", "epss", "percentile"] {
        return Err(err(
            line_offset + 1,
            None,
            None,
            format!(
                "expected header cve,epss,percentile, found {:?}",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    for row in reader.records() {
        let row = row.map_err(|e| {
            let line = e
                .position()
                .map(|p| p.line() as usize + line_offset)
                .unwrap_or(0);
            err(line, None, None, format!("malformed row: {e}"))
        })?;
        let line = row
            .position()
            .map(|p| p.line() as usize + line_offset)
            .unwrap_or(0);
        let cve = &row[0];
        if !is_cve_id(cve) {
            return Err(err(
                line,
                Some("cve"),
                None,
                format!("{cve:?} is not a CVE id"),
            ));
        }
        let prob = |col: usize, name: &str| -> Result<f64, FeedError> {
            let s = &row[col];
            match s.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
                _ => Err(err(
                    line,
                    Some(name),
                    Some(cve),
                    format!("{s:?} is not a probability in [0, 1]"),
                )),
            }
        };
        let e = Epss {
            score: prob(1, "epss")?,
            percentile: prob(2, "percentile")?,
        };
        if out.scores.insert(cve.to_owned(), e).is_some() {
            return Err(err(line, Some("cve"), Some(cve), "CVE listed twice"));
        }
    }
    if out.scores.is_empty() {
        return Err(err(
            line_offset + 1,
            None,
            None,
            "no scores after the header (truncated?)",
        ));
    }
    Ok(out)
}
