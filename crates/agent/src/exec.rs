//! Running package-manager commands: C locale, no prompts, stdin closed, both output streams
//! captured, each command in its own process group so a time budget can kill all of it.

use rustix::process::{kill_process_group, Pid, Signal};
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
                // The group id is the child's pid (process_group(0)); dpkg and the maintainer
                // scripts it runs are in that group.
                let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
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
    fn a_missing_program_is_an_error() {
        assert!(SystemRunner.run(&["/nonexistent/program"], None).is_err());
    }
}
