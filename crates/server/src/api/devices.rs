//! Devices: list, one device, labels, resetting failures.

use crate::error::{ApiResult, Body};
use crate::extract::Operator;
use axum::extract::{Path, State};
use axum::Json;
use patchwarden_app::{devices, history, App};
use patchwarden_wire::api::*;

#[utoipa::path(get, path = "/api/v1/devices", responses((status = 200, body = [DeviceSummary])),
    security(("operator" = [])), tag = "devices")]
pub async fn list_devices(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<Vec<DeviceSummary>>> {
    Ok(Json(devices::list(&app, &op).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", params(("id" = String, Path)),
    responses((status = 200, body = DeviceDetail), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "devices")]
pub async fn get_device(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceDetail>> {
    Ok(Json(devices::get(&app, &op, &id).await?))
}

#[utoipa::path(put, path = "/api/v1/devices/{id}/labels", params(("id" = String, Path)), request_body = DeviceLabels,
    responses((status = 200, body = DeviceLabels), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "devices")]
pub async fn set_device_labels(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
    Body(req): Body<DeviceLabels>,
) -> ApiResult<Json<DeviceLabels>> {
    Ok(Json(devices::set_labels(&app, &op, &id, req).await?))
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/reset-failures", params(("id" = String, Path)),
    responses((status = 200, body = ResetFailures), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "failures")]
pub async fn reset_failures(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<ResetFailures>> {
    Ok(Json(history::reset_failures(&app, &op, &id).await?))
}
