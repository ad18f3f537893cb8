//! What can go wrong in a use case, as a type: the front ends map each kind to their own
//! answer (HTTP status and code in `patchwarden-server::error`, a page in the dashboard).

pub use patchwarden_store::StoreError as StorageError;
use patchwarden_store::StoreError;

/// Which credential was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An operator's API token (or a missing one).
    Operator,
    /// An enrollment token.
    EnrollToken,
    /// A device's own secret.
    Device,
}

/// Why a change conflicts with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Something with this name or key exists already.
    Exists,
    /// The object is not in a state that allows this (e.g. halting a completed deployment).
    InvalidState,
    /// A device asked to start work that is no longer on offer (its window closed, its
    /// deployment halted or cancelled): it must not run it.
    NotOnOffer,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    /// Not allowed; `needs` names the role(s) that would allow it, when a role would.
    #[error("{message}")]
    Forbidden {
        message: String,
        needs: Option<String>,
    },
    #[error("{message}")]
    Unauthenticated {
        credential: Credential,
        message: String,
    },
    /// Bad input; `field` names the input that was wrong (e.g. `ttl_secs`, `rings`).
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{message}")]
    Conflict { kind: ConflictKind, message: String },
    /// A deployment that would install nothing: no targeted device has anything to install
    /// for the selection (or only rejected updates). Not a broken request; policies skip
    /// such a cycle and look again later.
    #[error("{reason}")]
    NothingToInstall { reason: String },
    /// Too many attempts (logins); try again after this many milliseconds.
    #[error("{message}")]
    TooManyAttempts {
        message: String,
        retry_after_ms: i64,
    },
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A bug or an impossible state (e.g. a value that does not serialise).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
            needs: None,
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            kind: ConflictKind::Exists,
            message: message.into(),
        }
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::Conflict {
            kind: ConflictKind::InvalidState,
            message: message.into(),
        }
    }
    pub fn unauthenticated(credential: Credential, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            credential,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// A store conflict (a taken name) as [`AppError::Conflict`]; other store errors as
    /// they are.
    pub fn from_store_conflict(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::conflict(m),
            other => Self::Storage(other),
        }
    }
}
