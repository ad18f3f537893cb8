//! Matching benchmark (a plain `harness = false` binary: no extra dependency, prints a table).
//!
//!     cargo bench -p patchwarden-vuln --bench matching
//!
//! - index: a generated Debian-tracker-sized dataset, 2 releases × 5,000 source packages × 5
//!   CVEs = 50,000 (release, source package, CVE) statements shaped like the real tracker:
//!   80% fixed (three in four of those before the release shipped, the rest by a security
//!   update), 10% open, 5% not affected, 5% will-not-fix;
//! - devices run the release's current version of a source 80% of the time, else the
//!   previous security update or an older version (outdated hosts);
//! - full match: 10,000 devices × 2,000 installed binaries (1,000 sources, 70% of them in the
//!   index), 1,000 distinct generated inventories each matched 10 times (keeping 10,000 × 2,000
//!   owned packages in memory at once would take ~4 GB), on every core with std threads, each
//!   thread with one `Matcher` (the fast path: remembered verdicts per (package, version),
//!   reused buffers). Measured three ways: exposures in compact form (each readable through
//!   an `ExposureRef`, nothing copied; every exposure's CVE, version and fix are read),
//!   exposures copied out in full as owned `Exposure`s (`Matches::write_into`, in place), and
//!   `match_device_into` device by device (nothing remembered across devices);
//! - rematch: one device after an inventory change (median of 200);
//! - version comparison throughput per scheme, from strings (parse + compare) and parsed.

use patchwarden_vuln::feeds::FeedKind;
use patchwarden_vuln::matching::{match_device, DeviceFacts, InstalledPackage};
use patchwarden_vuln::model::{
    AffectedRange, Distro, NameKind, PackageAdvisory, Release, Statement,
};
use patchwarden_vuln::version::{compare, Scheme, Version};
use patchwarden_vuln::AdvisoryIndex;
use patchwarden_vuln::Matcher;
use std::hint::black_box;
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SOURCES: usize = 5_000;
const CVES_PER_SOURCE: usize = 5;
const DEVICES: usize = 10_000;
const INVENTORIES: usize = 1_000;
const BINARIES_PER_SOURCE: usize = 2;
const SOURCES_PER_DEVICE: usize = 1_000;

fn deb_version(rng: &mut Rng) -> String {
    let epoch = if rng.below(10) == 0 { "1:" } else { "" };
    format!(
        "{epoch}{}.{}.{}-{}+deb12u{}",
        rng.below(5),
        rng.below(20),
        rng.below(10),
        1 + rng.below(3),
        rng.below(6)
    )
}

/// The release's current version of source `s`, and its n-th security update before that.
fn current(s: usize) -> String {
    format!("{}.{}.{}-1+deb12u3", s % 7, s % 13, s % 5)
}
fn update(s: usize, n: u32) -> String {
    format!("{}.{}.{}-1+deb12u{n}", s % 7, s % 13, s % 5)
}
fn before_release(s: usize, rng: &mut Rng) -> String {
    format!("{}.{}.{}-{}", s % 7, s % 13, s % 5, rng.below(1) + 1)
        .replace("-1", &format!("~rc{}-1", rng.below(3)))
}

fn dataset(rng: &mut Rng) -> Vec<PackageAdvisory> {
    let mut out = Vec::with_capacity(2 * SOURCES * CVES_PER_SOURCE);
    for release in ["11", "12"] {
        for s in 0..SOURCES {
            for c in 0..CVES_PER_SOURCE {
                let roll = rng.below(100);
                let statement = match roll {
                    0..=59 => Statement::Affected {
                        ranges: vec![AffectedRange::fixed_in(before_release(s, rng))],
                        versions: vec![],
                    },
                    60..=79 => Statement::Affected {
                        ranges: vec![AffectedRange::fixed_in(update(s, 1 + rng.below(3) as u32))],
                        versions: vec![],
                    },
                    80..=89 => Statement::Affected {
                        ranges: vec![AffectedRange::all()],
                        versions: vec![],
                    },
                    90..=94 => Statement::NotAffected,
                    _ => Statement::WillNotFix {
                        reason: "ignored".into(),
                    },
                };
                let cve = format!(
                    "CVE-20{:02}-{:05}",
                    10 + (s + c) % 15,
                    s * CVES_PER_SOURCE + c
                );
                out.push(PackageAdvisory {
                    feed: FeedKind::DebianTracker,
                    advisory_id: cve.clone(),
                    cves: vec![cve],
                    release: Release::new(Distro::Debian, release),
                    package: format!("src{s}"),
                    name_kind: NameKind::Source,
                    statement,
                    urgency: Some(
                        ["low", "medium", "high", "unimportant"][(roll % 4) as usize].into(),
                    ),
                    cvss: None,
                    binaries: vec![],
                    summary: None,
                });
            }
        }
    }
    out
}

fn inventory(rng: &mut Rng) -> DeviceFacts {
    let mut installed = Vec::with_capacity(SOURCES_PER_DEVICE * BINARIES_PER_SOURCE);
    for i in 0..SOURCES_PER_DEVICE {
        let (source, version) = if rng.below(10) < 7 {
            let s = rng.below(SOURCES as u64) as usize;
            let v = match rng.below(10) {
                0..=7 => current(s),
                8 => update(s, 1),
                _ => deb_version(rng),
            };
            (format!("src{s}"), v)
        } else {
            (format!("local{i}"), deb_version(rng))
        };
        for b in 0..BINARIES_PER_SOURCE {
            installed.push(InstalledPackage {
                name: format!("{source}-bin{b}"),
                version: version.clone(),
                source: Some(source.clone()),
                source_version: None,
            });
        }
    }
    DeviceFacts {
        os_id: "debian".into(),
        os_version_id: Some("12".into()),
        os_codename: Some("bookworm".into()),
        running_kernel: Some("6.1.0-18-amd64".into()),
        installed,
        upgradable: vec![],
    }
}

fn throughput(scheme: Scheme, pairs: &[(String, String)]) -> (f64, f64) {
    let t = Instant::now();
    for (a, b) in pairs {
        black_box(compare(scheme, a, b).ok());
    }
    let from_strings = pairs.len() as f64 / t.elapsed().as_secs_f64();
    let parsed: Vec<(Version, Version)> = pairs
        .iter()
        .map(|(a, b)| {
            (
                Version::parse(scheme, a).expect("valid"),
                Version::parse(scheme, b).expect("valid"),
            )
        })
        .collect();
    let t = Instant::now();
    for _ in 0..5 {
        for (a, b) in &parsed {
            black_box(a.try_cmp(b));
        }
    }
    let parsed_rate = 5.0 * parsed.len() as f64 / t.elapsed().as_secs_f64();
    (from_strings, parsed_rate)
}

/// CPU seconds used by this process so far (user + system, from /proc/self/stat), to tell
/// this benchmark's work from other load on a shared machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100 Hz).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let advisories = dataset(&mut rng);
    let t = Instant::now();
    let index = AdvisoryIndex::build(&advisories, None, None).expect("index");
    let build = t.elapsed();
    println!("index: {} statements, built in {:.2?}", index.len(), build);

    let t = Instant::now();
    let inventories: Vec<DeviceFacts> = (0..INVENTORIES).map(|_| inventory(&mut rng)).collect();
    println!(
        "generated {INVENTORIES} inventories × {} packages in {:.2?} (not timed below)",
        inventories[0].installed.len(),
        t.elapsed()
    );

    // compact: the Matcher's exposures read in place; owned: copied out as `Exposure`s;
    // per-device: `match_device_into` on each device alone (a fresh matcher: nothing
    // remembered across devices), the single-device path, for the memo's share.
    for mode in ["compact", "owned", "per-device"] {
        let owned = mode != "compact";
        let t = Instant::now();
        let cpu0 = cpu_seconds();
        let per_thread = DEVICES.div_ceil(threads);
        let exposures: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|th| {
                    let (index, inventories) = (&index, &inventories);
                    s.spawn(move || {
                        let mut n = 0;
                        let mut matcher = Matcher::new(index);
                        // Owned exposures: one buffer per thread, overwritten in place.
                        let mut out = Vec::new();
                        let mut check = 0usize;
                        for d in th * per_thread..((th + 1) * per_thread).min(DEVICES) {
                            if mode == "per-device" {
                                patchwarden_vuln::match_device_into(
                                    index,
                                    &inventories[d % INVENTORIES],
                                    &mut out,
                                );
                                n += out.len();
                                continue;
                            }
                            let m = matcher.match_device(&inventories[d % INVENTORIES]);
                            if owned {
                                m.write_into(&mut out);
                                n += out.len();
                            } else {
                                for e in m.iter() {
                                    check = check.wrapping_add(
                                        e.cve().len()
                                            + e.installed_version().len()
                                            + e.fixed_version().map_or(0, str::len),
                                    );
                                }
                                n += m.len();
                            }
                        }
                        black_box(check);
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        let full = t.elapsed();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "full match ({}): {DEVICES} devices × {} packages on {threads} threads: {:.2?} wall, {cpu:.1} s CPU ({} exposures, {:.0} devices/s)",
            match mode {
                "compact" => "Matcher, compact exposures",
                "owned" => "Matcher, owned exposures",
                _ => "match_device_into per device, owned exposures",
            },
            inventories[0].installed.len(),
            full,
            exposures,
            DEVICES as f64 / full.as_secs_f64()
        );
    }

    // Rematch one device after an inventory change (one package upgraded).
    let mut device = inventories[0].clone();
    let mut times: Vec<Duration> = Vec::new();
    for i in 0..200 {
        device.installed[i].version = deb_version(&mut rng);
        let t = Instant::now();
        black_box(match_device(&index, &device));
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "rematch one device: median {:.2?}, p99 {:.2?}, max {:.2?}",
        times[100], times[198], times[199]
    );

    const N: usize = 200_000;
    let deb: Vec<(String, String)> = (0..N)
        .map(|_| (deb_version(&mut rng), deb_version(&mut rng)))
        .collect();
    let rpm: Vec<(String, String)> = (0..N)
        .map(|_| {
            let mut v = || {
                format!(
                    "{}.{}.{}-{}.el9_{}",
                    rng.below(5),
                    rng.below(20),
                    rng.below(10),
                    rng.below(40),
                    rng.below(5)
                )
            };
            (v(), v())
        })
        .collect();
    let apk: Vec<(String, String)> = (0..N)
        .map(|_| {
            let mut v = || {
                format!(
                    "{}.{}.{}_p{}-r{}",
                    rng.below(5),
                    rng.below(20),
                    rng.below(10),
                    rng.below(3),
                    rng.below(5)
                )
            };
            (v(), v())
        })
        .collect();
    for (scheme, pairs) in [
        (Scheme::Deb, &deb),
        (Scheme::Rpm, &rpm),
        (Scheme::Apk, &apk),
    ] {
        let (s, p) = throughput(scheme, pairs);
        println!(
            "compare {scheme}: {:.1} M/s from strings (parse both + compare), {:.1} M/s parsed",
            s / 1e6,
            p / 1e6
        );
    }
}
