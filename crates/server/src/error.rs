//! API errors: the one place an application error becomes an HTTP status and code. Every
//! non-2xx response carries an [`ErrorBody`] naming what was wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchwarden_app::error::{ConflictKind, Credential};
use patchwarden_app::AppError;
use patchwarden_wire::ErrorBody;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The input that was wrong, for invalid requests.
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            AppError::Forbidden { .. } => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            AppError::Unauthenticated { credential, .. } => Self::new(
                StatusCode::UNAUTHORIZED,
                match credential {
                    Credential::Operator => "unauthorized",
                    Credential::EnrollToken => "invalid_enroll_token",
                    Credential::Device => "invalid_device_credential",
                },
                message,
            ),
            AppError::Invalid { field, .. } => Self {
                field: Some(field),
                ..Self::bad_request(message)
            },
            AppError::Conflict { kind, .. } => Self::new(
                StatusCode::CONFLICT,
                match kind {
                    ConflictKind::Exists => "conflict",
                    ConflictKind::InvalidState => "invalid_state",
                    ConflictKind::NotOnOffer => "not_on_offer",
                },
                message,
            ),
            AppError::NothingToInstall { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "nothing_to_install", message)
            }
            AppError::TooManyAttempts { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", message)
            }
            AppError::Storage(patchwarden_app::error::StorageError::Corrupt(m)) => {
                tracing::error!(error = %m, "stored data is corrupt");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt",
                    format!("stored data cannot be read: {m}"),
                )
            }
            AppError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_error",
                    "the server could not read or write its database; retry later",
                )
            }
            AppError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to handle this request",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.code.to_owned(),
                message: self.message,
                field: self.field.map(str::to_owned),
            }),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body whose rejection (bad JSON, a missing or mistyped field, wrong content
/// type) is answered with an [`ErrorBody`] naming what was wrong, like every other error.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "invalid_body",
                format!("invalid request body: {}", rejection.body_text()),
            )),
        }
    }
}

/// A query string whose rejection is answered like a bad body.
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "invalid_query",
                format!("invalid query: {}", rejection.body_text()),
            )),
        }
    }
}
