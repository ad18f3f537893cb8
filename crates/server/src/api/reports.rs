//! The compliance report and the daily snapshot.

use crate::error::{ApiResult, Params};
use crate::extract::Operator;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchwarden_app::reports::{self, ComplianceReport, Format, ReportQuery, SnapshotTaken};
use patchwarden_app::App;

/// A report in the format asked for: JSON, a download (CSV, PDF), or the printable page.
pub fn respond(r: &ComplianceReport, f: Format) -> Response {
    match f {
        Format::Json => Json(r).into_response(),
        Format::Html => crate::web::report_document(r),
        Format::Csv | Format::Pdf => match reports::download(r, f) {
            Some((content_type, name, bytes)) => (
                [
                    (header::CONTENT_TYPE, content_type.to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response(),
            None => Json(r).into_response(),
        },
    }
}

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
    Ok(respond(&report, format))
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
