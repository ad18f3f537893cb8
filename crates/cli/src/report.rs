//! `patchwarden report`: the compliance report of one tenant over a period, as PDF, CSV,
//! JSON or printable HTML, written to a file or to standard output.

use crate::client::Client;
use crate::encode;
use anyhow::{bail, Context};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Tenant name (optional with a token scoped to one tenant)
    #[arg(long)]
    pub tenant: Option<String>,
    /// First day, YYYY-MM-DD (UTC) [default: 29 days before --to]
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, inclusive, YYYY-MM-DD (UTC) [default: today]
    #[arg(long)]
    pub to: Option<String>,
    /// pdf, csv, json or html
    #[arg(long, default_value = "json", value_parser = ["pdf", "csv", "json", "html"])]
    pub format: String,
    /// Write to this file instead of standard output
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// The API path of the report asked for.
pub fn path(a: &ReportArgs) -> String {
    let mut q = vec![format!("format={}", encode(&a.format))];
    for (k, v) in [("tenant", &a.tenant), ("from", &a.from), ("to", &a.to)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    format!("/api/v1/reports/compliance?{}", q.join("&"))
}

pub fn run(client: &Client, a: ReportArgs) -> anyhow::Result<()> {
    if a.output.is_none() && a.format == "pdf" && std::io::stdout().is_terminal() {
        bail!("a PDF is not written to a terminal: pass --output FILE (or redirect)");
    }
    let bytes = client.get_bytes(&path(&a))?;
    match &a.output {
        Some(file) => {
            std::fs::write(file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            eprintln!("wrote {} ({} bytes)", file.display(), bytes.len());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            if a.format == "json" {
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_path_encodes_its_query() {
        let a = ReportArgs {
            tenant: Some("acme corp".into()),
            from: Some("2026-10-01".into()),
            to: None,
            format: "pdf".into(),
            output: None,
        };
        assert_eq!(
            path(&a),
            "/api/v1/reports/compliance?format=pdf&tenant=acme%20corp&from=2026-10-01"
        );
    }
}
