//! Enrollment tokens.

use crate::error::{ApiResult, Body};
use crate::extract::Operator;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_app::{enrollment, App};
use patchwarden_wire::api::*;

#[utoipa::path(post, path = "/api/v1/enroll-tokens", request_body = CreateEnrollTokenRequest,
    responses((status = 201, body = EnrollTokenCreated), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "enrollment")]
pub async fn create_enroll_token(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<CreateEnrollTokenRequest>,
) -> ApiResult<(StatusCode, Json<EnrollTokenCreated>)> {
    let created = enrollment::create_token(&app, &op, &req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/enroll-tokens", responses((status = 200, body = [EnrollTokenInfo])),
    security(("operator" = [])), tag = "enrollment")]
pub async fn list_enroll_tokens(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<Vec<EnrollTokenInfo>>> {
    Ok(Json(enrollment::list_tokens(&app, &op).await?))
}

#[utoipa::path(delete, path = "/api/v1/enroll-tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = patchwarden_wire::ErrorBody)), security(("operator" = [])), tag = "enrollment")]
pub async fn revoke_enroll_token(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    enrollment::revoke_token(&app, &op, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
