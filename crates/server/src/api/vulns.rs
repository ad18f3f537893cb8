//! Vulnerability feeds, exposures, and the SLA policy.

use crate::error::{ApiResult, Body, Params};
use crate::extract::Operator;
use axum::extract::{Path, State};
use axum::Json;
use patchwarden_app::{sla, vulns, App};
use patchwarden_wire::api::*;

#[utoipa::path(post, path = "/api/v1/feeds", request_body = FeedImportRequest,
    responses((status = 200, body = FeedStatus), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "vulnerabilities")]
pub async fn import_feed(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<FeedImportRequest>,
) -> ApiResult<Json<FeedStatus>> {
    Ok(Json(vulns::import_feed(&app, &op, &req).await?))
}

#[utoipa::path(get, path = "/api/v1/feeds", responses((status = 200, body = [FeedStatus])), security(("operator" = [])), tag = "vulnerabilities")]
pub async fn list_feeds(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<Vec<FeedStatus>>> {
    Ok(Json(vulns::list_feeds(&app, &op).await?))
}

#[utoipa::path(get, path = "/api/v1/vulns", params(VulnQuery), responses((status = 200, body = [VulnRow])), security(("operator" = [])), tag = "vulnerabilities")]
pub async fn list_vulns(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<VulnQuery>,
) -> ApiResult<Json<Vec<VulnRow>>> {
    Ok(Json(vulns::list(&app, &op, &q).await?))
}

#[utoipa::path(get, path = "/api/v1/vulns/{cve}", params(("cve" = String, Path)), responses((status = 200, body = [VulnRow])), security(("operator" = [])), tag = "vulnerabilities")]
pub async fn show_vuln(
    State(app): State<App>,
    Operator(op): Operator,
    Path(cve): Path<String>,
) -> ApiResult<Json<Vec<VulnRow>>> {
    Ok(Json(vulns::show(&app, &op, &cve).await?))
}

#[utoipa::path(get, path = "/api/v1/sla-policy", params(TenantQuery),
    responses((status = 200, body = SlaPolicyView), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "vulnerabilities")]
pub async fn get_sla_policy(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<TenantQuery>,
) -> ApiResult<Json<SlaPolicyView>> {
    Ok(Json(sla::get(&app, &op, q.tenant.as_deref()).await?))
}

#[utoipa::path(put, path = "/api/v1/sla-policy", request_body = SlaPolicyUpdate,
    responses((status = 200, body = SlaPolicyView), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "vulnerabilities")]
pub async fn put_sla_policy(
    State(app): State<App>,
    Operator(op): Operator,
    Body(u): Body<SlaPolicyUpdate>,
) -> ApiResult<Json<SlaPolicyView>> {
    Ok(Json(sla::put(&app, &op, &u).await?))
}
