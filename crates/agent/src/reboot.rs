//! Rebooting after an install, as the server's reboot policy says (`Operation::Install.reboot`,
//! already passed through the server's loop guard). The rule is core's
//! (`core::reboot::reboot_after_install`): `when_required` reboots when a package is left
//! `pending_reboot`, `always` when anything changed, never once the window (`not_after`) has
//! ended. The daemon reboots only after the result is in the outbox (and was offered to the
//! server), and records the job in its state file first, so one job never reboots twice.

use patchwarden_core::reboot::{reboot_after_install, Mode};
use patchwarden_wire::agent::{JobResult, Operation, RebootMode};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A program and its arguments, split on whitespace; default `systemctl reboot`.
pub const REBOOT_COMMAND_ENV: &str = "PATCHWARDEN_REBOOT_COMMAND";
const DEFAULT_REBOOT_COMMAND: &str = "systemctl reboot";
/// How long the reboot command may take to return.
const COMMAND_BUDGET: Duration = Duration::from_secs(120);
/// How many rebooted-for job ids the state file keeps.
pub const REMEMBERED_JOBS: usize = 200;

fn core_mode(m: RebootMode) -> Mode {
    match m {
        RebootMode::Never => Mode::Never,
        RebootMode::WhenRequired => Mode::WhenRequired,
        RebootMode::Always => Mode::Always,
    }
}

/// The mode to reboot under after this job's result, or `None` when it is not followed by a
/// reboot. `now`: the current time (the window's end is compared with it).
pub fn reboot_due(payload: &str, result: &JobResult, now: time::OffsetDateTime) -> Option<Mode> {
    let Ok(Operation::Install {
        reboot, not_after, ..
    }) = serde_json::from_str::<Operation>(payload)
    else {
        return None;
    };
    let window_open = match not_after.as_deref() {
        None => true,
        Some(end) => {
            match time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339) {
                Ok(end) => now < end,
                // An unreadable window end: do not reboot on a guess.
                Err(_) => false,
            }
        }
    };
    let packages: Vec<_> = result
        .packages
        .iter()
        .map(|p| {
            let changed = p.installed_version.is_some() && p.installed_version != p.from_version;
            (p.state, changed)
        })
        .collect();
    let mode = core_mode(reboot);
    reboot_after_install(mode, &packages, window_open).then_some(mode)
}

/// Records that the device reboots for `job_id`: false when it already did (never twice for
/// one job). Keeps the last [`REMEMBERED_JOBS`] jobs. The caller saves the state before
/// rebooting.
pub fn claim(state: &mut crate::state::State, job_id: &str) -> bool {
    if state.rebooted_for_jobs.iter().any(|j| j == job_id) {
        return false;
    }
    state.rebooted_for_jobs.push(job_id.to_owned());
    let excess = state
        .rebooted_for_jobs
        .len()
        .saturating_sub(REMEMBERED_JOBS);
    state.rebooted_for_jobs.drain(..excess);
    true
}

/// The reboot command: `$PATCHWARDEN_REBOOT_COMMAND` split on whitespace, else `systemctl reboot`.
pub fn reboot_command() -> Vec<String> {
    let spec = std::env::var(REBOOT_COMMAND_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REBOOT_COMMAND.to_owned());
    spec.split_whitespace().map(str::to_owned).collect()
}

/// Runs the reboot command (bounded by a time budget). `Err` says what went wrong.
pub fn run_reboot_command(argv: &[String]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the reboot command is empty".to_owned());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + COMMAND_BUDGET;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{} exited with {status}", argv.join(" "))),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not return within {} s",
                    argv.join(" "),
                    COMMAND_BUDGET.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for {}: {e}", argv.join(" "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchwarden_core::PackageState;
    use patchwarden_wire::agent::PackageResult;

    fn result(state: PackageState, from: &str, to: &str) -> JobResult {
        JobResult {
            started_at: String::new(),
            finished_at: String::new(),
            commands: vec![],
            exit_code: Some(0),
            duration_ms: 0,
            output: String::new(),
            packages: vec![PackageResult {
                package: "pw-reboot".into(),
                state,
                class: None,
                from_version: Some(from.into()),
                to_version: Some(to.into()),
                installed_version: Some(to.into()),
                evidence: vec![],
            }],
            error: None,
            boot_id: None,
        }
    }

    fn payload(mode: &str, not_after: Option<&str>) -> String {
        serde_json::json!({"type": "install", "deployment_id": "d", "packages": [{"name": "pw-reboot"}],
            "timeout_secs": 60, "reboot": mode, "not_after": not_after})
        .to_string()
    }

    #[test]
    fn reboot_due_follows_mode_result_and_window() {
        let now = time::macros::datetime!(2026-11-25 10:00 UTC);
        let pending = result(PackageState::PendingReboot, "1.0", "2.0");
        let verified = result(PackageState::Verified, "1.0", "2.0");
        let unchanged = result(PackageState::Verified, "2.0", "2.0");
        // (payload, result, expected)
        let cases = [
            (payload("never", None), &pending, None),
            (
                payload("when_required", None),
                &pending,
                Some(Mode::WhenRequired),
            ),
            (payload("when_required", None), &verified, None),
            (payload("always", None), &verified, Some(Mode::Always)),
            (payload("always", None), &unchanged, None),
            (
                payload("when_required", Some("2026-11-25T11:00:00Z")),
                &pending,
                Some(Mode::WhenRequired),
            ),
            (
                payload("when_required", Some("2026-11-25T09:59:59Z")),
                &pending,
                None,
            ),
            (payload("when_required", Some("garbage")), &pending, None),
            // An older server sends no mode: never.
            (
                r#"{"type":"install","deployment_id":"d","packages":[],"timeout_secs":60}"#
                    .to_owned(),
                &pending,
                None,
            ),
            (
                r#"{"type":"preflight","deployment_id":"d","packages":[]}"#.to_owned(),
                &pending,
                None,
            ),
        ];
        for (p, r, want) in cases {
            assert_eq!(reboot_due(&p, r, now), want, "{p}");
        }
    }

    #[test]
    fn one_reboot_per_job_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = crate::state::StateDir::open(dir.path()).expect("state dir");
        let mut st = crate::state::State {
            server_url: "http://127.0.0.1:1".into(),
            device_id: "dev".into(),
            device_secret: "s".into(),
            tenant: "t".into(),
            checkin_interval_secs: 60,
            last_acked_inventory_hash: None,
            work_signing_key: None,
            rebooted_for_jobs: vec![],
        };
        assert!(claim(&mut st, "job_1"));
        sd.save(&st).expect("save");
        // After a restart (the state read back), the same job is refused, another allowed.
        let mut again = sd.load().expect("load").expect("state");
        assert!(!claim(&mut again, "job_1"));
        assert!(claim(&mut again, "job_1~2"));
        // Bounded: the oldest ids are forgotten.
        for i in 0..REMEMBERED_JOBS + 5 {
            assert!(claim(&mut again, &format!("job_x{i}")));
        }
        assert_eq!(again.rebooted_for_jobs.len(), REMEMBERED_JOBS);
        assert!(!again.rebooted_for_jobs.iter().any(|j| j == "job_1"));
    }

    #[test]
    fn the_reboot_command_runs_and_failures_are_reported() {
        assert!(run_reboot_command(&["true".to_owned()]).is_ok());
        let err = run_reboot_command(&["false".to_owned()])
            .err()
            .unwrap_or_default();
        assert!(err.contains("false exited with"), "{err}");
        let err = run_reboot_command(&["/nonexistent/reboot".to_owned()])
            .err()
            .unwrap_or_default();
        assert!(err.contains("cannot run /nonexistent/reboot"), "{err}");
        assert!(run_reboot_command(&[]).is_err());
    }
}
