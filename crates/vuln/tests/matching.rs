//! Matching traps, each a small device against the real-format fixtures: source vs binary
//! versions (libldb2 vs samba), missing epochs, backports, kernels installed but not
//! running, update candidates, will-not-fix, RHEL-family binaries, Alpine origins; then
//! priority, SLA and incremental rematch keys.

use patchwarden_vuln::feeds;
use patchwarden_vuln::matching::{
    match_device, match_device_into, DeviceFacts, Exposure, Fix, InstalledPackage, UpdateCandidate,
};
use patchwarden_vuln::model::{Distro, PackageAdvisory, Rating, Release};
use patchwarden_vuln::sla::{sla_clock, SlaPolicy, SlaState};
use patchwarden_vuln::{priority, AdvisoryIndex, PackageKey};
use time::macros::datetime;
use time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn all_advisories() -> Vec<PackageAdvisory> {
    let mut v = feeds::parse_debian_tracker(&fixture("debian_tracker.json"))
        .expect("tracker")
        .advisories;
    let names = [
        "DSA-5724-1.json",
        "DSA-4839-1.json",
        "UBUNTU-CVE-2024-6387.json",
        "RHSA-2024_4312.json",
        "RLSA-2024_4312.json",
        "ALSA-2024_4312.json",
    ];
    let files: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.to_string(), fixture(&format!("osv/{n}"))))
        .collect();
    v.extend(
        feeds::parse_osv_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
            .expect("osv")
            .advisories,
    );
    v.extend(
        feeds::parse_alpine_secdb(&fixture("alpine_v3.19_main.json"))
            .expect("secdb")
            .advisories,
    );
    v
}

fn index() -> AdvisoryIndex {
    let kev = feeds::parse_kev(&fixture("kev.json")).expect("kev");
    let epss = feeds::parse_epss_csv(&fixture("epss.csv")).expect("epss");
    AdvisoryIndex::build(&all_advisories(), Some(&kev), Some(&epss)).expect("index")
}

fn pkg(name: &str, version: &str, source: &str, source_version: Option<&str>) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        source: Some(source.into()),
        source_version: source_version.map(Into::into),
    }
}

fn bookworm(installed: Vec<InstalledPackage>) -> DeviceFacts {
    DeviceFacts {
        os_id: "debian".into(),
        os_version_id: Some("12".into()),
        os_codename: Some("bookworm".into()),
        running_kernel: Some("6.1.0-18-amd64".into()),
        installed,
        upgradable: vec![],
    }
}

fn find<'a>(ex: &'a [Exposure], cve: &str) -> Option<&'a Exposure> {
    ex.iter().find(|e| e.cve == cve)
}

#[test]
fn openssh_bookworm_fixed_by_deb12u3_with_epoch() {
    let idx = index();
    let old = bookworm(vec![
        pkg("openssh-server", "1:9.2p1-2+deb12u2", "openssh", None),
        pkg("openssh-client", "1:9.2p1-2+deb12u2", "openssh", None),
    ]);
    let ex = match_device(&idx, &old);
    let e = find(&ex, "CVE-2024-6387").expect("exposed");
    assert_eq!(e.package, "openssh");
    assert_eq!(e.binaries, ["openssh-server", "openssh-client"]);
    assert_eq!(e.installed_version, "1:9.2p1-2+deb12u2");
    assert_eq!(
        e.fix,
        Fix::Fixed {
            version: "1:9.2p1-2+deb12u3".into()
        }
    );
    assert_eq!(
        e.advisory_ids,
        ["CVE-2024-6387"],
        "tracker wins over Debian OSV for Debian"
    );
    assert_eq!(
        e.severity.rating,
        Rating::High,
        "CVSS 8.1 from the OSV records"
    );
    assert_eq!(e.epss.map(|x| x.percentile), Some(0.97443));
    assert!(e.kev.is_none());
    // The will-not-fix and postponed synthetic issues are there too.
    assert!(matches!(
        find(&ex, "CVE-2099-10001").map(|e| &e.fix),
        Some(Fix::WillNotFix { .. })
    ));
    let postponed = find(&ex, "CVE-2099-10002").expect("no fix yet");
    assert_eq!(postponed.fix, Fix::NoFixYet);
    assert_eq!(
        postponed.severity.rating,
        Rating::None,
        "urgency unimportant"
    );

    // Fixed version installed: no longer exposed to the CVE.
    let new = bookworm(vec![pkg(
        "openssh-server",
        "1:9.2p1-2+deb12u3",
        "openssh",
        None,
    )]);
    assert!(find(&match_device(&idx, &new), "CVE-2024-6387").is_none());
    // A version without the epoch is epoch 0: older than any 1: version, so exposed.
    let no_epoch = bookworm(vec![pkg("openssh-server", "9.9p1-1", "openssh", None)]);
    assert!(find(&match_device(&idx, &no_epoch), "CVE-2024-6387").is_some());
}

#[test]
fn update_candidate_closes_exposure() {
    let idx = index();
    let mut d = bookworm(vec![pkg(
        "openssh-server",
        "1:9.2p1-2+deb12u2",
        "openssh",
        None,
    )]);
    d.upgradable = vec![UpdateCandidate {
        name: "openssh-server".into(),
        version: "1:9.2p1-2+deb12u3".into(),
        ..UpdateCandidate::default()
    }];
    let ex = match_device(&idx, &d);
    assert_eq!(
        find(&ex, "CVE-2024-6387").and_then(|e| e.fixed_by_update.as_deref()),
        Some("1:9.2p1-2+deb12u3")
    );
    // A candidate below the fix does not close it.
    d.upgradable[0].version = "1:9.2p1-2+deb12u2~test1".into();
    let ex = match_device(&idx, &d);
    assert_eq!(
        find(&ex, "CVE-2024-6387").and_then(|e| e.fixed_by_update.clone()),
        None
    );
}

#[test]
fn binary_version_differs_from_source_version_libldb2_vs_samba() {
    let idx = index();
    // libldb2 is built from samba; its binary version is ldb's, its source version samba's.
    let vulnerable = bookworm(vec![pkg(
        "libldb2",
        "2:2.6.2+samba4.17.11+dfsg-0+deb12u1",
        "samba",
        Some("2:4.17.11+dfsg-0+deb12u1"),
    )]);
    let e = find(&match_device(&idx, &vulnerable), "CVE-2023-4154")
        .cloned()
        .expect("exposed via samba");
    assert_eq!(e.package, "samba");
    assert_eq!(e.binaries, ["libldb2"]);
    assert_eq!(e.installed_version, "2:4.17.11+dfsg-0+deb12u1");
    // Comparing the BINARY version (2:2.6.2+samba4.17.12...) would call a fixed host vulnerable.
    let fixed = bookworm(vec![pkg(
        "libldb2",
        "2:2.6.2+samba4.17.12+dfsg-0+deb12u1",
        "samba",
        Some("2:4.17.12+dfsg-0+deb12u1"),
    )]);
    assert!(find(&match_device(&idx, &fixed), "CVE-2023-4154").is_none());
}

#[test]
fn backport_carries_the_fix_of_its_base_version() {
    let idx = index();
    // sudo from backports built from the fixed 1.9.5p2-1: dpkg orders it below 1.9.5p2-1,
    // but it contains the fix.
    let mut d = bookworm(vec![pkg("sudo", "1.9.5p2-1~bpo12+1", "sudo", None)]);
    assert!(find(&match_device(&idx, &d), "CVE-2021-3156").is_none());
    // A backport of an older, unfixed version is still exposed.
    d.installed[0].version = "1.9.5p1-1~bpo12+1".into();
    assert!(find(&match_device(&idx, &d), "CVE-2021-3156").is_some());
}

#[test]
fn sudo_buster_cve_2021_3156_and_kev_priority() {
    let idx = index();
    let d = DeviceFacts {
        os_id: "debian".into(),
        os_version_id: Some("10".into()),
        installed: vec![pkg("sudo", "1.8.27-1+deb10u2", "sudo", None)],
        ..DeviceFacts::default()
    };
    let ex = match_device(&idx, &d);
    let e = find(&ex, "CVE-2021-3156").expect("exposed");
    assert_eq!(
        e.fix,
        Fix::Fixed {
            version: "1.8.27-1+deb10u3".into()
        }
    );
    let kev = e.kev.as_ref().expect("KEV listed");
    assert_eq!(
        kev.due_date.map(|d| d.to_string()).as_deref(),
        Some("2022-04-27")
    );
    let p = priority(e);
    assert!(p.kev && p.score >= 100.0);
    let text = p.explain();
    assert!(text.contains("known exploited (CISA KEV, +100)"), "{text}");
    assert!(text.contains("EPSS 0.93"), "{text}");
    let ok = DeviceFacts {
        installed: vec![pkg("sudo", "1.8.27-1+deb10u3", "sudo", None)],
        ..d
    };
    assert!(match_device(&idx, &ok).is_empty());
}

#[test]
fn only_the_running_kernel_is_exposed() {
    let idx = index();
    let kernels = vec![
        // Old kernel, still installed, not running: not exposed.
        pkg(
            "linux-image-6.1.0-17-amd64",
            "6.1.69-1",
            "linux-signed-amd64",
            Some("6.1.69+1"),
        ),
        // The running kernel: exposed (6.1.69-1 < 6.1.76-1).
        pkg(
            "linux-image-6.1.0-18-amd64",
            "6.1.69-1",
            "linux-signed-amd64",
            Some("6.1.69+1"),
        ),
        // Metapackage: no code, never exposed by itself.
        pkg(
            "linux-image-amd64",
            "6.1.69-1",
            "linux-signed-amd64",
            Some("6.1.69+1"),
        ),
        pkg("linux-headers-6.1.0-17-common", "6.1.69-1", "linux", None),
    ];
    let mut d = bookworm(kernels);
    let ex = match_device(&idx, &d);
    let e = find(&ex, "CVE-2024-1086").expect("running kernel exposed");
    assert_eq!(e.package, "linux");
    assert_eq!(e.binaries, ["linux-image-6.1.0-18-amd64"]);
    assert_eq!(
        e.installed_version, "6.1.69-1",
        "signed version 6.1.69+1 read as linux 6.1.69-1"
    );
    assert!(e.kev.as_ref().is_some_and(|k| k.known_ransomware));

    // After a reboot into a fixed kernel (still with the old one installed): not exposed.
    d.installed.push(pkg(
        "linux-image-6.1.0-20-amd64",
        "6.1.85-1",
        "linux-signed-amd64",
        Some("6.1.85+1"),
    ));
    d.running_kernel = Some("6.1.0-20-amd64".into());
    assert!(find(&match_device(&idx, &d), "CVE-2024-1086").is_none());

    // Running the old one with the metapackage upgradable: exposed, and the update fixes it.
    d.running_kernel = Some("6.1.0-18-amd64".into());
    d.installed.pop();
    d.upgradable = vec![UpdateCandidate {
        name: "linux-image-amd64".into(),
        version: "6.1.85-1".into(),
        source: None,
        source_version: Some("6.1.85+1".into()),
    }];
    let ex = match_device(&idx, &d);
    assert_eq!(
        find(&ex, "CVE-2024-1086").and_then(|e| e.fixed_by_update.as_deref()),
        Some("6.1.85-1")
    );
}

#[test]
fn ubuntu_rhel_family_and_alpine() {
    let idx = index();
    // Ubuntu: binary without a reported source, mapped through ecosystem_specific.binaries.
    let u = DeviceFacts {
        os_id: "ubuntu".into(),
        os_version_id: Some("22.04".into()),
        installed: vec![InstalledPackage {
            name: "openssh-server".into(),
            version: "1:8.9p1-3ubuntu0.7".into(),
            ..InstalledPackage::default()
        }],
        ..DeviceFacts::default()
    };
    let e = find(&match_device(&idx, &u), "CVE-2024-6387")
        .cloned()
        .expect("ubuntu exposed");
    assert_eq!(
        (e.package.as_str(), e.severity.rating),
        ("openssh", Rating::High)
    );

    // RHEL family: binary names, rpm order; Rocky devices match Rocky advisories.
    for (id, adv) in [
        ("rhel", "RHSA-2024:4312"),
        ("rocky", "RLSA-2024:4312"),
        ("almalinux", "ALSA-2024:4312"),
    ] {
        let d = DeviceFacts {
            os_id: id.into(),
            os_version_id: Some("9.4".into()),
            installed: vec![
                InstalledPackage {
                    name: "openssh-server".into(),
                    version: "8.7p1-38.el9".into(),
                    ..Default::default()
                },
                InstalledPackage {
                    name: "openssh-clients".into(),
                    version: "8.7p1-38.el9_4.1".into(),
                    ..Default::default()
                },
            ],
            ..DeviceFacts::default()
        };
        let ex = match_device(&idx, &d);
        assert_eq!(ex.len(), 1, "{id}: {ex:?}");
        assert_eq!(ex[0].package, "openssh-server");
        assert_eq!(ex[0].advisory_ids, [adv]);
        assert_eq!(
            ex[0].fix,
            Fix::Fixed {
                version: "8.7p1-38.el9_4.1".into()
            }
        );
    }

    // Alpine: origin names, apk order, `_p` post-release suffix.
    let a = DeviceFacts {
        os_id: "alpine".into(),
        os_version_id: Some("3.19.1".into()),
        installed: vec![
            pkg("openssh-server", "9.5_p1-r0", "openssh", None),
            pkg("sudo", "1.9.15_p2-r0", "sudo", None),
        ],
        ..DeviceFacts::default()
    };
    let ex = match_device(&idx, &a);
    let cves: Vec<&str> = ex.iter().map(|e| e.cve.as_str()).collect();
    assert_eq!(
        cves,
        ["CVE-2023-48795", "CVE-2023-51384", "CVE-2023-51385"],
        "9.3_p2 fix already in, sudo fixed"
    );
}

#[test]
fn unsupported_os_has_no_exposures() {
    let idx = index();
    let d = DeviceFacts {
        os_id: "freebsd".into(),
        os_version_id: Some("14".into()),
        ..DeviceFacts::default()
    };
    assert!(match_device(&idx, &d).is_empty());
}

#[test]
fn sla_clocks() {
    let policy = SlaPolicy::default();
    let first = datetime!(2024-06-01 10:00 UTC);
    let now = datetime!(2024-06-10 10:00 UTC);
    // High: 30 days.
    let c = sla_clock(&policy, Rating::High, None, first, None, now);
    assert_eq!(c.due, Some(first + Duration::days(30)));
    assert_eq!(
        c.state,
        SlaState::OnTrack {
            remaining: Duration::days(21)
        }
    );
    // Critical past 15 days: breached.
    let c = sla_clock(
        &policy,
        Rating::Critical,
        None,
        first,
        None,
        datetime!(2024-06-20 10:00 UTC),
    );
    assert_eq!(
        c.state,
        SlaState::Breached {
            overdue: Duration::days(4)
        }
    );
    // KEV with CISA's due date still ahead and earlier than the severity clock.
    let kev = feeds::parse_kev(&fixture("kev.json")).expect("kev");
    let k = &kev.entries["CVE-2024-1086"]; // due 2024-06-20
    let c = sla_clock(&policy, Rating::High, Some(k), first, None, now);
    assert_eq!(c.due, Some(datetime!(2024-06-21 00:00 UTC)));
    assert!(
        c.basis.contains("CISA KEV due date 2024-06-20"),
        "{}",
        c.basis
    );
    // KEV first seen after CISA's due date: 14 days from first seen.
    let late = datetime!(2024-09-01 00:00 UTC);
    let c = sla_clock(&policy, Rating::High, Some(k), late, None, late);
    assert_eq!(c.due, Some(late + Duration::days(14)));
    // Negligible: no deadline; closed late / in time.
    assert_eq!(
        sla_clock(&policy, Rating::None, None, first, None, now).state,
        SlaState::NoDeadline
    );
    let c = sla_clock(
        &policy,
        Rating::Medium,
        None,
        first,
        Some(first + Duration::days(100)),
        now,
    );
    assert_eq!(
        c.state,
        SlaState::ClosedLate {
            late_by: Duration::days(10)
        }
    );
    let c = sla_clock(
        &policy,
        Rating::Low,
        None,
        first,
        Some(first + Duration::days(100)),
        now,
    );
    assert_eq!(c.state, SlaState::Met);
    // Per-tenant policy: no clock for low.
    let strict = SlaPolicy {
        low_days: None,
        ..SlaPolicy::default()
    };
    assert_eq!(
        sla_clock(&strict, Rating::Low, None, first, None, now).due,
        None
    );
}

#[test]
fn priority_orders_kev_first_then_severity_and_epss() {
    let idx = index();
    let d = DeviceFacts {
        os_id: "debian".into(),
        os_version_id: Some("12".into()),
        running_kernel: Some("6.1.0-18-amd64".into()),
        installed: vec![
            pkg("openssh-server", "1:9.2p1-2+deb12u2", "openssh", None),
            pkg(
                "linux-image-6.1.0-18-amd64",
                "6.1.69-1",
                "linux",
                Some("6.1.69-1"),
            ),
            pkg("samba", "2:4.17.11+dfsg-0+deb12u1", "samba", None),
        ],
        ..DeviceFacts::default()
    };
    let mut ex = match_device(&idx, &d);
    ex.sort_by(|a, b| priority(a).cmp_desc(&priority(b)));
    let order: Vec<&str> = ex.iter().map(|e| e.cve.as_str()).collect();
    assert_eq!(order[0], "CVE-2024-1086", "KEV first");
    assert_eq!(order[1], "CVE-2024-6387", "CVSS 8.1 + EPSS 0.43");
    let p = priority(&ex[1]);
    assert_eq!(p.score, 65.9, "6 × 8.1 + 40 × 0.43162, rounded to 0.1");
    assert_eq!(
        p.explain(),
        "Priority 65.9 = not in CISA KEV (+0) + CVSS 8.1 high (+48.6) + EPSS 0.43, percentile 97.4 (+17.3)."
    );
}

#[test]
fn incremental_rematch_keys() {
    let advisories = all_advisories();
    let old = AdvisoryIndex::build(&advisories, None, None).expect("old");
    // A new tracker fixes openssh differently; nothing else changes.
    let mut changed = advisories.clone();
    for a in changed
        .iter_mut()
        .filter(|a| a.package == "openssh" && a.release == Release::new(Distro::Debian, "12"))
    {
        a.urgency = Some("high".into());
    }
    let new = AdvisoryIndex::build(&changed, None, None).expect("new");
    let keys = new.changed_keys(&old);
    assert_eq!(
        keys.packages.into_iter().collect::<Vec<_>>(),
        [PackageKey {
            release: Release::new(Distro::Debian, "12"),
            package: "openssh".into()
        }]
    );
    // Enrichment only (a KEV catalog arrives): no package rematch, only CVEs to re-score.
    let kev = feeds::parse_kev(&fixture("kev.json")).expect("kev");
    let enriched = AdvisoryIndex::build(&advisories, Some(&kev), None).expect("enriched");
    let keys = enriched.changed_keys(&old);
    assert!(keys.packages.is_empty());
    assert!(keys.cves.contains("CVE-2021-3156") && keys.cves.contains("CVE-2024-1086"));
    // The device side: which keys a device has.
    let d = bookworm(vec![pkg(
        "libldb2",
        "2:2.6.2+samba4.17.12+dfsg-0+deb12u1",
        "samba",
        None,
    )]);
    let dk = patchwarden_vuln::matching::device_keys(&new, &d);
    assert_eq!(dk[0].package, "samba");
}

#[test]
fn match_device_into_reuses_the_buffer_with_the_same_result() {
    let idx = index();
    let mut with_update = bookworm(vec![
        pkg("openssh-server", "1:9.2p1-2+deb12u2", "openssh", None),
        pkg("openssh-client", "1:9.2p1-2+deb12u2", "openssh", None),
    ]);
    with_update.upgradable = vec![UpdateCandidate {
        name: "openssh-server".into(),
        version: "1:9.2p1-2+deb12u3".into(),
        ..UpdateCandidate::default()
    }];
    let devices = [
        with_update,
        DeviceFacts {
            os_id: "debian".into(),
            os_version_id: Some("10".into()),
            installed: vec![pkg("sudo", "1.8.27-1+deb10u2", "sudo", None)],
            ..DeviceFacts::default()
        },
        bookworm(vec![pkg(
            "openssh-server",
            "1:9.2p1-2+deb12u2",
            "openssh",
            None,
        )]),
        DeviceFacts {
            os_id: "plan9".into(),
            ..DeviceFacts::default()
        },
        bookworm(vec![
            pkg("openssh-server", "1:9.2p1-2", "openssh", None),
            pkg("sudo", "1.9.13p3-1", "sudo", None),
        ]),
    ];
    let mut out = Vec::new();
    // Twice round, so that every device meets a buffer left by another.
    for d in devices.iter().chain(devices.iter().rev()) {
        match_device_into(&idx, d, &mut out);
        assert_eq!(out, match_device(&idx, d));
    }
    assert!(!match_device(&idx, &devices[0]).is_empty());
    assert!(!match_device(&idx, &devices[1]).is_empty());
}
