//! The base Debian root every host overlays: built once with mmdebstrap from the machine's own
//! apt mirror, cached on disk (tarball and extracted tree), safe under concurrent callers.

use crate::util;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bump when the preparation of the extracted tree changes, so old caches are not reused.
const RECIPE: &str = "v1";
const SUITE: &str = "bookworm";
/// Longest we wait for another thread or process that is building the same base.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// A cached, extracted Debian bookworm root (`--variant=apt`, ca-certificates plus the
/// requested packages). Read-only by convention: hosts overlay it and never write to it.
#[derive(Debug, Clone)]
pub struct BaseRoot {
    dir: PathBuf,
    tarball: PathBuf,
    includes: Vec<String>,
}

impl BaseRoot {
    /// The base root with `includes` installed, building and caching it on first use (about a
    /// minute; later calls return at once). Safe to call from many threads and processes.
    pub fn get(includes: &[&str]) -> Result<BaseRoot> {
        let mut incs: Vec<String> = std::iter::once("ca-certificates")
            .chain(includes.iter().copied())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        incs.sort();
        incs.dedup();
        for i in &incs {
            if !i
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.:".contains(c))
            {
                bail!("invalid package name in include list: {i:?}");
            }
        }
        let key = {
            let mut h = Sha256::new();
            h.update(format!("{RECIPE}\n{SUITE}\n{}", incs.join(",")));
            hex::encode(h.finalize())[..16].to_string()
        };
        let cache = cache_dir();
        let base = BaseRoot {
            dir: cache.join(format!("base-{key}")),
            tarball: cache.join(format!("base-{key}.tar")),
            includes: incs,
        };
        if base.dir.is_dir() {
            return Ok(base);
        }
        fs::create_dir_all(&cache)
            .with_context(|| format!("creating lab cache {}", cache.display()))?;
        let _lock = lock(&cache.join(format!("base-{key}.lock")))?;
        if base.dir.is_dir() {
            // Someone else built it while we waited.
            return Ok(base);
        }
        base.build(&cache, &key)?;
        Ok(base)
    }

    /// The extracted root directory (an overlay lowerdir).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mmdebstrap tarball the directory was extracted from.
    pub fn tarball(&self) -> &Path {
        &self.tarball
    }

    /// The packages requested with `--include`, sorted.
    pub fn includes(&self) -> &[String] {
        &self.includes
    }

    /// Called with the lock held.
    fn build(&self, cache: &Path, key: &str) -> Result<()> {
        let started = Instant::now();
        let tmp_tar = cache.join(format!("base-{key}.tmp.tar"));
        let tmp_dir = cache.join(format!("base-{key}.tmp.d"));
        // Leftovers of a builder that died: we hold the lock, so nobody is using them.
        let _ = fs::remove_file(&tmp_tar);
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir)
                .with_context(|| format!("removing stale {}", tmp_dir.display()))?;
        }
        if !self.tarball.is_file() {
            let mirror = debian_mirror()?;
            tracing::info!(includes = %self.includes.join(","), %mirror, "building lab base root with mmdebstrap");
            util::run(
                Command::new("mmdebstrap")
                    .arg("--variant=apt")
                    .arg(format!("--include={}", self.includes.join(",")))
                    .arg(SUITE)
                    .arg(&tmp_tar)
                    .arg(&mirror),
                BUILD_TIMEOUT,
            )?;
            fs::rename(&tmp_tar, &self.tarball).context("renaming base tarball into place")?;
        }
        fs::create_dir(&tmp_dir).with_context(|| format!("mkdir {}", tmp_dir.display()))?;
        util::run(
            Command::new("tar")
                .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
                .arg(&self.tarball)
                .arg("-C")
                .arg(&tmp_dir),
            BUILD_TIMEOUT,
        )?;
        prepare(&tmp_dir)?;
        fs::rename(&tmp_dir, &self.dir).context("renaming base root into place")?;
        tracing::info!(dir = %self.dir.display(), elapsed = ?started.elapsed(), "lab base root ready");
        Ok(())
    }
}

/// Where base roots are cached: `$PATCHWARDEN_LAB_CACHE` or `/var/cache/patchwarden-lab`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("PATCHWARDEN_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/patchwarden-lab"))
}

/// Make an extracted root fit to be a lab host.
fn prepare(root: &Path) -> Result<()> {
    // Hosts must never reach the internet: only repositories a test configures (on loopback).
    let apt = root.join("etc/apt");
    let _ = fs::remove_file(apt.join("sources.list"));
    if let Ok(entries) = fs::read_dir(apt.join("sources.list.d")) {
        for e in entries.flatten() {
            fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    for d in ["proc", "dev", "sys", "run", "tmp", "etc/patchwarden-lab"] {
        fs::create_dir_all(root.join(d)).with_context(|| format!("mkdir {d} in base"))?;
    }
    // As in container images: package scripts must not try to start services.
    let policy = root.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n").context("writing policy-rc.d")?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Exclusive flock on `path`, polled so the wait is bounded. Released when the file drops.
fn lock(path: &Path) -> Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(f),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if Instant::now() >= deadline {
                    bail!(
                        "timed out after {LOCK_WAIT:?} waiting for {} (another base build?)",
                        path.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("flock {}", path.display())),
        }
    }
}

/// The Debian mirror the machine's own apt uses for bookworm (`$PATCHWARDEN_LAB_MIRROR`
/// overrides). Read from /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}.
pub fn debian_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("PATCHWARDEN_LAB_MIRROR") {
        if !m.is_empty() {
            return Ok(m);
        }
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in &files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        let found = match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_from_deb822(&text, SUITE),
            Some("list") => mirror_from_one_line(&text, SUITE),
            _ => None,
        };
        if let Some(m) = found {
            return Ok(m);
        }
    }
    bail!(
        "no `deb` source for suite {SUITE} found in {}; set PATCHWARDEN_LAB_MIRROR",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `deb [options] URL SUITE COMPONENTS...` lines.
fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let rest = line.strip_prefix("deb ")?.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']')?.1.trim_start()
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        let url = words.next()?;
        (words.next()? == suite).then(|| url.to_string())
    })
}

/// deb822 stanzas: `Types: deb`, `Suites:` containing SUITE, first of `URIs:`.
fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Option<String> {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let types_ok = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let suite_ok = field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
        if enabled && types_ok && suite_ok {
            if let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(String::from))
            {
                return Some(uri);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_between_open_files() -> Result<()> {
        // flock belongs to the open file description: two threads (or processes) opening
        // the lock file separately exclude each other.
        let t = tempfile::tempdir()?;
        let p = t.path().join("x.lock");
        let held = lock(&p)?;
        let other = fs::OpenOptions::new().write(true).open(&p)?;
        let busy = rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert_eq!(busy, Err(rustix::io::Errno::WOULDBLOCK));
        drop(held);
        drop(lock(&p)?);
        Ok(())
    }

    #[test]
    fn mirror_from_sources_files() {
        // (kind, file text, expected mirror)
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "sources",
                // As on this lab machine (/etc/apt/sources.list.d/debian.sources).
                "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n",
                Some("http://deb.debian.org/debian"),
            ),
            (
                "sources",
                "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\nTypes: deb-src deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n",
                Some("http://mirror.example/debian"),
            ),
            (
                "sources",
                "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n",
                None,
            ),
            (
                "list",
                "# comment\ndeb http://sec.example/ bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n",
                Some("http://mirror.example/debian"),
            ),
            ("list", "deb-src http://src.example/debian bookworm main\n", None),
        ];
        for (kind, text, want) in cases {
            let got = match *kind {
                "sources" => mirror_from_deb822(text, "bookworm"),
                _ => mirror_from_one_line(text, "bookworm"),
            };
            assert_eq!(got.as_deref(), *want, "{kind}: {text}");
        }
    }
}
