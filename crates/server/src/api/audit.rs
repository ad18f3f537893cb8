//! `GET /api/v1/audit` (JSON or CSV).

use crate::error::{ApiResult, Params};
use crate::extract::Operator;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchwarden_app::{audit, App};
use patchwarden_wire::access::{AuditEntryView, AuditQuery};

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntryView], description = "newest first; text/csv with format=csv"),
        (status = 403, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "audit")]
pub async fn list_audit(
    State(app): State<App>,
    Operator(op): Operator,
    Params(q): Params<AuditQuery>,
) -> ApiResult<Response> {
    let csv = audit::check_format(q.format.as_deref())?;
    let rows = audit::read(&app, &op, &q).await?;
    Ok(if csv {
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"patchwarden-audit.csv\"",
                ),
            ],
            audit::to_csv(&rows),
        )
            .into_response()
    } else {
        Json(rows).into_response()
    })
}
