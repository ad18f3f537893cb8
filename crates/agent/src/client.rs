//! The HTTP client of the agent protocol (`crates/wire/src/agent.rs`): blocking, one call per
//! method, errors sorted into "try again later" and "the server said no".

use patchwarden_wire::agent::{
    CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, JobResult, WorkResponse,
};
use patchwarden_wire::{ErrorBody, WorkId, API_PREFIX};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Margin on top of the long-poll `wait` before the client gives up on the response.
const POLL_MARGIN: Duration = Duration::from_secs(15);
pub const MAX_WAIT_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network trouble or a 5xx/408/429: retry later with backoff.
    #[error("server unreachable: {0}")]
    Unavailable(String),
    /// 401/403: the device credential (or enrollment token) is not accepted.
    #[error("credential rejected ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Another 4xx: retrying the same request will not help.
    #[error("request rejected ({status} {error}): {message}")]
    Rejected {
        status: u16,
        error: String,
        message: String,
    },
    #[error("unexpected response: {0}")]
    BadResponse(String),
}

impl ClientError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Unavailable(_))
    }
}

pub struct Client {
    base: String,
    secret: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `server` is the server's base URL (`http://host:8080`), without the API prefix.
    pub fn new(server: &str, secret: Option<String>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .user_agent(concat!("patchwarden-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            base: format!("{}{}", server.trim_end_matches('/'), API_PREFIX),
            secret,
            agent,
        }
    }

    fn request(&self, method: &str, path: &str, timeout: Duration) -> ureq::Request {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .timeout(timeout);
        match &self.secret {
            Some(s) => req.set("Authorization", &format!("Bearer {s}")),
            None => req,
        }
    }

    pub fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        json(
            self.request("POST", "/agent/enroll", CALL_TIMEOUT)
                .send_json(req),
        )
    }

    pub fn checkin(&self, req: &CheckinRequest) -> Result<CheckinResponse, ClientError> {
        json(
            self.request("POST", "/agent/checkin", CALL_TIMEOUT)
                .send_json(req),
        )
    }

    /// Long-polls for work, holding the request up to `wait_secs` (at most 60).
    pub fn work(&self, wait_secs: u64) -> Result<WorkResponse, ClientError> {
        let wait = wait_secs.min(MAX_WAIT_SECS);
        let timeout = Duration::from_secs(wait) + POLL_MARGIN;
        json(
            self.request("GET", &format!("/agent/work?wait={wait}"), timeout)
                .call(),
        )
    }

    /// `POST jobs/{id}/start`: asks the server to confirm that the work may run now.
    pub fn job_started(&self, work_id: &WorkId) -> Result<(), ClientError> {
        empty(
            self.request(
                "POST",
                &format!("/agent/jobs/{work_id}/start"),
                CALL_TIMEOUT,
            )
            .call(),
        )
    }

    pub fn job_result(&self, work_id: &WorkId, result: &JobResult) -> Result<(), ClientError> {
        empty(
            self.request(
                "POST",
                &format!("/agent/jobs/{work_id}/result"),
                CALL_TIMEOUT,
            )
            .send_json(result),
        )
    }
}

fn json<T: serde::de::DeserializeOwned>(
    res: Result<ureq::Response, ureq::Error>,
) -> Result<T, ClientError> {
    let resp = res.map_err(classify)?;
    resp.into_json()
        .map_err(|e| ClientError::BadResponse(e.to_string()))
}

fn empty(res: Result<ureq::Response, ureq::Error>) -> Result<(), ClientError> {
    res.map(drop).map_err(classify)
}

fn classify(err: ureq::Error) -> ClientError {
    match err {
        ureq::Error::Transport(t) => ClientError::Unavailable(t.to_string()),
        ureq::Error::Status(status, resp) => {
            let body: Option<ErrorBody> = resp.into_json().ok();
            let (error, message) = match body {
                Some(b) => (b.error, b.message),
                None => (String::new(), format!("HTTP {status}")),
            };
            match status {
                401 | 403 => ClientError::Unauthorized { status, message },
                408 | 429 | 500..=599 => {
                    ClientError::Unavailable(format!("HTTP {status} {error}: {message}"))
                }
                _ => ClientError::Rejected {
                    status,
                    error,
                    message,
                },
            }
        }
    }
}
