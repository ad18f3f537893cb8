//! Tiny real .deb packages for lab repositories, with the behaviours failure tests need
//! (failing or slow maintainer scripts, reboot flags, big payloads), built with dpkg-deb.

use crate::util;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A package description; [`DebPackage::build`] turns it into `NAME_VERSION_all.deb`.
#[derive(Debug, Clone)]
pub struct DebPackage {
    name: String,
    version: String,
    description: String,
    fields: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>, u32)>,
    scripts: Vec<(&'static str, String)>,
    payload_bytes: Option<u64>,
    reboot_required: bool,
    slow_postinst: Option<u32>,
}

impl DebPackage {
    pub fn new(name: &str, version: &str) -> DebPackage {
        DebPackage {
            name: name.to_string(),
            version: version.to_string(),
            description: format!("Patchwarden lab package {name}"),
            fields: Vec::new(),
            files: Vec::new(),
            scripts: Vec::new(),
            payload_bytes: None,
            reboot_required: false,
            slow_postinst: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The file name `build` writes (`:` of an epoch encoded as `%3a`, as Debian does).
    pub fn file_name(&self) -> String {
        format!("{}_{}_all.deb", self.name, self.version.replace(':', "%3a"))
    }

    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }

    /// `Depends:` (e.g. `"libfoo (>= 1.2), bar"`); repeated calls are joined with `, `.
    pub fn depends(self, rel: &str) -> Self {
        self.append_field("Depends", rel)
    }

    pub fn conflicts(self, rel: &str) -> Self {
        self.append_field("Conflicts", rel)
    }

    /// Any other control field (Provides, Replaces, Breaks, Pre-Depends, Essential, ...).
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.push((name.to_string(), value.to_string()));
        self
    }

    fn append_field(mut self, name: &str, rel: &str) -> Self {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(rel);
            }
            None => self.fields.push((name.to_string(), rel.to_string())),
        }
        self
    }

    /// The postinst script, whole (e.g. `"#!/bin/sh\nexit 1\n"`). Combined with
    /// [`Self::slow_postinst`] and [`Self::reboot_required`], those steps run first.
    pub fn postinst(self, script: &str) -> Self {
        self.script("postinst", script)
    }

    pub fn preinst(self, script: &str) -> Self {
        self.script("preinst", script)
    }

    pub fn prerm(self, script: &str) -> Self {
        self.script("prerm", script)
    }

    pub fn postrm(self, script: &str) -> Self {
        self.script("postrm", script)
    }

    fn script(mut self, kind: &'static str, script: &str) -> Self {
        self.scripts.retain(|(k, _)| *k != kind);
        self.scripts.push((kind, script.to_string()));
        self
    }

    /// A file installed at `path` (absolute in the target system), mode 0644.
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        self.file_mode(path, contents, 0o644)
    }

    pub fn file_mode(mut self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> Self {
        self.files
            .push((path.to_string(), contents.as_ref().to_vec(), mode));
        self
    }

    /// Add an incompressible payload of `n` bytes at /usr/share/NAME/payload.bin (for
    /// disk-full cases: the .deb and the installed size are both about `n`).
    pub fn size_bytes(mut self, n: u64) -> Self {
        self.payload_bytes = Some(n);
        self
    }

    /// The postinst flags a pending reboot as Debian packages do: it writes
    /// /run/reboot-required and appends the package name to /run/reboot-required.pkgs.
    pub fn reboot_required(mut self) -> Self {
        self.reboot_required = true;
        self
    }

    /// The postinst sleeps `secs` seconds (for lock-held and interrupted-dpkg cases).
    pub fn slow_postinst(mut self, secs: u32) -> Self {
        self.slow_postinst = Some(secs);
        self
    }

    /// Build the package into `out_dir`; returns the .deb path.
    pub fn build(&self, out_dir: &Path) -> Result<PathBuf> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        {
            bail!("invalid Debian package name {:?}", self.name);
        }
        if self.version.is_empty() || self.version.contains(char::is_whitespace) {
            bail!("invalid Debian version {:?}", self.version);
        }
        let staging = tempfile::Builder::new()
            .prefix("pw-lab-deb-")
            .tempdir()
            .context("staging directory")?;
        let root = staging.path().join("pkg");
        mkdir(&root)?;
        let debian = root.join("DEBIAN");
        mkdir(&debian)?;

        for (path, contents, mode) in &self.files {
            write_into(&root, path, contents, *mode)?;
        }
        if let Some(n) = self.payload_bytes {
            let p = root.join(format!("usr/share/{}/payload.bin", self.name));
            mkdirs(&root, p.parent().unwrap_or(&root))?;
            write_noise(&p, n, &format!("{}_{}", self.name, self.version))?;
        }

        let mut scripts = self.scripts.clone();
        let mut pre = String::new();
        if let Some(secs) = self.slow_postinst {
            pre.push_str(&format!("sleep {secs}\n"));
        }
        if self.reboot_required {
            pre.push_str(&format!(
                "touch /run/reboot-required\necho {} >> /run/reboot-required.pkgs\n",
                self.name
            ));
        }
        if !pre.is_empty() {
            let body = match scripts.iter().position(|(k, _)| *k == "postinst") {
                Some(i) => {
                    let (_, s) = scripts.remove(i);
                    // Drop the shebang: the composed script has its own.
                    match s.strip_prefix("#!") {
                        Some(rest) => rest.split_once('\n').map(|x| x.1).unwrap_or("").to_string(),
                        None => s,
                    }
                }
                None => "exit 0\n".to_string(),
            };
            scripts.push(("postinst", format!("#!/bin/sh\nset -e\n{pre}{body}")));
        }
        for (kind, body) in &scripts {
            let p = debian.join(kind);
            fs::write(&p, body).with_context(|| format!("writing {kind}"))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        }

        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nSection: misc\nPriority: optional\nMaintainer: Patchwarden Lab <lab@patchwarden.invalid>\n",
            self.name, self.version
        );
        if let Some(n) = self.payload_bytes {
            control.push_str(&format!("Installed-Size: {}\n", n.div_ceil(1024) + 4));
        }
        for (k, v) in &self.fields {
            control.push_str(&format!("{k}: {v}\n"));
        }
        control.push_str(&format!(
            "Description: {}\n Built by patchwarden-lab for tests.\n",
            self.description.lines().next().unwrap_or("lab package")
        ));
        fs::write(debian.join("control"), control).context("writing control")?;

        fs::create_dir_all(out_dir).with_context(|| format!("mkdir {}", out_dir.display()))?;
        let out = out_dir.join(self.file_name());
        util::run(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "--build"])
                .arg(&root)
                .arg(&out),
            Duration::from_secs(600),
        )?;
        Ok(out)
    }
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Create `dir` and its parents below `root`, all 0755 (dpkg-deb records the modes).
fn mkdirs(root: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if !cur.is_dir() {
            mkdir(&cur)?;
        }
    }
    Ok(())
}

fn write_into(root: &Path, path: &str, contents: &[u8], mode: u32) -> Result<()> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || rel.as_os_str().is_empty() {
        bail!("invalid file path in package: {path:?}");
    }
    let p = root.join(rel);
    if rel.starts_with("DEBIAN") {
        bail!("use the script methods for DEBIAN/ files, not file({path:?})");
    }
    mkdirs(root, p.parent().unwrap_or(root))?;
    fs::write(&p, contents).with_context(|| format!("writing {path}"))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `n` pseudo-random bytes (xorshift64*, seeded by `seed`): gzip cannot shrink them.
fn write_noise(p: &Path, n: u64, seed: &str) -> Result<()> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in seed.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    let mut f = std::io::BufWriter::new(
        fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
    );
    let mut left = n;
    let mut chunk = [0u8; 8192];
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let take = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    f.flush()?;
    Ok(())
}
