//! The failure queue and its triage.

use crate::error::{ApiResult, Body, Params};
use crate::extract::Operator;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use patchwarden_app::{history, triage, App};
use patchwarden_wire::api::*;

#[utoipa::path(get, path = "/api/v1/failures", params(FailuresQuery),
    responses((status = 200, body = FailuresView), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "failures")]
pub async fn list_failures(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<FailuresQuery>,
) -> ApiResult<Json<FailuresView>> {
    Ok(Json(history::failures(&app, &op, &q).await?))
}

macro_rules! triage_handler {
    ($name:ident, $path:literal) => {
        #[utoipa::path(post, path = $path, request_body = FailureActionRequest,
            responses((status = 200, body = FailureActionResult), (status = 400, body = patchwarden_wire::ErrorBody),
                (status = 403, body = patchwarden_wire::ErrorBody), (status = 404, body = patchwarden_wire::ErrorBody)),
            security(("operator" = [])), tag = "failures")]
        pub async fn $name(
            State(app): State<App>,
            Operator(op): Operator,
            Body(req): Body<FailureActionRequest>,
        ) -> ApiResult<Json<FailureActionResult>> {
            Ok(Json(triage::$name(&app, &op, &req).await?))
        }
    };
}

triage_handler!(assign, "/api/v1/failures/assign");
triage_handler!(resolve, "/api/v1/failures/resolve");
triage_handler!(accept_risk, "/api/v1/failures/accept-risk");

#[utoipa::path(post, path = "/api/v1/failures/retry", request_body = FailureActionRequest,
    responses((status = 201, body = FailureActionResult), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 403, body = patchwarden_wire::ErrorBody), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "failures")]
pub async fn retry(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<FailureActionRequest>,
) -> ApiResult<(StatusCode, Json<FailureActionResult>)> {
    Ok((
        StatusCode::CREATED,
        Json(triage::retry(&app, &op, &req).await?),
    ))
}
