//! Version order against the real tools: property tests that generate adversarial versions
//! (epochs, tildes, `+really`, `~bpo`, `+debNuM`, carets, letters vs digits, leading zeros)
//! and compare with `dpkg --compare-versions` and rpm's own `rpm.vercmp` (one rpm process
//! for the whole batch). apk has no tool here: apk-tools' own test data is the oracle.
//!
//! The tools must be installed (Debian: `dpkg`, `rpm`); a missing tool fails the test with a
//! message rather than passing silently.

use patchwarden_vuln::version::{compare, Scheme, Version};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use std::cmp::Ordering;
use std::process::Command;

const CASES: usize = 400;

fn deb_upstream() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "0",
        "00",
        "1",
        "01",
        "2",
        "9",
        "10",
        "010",
        "a",
        "b",
        "z",
        "A",
        "Z",
        ".",
        ".",
        "+",
        "~",
        "~~",
        "+really",
        "~bpo11+1",
        "+deb12u3",
        "+deb12u10",
        "~rc1",
        "+dfsg",
        "p1",
        "p2",
        ".0",
    ]);
    (
        prop::sample::select(vec!["0", "1", "2", "9", "10", "01"]),
        prop::collection::vec(piece, 0..5),
    )
        .prop_map(|(first, rest)| format!("{first}{}", rest.concat()))
}

fn deb_version() -> impl Strategy<Value = String> {
    let revision = prop::sample::select(vec![
        "1",
        "0",
        "2",
        "10",
        "1+deb12u1",
        "1+deb12u2",
        "1~bpo12+1",
        "2ubuntu0.1",
        "0+deb11u5",
        "1.1",
        "~",
        "b1",
        "1+b1",
        "3ubuntu13.3",
        "0ubuntu0.22.04.1",
    ]);
    (
        prop::option::weighted(0.3, 0u32..3),
        deb_upstream(),
        prop::option::weighted(0.7, revision),
    )
        .prop_map(|(epoch, up, rev)| {
            let mut s = String::new();
            if let Some(e) = epoch {
                s.push_str(&format!("{e}:"));
            }
            s.push_str(&up);
            if let Some(r) = rev {
                s.push('-');
                s.push_str(r);
            }
            s
        })
}

fn rpm_version() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "0",
        "00",
        "1",
        "01",
        "2",
        "9",
        "10",
        "a",
        "b",
        "Z",
        ".",
        ".",
        "_",
        "+",
        "~",
        "^",
        "~rc1",
        "^20240101git",
        "p1",
        ".el9",
        ".el9_4",
        ".1",
        "..",
        "alpha",
    ]);
    let part = (
        prop::sample::select(vec!["0", "1", "2", "9", "10", "01", "a"]),
        prop::collection::vec(piece, 0..5),
    )
        .prop_map(|(first, rest)| format!("{first}{}", rest.concat()));
    (
        prop::option::weighted(0.3, 0u32..3),
        part.clone(),
        prop::option::weighted(0.7, part),
    )
        .prop_map(|(epoch, v, r)| {
            let mut s = String::new();
            if let Some(e) = epoch {
                s.push_str(&format!("{e}:"));
            }
            s.push_str(&v);
            if let Some(r) = r {
                s.push('-');
                s.push_str(&r);
            }
            s
        })
}

/// Pairs: half independent, half `b` = a small mutation of `a` (the adversarial neighbours).
fn pairs(strategy: impl Strategy<Value = String>, scheme: Scheme) -> Vec<(String, String)> {
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let suffixes = ["~", "+1", "0", "a", ".0", "~bpo12+1", "+really1", "^"];
    let mut out = Vec::new();
    let mut i = 0usize;
    while out.len() < CASES {
        i += 1;
        let a = strategy.new_tree(&mut runner).expect("generate").current();
        let b = if i.is_multiple_of(2) {
            strategy.new_tree(&mut runner).expect("generate").current()
        } else {
            let s = suffixes[i % suffixes.len()];
            match a.rsplit_once('-') {
                Some((v, r)) if i % 4 == 1 => format!("{v}{s}-{r}"),
                _ => format!("{a}{s}"),
            }
        };
        if Version::parse(scheme, &a).is_ok() && Version::parse(scheme, &b).is_ok() {
            out.push((a, b));
        }
    }
    out
}

fn sign(o: Ordering) -> i32 {
    match o {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

fn dpkg_cmp(a: &str, b: &str) -> i32 {
    let run = |op: &str| {
        Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .status()
            .expect("dpkg must be installed for this test (apt-get install dpkg)")
            .success()
    };
    if run("lt") {
        -1
    } else if run("eq") {
        0
    } else {
        1
    }
}

#[test]
fn deb_order_agrees_with_dpkg() {
    let mut disagreements = Vec::new();
    let cases = pairs(deb_version(), Scheme::Deb);
    for (a, b) in &cases {
        let ours = sign(compare(Scheme::Deb, a, b).expect("valid"));
        // patchwarden-core's Debian order (the debversion crate) is held to the same oracle.
        let core = patchwarden_core::version::compare_deb(a, b).map(sign);
        let theirs = dpkg_cmp(a, b);
        if ours != theirs || core != Some(theirs) {
            disagreements.push(format!(
                "{a} vs {b}: ours {ours}, core {core:?}, dpkg {theirs}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

#[test]
fn rpm_order_agrees_with_rpm_vercmp() {
    let cases = pairs(rpm_version(), Scheme::Rpm);
    // One rpm process: a Lua loop over all pairs. The versions contain no quotes, backslashes
    // or `%` (they would need escaping).
    let table: Vec<String> = cases
        .iter()
        .map(|(a, b)| format!("{{\"{a}\",\"{b}\"}}"))
        .collect();
    let lua = format!(
        "%{{lua: local t={{{}}} local o={{}} for i,p in ipairs(t) do o[i]=rpm.vercmp(p[1],p[2]) end print(table.concat(o,\" \"))}}",
        table.join(",")
    );
    let out = Command::new("rpm")
        .args(["--eval", &lua])
        .output()
        .expect("rpm must be installed for this test (apt-get install rpm)");
    assert!(
        out.status.success(),
        "rpm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| {
            s.parse::<i32>()
                .expect("rpm.vercmp prints -1, 0 or 1")
                .signum()
        })
        .collect();
    assert_eq!(results.len(), cases.len(), "one result per pair");
    let mut disagreements = Vec::new();
    for ((a, b), theirs) in cases.iter().zip(results) {
        let ours = sign(compare(Scheme::Rpm, a, b).expect("valid"));
        if ours != theirs {
            disagreements.push(format!("{a} vs {b}: ours {ours}, rpm {theirs}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

#[test]
fn apk_order_agrees_with_apk_tools_test_data() {
    let data = include_str!("fixtures/apk_version_cases.txt");
    let mut n = 0;
    for line in data
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let [a, op, b] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("bad line {line:?}");
        };
        let want = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => panic!("bad op in {line:?}"),
        };
        assert_eq!(patchwarden_vuln::apk::compare(a, b), want, "{line}");
        assert_eq!(
            patchwarden_vuln::apk::compare(b, a),
            want.reverse(),
            "{line} (swapped)"
        );
        n += 1;
    }
    assert!(n > 80);
}

#[test]
fn apk_validity_and_scheme_errors() {
    for ok in [
        "1.2.3-r0",
        "9.6_p1-r0",
        "1.0_alpha_pre2",
        "2.3.0b-r1",
        "1.0~abc123-r1",
        "006",
    ] {
        assert!(Version::parse(Scheme::Apk, ok).is_ok(), "{ok}");
    }
    for bad in ["", "1.0bc", "1.9.5p2-r0", "1.0-1", "a1", "1.0_foo", "1.0-r"] {
        assert!(Version::parse(Scheme::Apk, bad).is_err(), "{bad:?}");
    }
    let e = compare(Scheme::Deb, "1.0", "a1.0").expect_err("deb must start with a digit");
    assert!(e.to_string().contains("a1.0"), "{e}");
    assert!(compare(Scheme::Rpm, "1.0 1", "1.0").is_err());
    assert_eq!(
        compare(Scheme::Deb, "1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u2"),
        Ok(Ordering::Greater)
    );
    assert_eq!(
        compare(Scheme::Rpm, "8.7p1-38.el9_4.1", "8.7p1-38.el9"),
        Ok(Ordering::Greater)
    );
    assert_eq!(
        compare(Scheme::Apk, "9.7_p1-r4", "9.7_p1-r3"),
        Ok(Ordering::Greater)
    );
}
