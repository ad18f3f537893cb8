//! Feed parsers on real-format fixtures (tests/fixtures, written for these tests with real
//! advisory facts; `CVE-2099-*` ids are synthetic and say so) and on malformed variants
//! (tests/fixtures/malformed), which must be rejected with a located error.

use patchwarden_vuln::feeds::{self, FeedKind};
use patchwarden_vuln::model::{AffectedRange, Distro, NameKind, Rating, Release, Statement};
use std::io::Write;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const OSV_FILES: &[&str] = &[
    "DSA-5724-1.json",
    "DSA-4839-1.json",
    "UBUNTU-CVE-2024-6387.json",
    "RHSA-2024_4312.json",
    "RLSA-2024_4312.json",
    "ALSA-2024_4312.json",
    "PYSEC-2099-1.json",
    "DEBIAN-CVE-2099-20002.json",
];

fn osv_files() -> Vec<(String, Vec<u8>)> {
    OSV_FILES
        .iter()
        .map(|f| (f.to_string(), fixture(&format!("osv/{f}"))))
        .collect()
}

#[test]
fn debian_tracker_statements() {
    let t = feeds::parse_debian_tracker(&fixture("debian_tracker.json")).expect("parses");
    assert_eq!((t.packages, t.issues), (4, 7));
    assert_eq!(t.skipped_releases.get("experimental"), Some(&1));
    let find = |pkg: &str, cve: &str, rel: &str| {
        let release = Release::debian_codename(rel).expect("known codename");
        t.advisories
            .iter()
            .find(|a| a.package == pkg && a.cves == [cve] && a.release == release)
            .unwrap_or_else(|| panic!("{pkg} {cve} {rel}"))
    };
    // CVE-2021-3156 in sudo, fixed in Debian 10 (buster) by 1.8.27-1+deb10u3.
    let a = find("sudo", "CVE-2021-3156", "buster");
    assert_eq!(a.release, Release::new(Distro::Debian, "10"));
    assert_eq!(a.name_kind, NameKind::Source);
    assert_eq!(
        a.statement,
        Statement::Affected {
            ranges: vec![AffectedRange::fixed_in("1.8.27-1+deb10u3")],
            versions: vec![]
        }
    );
    // CVE-2024-6387 in openssh, fixed in Debian 12 by 1:9.2p1-2+deb12u3; bullseye never affected.
    let a = find("openssh", "CVE-2024-6387", "bookworm");
    assert_eq!(
        a.statement,
        Statement::Affected {
            ranges: vec![AffectedRange::fixed_in("1:9.2p1-2+deb12u3")],
            versions: vec![]
        }
    );
    assert_eq!(
        find("openssh", "CVE-2024-6387", "bullseye").statement,
        Statement::NotAffected
    );
    assert!(matches!(
        &find("openssh", "CVE-2099-10001", "bookworm").statement,
        Statement::WillNotFix { reason } if reason.contains("ignored")
    ));
    let postponed = find("openssh", "CVE-2099-10002", "bookworm");
    assert_eq!(
        postponed.statement,
        Statement::Affected {
            ranges: vec![AffectedRange::all()],
            versions: vec![]
        }
    );
    assert_eq!(postponed.urgency.as_deref(), Some("unimportant"));
    assert_eq!(
        find("linux", "CVE-2099-10003", "bookworm").statement,
        Statement::Undetermined
    );
    assert_eq!(find("linux", "CVE-2024-1086", "sid").release.version, "sid");
}

#[test]
fn osv_files_zip_and_array_agree() {
    let files = osv_files();
    let set = feeds::parse_osv_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
        .expect("parses");
    assert_eq!(set.records, 8);
    assert_eq!(set.withdrawn, ["DEBIAN-CVE-2099-20002"]);
    assert_eq!(set.skipped_ecosystems.get("PyPI"), Some(&1));
    assert_eq!(set.skipped_ecosystems.get("Ubuntu:Pro:18.04:LTS"), Some(&1));
    // Debian 12 + Debian 10 + 2 Ubuntu + 3×3 RHEL-family = 13 package advisories.
    assert_eq!(set.advisories.len(), 13);

    // The same records in a zip archive (as osv.dev publishes them).
    let mut zip_bytes = Vec::new();
    {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in &files {
            w.start_file(name.as_str(), opts).expect("zip entry");
            w.write_all(bytes).expect("zip write");
        }
        w.finish().expect("zip finish");
    }
    let zipped = feeds::parse_osv_zip(&zip_bytes).expect("zip parses");
    assert_eq!(zipped, set);

    // And as one JSON array.
    let array = format!(
        "[{}]",
        files
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    );
    let arr = feeds::parse_osv(array.as_bytes()).expect("array parses");
    assert_eq!(arr.advisories, set.advisories);

    // A truncated zip is rejected, not half-read.
    let err = feeds::parse_osv_zip(&zip_bytes[..zip_bytes.len() - 30]).expect_err("truncated zip");
    assert_eq!(err.feed, FeedKind::Osv);
    assert!(err.reason.contains("zip"), "{err}");
}

#[test]
fn osv_ecosystems_and_fields() {
    let files = osv_files();
    let set = feeds::parse_osv_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
        .expect("parses");
    let by = |eco: Distro, ver: &str, name: &str| {
        set.advisories
            .iter()
            .find(|a| a.release == Release::new(eco, ver) && a.package == name)
            .unwrap_or_else(|| panic!("{eco:?} {ver} {name}"))
    };
    let deb = by(Distro::Debian, "12", "openssh");
    assert_eq!(deb.cves, ["CVE-2024-6387"]);
    assert_eq!(deb.advisory_id, "DSA-5724-1");
    let sudo = by(Distro::Debian, "10", "sudo");
    assert_eq!(
        sudo.statement,
        Statement::Affected {
            ranges: vec![AffectedRange::fixed_in("1.8.27-1+deb10u3")],
            versions: vec![]
        }
    );
    let ubu = by(Distro::Ubuntu, "22.04", "openssh");
    assert_eq!(
        ubu.cves,
        ["CVE-2024-6387"],
        "Ubuntu's upstream field gives the CVE"
    );
    assert_eq!(ubu.urgency.as_deref(), Some("high"));
    let cvss = ubu.cvss.as_ref().expect("CVSS_V3 parsed");
    assert_eq!(cvss.base_score, 8.1);
    assert_eq!(cvss.rating(), Rating::High);
    assert_eq!(ubu.binaries.len(), 4);
    assert_eq!(
        ubu.binaries[1],
        ("openssh-server".into(), "1:8.9p1-3ubuntu0.10".into())
    );
    for (distro, id) in [
        (Distro::Rhel, "RHSA-2024:4312"),
        (Distro::Rocky, "RLSA-2024:4312"),
        (Distro::Alma, "ALSA-2024:4312"),
    ] {
        let a = by(distro, "9", "openssh-server");
        assert_eq!(a.advisory_id, id);
        assert_eq!(a.name_kind, NameKind::Binary);
    }
}

#[test]
fn osv_ecosystem_strings() {
    use patchwarden_vuln::feeds::osv::release_of_ecosystem as r;
    assert_eq!(r("Debian:12"), Some(Release::new(Distro::Debian, "12")));
    assert_eq!(
        r("Ubuntu:22.04:LTS"),
        Some(Release::new(Distro::Ubuntu, "22.04"))
    );
    assert_eq!(
        r("Ubuntu:24.10"),
        Some(Release::new(Distro::Ubuntu, "24.10"))
    );
    assert_eq!(r("Ubuntu:Pro:18.04:LTS"), None);
    assert_eq!(
        r("Alpine:v3.19"),
        Some(Release::new(Distro::Alpine, "3.19"))
    );
    assert_eq!(r("Rocky Linux:9"), Some(Release::new(Distro::Rocky, "9")));
    assert_eq!(r("AlmaLinux:8"), Some(Release::new(Distro::Alma, "8")));
    assert_eq!(
        r("Red Hat:enterprise_linux:9::baseos"),
        Some(Release::new(Distro::Rhel, "9"))
    );
    assert_eq!(
        r("Red Hat:rhel_eus:9.2::appstream"),
        Some(Release::new(Distro::Rhel, "rhel_eus:9.2"))
    );
    assert_eq!(r("Debian"), None);
    assert_eq!(r("PyPI"), None);
}

#[test]
fn kev_catalog() {
    let k = feeds::parse_kev(&fixture("kev.json")).expect("parses");
    assert_eq!(k.catalog_version, "2025.06.02");
    assert_eq!(k.entries.len(), 3);
    let sudo = &k.entries["CVE-2021-3156"];
    assert_eq!(sudo.date_added.to_string(), "2022-04-06");
    assert_eq!(
        sudo.due_date.map(|d| d.to_string()).as_deref(),
        Some("2022-04-27")
    );
    assert!(!sudo.known_ransomware);
    assert!(k.entries["CVE-2024-1086"].known_ransomware);
}

#[test]
fn epss_scores() {
    let e = feeds::parse_epss_csv(&fixture("epss.csv")).expect("parses");
    assert_eq!(e.model_version.as_deref(), Some("v2025.03.14"));
    assert_eq!(e.score_date.as_deref(), Some("2025-06-02T12:55:00Z"));
    assert_eq!(e.scores.len(), 4);
    let s = e.scores["CVE-2024-6387"];
    assert_eq!((s.score, s.percentile), (0.43162, 0.97443));
}

#[test]
fn alpine_secdb() {
    let a = feeds::parse_alpine_secdb(&fixture("alpine_v3.19_main.json")).expect("parses");
    assert_eq!(a.release, Some(Release::new(Distro::Alpine, "3.19")));
    assert_eq!(a.packages, 2);
    let terrapin = a
        .advisories
        .iter()
        .find(|x| x.cves == ["CVE-2023-48795"])
        .expect("space-separated ids split, CVE kept");
    assert_eq!(terrapin.advisory_id, "CVE-2023-48795");
    assert_eq!(
        terrapin.statement,
        Statement::Affected {
            ranges: vec![AffectedRange::fixed_in("9.6_p1-r0")],
            versions: vec![]
        }
    );
    let never = a
        .advisories
        .iter()
        .find(|x| x.cves == ["CVE-2099-10004"])
        .expect("0 entry");
    assert_eq!(never.statement, Statement::NotAffected);
}

/// Malformed inputs: (parser, fixture, expected feed, substrings the error must contain).
#[test]
fn malformed_feeds_are_rejected_with_a_location() {
    type Parser = fn(&[u8]) -> Result<(), feeds::FeedError>;
    let tracker: Parser = |b| feeds::parse_debian_tracker(b).map(drop);
    let osv: Parser = |b| feeds::parse_osv(b).map(drop);
    let kev: Parser = |b| feeds::parse_kev(b).map(drop);
    let epss: Parser = |b| feeds::parse_epss_csv(b).map(drop);
    let alpine: Parser = |b| feeds::parse_alpine_secdb(b).map(drop);
    let cases: &[(Parser, &str, FeedKind, &[&str])] = &[
        (
            tracker,
            "debian_tracker_truncated.json",
            FeedKind::DebianTracker,
            &["truncated", "line "],
        ),
        (
            tracker,
            "debian_tracker_bad_version.json",
            FeedKind::DebianTracker,
            &[
                "CVE-2024-6387",
                ".openssh.CVE-2024-6387.releases.bookworm.fixed_version",
                "1:9.2p1 2",
            ],
        ),
        (
            osv,
            "osv_two_keys_in_event.json",
            FeedKind::Osv,
            &[
                "DSA-5724-1",
                ".affected[0].ranges[0].events[1]",
                "more than one",
            ],
        ),
        (
            osv,
            "osv_bad_cvss.json",
            FeedKind::Osv,
            &["UBUNTU-CVE-2024-6387", ".severity[1].score", "CVSS"],
        ),
        (
            kev,
            "kev_truncated.json",
            FeedKind::Kev,
            &["truncated", "line "],
        ),
        (
            kev,
            "kev_bad_due_date.json",
            FeedKind::Kev,
            &["record 1", "CVE-2024-1086", ".vulnerabilities[1].dueDate"],
        ),
        (
            epss,
            "epss_truncated.csv",
            FeedKind::Epss,
            &["truncated", "line 6"],
        ),
        (
            epss,
            "epss_bad_percentile.csv",
            FeedKind::Epss,
            &["line 4", "percentile", "CVE-2024-6387"],
        ),
        (
            alpine,
            "alpine_bad_version.json",
            FeedKind::AlpineSecdb,
            &["sudo", "1.9.5p2-r0", "record 1"],
        ),
    ];
    for (parse, file, feed, needles) in cases {
        let err = parse(&fixture(&format!("malformed/{file}"))).expect_err(file);
        assert_eq!(err.feed, *feed, "{file}");
        let msg = err.to_string();
        for n in *needles {
            assert!(msg.contains(n), "{file}: {msg:?} lacks {n:?}");
        }
    }
}

#[test]
fn more_malformed_shapes() {
    // Truncated at every tenth byte: never a partial result, always an error.
    for name in [
        "debian_tracker.json",
        "kev.json",
        "alpine_v3.19_main.json",
        "osv/UBUNTU-CVE-2024-6387.json",
    ] {
        let good = fixture(name);
        for cut in (1..good.len() - 2).step_by(10) {
            let bytes = &good[..cut];
            let rejected = match name {
                "debian_tracker.json" => feeds::parse_debian_tracker(bytes).is_err(),
                "kev.json" => feeds::parse_kev(bytes).is_err(),
                "alpine_v3.19_main.json" => feeds::parse_alpine_secdb(bytes).is_err(),
                _ => feeds::parse_osv(bytes).is_err(),
            };
            assert!(rejected, "{name} cut at {cut} was accepted");
        }
    }
    // KEV count disagreeing with the list.
    let k = String::from_utf8(fixture("kev.json"))
        .expect("utf8")
        .replace("\"count\": 3", "\"count\": 4");
    let err = feeds::parse_kev(k.as_bytes()).expect_err("count mismatch");
    assert!(err.to_string().contains(".count"), "{err}");
    // EPSS with a wrong header, and a duplicate row.
    let err = feeds::parse_epss_csv(b"cve,score\nCVE-2021-3156,0.9\n").expect_err("header");
    assert!(err.to_string().contains("line 1"), "{err}");
    let err = feeds::parse_epss_csv(
        b"cve,epss,percentile\nCVE-2021-3156,0.9,0.9\nCVE-2021-3156,0.9,0.9\n",
    )
    .expect_err("duplicate");
    assert!(err.to_string().contains("line 3"), "{err}");
    // OSV: a fixed event with no introduced, an unparsable rpm version.
    let err = feeds::parse_osv(br#"{"id":"X-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"ranges":[{"type":"ECOSYSTEM","events":[{"fixed":"1.0-1"}]}]}]}"#)
        .expect_err("fixed without introduced");
    assert!(
        err.to_string().contains("without a preceding introduced"),
        "{err}"
    );
    let err = feeds::parse_osv(br#"[{"id":"X-1","modified":"m"},{"id":"X-2","modified":"m","affected":[{"package":{"ecosystem":"Rocky Linux:9","name":"a"},"versions":["1.0 -1"]}]}]"#)
        .expect_err("bad rpm version");
    let msg = err.to_string();
    assert!(
        msg.contains("record 1") && msg.contains("X-2") && msg.contains(".affected[0].versions[0]"),
        "{msg}"
    );
    // A record missing a required field names the record.
    let err = feeds::parse_osv(br#"[{"id":"X-1","modified":"m"},{"id":"X-2"}]"#)
        .expect_err("no modified");
    let msg = err.to_string();
    assert!(
        msg.contains("record 1") && msg.contains("X-2") && msg.contains("modified"),
        "{msg}"
    );
}
