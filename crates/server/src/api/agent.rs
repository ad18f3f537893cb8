//! The agent protocol: enroll, check in, long-poll for work, start a job, report its result.

use crate::error::{ApiResult, Body, Params};
use crate::extract::DeviceAuth;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_app::{agent, enrollment, App};
use patchwarden_wire::agent::*;
use serde::Deserialize;
use std::time::Duration;

#[utoipa::path(post, path = "/api/v1/agent/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, body = patchwarden_wire::ErrorBody)), tag = "agent")]
pub async fn enroll(
    State(app): State<App>,
    Body(req): Body<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    Ok(Json(enrollment::enroll(&app, &req).await?))
}

#[utoipa::path(post, path = "/api/v1/agent/checkin", request_body = CheckinRequest,
    responses((status = 200, body = CheckinResponse)), security(("device" = [])), tag = "agent")]
pub async fn checkin(
    State(app): State<App>,
    DeviceAuth(device): DeviceAuth,
    Body(req): Body<CheckinRequest>,
) -> ApiResult<Json<CheckinResponse>> {
    Ok(Json(agent::checkin(&app, &device, &req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WorkQuery {
    /// Seconds to hold the request open waiting for work (0 to 60).
    #[serde(default)]
    pub wait: u64,
}

#[utoipa::path(get, path = "/api/v1/agent/work", params(WorkQuery),
    responses((status = 200, body = WorkResponse)), security(("device" = [])), tag = "agent")]
pub async fn work(
    State(app): State<App>,
    DeviceAuth(device): DeviceAuth,
    Params(q): Params<WorkQuery>,
) -> ApiResult<Json<WorkResponse>> {
    let wait = Duration::from_secs(q.wait.min(agent::MAX_WAIT_SECS));
    Ok(Json(agent::work(&app, &device, wait).await?))
}

#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/start", params(("job_id" = String, Path)),
    responses((status = 204), (status = 404, body = patchwarden_wire::ErrorBody), (status = 409, body = patchwarden_wire::ErrorBody)), security(("device" = [])), tag = "agent")]
pub async fn job_started(
    State(app): State<App>,
    DeviceAuth(device): DeviceAuth,
    Path(job_id): Path<String>,
) -> ApiResult<StatusCode> {
    agent::start(&app, &device, &job_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/result", params(("job_id" = String, Path)), request_body = JobResult,
    responses((status = 200, body = ResultAck), (status = 404, body = patchwarden_wire::ErrorBody)), security(("device" = [])), tag = "agent")]
pub async fn job_result(
    State(app): State<App>,
    DeviceAuth(device): DeviceAuth,
    Path(job_id): Path<String>,
    Body(result): Body<JobResult>,
) -> ApiResult<Json<ResultAck>> {
    let stored = agent::result(&app, &device, &job_id, &result).await?;
    Ok(Json(ResultAck { stored }))
}
