//! Turning one work item into a job result: check the envelope, decode the operation, run it
//! (or decline it in report-only mode).

use crate::pkg::{InstallOptions, PackageManager};
use crate::timefmt::now_rfc3339;
use patchwarden_core::PackageState;
use patchwarden_wire::agent::{JobResult, Operation, PackageResult, WorkEnvelope};
use std::time::Duration;

/// Checks a work item before it is decoded. Signature checking plugs in here once the server
/// signs work (`WorkEnvelope.signature`, `EnrollResponse.work_signing_key`).
pub trait WorkVerifier: Send + Sync {
    fn verify(&self, envelope: &WorkEnvelope) -> Result<(), String>;
}

/// Accepts every item: the server does not sign work yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptUnsigned;

impl WorkVerifier for AcceptUnsigned {
    fn verify(&self, _envelope: &WorkEnvelope) -> Result<(), String> {
        Ok(())
    }
}

pub const REPORT_ONLY_EVIDENCE: &str =
    "agent runs in report-only mode; installing needs an explicit opt-in";

/// The shortest and longest budget an install may be given. The server's budget is honoured
/// down to a second: an operator who asks for 5 s gets a `timeout` after 5 s, not after 30.
const MIN_BUDGET: Duration = Duration::from_secs(1);
const MAX_BUDGET: Duration = Duration::from_secs(6 * 3600);

/// Runs one work item to a result. Never fails: what went wrong is in `JobResult.error`.
pub fn execute(
    envelope: &WorkEnvelope,
    verifier: &dyn WorkVerifier,
    pm: &dyn PackageManager,
    report_only: bool,
) -> JobResult {
    if let Err(e) = verifier.verify(envelope) {
        return error_result(format!("work item rejected: {e}"));
    }
    let op: Operation = match serde_json::from_str(&envelope.payload) {
        Ok(op) => op,
        Err(e) => return error_result(format!("payload is not a valid operation: {e}")),
    };
    match op {
        Operation::Install {
            packages,
            timeout_secs,
            not_after,
            respect_holds,
            ..
        } => {
            if let Some(end) = not_after.as_deref().and_then(window_closed) {
                let mut r = error_result(String::new());
                r.error = None;
                r.packages = packages
                    .iter()
                    .map(|t| PackageResult {
                        package: t.name.clone(),
                        state: PackageState::Failed,
                        class: Some(patchwarden_core::FailureClass::WindowMissed),
                        from_version: None,
                        to_version: t.version.clone(),
                        installed_version: None,
                        evidence: vec![format!(
                            "the maintenance window closed at {end} before the install could start; nothing was changed"
                        )],
                    })
                    .collect();
                return r;
            }
            if report_only {
                let mut r = error_result(String::new());
                r.error = None;
                r.packages = packages
                    .iter()
                    .map(|t| PackageResult {
                        package: t.name.clone(),
                        state: PackageState::Skipped,
                        class: None,
                        from_version: None,
                        to_version: t.version.clone(),
                        installed_version: None,
                        evidence: vec![REPORT_ONLY_EVIDENCE.to_owned()],
                    })
                    .collect();
                return r;
            }
            let budget = Duration::from_secs(timeout_secs).clamp(MIN_BUDGET, MAX_BUDGET);
            pm.install(&packages, budget, InstallOptions { respect_holds })
        }
        // A pre-flight check changes nothing, so it runs in report-only mode too.
        Operation::Preflight {
            packages,
            respect_holds,
            ..
        } => pm.preflight(&packages, InstallOptions { respect_holds }),
        Operation::Unsupported => error_result("unsupported operation".to_owned()),
    }
}

/// `Some(end)` when the window that ends at `not_after` has already closed.
fn window_closed(not_after: &str) -> Option<String> {
    let end =
        time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
            .ok()?;
    (time::OffsetDateTime::now_utc() >= end).then(|| not_after.to_owned())
}

/// A result for a job that could not run at all.
pub fn error_result(error: String) -> JobResult {
    let now = now_rfc3339();
    JobResult {
        started_at: now.clone(),
        finished_at: now,
        commands: vec![],
        exit_code: None,
        duration_ms: 0,
        output: String::new(),
        packages: vec![],
        error: Some(error),
        boot_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchwarden_wire::agent::{Inventory, PackageTarget};

    struct NoInstall;
    impl PackageManager for NoInstall {
        fn name(&self) -> &'static str {
            "test"
        }
        fn collect_inventory(&self) -> Inventory {
            Inventory::default()
        }
        fn install(&self, _: &[PackageTarget], _: Duration, _: InstallOptions) -> JobResult {
            panic!("must not install");
        }
    }

    struct Reject;
    impl WorkVerifier for Reject {
        fn verify(&self, _: &WorkEnvelope) -> Result<(), String> {
            Err("bad signature".into())
        }
    }

    fn envelope(payload: &str) -> WorkEnvelope {
        WorkEnvelope {
            job_id: "j1".into(),
            payload: payload.into(),
            signature: None,
            key_id: None,
        }
    }

    #[test]
    fn report_only_skips_every_target() {
        let p = r#"{"type":"install","deployment_id":"d1","packages":[{"name":"openssl","version":"3.0.15-1~deb12u1"},{"name":"curl"}],"timeout_secs":600}"#;
        let r = execute(&envelope(p), &AcceptUnsigned, &NoInstall, true);
        assert_eq!(r.error, None);
        assert_eq!(r.packages.len(), 2);
        for pr in &r.packages {
            assert_eq!(pr.state, PackageState::Skipped);
            assert_eq!(pr.evidence, [REPORT_ONLY_EVIDENCE]);
        }
        assert_eq!(
            r.packages[0].to_version.as_deref(),
            Some("3.0.15-1~deb12u1")
        );
    }

    #[test]
    fn no_install_starts_after_the_window_end() {
        let p = r#"{"type":"install","deployment_id":"d1","packages":[{"name":"curl","version":"7.88.1-10+deb12u8"}],"timeout_secs":600,"not_after":"2020-01-01T03:00:00Z"}"#;
        let r = execute(&envelope(p), &AcceptUnsigned, &NoInstall, false);
        assert_eq!(r.error, None);
        assert_eq!(r.packages.len(), 1);
        assert_eq!(r.packages[0].state, PackageState::Failed);
        assert_eq!(
            r.packages[0].class,
            Some(patchwarden_core::FailureClass::WindowMissed)
        );
        assert!(r.packages[0].evidence[0].contains("2020-01-01T03:00:00Z"));
        // A window still open lets the install run (here: the report-only path proves it got past).
        let p = r#"{"type":"install","deployment_id":"d1","packages":[{"name":"curl"}],"timeout_secs":600,"not_after":"2999-01-01T00:00:00Z"}"#;
        let r = execute(&envelope(p), &AcceptUnsigned, &NoInstall, true);
        assert_eq!(r.packages[0].state, PackageState::Skipped);
    }

    #[test]
    fn unsupported_and_invalid_and_rejected_items() {
        let r = execute(
            &envelope(r#"{"type":"reboot","in":5}"#),
            &AcceptUnsigned,
            &NoInstall,
            false,
        );
        assert_eq!(r.error.as_deref(), Some("unsupported operation"));
        assert!(r.packages.is_empty());
        let r = execute(&envelope("not json"), &AcceptUnsigned, &NoInstall, false);
        assert!(r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not a valid operation")));
        let r = execute(
            &envelope(r#"{"type":"reboot"}"#),
            &Reject,
            &NoInstall,
            false,
        );
        assert!(r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("bad signature")));
    }
}
