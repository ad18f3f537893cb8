//! A lab host: an overlay on a [`BaseRoot`] with its own identity, in which commands run
//! chrooted inside fresh mount, PID and UTS namespaces (a crash kills everything at once).

use crate::base::BaseRoot;
use crate::util;
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where, inside a host, the lab writes the host's current boot id (a random UUID, renewed
/// by [`Host::simulate_reboot`]). The kernel's /proc/sys/kernel/random/boot_id is the
/// machine's and shared by every host, so the agent reads this file instead when the
/// environment variable [`BOOT_ID_ENV`] names it. Every command the lab runs in a host gets
/// `PATCHWARDEN_BOOT_ID_FILE=/etc/patchwarden-lab/boot_id`.
pub const BOOT_ID_FILE: &str = "/etc/patchwarden-lab/boot_id";
/// Environment variable through which the agent learns of [`BOOT_ID_FILE`].
pub const BOOT_ID_ENV: &str = "PATCHWARDEN_BOOT_ID_FILE";

const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(600);
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Runs as `sh -c SCRIPT sh ARGS...` inside the new namespaces, with R = the host root.
/// The proc and /dev mounts live only in that mount namespace and vanish with it.
const ENTER_SCRIPT: &str = r#"set -e
hostname "$(cat "$R/etc/hostname")"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
exec chroot "$R" /usr/bin/env -i "$@""#;

/// A sandboxed Debian host. Dropping it kills everything running in it, unmounts the
/// overlay and deletes its directory.
#[derive(Debug)]
pub struct Host {
    name: String,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    root: PathBuf,
    lower: PathBuf,
    mounted: AtomicBool,
    exec_timeout: Duration,
    spawn_seq: AtomicU32,
    /// Mounts made on top of the overlay ([`Host::mount_tmpfs`]), unmounted before it.
    extra_mounts: Mutex<Vec<PathBuf>>,
    /// Network namespace (`/run/netns/NAME`) commands run in; `None`: the machine's.
    netns: Mutex<Option<String>>,
}

/// A package as dpkg sees it: `${Version}` and `${db:Status-Abbrev}` (e.g. `ii`, `iF`, `iU`,
/// `rc`, `hi`), from `dpkg-query` inside the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub version: String,
    pub status: String,
}

impl InstalledPackage {
    /// Installed and fully configured, without error flag (`ii` or held `hi`).
    pub fn is_ok(&self) -> bool {
        self.status == "ii" || self.status == "hi"
    }
}

impl Host {
    /// A new host named `name` (its hostname; letters, digits and `-`) overlaid on `base`.
    pub fn create(base: &BaseRoot, name: &str) -> Result<Host> {
        if name.is_empty()
            || name.len() > 63
            || name.starts_with('-')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("invalid host name {name:?}: use 1-63 letters, digits and '-'");
        }
        let parent = std::env::var_os("PATCHWARDEN_LAB_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix(&format!("pw-lab-{name}-"))
            .tempdir_in(&parent)
            .with_context(|| format!("creating host directory in {}", parent.display()))?;
        let path = dir.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        for d in ["upper", "work", "merged", "logs"] {
            fs::create_dir(path.join(d)).with_context(|| format!("mkdir {d}"))?;
        }
        // The overlay's root directory takes the upper directory's mode.
        fs::set_permissions(path.join("upper"), fs::Permissions::from_mode(0o755))?;
        let host = Host {
            name: name.to_string(),
            root: path.join("merged"),
            lower: base.dir().to_path_buf(),
            path,
            dir: Some(dir),
            mounted: AtomicBool::new(false),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            spawn_seq: AtomicU32::new(0),
            extra_mounts: Mutex::new(Vec::new()),
            netns: Mutex::new(None),
        };
        host.mount()?;
        // Overlays share the base's identity files; give each host its own.
        host.write_file("/etc/hostname", format!("{name}\n"), 0o644)?;
        host.write_file(
            "/etc/hosts",
            format!("127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
            0o644,
        )?;
        host.write_file(
            "/etc/machine-id",
            format!("{}\n", util::random_hex(16)?),
            0o444,
        )?;
        host.new_boot_id()?;
        tracing::debug!(host = %name, dir = %host.path.display(), "lab host created");
        Ok(host)
    }

    /// The host's root directory as seen from the machine (the overlay's merged directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host's own directory on the machine (upper, work, merged, logs).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deadline for [`Host::exec`] (default 10 minutes); the command is killed past it.
    pub fn set_exec_timeout(&mut self, timeout: Duration) {
        self.exec_timeout = timeout;
    }

    /// Machine path of `path_in_host`, resolving symlinks inside the host (an absolute link
    /// such as /var/run -> /run stays in the host rather than escaping to the machine).
    pub fn path(&self, path_in_host: &str) -> Result<PathBuf> {
        resolve_in_root(&self.root, Path::new(path_in_host))
    }

    /// Write a file inside the host (parents created), with permission bits `mode`.
    pub fn write_file(
        &self,
        path_in_host: &str,
        contents: impl AsRef<[u8]>,
        mode: u32,
    ) -> Result<()> {
        let p = self.path(path_in_host)?;
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("creating {} in host {}", parent.display(), self.name))?;
        }
        fs::write(&p, contents)
            .with_context(|| format!("writing {path_in_host} in host {}", self.name))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {path_in_host} in host {}", self.name))?;
        Ok(())
    }

    /// Read a text file inside the host.
    pub fn read_file(&self, path_in_host: &str) -> Result<String> {
        let p = self.path(path_in_host)?;
        fs::read_to_string(&p)
            .with_context(|| format!("reading {path_in_host} in host {}", self.name))
    }

    /// Read a file inside the host as bytes.
    pub fn read_bytes(&self, path_in_host: &str) -> Result<Vec<u8>> {
        let p = self.path(path_in_host)?;
        fs::read(&p).with_context(|| format!("reading {path_in_host} in host {}", self.name))
    }

    /// Copy a file of the machine into the host, e.g. the agent binary into
    /// /usr/local/bin/patchwarden-agent.
    pub fn install_file_from_host(&self, src: &Path, dest_in_host: &str, mode: u32) -> Result<()> {
        let p = self.path(dest_in_host)?;
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        // Unlink first: the destination may be a running executable (ETXTBSY otherwise).
        let _ = fs::remove_file(&p);
        fs::copy(src, &p).with_context(|| {
            format!(
                "copying {} to {dest_in_host} in host {}",
                src.display(),
                self.name
            )
        })?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Replace the host's apt sources with these lines, in
    /// /etc/apt/sources.list.d/lab.list (e.g. [`crate::AptRepo::source_line`]).
    pub fn set_apt_sources<S: AsRef<str>>(&self, lines: &[S]) -> Result<()> {
        let mut text = String::new();
        for l in lines {
            text.push_str(l.as_ref());
            text.push('\n');
        }
        self.write_file("/etc/apt/sources.list.d/lab.list", text, 0o644)
    }

    /// Run a command inside the host and wait for it (bounded by the exec timeout). Returns
    /// its output whatever the exit status; errors only when it cannot run or times out.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        self.exec_with_env(args, &[])
    }

    /// [`Host::exec`] with extra environment variables (the environment is otherwise clean:
    /// PATH, LANG=C.UTF-8, DEBIAN_FRONTEND=noninteractive, HOME=/root, PATCHWARDEN_BOOT_ID_FILE).
    pub fn exec_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut cmd = self.command(args, env)?;
        let what = format!("{} (in host {})", args.join(" "), self.name);
        let out = util::output(&mut cmd, self.exec_timeout).with_context(|| what.clone())?;
        tracing::debug!(host = %self.name, command = %args.join(" "), status = %out.status, "exec");
        Ok(out)
    }

    /// [`Host::exec`], but a non-zero exit is an error carrying the command's output.
    pub fn exec_ok(&self, args: &[&str]) -> Result<Output> {
        let out = self.exec(args)?;
        util::check(&format!("{} (in host {})", args.join(" "), self.name), &out)?;
        Ok(out)
    }

    /// `sh -c SCRIPT` inside the host.
    pub fn sh(&self, script: &str) -> Result<Output> {
        self.exec(&["sh", "-c", script])
    }

    /// Start a long-running command inside the host (e.g. the agent daemon). Its stdout and
    /// stderr go to log files under the host's directory ([`HostProcess::logs`]).
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Result<HostProcess> {
        let seq = self.spawn_seq.fetch_add(1, Ordering::Relaxed);
        let label = Path::new(args.first().copied().unwrap_or("cmd"))
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cmd".into());
        let stdout_log = self.path.join("logs").join(format!("{seq}-{label}.stdout"));
        let stderr_log = self.path.join("logs").join(format!("{seq}-{label}.stderr"));
        let mut cmd = self.command(args, env)?;
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_log).context("creating stdout log")?)
            .stderr(fs::File::create(&stderr_log).context("creating stderr log")?);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} in host {}", args.join(" "), self.name))?;
        tracing::debug!(host = %self.name, command = %args.join(" "), pid = child.id(), "spawned");
        Ok(HostProcess {
            child,
            label: format!("{} (in host {})", args.join(" "), self.name),
            stdout_log,
            stderr_log,
            exited: None,
        })
    }

    /// `${Version}` and `${db:Status-Abbrev}` of `pkg` per dpkg inside the host; `None` when
    /// dpkg does not know the package or has no version of it installed.
    pub fn dpkg_version(&self, pkg: &str) -> Result<Option<InstalledPackage>> {
        let out = self.exec(&[
            "dpkg-query",
            "-W",
            "-f=${Version}\t${db:Status-Abbrev}",
            pkg,
        ])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("no packages found") {
                return Ok(None);
            }
            bail!(
                "dpkg-query -W {pkg} (in host {}) failed ({}): {}",
                self.name,
                out.status,
                stderr.trim()
            );
        }
        let (version, status) = stdout.split_once('\t').unwrap_or((&stdout, ""));
        let (version, status) = (version.trim().to_string(), status.trim().to_string());
        if version.is_empty() {
            return Ok(None);
        }
        Ok(Some(InstalledPackage { version, status }))
    }

    /// A reboot: everything running in the host dies, /run is reset to the base's (which
    /// removes /run/reboot-required) and the boot id changes. The caller restarts the agent.
    pub fn simulate_reboot(&self) -> Result<()> {
        util::kill_processes_under(&self.root, KILL_WAIT)?;
        // Reset /run through the overlay, not by editing the upper layer and remounting:
        // other hosts' namespaces may still hold a copy of this overlay mount, and a second
        // mount on the same upper/work directories is undefined behaviour for overlayfs.
        let run = self.path("/run")?;
        if let Ok(entries) = fs::read_dir(&run) {
            for e in entries.flatten() {
                let p = e.path();
                let res = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                res.with_context(|| format!("clearing {} in host {}", p.display(), self.name))?;
            }
        }
        copy_tree(&self.lower.join("run"), &run).context("restoring the base's /run")?;
        self.new_boot_id()?;
        tracing::debug!(host = %self.name, "rebooted");
        Ok(())
    }

    /// Mount a tmpfs of `size_bytes` on `path_in_host` (e.g. a 2 MB /var/cache/apt/archives
    /// for disk-full cases), from the machine side: commands started afterwards see it.
    /// The subdirectories it hides (apt's `partial/`) are recreated on it with their modes and
    /// owners. Unmounted by [`Host::unmount_tmpfs`] or, at the latest, when the host is dropped.
    pub fn mount_tmpfs(&self, path_in_host: &str, size_bytes: u64) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let target = self.path(path_in_host)?;
        fs::create_dir_all(&target)?;
        let meta = fs::metadata(&target)?;
        let subdirs: Vec<(OsString, fs::Metadata)> = fs::read_dir(&target)?
            .flatten()
            .filter_map(|e| {
                let m = fs::symlink_metadata(e.path()).ok()?;
                m.is_dir().then(|| (e.file_name(), m))
            })
            .collect();
        util::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size_bytes},mode={:o}", meta.mode() & 0o7777))
                .arg("tmpfs")
                .arg(&target),
            Duration::from_secs(30),
        )
        .with_context(|| format!("mounting a tmpfs on {path_in_host} in host {}", self.name))?;
        self.lock_mounts().push(target.clone());
        for (name, m) in subdirs {
            let d = target.join(name);
            fs::create_dir(&d)?;
            std::os::unix::fs::chown(&d, Some(m.uid()), Some(m.gid()))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
        Ok(())
    }

    /// Unmount a tmpfs mounted by [`Host::mount_tmpfs`].
    pub fn unmount_tmpfs(&self, path_in_host: &str) -> Result<()> {
        let target = self.path(path_in_host)?;
        let mut mounts = self.lock_mounts();
        let Some(i) = mounts.iter().rposition(|m| *m == target) else {
            bail!(
                "nothing mounted on {path_in_host} in host {} by the lab",
                self.name
            );
        };
        util::unmount(&target)?;
        mounts.remove(i);
        Ok(())
    }

    /// Runs the host's later commands in this network namespace (`/run/netns/NAME`, see
    /// [`crate::netns::LabNet::attach`]), or in the machine's with `None`.
    pub fn set_netns(&self, path: Option<String>) {
        *self.netns.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    fn lock_mounts(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.extra_mounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unmount every extra mount, most recent first; the first error is returned.
    fn unmount_extras(&self) -> Result<()> {
        let mut mounts = self.lock_mounts();
        let mut first = Ok(());
        while let Some(m) = mounts.pop() {
            if let Err(e) = util::unmount(&m) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// The host's current boot id (see [`BOOT_ID_FILE`]).
    pub fn boot_id(&self) -> Result<String> {
        Ok(self.read_file(BOOT_ID_FILE)?.trim().to_string())
    }

    /// Path inside the host of the boot id file: [`BOOT_ID_FILE`].
    pub fn boot_id_file(&self) -> &'static str {
        BOOT_ID_FILE
    }

    fn new_boot_id(&self) -> Result<()> {
        self.write_file(BOOT_ID_FILE, format!("{}\n", util::random_uuid()?), 0o444)
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Command> {
        let Some(first) = args.first() else {
            bail!("empty command for host {}", self.name);
        };
        if first.contains('=') {
            bail!("command {first:?} contains '=' (env would take it for a variable)");
        }
        if !self.mounted.load(Ordering::SeqCst) {
            bail!("host {} is not mounted", self.name);
        }
        // nsenter execs unshare in place: the child's pid stays unshare's.
        let netns = self.netns.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={ns}")).arg("unshare");
                c
            }
            None => Command::new("unshare"),
        };
        cmd.args([
            "--mount",
            "--pid",
            "--uts",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "sh",
            "-c",
            ENTER_SCRIPT,
            "sh",
        ]);
        cmd.env("R", &self.root);
        cmd.arg(format!("PATH={HOST_PATH}"))
            .arg("LANG=C.UTF-8")
            .arg("DEBIAN_FRONTEND=noninteractive")
            .arg("HOME=/root")
            .arg(format!("{BOOT_ID_ENV}={BOOT_ID_FILE}"));
        for (k, v) in env {
            if k.is_empty() || k.contains('=') {
                bail!("invalid environment variable name {k:?}");
            }
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(args);
        Ok(cmd)
    }

    fn mount(&self) -> Result<()> {
        util::mount_overlay(
            &self.lower,
            &self.path.join("upper"),
            &self.path.join("work"),
            &self.root,
        )
        .with_context(|| format!("mounting host {}", self.name))?;
        self.mounted.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn unmount(&self) -> Result<()> {
        self.unmount_extras()
            .with_context(|| format!("unmounting the extra mounts of host {}", self.name))?;
        if self.mounted.load(Ordering::SeqCst) {
            util::unmount(&self.root).with_context(|| format!("unmounting host {}", self.name))?;
            self.mounted.store(false, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(e) = util::kill_processes_under(&self.root, KILL_WAIT) {
            tracing::warn!(host = %self.name, error = %format!("{e:#}"), "could not kill host processes");
        }
        match self.unmount() {
            Ok(()) => {
                if let Some(dir) = self.dir.take() {
                    if let Err(e) = dir.close() {
                        tracing::warn!(host = %self.name, error = %e, "could not remove host directory");
                    }
                }
            }
            Err(e) => {
                // Never delete through a live mount: leave the directory behind.
                if let Some(dir) = self.dir.take() {
                    let kept = dir.keep();
                    tracing::warn!(host = %self.name, dir = %kept.display(), error = %format!("{e:#}"), "host left mounted");
                }
            }
        }
    }
}

/// Copy the contents of `src` into the existing directory `dst`, keeping modes and owners.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(src) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else {
            continue; // sockets, fifos: runtime state a reboot would not keep either
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        if !ft.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Resolve `rel` (absolute or not) inside `root` the way a chrooted process would: `..` stops
/// at the root and absolute symlinks are taken relative to it.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut queue: VecDeque<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut follows = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let cand = cur.join(&c);
        let full = root.join(&cand);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                follows += 1;
                if follows > 40 {
                    bail!("too many symlinks resolving {} in host", rel.display());
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let mut parts: Vec<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                while let Some(p) = parts.pop() {
                    queue.push_front(p);
                }
            }
            _ => cur = cand,
        }
    }
    Ok(root.join(cur))
}

/// A long-running command inside a host. [`HostProcess::kill`] (and drop) SIGKILLs it: the
/// namespace's PID 1 dies and the kernel kills everything else in it, like a power loss.
#[derive(Debug)]
pub struct HostProcess {
    child: Child,
    label: String,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    exited: Option<ExitStatus>,
}

impl HostProcess {
    /// PID (on the machine) of the `unshare` process wrapping the command.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_log(&self) -> &Path {
        &self.stdout_log
    }

    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// Both logs, labelled, for printing when a test fails.
    pub fn logs(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        format!(
            "--- {} stdout ({}) ---\n{}\n--- stderr ({}) ---\n{}",
            self.label,
            self.stdout_log.display(),
            read(&self.stdout_log),
            self.stderr_log.display(),
            read(&self.stderr_log)
        )
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().context("try_wait")?;
        }
        Ok(self.exited)
    }

    /// Wait up to `timeout` for it to exit on its own (it is left running on timeout).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: returns once everything that ran in its namespace is dead.
    pub fn kill(&mut self) -> Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let unshare = self.child.id() as i32;
        // The namespace's PID 1 (unshare's forked child). Killing it directly and killing
        // unshare (whose --kill-child relays SIGKILL) both end the namespace.
        let inits = util::children_of(unshare);
        for &p in &inits {
            util::sigkill(p);
        }
        let _ = self.child.kill();
        self.exited = Some(self.child.wait().context("reaping unshare")?);
        // PID 1 of a PID namespace becomes a zombie only after the kernel has killed and
        // reaped every other process in it.
        if !util::wait_gone(&inits, KILL_WAIT) {
            bail!(
                "{}: namespace init {inits:?} still alive after SIGKILL",
                self.label
            );
        }
        tracing::debug!(process = %self.label, "killed");
        Ok(())
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!(error = %format!("{e:#}"), "could not kill host process");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_symlinks_inside_root() -> Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path();
        fs::create_dir_all(root.join("run"))?;
        fs::create_dir_all(root.join("var/lib"))?;
        std::os::unix::fs::symlink("/run", root.join("var/run"))?;
        std::os::unix::fs::symlink("../lib", root.join("var/lib/up"))?;
        let cases = [
            ("/var/run/x", "run/x"),
            ("var/run", "run"),
            ("/../../etc/passwd", "etc/passwd"),
            ("/var/lib/up/y", "var/lib/y"),
            ("/a/./b", "a/b"),
        ];
        for (input, want) in cases {
            assert_eq!(
                resolve_in_root(root, Path::new(input))?,
                root.join(want),
                "{input}"
            );
        }
        Ok(())
    }
}
