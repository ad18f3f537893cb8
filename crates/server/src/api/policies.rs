//! Policies and `apply`.

use crate::error::{ApiResult, Body, Params};
use crate::extract::Operator;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_app::{policies, App};
use patchwarden_wire::api::*;

#[utoipa::path(post, path = "/api/v1/policies", request_body = PolicySpec,
    responses((status = 201, body = ApplyOutcome), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 409, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn create_policy(
    State(app): State<App>,
    Operator(op): Operator,
    Body(spec): Body<PolicySpec>,
) -> ApiResult<(StatusCode, Json<ApplyOutcome>)> {
    Ok((
        StatusCode::CREATED,
        Json(policies::create(&app, &op, spec).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/policies", params(TenantQuery),
    responses((status = 200, body = Vec<PolicyView>)), security(("operator" = [])), tag = "policies")]
pub async fn list_policies(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<TenantQuery>,
) -> ApiResult<Json<Vec<PolicyView>>> {
    Ok(Json(policies::list(&app, &op, q.tenant.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/policies/{id}", params(("id" = String, Path), TenantQuery),
    responses((status = 200, body = PolicyView), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn get_policy(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
    Params(q): Params<TenantQuery>,
) -> ApiResult<Json<PolicyView>> {
    Ok(Json(
        policies::get(&app, &op, &id, q.tenant.as_deref()).await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/policies/{id}", params(("id" = String, Path), TenantQuery), request_body = PolicySpec,
    responses((status = 200, body = ApplyOutcome), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn update_policy(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
    Params(q): Params<TenantQuery>,
    Body(spec): Body<PolicySpec>,
) -> ApiResult<Json<ApplyOutcome>> {
    Ok(Json(
        policies::update(&app, &op, &id, q.tenant.as_deref(), spec).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/policies/{id}", params(("id" = String, Path), TenantQuery),
    responses((status = 204), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn delete_policy(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
    Params(q): Params<TenantQuery>,
) -> ApiResult<StatusCode> {
    policies::delete(&app, &op, &id, q.tenant.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/apply", request_body = ApplyRequest,
    responses((status = 200, body = Vec<ApplyOutcome>), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn apply(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<ApplyRequest>,
) -> ApiResult<Json<Vec<ApplyOutcome>>> {
    Ok(Json(policies::apply(&app, &op, req).await?))
}
