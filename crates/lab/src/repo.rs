//! A flat apt repository in a temporary folder, indexed with apt-ftparchive and served over
//! HTTP on 127.0.0.1; it can be taken down and brought back on the same port. Optionally
//! signed (InRelease, throwaway gpg key), with ways to break it: tamper with a file after
//! signing, remove a file, publish an expired Release.

use crate::deb::DebPackage;
use crate::serve::StaticServer;
use crate::util;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const INDEX_TIMEOUT: Duration = Duration::from_secs(120);

/// A local repository for `deb [trusted=yes] http://127.0.0.1:PORT/ ./`, or, signed, for
/// `deb [signed-by=/etc/apt/keyrings/lab-PORT.gpg] http://127.0.0.1:PORT/ ./`.
#[derive(Debug)]
pub struct AptRepo {
    tmp: tempfile::TempDir,
    served: PathBuf,
    http: StaticServer,
    signing: Option<Signing>,
    valid_until: Mutex<Option<String>>,
}

/// A throwaway gpg key in its own GNUPGHOME inside the repository's temporary folder.
#[derive(Debug)]
struct Signing {
    home: PathBuf,
    fingerprint: String,
    /// The public key, binary (a keyring file for `signed-by=`).
    keyring: Vec<u8>,
}

impl Signing {
    fn create(home: PathBuf) -> Result<Signing> {
        fs::create_dir(&home)?;
        fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let gpg = |args: &[&str]| -> Result<std::process::Output> {
            util::run(
                Command::new("gpg")
                    .arg("--homedir")
                    .arg(&home)
                    .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                    .args(args),
                INDEX_TIMEOUT,
            )
        };
        gpg(&[
            "--quick-gen-key",
            "Patchwarden Lab <lab@patchwarden.invalid>",
            "ed25519",
            "sign",
            "never",
        ])
        .context("generating the repository's gpg key")?;
        let listing = gpg(&["--with-colons", "--list-secret-keys"])?;
        let fingerprint = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no fingerprint in gpg's key listing"))?;
        let keyring = gpg(&["--export", &fingerprint])?.stdout;
        if keyring.is_empty() {
            bail!("gpg exported an empty public key");
        }
        Ok(Signing {
            home,
            fingerprint,
            keyring,
        })
    }

    /// `gpg --clearsign` of `release` into `out` (an InRelease file).
    fn clearsign(&self, release: &Path, out: &Path) -> Result<()> {
        util::run(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&self.home)
                .args([
                    "--batch",
                    "--yes",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(["--local-user", &self.fingerprint, "--digest-algo", "SHA256"])
                .arg("--output")
                .arg(out)
                .arg("--clearsign")
                .arg(release),
            INDEX_TIMEOUT,
        )
        .map(|_| ())
        .context("signing Release")
    }
}

impl Drop for Signing {
    fn drop(&mut self) {
        // gpg started an agent for this home directory; stop it (by its home, not by name).
        let _ = util::output(
            Command::new("gpgconf")
                .arg("--homedir")
                .arg(&self.home)
                .args(["--kill", "gpg-agent"]),
            Duration::from_secs(10),
        );
    }
}

impl AptRepo {
    /// An empty, published repository, already served on a free loopback port.
    pub fn new() -> Result<AptRepo> {
        let tmp = tempfile::Builder::new()
            .prefix("pw-lab-repo-")
            .tempdir()
            .context("repository directory")?;
        let served = tmp.path().join("repo");
        fs::create_dir(&served)?;
        let served = served.canonicalize()?;
        let mut repo = AptRepo {
            tmp,
            http: StaticServer::new(served.clone(), "apt-repo"),
            served,
            signing: None,
            valid_until: Mutex::new(None),
        };
        repo.publish()?;
        repo.start()?;
        Ok(repo)
    }

    /// Like [`AptRepo::new`], but signed: every [`AptRepo::publish`] clearsigns Release into
    /// InRelease with a throwaway ed25519 key (its own GNUPGHOME, in the repository's
    /// temporary folder). Hosts need [`AptRepo::install_key`] and the signed
    /// [`AptRepo::source_line`].
    pub fn new_signed() -> Result<AptRepo> {
        let mut repo = AptRepo::new()?;
        repo.signing = Some(Signing::create(repo.tmp.path().join("gnupg"))?);
        repo.publish()?;
        Ok(repo)
    }

    pub fn is_signed(&self) -> bool {
        self.signing.is_some()
    }

    /// Where [`AptRepo::install_key`] puts the public key inside a host.
    pub fn keyring_path_in_host(&self) -> String {
        format!("/etc/apt/keyrings/lab-{}.gpg", self.http.port())
    }

    /// The binary public key of a signed repository.
    pub fn keyring(&self) -> Option<&[u8]> {
        self.signing.as_ref().map(|s| s.keyring.as_slice())
    }

    /// Writes the public key of a signed repository into `host` (at
    /// [`AptRepo::keyring_path_in_host`]).
    pub fn install_key(&self, host: &crate::Host) -> Result<()> {
        let key = self
            .keyring()
            .ok_or_else(|| anyhow!("repository {} is not signed", self.url()))?;
        host.write_file(&self.keyring_path_in_host(), key, 0o644)
    }

    /// A `Valid-Until:` date (RFC 1123, e.g. `Sat, 01 Jan 2000 00:00:00 UTC`) for the next
    /// publications' Release; in the past, apt calls the Release expired. `None` removes it.
    pub fn set_valid_until(&self, date: Option<&str>) {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = date.map(str::to_owned);
    }

    /// Replaces the first `from` by `to` in a served file (e.g. `Packages`) without
    /// republishing or re-signing. With `from` and `to` of the same length the size still
    /// matches the Release and only the hashes differ (apt: `Hash Sum mismatch`).
    pub fn tamper(&self, file: &str, from: &str, to: &str) -> Result<()> {
        let p = self.served.join(file);
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        if !text.contains(from) {
            bail!("{} does not contain {from:?}", p.display());
        }
        fs::write(&p, text.replacen(from, to, 1))
            .with_context(|| format!("tampering with {}", p.display()))
    }

    /// Removes a served file (e.g. `Packages`: the index then answers 404).
    pub fn remove_file(&self, file: &str) -> Result<()> {
        let p = self.served.join(file);
        fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))
    }

    /// The served folder.
    pub fn dir(&self) -> &Path {
        &self.served
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http.port())
    }

    /// `deb [trusted=yes] http://127.0.0.1:PORT/ ./`, or for a signed repository
    /// `deb [signed-by=KEYRING] http://127.0.0.1:PORT/ ./`.
    pub fn source_line(&self) -> String {
        if self.is_signed() {
            format!(
                "deb [signed-by={}] {} ./",
                self.keyring_path_in_host(),
                self.url()
            )
        } else {
            format!("deb [trusted=yes] {} ./", self.url())
        }
    }

    /// Build `pkg` into the repository (visible to apt after [`AptRepo::publish`]).
    pub fn add(&self, pkg: &DebPackage) -> Result<PathBuf> {
        pkg.build(&self.served)
    }

    /// Copy an existing .deb into the repository.
    pub fn add_deb(&self, deb: &Path) -> Result<PathBuf> {
        let name = deb
            .file_name()
            .ok_or_else(|| anyhow!("no file name in {}", deb.display()))?;
        let dest = self.served.join(name);
        fs::copy(deb, &dest).with_context(|| format!("copying {}", deb.display()))?;
        Ok(dest)
    }

    /// Remove a package's .deb (takes effect at the next publish).
    pub fn remove(&self, pkg: &DebPackage) -> Result<()> {
        let p = self.served.join(pkg.file_name());
        fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))
    }

    /// (Re)write Packages and Release from the .debs present.
    pub fn publish(&self) -> Result<()> {
        let packages = util::run(
            Command::new("apt-ftparchive")
                .args(["packages", "."])
                .current_dir(&self.served),
            INDEX_TIMEOUT,
        )?;
        self.replace("Packages", &packages.stdout)?;
        // Release must not list itself: generate it with no Release present, write it
        // outside the served folder, then move it in.
        let _ = fs::remove_file(self.served.join("Release"));
        let release = util::run(
            Command::new("apt-ftparchive")
                .args(["release", "."])
                .current_dir(&self.served),
            INDEX_TIMEOUT,
        )?;
        let mut release = String::from_utf8_lossy(&release.stdout).into_owned();
        if let Some(date) = self
            .valid_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
        {
            release = with_valid_until(&release, date);
        }
        self.replace("Release", release.as_bytes())?;
        let _ = fs::remove_file(self.served.join("InRelease"));
        if let Some(signing) = &self.signing {
            let tmp = self.tmp.path().join("InRelease.tmp");
            signing.clearsign(&self.served.join("Release"), &tmp)?;
            fs::rename(&tmp, self.served.join("InRelease")).context("installing InRelease")?;
        }
        tracing::debug!(repo = %self.url(), signed = self.is_signed(), "published");
        Ok(())
    }

    fn replace(&self, name: &str, contents: &[u8]) -> Result<()> {
        let tmp = self.tmp.path().join(format!("{name}.tmp"));
        fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, self.served.join(name)).with_context(|| format!("installing {name}"))
    }

    pub fn is_running(&self) -> bool {
        self.http.is_running()
    }

    /// Requests served so far, as `METHOD /path STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.http.requests()
    }

    /// Serves again (on the same port once one was chosen). No-op if running.
    pub fn start(&mut self) -> Result<()> {
        self.http.start()
    }

    /// Takes the repository down: connections to its port are refused until
    /// [`AptRepo::start`].
    pub fn stop(&mut self) -> Result<()> {
        self.http.stop()
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %format!("{e:#}"), "stopping repository");
        }
    }
}

/// `release` with a `Valid-Until:` field after its `Date:` (replacing any other).
fn with_valid_until(release: &str, date: &str) -> String {
    let mut out = String::new();
    for line in release.lines().filter(|l| !l.starts_with("Valid-Until:")) {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Date:") {
            out.push_str(&format!("Valid-Until: {date}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::resolve;

    #[test]
    fn valid_until_follows_the_date() {
        let r = with_valid_until(
            "Date: Tue, 25 Nov 2026 10:00:00 +0000\nValid-Until: x\nMD5Sum:\n",
            "Sat, 01 Jan 2000 00:00:00 UTC",
        );
        assert_eq!(
            r,
            "Date: Tue, 25 Nov 2026 10:00:00 +0000\nValid-Until: Sat, 01 Jan 2000 00:00:00 UTC\nMD5Sum:\n"
        );
    }

    #[test]
    fn resolve_stays_inside_root() -> Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path().join("repo");
        fs::create_dir(&root)?;
        let root = root.canonicalize()?;
        fs::write(root.join("Packages"), "x")?;
        fs::write(root.join("a_1:2_all.deb"), "x")?;
        fs::write(t.path().join("secret"), "x")?;
        std::os::unix::fs::symlink("../secret", root.join("link"))?;
        let cases = [
            ("/Packages", true),
            ("/./Packages?x=1", true),
            ("/a_1%3a2_all.deb", true),
            ("/../secret", false),
            ("/%2e%2e/secret", false),
            ("/link", false),
            ("/", false),
            ("/missing", false),
            ("/%zz", false),
        ];
        for (url, ok) in cases {
            assert_eq!(resolve(&root, url).is_some(), ok, "{url}");
        }
        Ok(())
    }
}
