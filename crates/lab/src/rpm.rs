//! rpm hosts for the lab: tiny noarch rpm packages built with `rpmbuild -bb`, a repository
//! indexed with `createrepo_c` and served over loopback HTTP, and the steps that make a Debian
//! overlay host (with dnf and rpm installed) present itself as Rocky Linux 9.

use crate::serve::StaticServer;
use crate::util;
use crate::{BaseRoot, Host};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// The packages an rpm host's base root has on top of the Debian base (`dnf-plugins-core`
/// brings the versionlock plugin, the usual way to hold an rpm package).
pub const RPM_BASE_INCLUDES: &[&str] = &["procps", "dnf", "dnf-plugins-core", "rpm"];

/// The name of the package every lab rpm host installs first. It provides `/bin/sh`: without
/// it rpm's database has no provider for the `Requires(post): /bin/sh` of every package with a
/// scriptlet, and dnf skips such packages while still exiting 0.
pub const SH_PROVIDER: &str = "pw-lab-sh";

/// The cached base root for rpm hosts.
pub fn rpm_base() -> Result<BaseRoot> {
    BaseRoot::get(RPM_BASE_INCLUDES)
}

/// A noarch rpm package description; [`RpmPackage::build`] turns it into
/// `NAME-VERSION-RELEASE.noarch.rpm`.
#[derive(Debug, Clone)]
pub struct RpmPackage {
    name: String,
    epoch: Option<u32>,
    version: String,
    release: String,
    tags: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    scripts: Vec<(&'static str, String)>,
}

impl RpmPackage {
    /// Release 1, no epoch.
    pub fn new(name: &str, version: &str) -> RpmPackage {
        RpmPackage {
            name: name.to_owned(),
            epoch: None,
            version: version.to_owned(),
            release: "1".to_owned(),
            tags: Vec::new(),
            files: Vec::new(),
            scripts: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn release(mut self, release: &str) -> Self {
        self.release = release.to_owned();
        self
    }

    pub fn epoch(mut self, epoch: u32) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// `[EPOCH:]VERSION-RELEASE`, as rpm and the agent write it.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(e) if e != 0 => format!("{e}:{}-{}", self.version, self.release),
            _ => format!("{}-{}", self.version, self.release),
        }
    }

    /// `NAME-VERSION-RELEASE.noarch.rpm`
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.noarch.rpm", self.name, self.version, self.release)
    }

    /// `Requires:` (e.g. `"pw-missing >= 1"`); one tag per call.
    pub fn requires(self, rel: &str) -> Self {
        self.tag("Requires", rel)
    }

    pub fn provides(self, rel: &str) -> Self {
        self.tag("Provides", rel)
    }

    pub fn conflicts(self, rel: &str) -> Self {
        self.tag("Conflicts", rel)
    }

    /// Any other preamble tag.
    pub fn tag(mut self, name: &str, value: &str) -> Self {
        self.tags.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A `%post` scriptlet (shell; a `#!` first line is dropped).
    pub fn post(self, script: &str) -> Self {
        self.script("post", script)
    }

    /// A `%pre` scriptlet.
    pub fn pre(self, script: &str) -> Self {
        self.script("pre", script)
    }

    fn script(mut self, kind: &'static str, script: &str) -> Self {
        self.scripts.retain(|(k, _)| *k != kind);
        self.scripts.push((kind, script.to_owned()));
        self
    }

    /// A file at an absolute path inside the package.
    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((path.to_owned(), contents.as_ref().to_vec()));
        self
    }

    fn spec(&self, staging: &Path) -> Result<String> {
        let clean = |what: &str, v: &str| -> Result<()> {
            if v.is_empty() || v.contains(['\n', '%']) {
                bail!("invalid rpm {what} {v:?}");
            }
            Ok(())
        };
        clean("name", &self.name)?;
        clean("version", &self.version)?;
        clean("release", &self.release)?;
        if self.version.contains(['-', ' ']) || self.release.contains(['-', ' ']) {
            bail!("an rpm version or release cannot contain '-' or spaces");
        }
        let mut s = format!(
            "Name: {}\nVersion: {}\nRelease: {}\nSummary: Patchwarden lab package {}\nLicense: none\nBuildArch: noarch\nAutoReqProv: no\n",
            self.name, self.version, self.release, self.name
        );
        if let Some(e) = self.epoch {
            s.push_str(&format!("Epoch: {e}\n"));
        }
        for (k, v) in &self.tags {
            clean(k, v)?;
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&format!(
            "\n%description\nPatchwarden lab package {}.\n\n%install\nmkdir -p %{{buildroot}}\n",
            self.name
        ));
        if !self.files.is_empty() {
            s.push_str(&format!(
                "cp -a '{}'/. %{{buildroot}}/\n",
                staging.display()
            ));
        }
        for (kind, body) in &self.scripts {
            let body = match body.strip_prefix("#!") {
                Some(rest) => rest.split_once('\n').map(|(_, b)| b).unwrap_or(""),
                None => body,
            };
            s.push_str(&format!("\n%{kind}\n{}\n", body.replace('%', "%%")));
        }
        s.push_str("\n%files\n");
        for (path, _) in &self.files {
            s.push_str(&format!("\"{path}\"\n"));
        }
        Ok(s)
    }

    /// Builds the package into `out_dir`, returning the .rpm's path.
    pub fn build(&self, out_dir: &Path) -> Result<PathBuf> {
        let top = tempfile::Builder::new()
            .prefix("pw-rpmbuild-")
            .tempdir()
            .context("rpmbuild topdir")?;
        let staging = top.path().join("staging");
        fs::create_dir(&staging)?;
        for (path, contents) in &self.files {
            let rel = Path::new(path);
            if !rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
            {
                bail!("package file path must be absolute and plain: {path:?}");
            }
            let dest = staging.join(path.trim_start_matches('/'));
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&dest, contents).with_context(|| format!("staging {path}"))?;
        }
        let spec_path = top.path().join(format!("{}.spec", self.name));
        fs::write(&spec_path, self.spec(&staging)?)?;
        util::run(
            Command::new("rpmbuild")
                .arg("-bb")
                .arg("--quiet")
                .arg("--nodeps")
                .arg("--define")
                .arg(format!("_topdir {}", top.path().display()))
                // Fast and readable by any rpm.
                .args(["--define", "_binary_payload w9.gzdio"])
                .args(["--define", "__os_install_post %{nil}"])
                .args(["--define", "_build_id_links none"])
                .arg(&spec_path)
                .env("LC_ALL", "C"),
            BUILD_TIMEOUT,
        )
        .with_context(|| format!("building rpm {}", self.file_name()))?;
        let built = top.path().join("RPMS/noarch").join(self.file_name());
        let dest = out_dir.join(self.file_name());
        fs::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
        Ok(dest)
    }
}

/// A yum/dnf repository in a temporary folder, indexed with createrepo_c and served over
/// HTTP on 127.0.0.1; it can be taken down and brought back on the same port. It always
/// holds the [`SH_PROVIDER`] package.
#[derive(Debug)]
pub struct RpmRepo {
    tmp: tempfile::TempDir,
    served: PathBuf,
    http: StaticServer,
}

impl RpmRepo {
    /// A published repository holding [`SH_PROVIDER`], already served on a free loopback port.
    pub fn new() -> Result<RpmRepo> {
        let tmp = tempfile::Builder::new()
            .prefix("pw-lab-rpmrepo-")
            .tempdir()
            .context("repository directory")?;
        let served = tmp.path().join("repo");
        fs::create_dir(&served)?;
        let served = served.canonicalize()?;
        let mut repo = RpmRepo {
            tmp,
            http: StaticServer::new(served.clone(), "rpm-repo"),
            served,
        };
        repo.add(
            &RpmPackage::new(SH_PROVIDER, "1.0")
                .provides("/bin/sh")
                .provides("/usr/bin/sh"),
        )?;
        repo.publish()?;
        repo.start()?;
        Ok(repo)
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

    /// The `/etc/yum.repos.d/lab.repo` that points a host here (unsigned, metadata never
    /// considered fresh so every dnf run sees the last publish).
    pub fn repo_file(&self) -> String {
        format!(
            "[lab]\nname=Patchwarden lab repository\nbaseurl={}\nenabled=1\ngpgcheck=0\nrepo_gpgcheck=0\nmetadata_expire=0\nskip_if_unavailable=0\n",
            self.url()
        )
    }

    /// Builds `pkg` into the repository (visible after [`RpmRepo::publish`]).
    pub fn add(&self, pkg: &RpmPackage) -> Result<PathBuf> {
        pkg.build(&self.served)
    }

    /// Removes a package's .rpm (takes effect at the next publish).
    pub fn remove(&self, pkg: &RpmPackage) -> Result<()> {
        let p = self.served.join(pkg.file_name());
        fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))
    }

    /// (Re)writes repodata/ from the .rpm files present.
    pub fn publish(&self) -> Result<()> {
        util::run(
            Command::new("createrepo_c")
                .args(["--quiet", "--no-database", "--simple-md-filenames"])
                .arg(&self.served),
            BUILD_TIMEOUT,
        )
        .context("createrepo_c")?;
        tracing::debug!(repo = %self.url(), "published");
        Ok(())
    }

    /// Adds an updateinfo.xml (advisories) to the published metadata with modifyrepo_c; call
    /// after [`RpmRepo::publish`] (a publish drops it).
    pub fn add_updateinfo(&self, xml: &str) -> Result<()> {
        let file = self.tmp.path().join("updateinfo.xml");
        fs::write(&file, xml)?;
        util::run(
            Command::new("modifyrepo_c")
                .args(["--mdtype=updateinfo", "--simple-md-filenames"])
                .arg(&file)
                .arg(self.served.join("repodata")),
            BUILD_TIMEOUT,
        )
        .context("modifyrepo_c")?;
        Ok(())
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
    /// [`RpmRepo::start`].
    pub fn stop(&mut self) -> Result<()> {
        self.http.stop()
    }
}

impl Drop for RpmRepo {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %format!("{e:#}"), "stopping rpm repository");
        }
    }
}

/// The /etc/os-release of the Rocky Linux 9.4 that lab rpm hosts present.
pub const ROCKY_OS_RELEASE: &str = "NAME=\"Rocky Linux\"\nVERSION=\"9.4 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPLATFORM_ID=\"platform:el9\"\nPRETTY_NAME=\"Rocky Linux 9.4 (Blue Onyx)\"\nANSI_COLOR=\"0;32\"\nCPE_NAME=\"cpe:/o:rocky:rocky:9::baseos\"\nHOME_URL=\"https://rockylinux.org/\"\n";

/// Makes `host` (made from [`rpm_base`]) an rpm host using `repo`: Rocky 9 os-release, the
/// lab repository as the only one, releasever 9, and [`SH_PROVIDER`] installed.
pub fn make_rpm_host(host: &Host, repo: &RpmRepo) -> Result<()> {
    // /etc/os-release is a symlink to ../usr/lib/os-release in Debian: replace both.
    let _ = fs::remove_file(host.root().join("etc/os-release"));
    host.write_file("/etc/os-release", ROCKY_OS_RELEASE, 0o644)?;
    host.write_file("/usr/lib/os-release", ROCKY_OS_RELEASE, 0o644)?;
    let repos = host.path("/etc/yum.repos.d")?;
    if let Ok(entries) = fs::read_dir(&repos) {
        for e in entries.flatten() {
            fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    set_rpm_repo(host, repo)?;
    host.write_file("/etc/dnf/vars/releasever", "9\n", 0o644)?;
    // Debian's dnf-plugins-core enables the `local` plugin (a GPG-checked `_dnf_local`
    // repository); Rocky does not ship it. The versionlock plugin stays enabled.
    host.write_file("/etc/dnf/plugins/local.conf", "[main]\nenabled=0\n", 0o644)?;
    dnf_ok(host, &["install", SH_PROVIDER])?;
    Ok(())
}

/// Points the host's dnf at `repo` (replacing /etc/yum.repos.d/lab.repo).
pub fn set_rpm_repo(host: &Host, repo: &RpmRepo) -> Result<()> {
    host.write_file("/etc/yum.repos.d/lab.repo", repo.repo_file(), 0o644)
}

/// `dnf -y --releasever=9 ARGS` inside the host; a non-zero exit is an error.
pub fn dnf_ok(host: &Host, args: &[&str]) -> Result<std::process::Output> {
    let mut argv = vec!["dnf", "-y", "--releasever=9"];
    argv.extend_from_slice(args);
    host.exec_ok(&argv)
}

/// `[EPOCH:]VERSION-RELEASE` of `name` per the host's rpm database; `None` when not installed.
pub fn rpm_evr(host: &Host, name: &str) -> Result<Option<String>> {
    let out = host.exec(&[
        "rpm",
        "-q",
        "--qf",
        "%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n",
        name,
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("is not installed") {
            return Ok(None);
        }
        bail!(
            "rpm -q {name} (in host {}) failed ({}): {}{}",
            host.name(),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Several lines when several versions are installed: the last is the newest.
    Ok(stdout
        .lines()
        .last()
        .map(|l| l.trim().trim_start_matches("0:").to_owned()))
}

/// Tools the rpm lab needs on the machine, beyond the lab's own.
pub const RPM_TOOLS: &[&str] = &["rpmbuild", "createrepo_c", "modifyrepo_c"];

/// `None` when rpm hosts can be built here, otherwise why not (for a printed skip).
pub fn rpm_lab_unavailable() -> Option<String> {
    if let Some(r) = crate::lab_unavailable() {
        return Some(r);
    }
    let missing: Vec<&str> = RPM_TOOLS
        .iter()
        .copied()
        .filter(|t| util::which(t).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("missing tools on PATH: {}", missing.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_scriptlets_files_and_escapes() -> Result<()> {
        let p = RpmPackage::new("pw-x", "2.0")
            .epoch(3)
            .requires("pw-missing >= 1")
            .post("#!/bin/sh\necho 100% broken >&2\nexit 1\n")
            .file("/usr/share/pw-x/v", "2.0");
        let spec = p.spec(Path::new("/tmp/staging"))?;
        assert!(spec.contains("Epoch: 3\n"));
        assert!(spec.contains("Requires: pw-missing >= 1\n"));
        assert!(spec.contains("%post\necho 100%% broken >&2\nexit 1\n"));
        assert!(!spec.contains("#!/bin/sh"));
        assert!(spec.contains("%files\n\"/usr/share/pw-x/v\"\n"));
        assert_eq!(p.evr(), "3:2.0-1");
        assert_eq!(p.file_name(), "pw-x-2.0-1.noarch.rpm");
        assert!(RpmPackage::new("pw-x", "1-2")
            .spec(Path::new("/t"))
            .is_err());
        Ok(())
    }
}
