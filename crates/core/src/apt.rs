//! Parsers for the output of dpkg and apt command-line tools (run with `LC_ALL=C`).
//! Pure functions over text: the agent runs the commands, this module reads what they said.

/// The `dpkg-query -W -f` format that [`parse_dpkg_query`] reads: one tab-separated line per
/// package.
pub const DPKG_QUERY_FORMAT: &str =
    "${Package}\t${source:Package}\t${Version}\t${source:Version}\t${Architecture}\t${db:Status-Abbrev}\n";

/// One line of `dpkg-query -W -f="$DPKG_QUERY_FORMAT"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgEntry {
    pub name: String,
    /// Source package name; the binary name when dpkg reports none.
    pub source: String,
    /// Empty when the package is known but not installed (status `un`).
    pub version: String,
    /// Source version; the binary version when dpkg reports none.
    pub source_version: String,
    pub arch: String,
    /// dpkg's status abbreviation, trimmed: `ii`, `hi`, `iF`, `rc`, `iU`, ...
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
    pub text: String,
}

/// Parses `dpkg-query -W -f="$DPKG_QUERY_FORMAT"` output. Blank lines are skipped; a line with
/// the wrong number of fields is an error (the format string and the parser disagree).
pub fn parse_dpkg_query(output: &str) -> Result<Vec<DpkgEntry>, ParseError> {
    let mut entries = Vec::new();
    for (i, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, source, version, source_version, arch, status] = fields[..] else {
            return Err(ParseError {
                line: i + 1,
                reason: format!("expected 6 tab-separated fields, found {}", fields.len()),
                text: line.to_owned(),
            });
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(ParseError {
                line: i + 1,
                reason: "empty package name".into(),
                text: line.to_owned(),
            });
        }
        let version = version.trim();
        let source = source.trim();
        let source_version = source_version.trim();
        entries.push(DpkgEntry {
            name: name.to_owned(),
            source: if source.is_empty() { name } else { source }.to_owned(),
            version: version.to_owned(),
            source_version: if source_version.is_empty() {
                version
            } else {
                source_version
            }
            .to_owned(),
            arch: arch.trim().to_owned(),
            status: status.trim().to_owned(),
        });
    }
    Ok(entries)
}

/// The three characters of a dpkg status abbreviation: desired action, package state, error
/// flag (`dpkg-query(1)`, "Package states").
fn status_parts(status: &str) -> (char, char, char) {
    let mut c = status.trim().chars();
    (
        c.next().unwrap_or(' '),
        c.next().unwrap_or(' '),
        c.next().unwrap_or(' '),
    )
}

/// Installed and fully configured, with no error flag: `ii`, or `hi` (held, installed).
pub fn is_clean_status(status: &str) -> bool {
    let (want, state, err) = status_parts(status);
    matches!(want, 'i' | 'h') && state == 'i' && err == ' '
}

/// The package's files are on disk (configured or not): anything but not-installed (`n`) and
/// config-files-only (`c`).
pub fn is_present_status(status: &str) -> bool {
    let (_, state, _) = status_parts(status);
    matches!(state, 'i' | 'U' | 'F' | 'H' | 'W' | 't')
}

/// Left half-done by dpkg (half-installed, unpacked, half-configured, triggers pending or
/// awaited) or flagged reinstall-required.
pub fn is_broken_status(status: &str) -> bool {
    let (_, state, err) = status_parts(status);
    matches!(state, 'U' | 'F' | 'H' | 'W' | 't') || err == 'R'
}

/// One `Inst` line of an `apt-get -s` simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedInstall {
    pub name: String,
    /// Absent for a new install.
    pub old_version: Option<String>,
    pub new_version: String,
    /// As apt prints them, e.g. `Debian:12.15/oldstable`, `Debian-Security:12/oldstable-security`.
    pub origins: Vec<String>,
    pub arch: String,
    /// Some origin is a security archive.
    pub security: bool,
}

/// Whether an origin as apt prints it names a security archive (`Debian-Security:12/...`,
/// `Ubuntu:22.04/jammy-security`, a label `Security`).
pub fn is_security_origin(origin: &str) -> bool {
    let o = origin.to_ascii_lowercase();
    o.contains("-security")
        || o.contains("debian-security")
        || o.split([':', '/', ' ']).any(|p| p == "security")
}

/// Parses the `Inst NAME [OLD] (NEW ORIGIN, ORIGIN [ARCH]) ...` lines of `apt-get -s`.
/// Lines that do not have this shape are ignored.
pub fn parse_apt_simulation(output: &str) -> Vec<SimulatedInstall> {
    output.lines().filter_map(parse_inst_line).collect()
}

fn parse_inst_line(line: &str) -> Option<SimulatedInstall> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, mut rest) = rest.split_once(' ')?;
    let mut old_version = None;
    if let Some(r) = rest.strip_prefix('[') {
        let (old, r) = r.split_once(']')?;
        old_version = Some(old.to_owned());
        rest = r.trim_start();
    }
    let inner = rest.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    let (new_version, rest) = inner.split_once(' ').unwrap_or((inner, ""));
    // The architecture is the trailing `[arch]`; origins come before it, comma-separated.
    let (origins_text, arch) = match rest
        .rfind(" [")
        .or_else(|| rest.starts_with('[').then_some(0))
    {
        Some(i) => {
            let a = rest[i..]
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']');
            (&rest[..i], a)
        }
        None => (rest, ""),
    };
    let origins: Vec<String> = origins_text
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    Some(SimulatedInstall {
        name: name.to_owned(),
        old_version,
        new_version: new_version.to_owned(),
        security: origins.iter().any(|o| is_security_origin(o)),
        origins,
        arch: arch.to_owned(),
    })
}

/// Package names from `Remv NAME [VERSION]` lines of `apt-get -s`.
pub fn parse_apt_simulation_removals(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Packages listed under `The following packages have been kept back:`. apt leaves them out
/// of the `Inst` lines, and exits 0.
pub fn parse_kept_back(output: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in output.lines() {
        if line.starts_with("The following packages have been kept back:") {
            in_block = true;
        } else if in_block && line.starts_with("  ") {
            out.extend(line.split_whitespace().map(str::to_owned));
        } else {
            in_block = false;
        }
    }
    out
}

/// The fields of /etc/os-release that Patchwarden uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    /// VERSION_CODENAME, else UBUNTU_CODENAME, else empty.
    pub codename: String,
    pub pretty_name: String,
    /// ID_LIKE split on whitespace.
    pub id_like: Vec<String>,
}

/// Parses os-release(5): `KEY=value` lines, values optionally in single or double quotes
/// (double-quoted values may escape `"`, `\`, `$` and `` ` `` with a backslash).
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    let mut ubuntu_codename = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" => os.codename = value,
            "UBUNTU_CODENAME" => ubuntu_codename = value,
            "PRETTY_NAME" => os.pretty_name = value,
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_owned).collect(),
            _ => {}
        }
    }
    if os.codename.is_empty() {
        os.codename = ubuntu_codename;
    }
    os
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_owned();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    v.to_owned()
}

/// The `Candidate:` version of the first package in `apt-cache policy` output; `None` when
/// absent or `(none)`.
pub fn parse_apt_cache_policy_candidate(output: &str) -> Option<String> {
    parse_apt_cache_policy(output).into_iter().next()?.candidate
}

/// One package of `apt-cache policy NAME...` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    pub name: String,
    pub installed: Option<String>,
    pub candidate: Option<String>,
}

/// Parses `apt-cache policy` for one or several packages. A package apt does not know at all
/// prints nothing (and exits 0): it is simply missing from the result.
pub fn parse_apt_cache_policy(output: &str) -> Vec<PolicyEntry> {
    let mut out: Vec<PolicyEntry> = Vec::new();
    let version = |v: &str| {
        let v = v.trim();
        (!v.is_empty() && v != "(none)").then(|| v.to_owned())
    };
    for line in output.lines() {
        if !line.starts_with(' ') {
            if let Some(name) = line.trim_end().strip_suffix(':') {
                out.push(PolicyEntry {
                    name: name.to_owned(),
                    installed: None,
                    candidate: None,
                });
            }
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let t = line.trim_start();
        if let Some(v) = t.strip_prefix("Installed:") {
            cur.installed = version(v);
        } else if let Some(v) = t.strip_prefix("Candidate:") {
            cur.candidate = version(v);
        }
    }
    out
}

/// Names printed by `apt-mark showhold`, one per line.
pub fn parse_showhold(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/apt/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The stdout section of a fixture with a `# command`/`--- stdout`/`--- stderr` header.
    fn stdout_of(name: &str) -> String {
        let text = fixture(name);
        let start = text.find("--- stdout\n").map(|i| i + 11).unwrap_or(0);
        let end = text.find("--- stderr\n").unwrap_or(text.len());
        text[start..end].to_owned()
    }

    #[test]
    fn dpkg_query_host_sample() {
        // Captured on the Debian 12 host; see fixtures/apt/README.md.
        let entries = parse_dpkg_query(&fixture("dpkg-query-host-sample.tsv")).expect("parse");
        let bash = entries.iter().find(|e| e.name == "bash").expect("bash");
        assert_eq!(
            bash,
            &DpkgEntry {
                name: "bash".into(),
                source: "bash".into(),
                version: "5.2.15-2+b8".into(),
                source_version: "5.2.15-2".into(),
                arch: "amd64".into(),
                status: "ii".into(),
            }
        );
        let libc = entries.iter().find(|e| e.name == "libc6").expect("libc6");
        assert_eq!(libc.source, "glibc");
        let ssh = entries
            .iter()
            .find(|e| e.name == "openssh-client")
            .expect("ssh");
        assert_eq!(ssh.version, "1:9.2p1-2+deb12u6");
        assert!(entries.iter().all(|e| is_clean_status(&e.status)));
    }

    #[test]
    fn dpkg_query_lab_with_half_configured_and_held() {
        // Captured in a lab chroot after killing dpkg in the middle of pw-slow's postinst.
        let entries = parse_dpkg_query(&fixture("dpkg-query-lab-interrupted.tsv")).expect("parse");
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .expect(n)
                .status
                .clone()
        };
        assert_eq!(get("pw-slow"), "iF");
        assert_eq!(get("pw-held"), "hi");
        assert!(!is_clean_status("iF"));
        assert!(is_broken_status("iF"));
        assert!(is_clean_status("hi"));
        let broken: Vec<_> = entries
            .iter()
            .filter(|e| is_broken_status(&e.status))
            .map(|e| &e.name)
            .collect();
        assert_eq!(broken, ["pw-slow"]);
    }

    #[test]
    fn dpkg_query_defaults_and_errors() {
        let e = parse_dpkg_query("foo\t\t1.0\t\tamd64\tii \n\n").expect("parse");
        assert_eq!(e[0].source, "foo");
        assert_eq!(e[0].source_version, "1.0");
        let err = parse_dpkg_query("ok\tok\t1\t1\tall\tii\nbroken line\n").expect_err("bad");
        assert_eq!(err.line, 2);
    }

    #[test]
    fn status_table() {
        // (status, clean, present, broken)
        let cases = [
            ("ii", true, true, false),
            ("ii ", true, true, false),
            ("hi", true, true, false),
            ("iF", false, true, true),
            ("iU", false, true, true),
            ("iH", false, true, true),
            ("iW", false, true, true),
            ("it", false, true, true),
            ("iiR", false, true, true),
            ("rc", false, false, false),
            ("un", false, false, false),
            ("pn", false, false, false),
            ("", false, false, false),
        ];
        for (s, clean, present, broken) in cases {
            assert_eq!(is_clean_status(s), clean, "clean {s:?}");
            assert_eq!(is_present_status(s), present, "present {s:?}");
            assert_eq!(is_broken_status(s), broken, "broken {s:?}");
        }
    }

    #[test]
    fn simulation_of_the_host() {
        // `apt-get -s dist-upgrade` on the Debian 12 host (112 upgrades).
        let sims = parse_apt_simulation(&fixture("sim-dist-upgrade-bookworm.txt"));
        assert_eq!(sims.len(), 112);
        let bf = sims
            .iter()
            .find(|s| s.name == "base-files")
            .expect("base-files");
        assert_eq!(bf.old_version.as_deref(), Some("12.4+deb12u11"));
        assert_eq!(bf.new_version, "12.4+deb12u15");
        assert_eq!(bf.origins, ["Debian:12.15/oldstable"]);
        assert_eq!(bf.arch, "amd64");
        assert!(!bf.security);
        let gc = sims
            .iter()
            .find(|s| s.name == "libgcrypt20")
            .expect("libgcrypt20");
        assert_eq!(
            gc.origins,
            [
                "Debian:12.15/oldstable",
                "Debian-Security:12/oldstable-security"
            ]
        );
        assert!(gc.security);
        let ihs = sims
            .iter()
            .find(|s| s.name == "init-system-helpers")
            .expect("ish");
        assert_eq!(ihs.arch, "all");
        // Trailing `[libpam-modules:amd64 on ...]` annotations do not confuse the parser.
        let pam = sims
            .iter()
            .find(|s| s.name == "libpam-modules-bin")
            .expect("pam");
        assert_eq!(pam.new_version, "1.5.2-6+deb12u2");
        assert_eq!(pam.arch, "amd64");
        assert!(sims.iter().any(|s| s.name == "liblzma5" && s.security));
    }

    #[test]
    fn simulation_lab_kept_back() {
        let out = stdout_of("sim-upgrade-kept-back.txt");
        let sims = parse_apt_simulation(&out);
        let names: Vec<_> = sims.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pw-big",
                "pw-clash-a",
                "pw-ok",
                "pw-postfail",
                "pw-reboot",
                "pw-slow"
            ]
        );
        assert_eq!(sims[0].origins, ["localhost"]);
        assert_eq!(parse_kept_back(&out), ["pw-dep", "pw-held"]);
    }

    #[test]
    fn simulation_synthetic_shapes() {
        let s = parse_apt_simulation(
            "Inst newpkg (1.0 Debian:12.5/stable [amd64])\nRemv oldpkg [2.0]\nInst x [1] (2 Ubuntu:22.04/jammy-security, Ubuntu:22.04/jammy-updates [arm64])\ngarbage\nInst",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].old_version, None);
        assert!(s[1].security);
        assert_eq!(s[1].arch, "arm64");
        assert_eq!(
            parse_apt_simulation_removals("Remv oldpkg [2.0]\n"),
            ["oldpkg"]
        );
    }

    #[test]
    fn os_release_files() {
        let host = parse_os_release(&fixture("os-release-debian12"));
        assert_eq!(
            host,
            OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                codename: "bookworm".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
                id_like: vec![],
            }
        );
        // Ubuntu 22.04's layout (typed from its published /etc/os-release, not captured here).
        let ubuntu = parse_os_release(
            "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=jammy\n",
        );
        assert_eq!(ubuntu.codename, "jammy");
        assert_eq!(ubuntu.id_like, ["debian"]);
        let rocky = parse_os_release("ID='rocky'\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"A \\\"quoted\\\" name\"\n");
        assert_eq!(rocky.id, "rocky");
        assert_eq!(rocky.id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(rocky.pretty_name, "A \"quoted\" name");
    }

    #[test]
    fn cache_policy() {
        assert_eq!(
            parse_apt_cache_policy_candidate(&stdout_of("policy-held.txt")).as_deref(),
            Some("2.0")
        );
        assert_eq!(
            parse_apt_cache_policy_candidate(&stdout_of("policy-missing.txt")),
            None
        );
        assert_eq!(
            parse_apt_cache_policy_candidate("foo:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        let multi = parse_apt_cache_policy(&stdout_of("policy-multi.txt"));
        assert_eq!(
            multi,
            [
                PolicyEntry {
                    name: "pw-held".into(),
                    installed: Some("1.0".into()),
                    candidate: Some("2.0".into())
                },
                PolicyEntry {
                    name: "pw-ok".into(),
                    installed: Some("2.0".into()),
                    candidate: Some("2.0".into())
                },
            ]
        );
        let host = parse_apt_cache_policy(&fixture("policy-host-security.txt"));
        assert_eq!(host[1].candidate.as_deref(), Some("1:9.2p1-2+deb12u10"));
        assert_eq!(parse_showhold(&stdout_of("showhold.txt")), ["pw-held"]);
    }
}
