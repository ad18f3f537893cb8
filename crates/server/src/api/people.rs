//! Users and API tokens.

use crate::error::{ApiResult, Body};
use crate::extract::Operator;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_app::{people, App};
use patchwarden_wire::access::*;

#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, body = [UserView]),
    (status = 403, body = patchwarden_wire::ErrorBody)), security(("operator" = [])), tag = "people")]
pub async fn list_users(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(people::list_users(&app, &op).await?))
}

#[utoipa::path(post, path = "/api/v1/users", request_body = CreateUserRequest,
    responses((status = 201, body = UserCreated), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 403, body = patchwarden_wire::ErrorBody), (status = 409, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn create_user(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    Ok((
        StatusCode::CREATED,
        Json(people::create_user(&app, &op, &req).await?),
    ))
}

#[utoipa::path(post, path = "/api/v1/users/{login}/disable", params(("login" = String, Path)),
    responses((status = 204), (status = 403, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn disable_user(
    State(app): State<App>,
    Operator(op): Operator,
    Path(login): Path<String>,
) -> ApiResult<StatusCode> {
    people::disable_user(&app, &op, &login).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = [TokenView]),
    (status = 403, body = patchwarden_wire::ErrorBody)), security(("operator" = [])), tag = "people")]
pub async fn list_tokens(
    State(app): State<App>,
    Operator(op): Operator,
) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(people::list_tokens(&app, &op).await?))
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = TokenCreated), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 403, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn create_token(
    State(app): State<App>,
    Operator(op): Operator,
    Body(req): Body<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    Ok((
        StatusCode::CREATED,
        Json(people::create_token(&app, &op, &req).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn revoke_token(
    State(app): State<App>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    people::revoke_token(&app, &op, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
