//! The admin console (`crate::admin`): the page and its assets, open to anyone since they
//! hold no data, and the admin-only data the page reads besides `/metrics` and `/health`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::extract::{AdminCaller, PathParams};
use super::ApiContext;
use crate::admin::{self, Asset};

pub async fn page() -> Response {
    serve(admin::PAGE)
}

pub async fn asset(PathParams(name): PathParams<String>) -> Result<Response, ApiError> {
    admin::asset(&name).map(serve).ok_or(ApiError::RouteNotFound)
}

fn serve(asset: Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CONTENT_SECURITY_POLICY, admin::CONTENT_SECURITY_POLICY),
            // Small, and changed with every build: always revalidated.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.content,
    )
        .into_response()
}

/// GET /admin/api/errors: the last warnings and errors logged, newest first.
pub async fn recent_errors(State(ctx): State<ApiContext>, _admin: AdminCaller) -> Json<serde_json::Value> {
    Json(json!({ "errors": ctx.recent_errors.list() }))
}
