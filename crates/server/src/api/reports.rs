//! The compliance report and the daily snapshot.

use crate::error::{ApiResult, Params};
use crate::extract::Operator;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use patchwarden_app::reports::{self, ComplianceReport, ReportQuery, SnapshotTaken};
use patchwarden_app::App;

#[utoipa::path(get, path = "/api/v1/reports/compliance", params(ReportQuery),
    responses((status = 200, body = ComplianceReport, description = "JSON; with format=csv|pdf|html the same data as text/csv, application/pdf or text/html"),
        (status = 400, body = patchwarden_wire::ErrorBody), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "reports")]
pub async fn compliance_report(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<ReportQuery>,
) -> ApiResult<Response> {
    let (report, format) = reports::compliance_report(&app, &op, &q).await?;
    Ok(crate::web::report_response(&report, format))
}

#[utoipa::path(post, path = "/api/v1/history/snapshot",
    responses((status = 200, body = SnapshotTaken), (status = 403, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "reports")]
/// Takes today's daily snapshot now (the server also takes it on its own timer); idempotent.
pub async fn take_snapshot(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<SnapshotTaken>> {
    Ok(Json(reports::take_snapshot(&app, &op).await?))
}
