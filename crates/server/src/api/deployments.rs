//! Deployments: create, list, one deployment, the state machine's actions, pre-flight, and
//! rejected updates.

use crate::error::{ApiError, ApiResult, Body, Params};
use crate::extract::Operator;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_app::deployments::actions::{self, Action};
use patchwarden_app::{deployments, policies, preflight, App};
use patchwarden_wire::api::*;

#[utoipa::path(post, path = "/api/v1/deployments", request_body = CreateDeploymentRequest,
    responses((status = 201, body = DeploymentCreated), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn create_deployment(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<CreateDeploymentRequest>,
) -> ApiResult<(StatusCode, Json<DeploymentCreated>)> {
    let created = deployments::create(&app, &op, &req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/deployments", responses((status = 200, body = [DeploymentSummary])),
    security(("operator" = [])), tag = "deployments")]
pub async fn list_deployments(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<Vec<DeploymentSummary>>> {
    Ok(Json(deployments::list(&app, &op).await?))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", params(("id" = String, Path)),
    responses((status = 200, body = DeploymentView), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn get_deployment(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<DeploymentView>> {
    Ok(Json(deployments::get(&app, &op, &id).await?))
}

/// The optional body of an action: an empty one means no reason given.
fn reason(body: &[u8]) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<DeploymentAction>(body)
        .map(|a| a.reason)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("invalid request body: {e}"),
            )
        })
}

macro_rules! action_handler {
    ($name:ident, $action:expr, $path:literal) => {
        #[utoipa::path(post, path = $path, params(("id" = String, Path)), request_body = DeploymentAction,
            responses((status = 200, body = DeploymentView), (status = 404, body = patchwarden_wire::ErrorBody),
                (status = 409, body = patchwarden_wire::ErrorBody)),
            security(("operator" = [])), tag = "deployments")]
        pub async fn $name(
            State(app): State<App>,
            Operator(op): Operator,
            Path(id): Path<String>,
            body: axum::body::Bytes,
        ) -> ApiResult<Json<DeploymentView>> {
            let reason = reason(&body)?;
            Ok(Json(actions::act(&app, &op, &id, $action, reason).await?))
        }
    };
}

action_handler!(
    approve_deployment,
    Action::Approve,
    "/api/v1/deployments/{id}/approve"
);
action_handler!(
    reject_deployment,
    Action::Reject,
    "/api/v1/deployments/{id}/reject"
);
action_handler!(
    halt_deployment,
    Action::Halt,
    "/api/v1/deployments/{id}/halt"
);
action_handler!(
    resume_deployment,
    Action::Resume,
    "/api/v1/deployments/{id}/resume"
);
action_handler!(
    cancel_deployment,
    Action::Cancel,
    "/api/v1/deployments/{id}/cancel"
);

#[utoipa::path(post, path = "/api/v1/deployments/{id}/preflight", params(("id" = String, Path)),
    responses((status = 200, body = PreflightStarted), (status = 404, body = patchwarden_wire::ErrorBody),
        (status = 409, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn start_preflight(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PreflightStarted>> {
    Ok(Json(preflight::start(&app, &op, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/rejected-updates", params(TenantQuery),
    responses((status = 200, body = Vec<RejectedUpdateView>)), security(("operator" = [])), tag = "deployments")]
pub async fn list_rejected(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<TenantQuery>,
) -> ApiResult<Json<Vec<RejectedUpdateView>>> {
    Ok(Json(
        policies::list_rejected(&app, &op, q.tenant.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/rejected-updates/unreject", request_body = UnrejectRequest,
    responses((status = 200, body = UnrejectOutcome), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn unreject(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<UnrejectRequest>,
) -> ApiResult<Json<UnrejectOutcome>> {
    Ok(Json(policies::unreject(&app, &op, &req).await?))
}
