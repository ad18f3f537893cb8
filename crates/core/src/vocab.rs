//! The smaller words of the product vocabulary: who may act (roles) and where a deployment
//! stands (its status). Stored, sent and shown by these names, never as bare strings.

/// Defines a unit-only enum named by snake_case strings: `ALL`, `as_str`, `Display`,
/// `FromStr` (an unknown name is an error naming it), and serde under the same names.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),+ ];

            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::vocab::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    other => Err($crate::vocab::UnknownName {
                        what: $what,
                        name: other.to_owned(),
                        expected: &[ $( $text ),+ ],
                    }),
                }
            }
        }
    };
}

/// A name that is not one of an enum's: says what it was and what would have been valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}: use {}", expected.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static [&'static str],
}

named_enum! {
    /// A role, per tenant or provider-wide. What each may do is the application's roles table
    /// (`patchwarden_app::authz`); the order is strongest first.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum Role: "role" {
        Admin = "admin",
        Operator = "operator",
        Approver = "approver",
        Viewer = "viewer",
    }
}

named_enum! {
    /// Where a deployment stands. `pending_approval` → `running` (approve) or `cancelled`
    /// (reject); `running` ⇄ `halted` (halt, resume; the gate or the breaker halts by itself);
    /// `running`/`halted`/`pending_approval` → `cancelled`; `running` → `completed` when its
    /// last ring is done. `cancelled` and `completed` are final.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum DeploymentStatus: "deployment status" {
        PendingApproval = "pending_approval",
        Running = "running",
        Halted = "halted",
        Cancelled = "cancelled",
        Completed = "completed",
    }
}

impl DeploymentStatus {
    /// No action changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Cancelled | Self::Completed)
    }

    /// The orchestrator looks at it (it may start work, or wait for an approver).
    pub fn is_active(self) -> bool {
        matches!(self, Self::PendingApproval | Self::Running)
    }
}

named_enum! {
    /// When an install may reboot the device (a deployment's reboot policy, as sent to the
    /// agent after the loop guard).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Default)]
    pub enum RebootMode: "reboot mode" {
        /// Never reboot; packages needing one stay `pending_reboot`.
        #[default]
        Never = "never",
        /// Reboot when the install left the device requiring one (inside the window only).
        WhenRequired = "when_required",
        /// Reboot after every install that changed something.
        Always = "always",
    }
}

named_enum! {
    /// Where a reboot Patchwarden asked for stands: `offered` (the job was handed out with a
    /// reboot mode), `none` (the install did not reboot), `rebooting` (the agent said it
    /// reboots; the come-back clock runs), `back` (a new boot id came in), `late` (not back
    /// within the budget), `loop` (back, still requiring a reboot: never rebooted again for
    /// those packages), `loop_reset` (an operator cleared the loop guard).
    pub enum RebootStatus: "reboot status" {
        Offered = "offered",
        None = "none",
        Rebooting = "rebooting",
        Back = "back",
        Late = "late",
        Loop = "loop",
        LoopReset = "loop_reset",
    }
}

impl RebootStatus {
    /// The device was told to reboot (whatever happened next).
    pub fn was_requested(self) -> bool {
        matches!(
            self,
            Self::Rebooting | Self::Back | Self::Late | Self::Loop | Self::LoopReset
        )
    }
}

named_enum! {
    /// The triage status of a failure.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Default)]
    pub enum TriageStatus: "triage status" {
        /// In the queue.
        #[default]
        Open = "open",
        /// Resolved by someone; a newer failed attempt reopens it.
        Resolved = "resolved",
        /// Risk accepted by an approver until a date; back in the queue when it expires.
        AcceptedRisk = "accepted_risk",
    }
}

named_enum! {
    /// How an operator action ended, as the audit log records it.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum AuditOutcome: "audit outcome" {
        Ok = "ok",
        /// Refused: not authenticated (401) or not allowed (403).
        Denied = "denied",
        Failed = "failed",
    }
}

named_enum! {
    /// Where one device's job stands, as stored: `queued` (waiting to be offered or picked
    /// up), `running` (the agent confirmed it started), `done` (a result is stored).
    pub enum JobStatus: "job status" {
        Queued = "queued",
        Running = "running",
        Done = "done",
    }
}

named_enum! {
    /// A job as a deployment view shows it: `waiting` is a queued job not yet released by
    /// the rollout (its ring, window or concurrency limit has not come).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum JobPhase: "job phase" {
        Waiting = "waiting",
        Queued = "queued",
        Running = "running",
        Done = "done",
    }
}

named_enum! {
    /// Progress of one ring of a rollout.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum RingState: "ring state" {
        Waiting = "waiting",
        Running = "running",
        Done = "done",
    }
}

named_enum! {
    /// Whether a device is in touch: `new` (never checked in), `online` (within a few
    /// check-in intervals), `stale` (missed a few), `offline` (missed many).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum DeviceStatus: "device status" {
        New = "new",
        Online = "online",
        Stale = "stale",
        Offline = "offline",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
            assert_eq!(
                serde_json::to_string(r).expect("json"),
                format!("\"{}\"", r.as_str())
            );
        }
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>(), Ok(*s));
        }
        let e = "root".parse::<Role>().expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown role \"root\": use admin, operator, approver, viewer"
        );
        assert!(serde_json::from_str::<DeploymentStatus>("\"paused\"").is_err());
        assert!(Role::Admin < Role::Viewer, "strongest first");
        assert!(DeploymentStatus::Completed.is_final() && !DeploymentStatus::Halted.is_final());
    }
}
