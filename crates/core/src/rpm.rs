//! rpm versions (rpmvercmp order) and parsers for the output of rpm and dnf command-line tools
//! (run with `LC_ALL=C`). Pure functions over text: the agent runs the commands, this reads them.
//!
//! Versions on the wire are `[EPOCH:]VERSION-RELEASE`, the epoch written only when it is not 0
//! (as dnf prints them). Comparison is delegated to the `rpm-version` crate, whose order was
//! checked against rpm 4.18's own `rpm.vercmp` (see the tests).

use crate::apt::ParseError;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// An rpm EVR (`[EPOCH:]VERSION[-RELEASE]`): non-empty, no whitespace, a numeric epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmVersion(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rpm version {version:?}: {reason}")]
pub struct InvalidRpmVersion {
    pub version: String,
    pub reason: &'static str,
}

impl RpmVersion {
    pub fn parse(s: &str) -> Result<Self, InvalidRpmVersion> {
        let bad = |reason| InvalidRpmVersion {
            version: s.to_owned(),
            reason,
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace"));
        }
        let (epoch, vr) = s.split_once(':').unwrap_or(("", s));
        if !epoch.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the epoch is not a number"));
        }
        if vr.is_empty() || vr.starts_with('-') {
            return Err(bad("no version"));
        }
        Ok(RpmVersion(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for RpmVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        rpm_version::rpm_evr_compare(&self.0, &other.0)
    }
}

impl PartialOrd for RpmVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two rpm EVRs as rpm does; `None` if either is not a valid version.
pub fn compare_rpm(a: &str, b: &str) -> Option<Ordering> {
    Some(RpmVersion::parse(a).ok()?.cmp(&RpmVersion::parse(b).ok()?))
}

/// `[EPOCH:]VERSION-RELEASE`, the epoch omitted when empty or 0.
pub fn format_evr(epoch: &str, version: &str, release: &str) -> String {
    let epoch = epoch.trim();
    let mut s = String::new();
    if !epoch.is_empty() && epoch.bytes().any(|b| b != b'0') && epoch != "(none)" {
        s.push_str(epoch);
        s.push(':');
    }
    s.push_str(version);
    if !release.is_empty() {
        s.push('-');
        s.push_str(release);
    }
    s
}

/// The `rpm -qa --queryformat` that [`parse_rpm_query`] reads: one tab-separated line per
/// installed package. `%|EPOCH?{..}:{}|` prints nothing when the package has no epoch.
pub const RPM_QUERY_FORMAT: &str =
    "%{NAME}\\t%|EPOCH?{%{EPOCH}}:{}|\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{INSTALLTIME}\\n";

/// One installed package, from `rpm -qa --queryformat "$RPM_QUERY_FORMAT"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmEntry {
    pub name: String,
    /// `[EPOCH:]VERSION-RELEASE`.
    pub evr: String,
    /// `(none)` for the `gpg-pubkey` pseudo-packages.
    pub arch: String,
    /// Source package name from SOURCERPM; the binary name when there is none.
    pub source: String,
    /// `VERSION-RELEASE` of the source rpm (which carries no epoch); the binary's when none.
    pub source_version: String,
    /// Seconds since the epoch; 0 when rpm printed none.
    pub install_time: u64,
}

/// Parses `rpm -qa --queryformat "$RPM_QUERY_FORMAT"` output. Blank lines are skipped; a line
/// with the wrong number of fields is an error (the format string and the parser disagree).
pub fn parse_rpm_query(output: &str) -> Result<Vec<RpmEntry>, ParseError> {
    let mut entries = Vec::new();
    for (i, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch, srpm, installtime] = fields[..] else {
            return Err(ParseError {
                line: i + 1,
                reason: format!("expected 7 tab-separated fields, found {}", fields.len()),
                text: line.to_owned(),
            });
        };
        let name = name.trim();
        if name.is_empty() || version.trim().is_empty() {
            return Err(ParseError {
                line: i + 1,
                reason: "empty package name or version".into(),
                text: line.to_owned(),
            });
        }
        let evr = format_evr(epoch, version.trim(), release.trim());
        let (source, source_version) = source_rpm_name(srpm.trim()).unwrap_or_else(|| {
            (
                name.to_owned(),
                format_evr("", version.trim(), release.trim()),
            )
        });
        entries.push(RpmEntry {
            name: name.to_owned(),
            evr,
            arch: arch.trim().to_owned(),
            source,
            source_version,
            install_time: installtime.trim().parse().unwrap_or(0),
        });
    }
    Ok(entries)
}

/// `openssl-3.0.7-27.el9.src.rpm` → (`openssl`, `3.0.7-27.el9`); `None` for `(none)` or a name
/// that is not `NAME-VERSION-RELEASE.(no)src.rpm`.
pub fn source_rpm_name(srpm: &str) -> Option<(String, String)> {
    let stem = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (nv, release) = stem.rsplit_once('-')?;
    let (name, version) = nv.rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return None;
    }
    Some((name.to_owned(), format!("{version}-{release}")))
}

/// A package name, epoch, version, release and architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nevra {
    pub name: String,
    /// `[EPOCH:]VERSION-RELEASE`, epoch 0 omitted.
    pub evr: String,
    pub arch: String,
}

/// Parses `NAME-[EPOCH:]VERSION-RELEASE.ARCH` (as dnf prints packages).
pub fn parse_nevra(s: &str) -> Option<Nevra> {
    let s = s.trim();
    let (nevr, arch) = s.rsplit_once('.')?;
    let (nev, release) = nevr.rsplit_once('-')?;
    let (name, ev) = nev.rsplit_once('-')?;
    let (epoch, version) = ev.split_once(':').unwrap_or(("", ev));
    if name.is_empty() || version.is_empty() || release.is_empty() || arch.is_empty() {
        return None;
    }
    Some(Nevra {
        name: name.to_owned(),
        evr: format_evr(epoch, version, release),
        arch: arch.to_owned(),
    })
}

/// The `dnf repoquery --queryformat` that [`parse_repoquery`] reads. `repoquery` is dnf's
/// scriptable query interface (the format is ours); `check-update` and `list --upgrades` print
/// columns for humans that wrap long names and change between dnf versions.
pub const REPOQUERY_FORMAT: &str =
    "%{name}\\t%{epoch}\\t%{version}\\t%{release}\\t%{arch}\\t%{repoid}\\n";

/// A newer version available in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableUpdate {
    pub name: String,
    pub evr: String,
    pub arch: String,
    pub repo: String,
}

/// Parses `dnf -q repoquery --upgrades --queryformat "$REPOQUERY_FORMAT"`, keeping the newest
/// version per (name, arch). Lines that are not ours (a warning printed on stdout) are skipped.
pub fn parse_repoquery(output: &str) -> Vec<AvailableUpdate> {
    let mut best: BTreeMap<(String, String), AvailableUpdate> = BTreeMap::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch, repo] = fields[..] else {
            continue;
        };
        let (name, version) = (name.trim(), version.trim());
        if name.is_empty() || version.is_empty() || name.contains(' ') {
            continue;
        }
        let update = AvailableUpdate {
            name: name.to_owned(),
            evr: format_evr(epoch, version, release.trim()),
            arch: arch.trim().to_owned(),
            repo: repo.trim().to_owned(),
        };
        let key = (update.name.clone(), update.arch.clone());
        match best.get(&key) {
            Some(old) if compare_rpm(&old.evr, &update.evr) != Some(Ordering::Less) => {}
            _ => {
                best.insert(key, update);
            }
        }
    }
    best.into_values().collect()
}

/// One line of `dnf updateinfo list`: an advisory and a package version that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateinfoEntry {
    pub advisory: String,
    /// `security`, `bugfix`, `enhancement`, `newpackage`, or dnf's own word.
    pub kind: String,
    /// `Critical`, `Important`, ... when dnf printed one.
    pub severity: Option<String>,
    pub package: Nevra,
}

impl UpdateinfoEntry {
    pub fn is_security(&self) -> bool {
        self.kind == "security"
    }
}

/// Parses `dnf -q updateinfo list --updates` (dnf 4: `ID TYPE[/SEV] NEVRA`, where TYPE is
/// `security` or `Important/Sec.` for a security advisory with a severity, `bugfix`,
/// `enhancement`). A repository without updateinfo gives no lines, hence no entries.
pub fn parse_updateinfo_list(output: &str) -> Vec<UpdateinfoEntry> {
    let mut entries = Vec::new();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [advisory, kind, nevra] = words[..] else {
            continue;
        };
        let Some(package) = parse_nevra(nevra) else {
            continue;
        };
        let (kind, severity) = match kind.split_once('/') {
            Some((sev, "Sec.")) => ("security".to_owned(), Some(sev.to_owned())),
            Some((sev, k)) => (k.to_ascii_lowercase(), Some(sev.to_owned())),
            None => (kind.to_ascii_lowercase(), None),
        };
        let kind = match kind.as_str() {
            "sec." => "security".to_owned(),
            "bugfix" | "enhancement" | "security" | "newpackage" => kind,
            other => other.trim_end_matches('.').to_owned(),
        };
        entries.push(UpdateinfoEntry {
            advisory: advisory.to_owned(),
            kind,
            severity,
            package,
        });
    }
    entries
}

/// Names locked by `dnf versionlock list` (dnf 4 prints `NAME-[EPOCH:]VERSION-RELEASE.*` per
/// lock and, for an exclude, `!NAME-...`, which is not a hold). Other lines are skipped.
pub fn parse_versionlock_list(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('!') && !l.contains(' '))
        .filter_map(|l| {
            let spec = l.strip_suffix(".*").unwrap_or(l);
            let (nv, _release) = spec.rsplit_once('-')?;
            let (name, _version) = nv.rsplit_once('-')?;
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether os-release describes a distribution managed by dnf: ID `fedora`, `rhel`, `rocky`,
/// `almalinux`, `centos`, `ol`, or ID_LIKE naming rhel, fedora or centos.
pub fn is_rhel_family(id: &str, id_like: &[String]) -> bool {
    const IDS: [&str; 8] = [
        "fedora",
        "rhel",
        "rocky",
        "almalinux",
        "centos",
        "ol",
        "amzn",
        "circle",
    ];
    IDS.contains(&id)
        || id_like
            .iter()
            .any(|l| matches!(l.as_str(), "rhel" | "fedora" | "centos"))
}

/// The major release dnf's `$releasever` takes for a VERSION_ID (`9.4` → `9`).
pub fn releasever(version_id: &str) -> Option<String> {
    let major = version_id.split('.').next()?.trim();
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then(|| major.to_owned())
}

/// A shell-style glob (`*`, `?`, `[...]` taken literally) as dnf matches `exclude` patterns
/// against package names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One `exclude`/`excludepkgs` pattern of a dnf configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludePattern {
    /// The section it is in: `main` (every repository) or a repository id.
    pub section: String,
    pub pattern: String,
}

/// The `exclude=`/`excludepkgs=` patterns (comma or space separated) of a dnf.conf or
/// `.repo` file, per section. A repository section whose `enabled` is 0 is left out.
pub fn parse_dnf_excludes(text: &str) -> Vec<ExcludePattern> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut current: Vec<String> = Vec::new();
    let mut enabled = true;
    let mut flush = |section: &str, current: &mut Vec<String>, enabled: bool| {
        if enabled {
            out.extend(current.drain(..).map(|pattern| ExcludePattern {
                section: section.to_owned(),
                pattern,
            }));
        }
        current.clear();
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush(&section, &mut current, enabled);
            section = name.trim().to_owned();
            enabled = true;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "exclude" | "excludepkgs" => current.extend(
                value
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            ),
            "enabled" if section != "main" => {
                enabled = !matches!(value.trim(), "0" | "false" | "False" | "no")
            }
            _ => {}
        }
    }
    flush(&section, &mut current, enabled);
    out
}

/// A package of a dnf transaction table (`dnf upgrade --assumeno` output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    /// The table section: `Upgrading`, `Installing dependencies`, ...
    pub action: String,
    pub name: String,
    pub arch: String,
    pub evr: String,
    pub repo: String,
}

/// The rows of the transaction table dnf prints before it asks for confirmation. A name too
/// long for its column is printed alone on its line, the other columns on the next one.
pub fn parse_dnf_transaction(output: &str) -> Vec<TransactionRow> {
    let mut rows = Vec::new();
    let mut action: Option<String> = None;
    let mut pending_name: Option<String> = None;
    for line in output.lines() {
        if line.starts_with("Transaction Summary") || line.starts_with("Total") {
            action = None;
            continue;
        }
        if !line.starts_with(' ') {
            let t = line.trim_end();
            action = t
                .strip_suffix(':')
                .filter(|a| !a.is_empty() && !a.contains("  "))
                .map(str::to_owned);
            pending_name = None;
            continue;
        }
        let Some(act) = &action else {
            continue;
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        match (pending_name.take(), f.len()) {
            (None, 1) => pending_name = Some(f[0].to_owned()),
            (Some(name), n) if n >= 4 => rows.push(TransactionRow {
                action: act.clone(),
                name,
                arch: f[0].into(),
                evr: f[1].into(),
                repo: f[2].into(),
            }),
            (None, n) if n >= 5 => rows.push(TransactionRow {
                action: act.clone(),
                name: f[0].into(),
                arch: f[1].into(),
                evr: f[2].into(),
                repo: f[3].into(),
            }),
            _ => {}
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/dnf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn rpmvercmp_order_matches_rpm() {
        // Expected values printed by rpm 4.18 on this machine:
        //   rpm --eval "%{lua: print(rpm.vercmp('A','B'))}"
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1", "1.0~rc1", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1.0-1.el9", "1.0-1.el9_2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("1.01", "1.1", Equal),
            ("1.001", "1.1", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0.1", Less),
            ("1.a", "1.1", Less),
            ("a", "b", Less),
            ("1.0", "1.0.0", Less),
            ("1.0-1", "1.0", Greater),
            ("2.4.37-62.el9_4.4", "2.4.37-62.el9", Greater),
            ("5.14.0-427.13.1.el9_4", "5.14.0-427.22.1.el9_4", Less),
            ("1.0_1", "1.0.1", Equal),
            ("1..0", "1.0", Equal),
            ("10", "9", Greater),
            ("1.0+b", "1.0.b", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_rpm(a, b), Some(want), "{a} vs {b}");
            assert_eq!(compare_rpm(b, a), Some(want.reverse()), "{b} vs {a}");
        }
    }

    #[test]
    fn invalid_versions() {
        for v in ["", " ", "x:1.0", "1:", "1.0 2", "-1"] {
            assert!(RpmVersion::parse(v).is_err(), "{v:?}");
            assert_eq!(compare_rpm(v, "1.0"), None, "{v:?}");
        }
    }

    #[test]
    fn evr_formatting() {
        let cases = [
            (("", "1.0", "1"), "1.0-1"),
            (("0", "1.0", "1"), "1.0-1"),
            (("(none)", "1.0", "1"), "1.0-1"),
            (("2", "1.0", "1.el9"), "2:1.0-1.el9"),
            (("", "1.0", ""), "1.0"),
        ];
        for ((e, v, r), want) in cases {
            assert_eq!(format_evr(e, v, r), want);
        }
    }

    #[test]
    fn rpm_query_of_a_lab_host() {
        let entries = parse_rpm_query(&fixture("rpm-qa.tsv")).expect("parses");
        let find = |n: &str| entries.iter().find(|e| e.name == n).cloned();
        assert_eq!(entries.len(), 11);
        let ok = find("pw-ok").expect("pw-ok");
        assert_eq!(
            (ok.evr.as_str(), ok.arch.as_str(), ok.source.as_str()),
            ("1.0-1", "noarch", "pw-ok")
        );
        assert_eq!(ok.source_version, "1.0-1");
        assert!(ok.install_time > 1_600_000_000);
        let epoch = find("pw-epoch").expect("pw-epoch");
        assert_eq!(epoch.evr, "2:1.0-1");
        assert_eq!(epoch.source_version, "1.0-1");
        assert!(compare_rpm(&epoch.evr, "3:0.9-1") == Some(Ordering::Less));
        assert!(
            parse_rpm_query("a\tb\n").is_err(),
            "a short line is an error"
        );
    }

    #[test]
    fn source_names() {
        let cases = [
            (
                "openssl-3.0.7-27.el9.src.rpm",
                Some(("openssl", "3.0.7-27.el9")),
            ),
            (
                "kernel-5.14.0-427.13.1.el9_4.src.rpm",
                Some(("kernel", "5.14.0-427.13.1.el9_4")),
            ),
            (
                "python-dnf-plugins-core-4.3.0-13.el9.nosrc.rpm",
                Some(("python-dnf-plugins-core", "4.3.0-13.el9")),
            ),
            ("(none)", None),
            ("weird.src.rpm", None),
        ];
        for (srpm, want) in cases {
            let got = source_rpm_name(srpm);
            assert_eq!(
                got.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
                want,
                "{srpm}"
            );
        }
    }

    #[test]
    fn nevras() {
        let cases = [
            (
                "openssl-1:3.0.7-27.el9.x86_64",
                Some(("openssl", "1:3.0.7-27.el9", "x86_64")),
            ),
            ("pw-ok-2.0-1.noarch", Some(("pw-ok", "2.0-1", "noarch"))),
            ("pw-ok-0:2.0-1.noarch", Some(("pw-ok", "2.0-1", "noarch"))),
            ("nonsense", None),
        ];
        for (s, want) in cases {
            let got = parse_nevra(s);
            assert_eq!(
                got.as_ref()
                    .map(|n| (n.name.as_str(), n.evr.as_str(), n.arch.as_str())),
                want,
                "{s}"
            );
        }
    }

    #[test]
    fn repoquery_upgrades_of_a_lab_host() {
        let ups = parse_repoquery(&fixture("repoquery-upgrades.txt"));
        let find = |n: &str| {
            ups.iter()
                .find(|u| u.name == n)
                .map(|u| (u.evr.as_str(), u.arch.as_str(), u.repo.as_str()))
        };
        assert_eq!(ups.len(), 10, "one entry per package: {ups:#?}");
        // 1.5 and 2.0 of pw-ok are both listed; the newest wins. The epoch beats the version.
        assert_eq!(find("pw-ok"), Some(("2.0-1", "noarch", "lab")));
        assert_eq!(find("pw-epoch"), Some(("3:0.9-1", "noarch", "lab")));
        assert_eq!(find("pw-sec"), Some(("1.1-1", "noarch", "lab")));
        assert!(parse_repoquery("Last metadata expiration check: 0:00:01 ago\n").is_empty());
    }

    #[test]
    fn updateinfo_lists() {
        let entries = parse_updateinfo_list(&fixture("updateinfo-list.txt"));
        assert_eq!(entries[1].severity.as_deref(), Some("Important"));
        let sec: Vec<(&str, &str, bool)> = entries
            .iter()
            .map(|e| {
                (
                    e.advisory.as_str(),
                    e.package.name.as_str(),
                    e.is_security(),
                )
            })
            .collect();
        assert_eq!(
            sec,
            [
                ("PW-2026-0002", "pw-ok", false),
                ("PW-2026-0001", "pw-sec", true)
            ]
        );
        // dnf 4 on RHEL-family systems, severity form (documented format of `updateinfo list`).
        let synthetic = "RLSA-2024:2264 Important/Sec. openssl-1:3.0.7-27.el9.x86_64\nRLBA-2024:2300 bugfix       tzdata-2024a-2.el9.noarch\n";
        let e = parse_updateinfo_list(synthetic);
        assert_eq!(e.len(), 2);
        assert!(e[0].is_security());
        assert_eq!(e[0].severity.as_deref(), Some("Important"));
        assert_eq!(e[0].package.evr, "1:3.0.7-27.el9");
        assert!(!e[1].is_security());
        assert!(parse_updateinfo_list("").is_empty());
    }

    #[test]
    fn versionlock_lists() {
        let out = "Last metadata expiration check: 0:00:03 ago on Tue.\npw-held-0:1.0-1.*\n!pw-excluded-0:2.0-1.*\nopenssl-1:3.0.7-27.el9.*\n";
        assert_eq!(parse_versionlock_list(out), ["openssl", "pw-held"]);
    }

    #[test]
    fn rhel_family_and_releasever() {
        let like = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert!(is_rhel_family("rocky", &like("rhel centos fedora")));
        assert!(is_rhel_family("fedora", &[]));
        assert!(is_rhel_family("someclone", &like("rhel")));
        assert!(!is_rhel_family("debian", &[]));
        assert!(!is_rhel_family("ubuntu", &like("debian")));
        assert_eq!(releasever("9.4").as_deref(), Some("9"));
        assert_eq!(releasever("40").as_deref(), Some("40"));
        assert_eq!(releasever(""), None);
    }

    #[test]
    fn globs_as_dnf_excludes_match_them() {
        assert!(glob_match("pw-ok", "pw-ok"));
        assert!(glob_match("pw-*", "pw-ok"));
        assert!(glob_match("kernel*", "kernel-core"));
        assert!(glob_match("*ok", "pw-ok"));
        assert!(glob_match("pw-?k", "pw-ok"));
        assert!(glob_match("p*-*k", "pw-ok"));
        assert!(!glob_match("pw-ok", "pw-ok2"));
        assert!(!glob_match("pw-o", "pw-ok"));
        assert!(!glob_match("kernel*", "pw-kernel"));
    }

    #[test]
    fn excludes_per_section_and_disabled_repositories_left_out() {
        let conf = "[main]\ngpgcheck=1\nexclude=pw-ok, kernel*\n# exclude=commented\n[lab]\nbaseurl=http://x\nexcludepkgs=pw-a pw-b\n[off]\nenabled=0\nexclude=pw-c\n";
        let ex = parse_dnf_excludes(conf);
        let got: Vec<(&str, &str)> = ex
            .iter()
            .map(|e| (e.section.as_str(), e.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("main", "pw-ok"),
                ("main", "kernel*"),
                ("lab", "pw-a"),
                ("lab", "pw-b")
            ]
        );
        assert!(parse_dnf_excludes("[main]\nexclude=\n").is_empty());
    }

    #[test]
    fn transaction_table_of_a_captured_upgrade() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/dnf/install-ok.txt"
        ))
        .expect("fixture");
        let rows = parse_dnf_transaction(&text);
        assert_eq!(
            rows,
            [TransactionRow {
                action: "Upgrading".into(),
                name: "pw-ok".into(),
                arch: "noarch".into(),
                evr: "2.0-1".into(),
                repo: "lab".into(),
            }]
        );
        let wrapped = "Dependencies resolved.\n====\n Package  Arch  Version  Repository  Size\n====\nUpgrading:\n a-very-long-package-name-indeed\n                   noarch  2:1.0-1  lab  4.0 M\nInstalling dependencies:\n pw-lib  noarch  1.0-1  lab  5 k\n\nTransaction Summary\n====\nUpgrade  1 Package\n";
        let rows = parse_dnf_transaction(wrapped);
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.action.as_str(), r.name.as_str(), r.evr.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Upgrading", "a-very-long-package-name-indeed", "2:1.0-1"),
                ("Installing dependencies", "pw-lib", "1.0-1")
            ]
        );
    }
}
