//! Running package-manager commands: C locale, no prompts, stdin closed, both output streams
//! captured, each command in its own process group so a time budget can kill all of it.
//! apt runs dpkg on a pty in a session of its own, so a kill also walks the process tree.

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What one command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The command line, arguments joined by spaces (as `JobResult.commands` lists it).
    pub command: String,
    /// `None` when killed by a signal (including our own timeout kill) or never started.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub duration: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Runs commands. The real one spawns processes; tests substitute canned outputs.
pub trait Runner: Send + Sync {
    /// Runs `argv` until it exits or `deadline` passes (then the whole process group is
    /// killed and `timed_out` is set). An error only when the command could not be started.
    fn run(&self, argv: &[&str], deadline: Option<Instant>) -> io::Result<CommandOutput>;
}

/// Spawns real processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

/// How long to wait for the output pipes to close once the command has exited: a daemon
/// started by a maintainer script may keep them open forever.
const PIPE_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);

impl Runner for SystemRunner {
    fn run(&self, argv: &[&str], deadline: Option<Instant>) -> io::Result<CommandOutput> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let start = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("APT_LISTCHANGES_FRONTEND", "none")
            .env("NEEDRESTART_MODE", "l")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let (done_tx, done_rx) = mpsc::channel();
        let out = collect(child.stdout.take(), done_tx.clone());
        let err = collect(child.stderr.take(), done_tx);
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                timed_out = true;
                kill_tree(child.id());
                break child.wait()?;
            }
            thread::sleep(POLL);
        };
        if timed_out {
            // Descendants that escaped the group still hold the pipes: do not wait long.
            let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
        }
        let grace_end = Instant::now() + PIPE_GRACE;
        for _ in 0..2 {
            let left = grace_end.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        let text = |buf: &Arc<Mutex<Vec<u8>>>| {
            let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Ok(CommandOutput {
            command: argv.join(" "),
            exit_code: if timed_out { None } else { status.code() },
            stdout: text(&out),
            stderr: text(&err),
            timed_out,
            duration: start.elapsed(),
        })
    }
}

/// SIGKILLs `root`, its process group and every descendant. apt-get starts dpkg with
/// `setsid()` (to give it a pty), so dpkg and the maintainer scripts are NOT in apt's process
/// group: killing the group alone would leave a postinst running and holding the dpkg lock.
/// The tree is frozen first (SIGSTOP, repeated until no new descendant appears) so that no
/// process can fork or be orphaned out of it between the scan and the kill.
pub fn kill_tree(root: u32) {
    let Some(root_pid) = i32::try_from(root).ok().and_then(Pid::from_raw) else {
        return;
    };
    let mut frozen: BTreeSet<i32> = BTreeSet::new();
    for _ in 0..20 {
        let mut tree = descendants(root_pid.as_raw_nonzero().get());
        tree.insert(root_pid.as_raw_nonzero().get());
        let new: Vec<i32> = tree.difference(&frozen).copied().collect();
        if new.is_empty() {
            break;
        }
        for p in new {
            if let Some(pid) = Pid::from_raw(p) {
                let _ = kill_process(pid, Signal::STOP);
            }
            frozen.insert(p);
        }
    }
    let _ = kill_process_group(root_pid, Signal::KILL);
    for p in frozen {
        if let Some(pid) = Pid::from_raw(p) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// The live descendants of `root`, from the parent ids in /proc/PID/stat.
fn descendants(root: i32) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            if let Some(ppid) = parent_from_stat(&stat) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if found.insert(c) {
                queue.push(c);
            }
        }
    }
    found
}

/// The parent pid in a /proc/PID/stat line: `pid (comm) state ppid ...`; comm may contain
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parent_from_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a pipe to its end on a thread, into a buffer readable even before the end.
fn collect<R: Read + Send + 'static>(
    pipe: Option<R>,
    done: mpsc::Sender<()>,
) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let Some(mut pipe) = pipe else {
        let _ = done.send(());
        return buf;
    };
    let shared = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut b) = shared.lock() {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        let _ = done.send(());
    });
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_both_streams_and_exit_code() {
        let out = SystemRunner
            .run(
                &["sh", "-c", "echo out; echo err >&2; echo $LC_ALL; exit 3"],
                None,
            )
            .expect("run");
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout, "out\nC\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.timed_out);
        assert_eq!(
            out.command,
            "sh -c echo out; echo err >&2; echo $LC_ALL; exit 3"
        );
    }

    #[test]
    fn a_budget_kills_the_whole_process_group() {
        let start = Instant::now();
        // The background sleep is a grandchild holding the pipes: it must die too.
        let out = SystemRunner
            .run(
                &["sh", "-c", "sleep 30 & echo started; sleep 30"],
                Some(Instant::now() + Duration::from_millis(300)),
            )
            .expect("run");
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert_eq!(out.stdout, "started\n");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_budget_kills_descendants_that_left_the_process_group() {
        let start = Instant::now();
        // `setsid` puts the sleeper in a new session and group, as apt does with dpkg; it
        // writes its pid so that the test can check it is gone.
        let dir = std::env::temp_dir().join(format!("pw-exec-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let pidfile = dir.join("pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 30' </dev/null >/dev/null 2>&1 & sleep 30",
            pidfile.display()
        );
        let out = SystemRunner
            .run(
                &["sh", "-c", &script],
                Some(Instant::now() + Duration::from_millis(1500)),
            )
            .expect("run");
        assert!(out.timed_out);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let _ = std::fs::remove_dir_all(&dir);
        // Killed: gone, or a zombie until its reaper notices (SIGKILL is delivered
        // asynchronously, so allow a moment).
        let alive = |state: &str| {
            parent_from_stat(state).is_some()
                && !state[state.rfind(')').map_or(0, |i| i + 2)..].starts_with('Z')
        };
        let mut state = String::new();
        for _ in 0..100 {
            state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if !alive(&state) {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(&state), "the setsid sleeper survived: {state}");
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn parent_pid_from_stat_lines() {
        assert_eq!(parent_from_stat("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(parent_from_stat("42 (a (b) c) R 9 1 1"), Some(9));
        assert_eq!(parent_from_stat("garbage"), None);
    }

    #[test]
    fn a_missing_program_is_an_error() {
        assert!(SystemRunner.run(&["/nonexistent/program"], None).is_err());
    }
}
