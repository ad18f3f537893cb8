//! Patchwarden's pure core: the product vocabulary (failure classes, package states), version
//! comparison, parsers for package-manager output, and failure classification. No I/O here.

pub mod apt;
pub mod class;
pub mod classify;
pub mod classify_dnf;
pub mod outcome;
pub mod outcome_rpm;
pub mod policy;
pub mod reboot;
pub mod rings;
pub mod rpm;
pub mod schedule;
pub mod state;
pub mod version;
pub mod vocab;

pub use class::FailureClass;
pub use state::PackageState;
pub use vocab::{
    AuditOutcome, DeploymentStatus, DeviceStatus, JobPhase, JobStatus, RebootMode, RebootStatus,
    RingState, Role, TriageStatus,
};
