//! `patchwarden report` end to end: the server as a process on a random loopback port, then
//! the report in each format as an operator would ask for it. (The report's numbers are
//! checked against seeded data in crates/server/tests/reports.rs.)

mod support;

use support::{ok_bytes, run, start};

use serde_json::Value;

#[test]
fn report_in_every_format_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _server = start(&data);
    // A tenant exists once an enrollment token names it.
    ok_bytes(&data, &["enroll-token", "create", "--tenant", "acme"]);
    let period = [
        "--tenant",
        "acme",
        "--from",
        "2026-10-01",
        "--to",
        "2026-10-31",
    ];

    let json: Value = serde_json::from_slice(&ok_bytes(
        &data,
        &[&["report"][..], &period, &["--format", "json"]].concat(),
    ))
    .expect("json");
    assert_eq!(json["tenant"], "acme");
    assert_eq!(
        (json["from"].as_str(), json["to"].as_str()),
        (Some("2026-10-01"), Some("2026-10-31"))
    );
    assert_eq!(json["sla"]["due"], 0);

    let csv = String::from_utf8(ok_bytes(
        &data,
        &[&["report"][..], &period, &["--format", "csv"]].concat(),
    ))
    .expect("utf-8");
    assert!(
        csv.starts_with("section,item,metric,value\nreport,,tenant,acme\n"),
        "{csv}"
    );

    let pdf = dir.path().join("acme.pdf");
    let pdf_arg = pdf.display().to_string();
    ok_bytes(
        &data,
        &[
            &["report"][..],
            &period,
            &["--format", "pdf", "--output", &pdf_arg],
        ]
        .concat(),
    );
    let bytes = std::fs::read(&pdf).expect("pdf written");
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(String::from_utf8_lossy(&bytes).contains("(Compliance report: acme)"));

    let html = String::from_utf8(ok_bytes(
        &data,
        &[&["report"][..], &period, &["--format", "html"]].concat(),
    ))
    .expect("utf-8");
    assert!(html.contains("<h1 id=\"rep-h\">Compliance report: acme</h1>"));

    // Bad input is named.
    let out = run(
        &data,
        &["report", "--tenant", "acme", "--from", "01/10/2026"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from: expected a date YYYY-MM-DD"), "{err}");
    let out = run(&data, &["report", "--tenant", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant \"nope\""));
    let out = run(&data, &["report", "--tenant", "acme", "--format", "docx"]);
    assert!(!out.status.success(), "clap refuses an unknown format");
}
