//! Small helpers shared by the lab modules: running commands with a deadline and a useful
//! error, randomness without extra crates, and /proc and mountinfo scans.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Find `tool` on PATH.
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Describe a command for error messages: program and arguments, shell-like.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        if a.contains(char::is_whitespace) || a.is_empty() {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Last `max` bytes of some output, lossily decoded.
pub(crate) fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// Wait for a child with a deadline, polling with a short backoff.
/// On timeout the child is killed (SIGKILL) and reaped, and `Ok(None)` is returned.
pub(crate) fn wait_deadline(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(st) = child.try_wait().context("waiting for child")? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// Run a command to completion (stdin null, stdout and stderr captured), whatever its exit
/// status; an error only when it cannot start or overruns `timeout` (then it is killed).
pub(crate) fn output(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    tracing::debug!(command = %what, "run");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = wait_deadline(&mut child, timeout)?;
    // A killed command's pipes may still be held by its descendants; the readers end once
    // those are gone too (every lab command runs in a PID namespace or exits with its tree).
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "`{what}` timed out after {timeout:?} and was killed; stderr: {}",
            tail(&stderr, 2000)
        ),
    }
}

/// Like [`output`], but a non-zero exit is an error naming the command and its stderr.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let out = output(cmd, timeout)?;
    check(&what, &out)?;
    Ok(out)
}

pub(crate) fn check(what: &str, out: &Output) -> Result<()> {
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}); stderr: {}{}",
            out.status,
            tail(&out.stderr, 4000),
            if out.stderr.is_empty() {
                format!("; stdout: {}", tail(&out.stdout, 4000))
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// `n` bytes from the kernel's random source.
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    Ok(hex::encode(random_bytes(bytes)?))
}

/// A random version-4 UUID, lowercase hyphenated (the format of the kernel's boot_id).
pub(crate) fn random_uuid() -> Result<String> {
    let mut b = random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Decode the octal escapes (`\040`) that /proc/self/mountinfo uses in paths.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points in this process's mount namespace at or below `dir`.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect())
}

/// PIDs (as seen from this process) of live processes whose root or working directory is at
/// or below `dir`: everything running inside a lab host chrooted there.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            ["root", "cwd"].iter().any(|l| {
                std::fs::read_link(format!("/proc/{pid}/{l}")).is_ok_and(|p| p.starts_with(dir))
            })
        })
        .filter(|&pid| !is_zombie(pid))
        .collect()
}

/// True when the process is gone or only a zombie waiting to be reaped.
pub(crate) fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|c| c == 'Z' || c == 'X'),
        Err(_) => true,
    }
}

/// Children (by parent PID) of `ppid`, from /proc/*/stat.
pub(crate) fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(ppid)
        })
        .collect()
}

pub(crate) fn sigkill(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Wait (bounded) until every listed process is gone or a zombie.
pub(crate) fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| is_zombie(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL everything running under `dir` and wait (bounded) until it is gone.
pub(crate) fn kill_processes_under(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = processes_under(dir);
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "processes still running under {} after {timeout:?}: {pids:?}",
                dir.display()
            );
        }
        tracing::debug!(dir = %dir.display(), ?pids, "killing processes");
        for &p in &pids {
            sigkill(p);
        }
        wait_gone(&pids, Duration::from_millis(500));
    }
}

/// Mount an overlay; `lower`, `upper`, `work` must not contain `,` or `:`.
pub(crate) fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    for p in [lower, upper, work] {
        let s = p.to_string_lossy();
        if s.contains([',', ':']) {
            bail!("overlay path {s} contains ',' or ':'");
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    run(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(target),
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// Unmount `target`, falling back to a lazy unmount; bounded retries for EBUSY.
pub(crate) fn unmount(target: &Path) -> Result<()> {
    let mut last = None;
    for attempt in 0..5 {
        match run(Command::new("umount").arg(target), Duration::from_secs(30)) {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(target = %target.display(), attempt, error = %e, "umount failed");
                last = Some(e);
                thread::sleep(Duration::from_millis(20 << attempt));
            }
        }
    }
    tracing::warn!(target = %target.display(), "umount kept failing, detaching lazily");
    run(
        Command::new("umount").arg("-l").arg(target),
        Duration::from_secs(30),
    )
    .with_context(|| {
        format!(
            "lazy umount after: {:#}",
            last.unwrap_or_else(|| anyhow::anyhow!("?"))
        )
    })?;
    Ok(())
}

/// Can we mount an overlay here? A real mount of an empty overlay, then unmounted.
pub(crate) fn probe_overlay() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("pw-lab-probe-")
        .tempdir()
        .context("tempdir")?;
    let [l, u, w, m] = ["lower", "upper", "work", "merged"].map(|n| dir.path().join(n));
    for d in [&l, &u, &w, &m] {
        std::fs::create_dir(d).with_context(|| format!("mkdir {}", d.display()))?;
    }
    mount_overlay(&l, &u, &w, &m)?;
    unmount(&m)
}
