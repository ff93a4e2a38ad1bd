//! The REST API (axum): one module per resource, one `ApiContext`, one error type. Handlers
//! parse the request, call the service, and shape the answer; nothing else.

pub mod client_address;
mod admin;
mod attachments;
mod audit;
mod conversations;
pub mod docs;
pub mod error;
mod extract;
mod health;
mod internal;
mod messages;
pub mod middleware;
mod search;
mod threads;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use utoipa::openapi::path::{Operation, PathItem};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::recent_errors::RecentErrors;
use crate::auth::Authenticator;
use error::ApiError;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::service::ChatService;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Room for an upload's multipart boundaries and part headers beside the file itself.
const UPLOAD_FRAMING_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiContext {
    pub service: Arc<ChatService>,
    pub auth: Arc<Authenticator>,
    pub rest_limiter: Arc<RateLimiter>,
    pub presence: Arc<Presence>,
    /// Set when the service runs with Redis; `/health` reports it.
    pub cluster: Option<Arc<Cluster>>,
    /// Whose `X-Forwarded-For` names the client the REST rate limit counts.
    pub trusted_proxies: Arc<client_address::TrustedProxies>,
    pub metrics: Arc<Metrics>,
    /// What the admin console lists as recent errors.
    pub recent_errors: Arc<RecentErrors>,
    /// `PUBLIC_URL`: the base of uploaded files' URLs; `None`: each upload's `Host`.
    pub public_url: Option<String>,
}

/// `{ success: true }`
#[derive(Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

impl Success {
    fn yes() -> Self {
        Success { success: true }
    }
}

/// The REST routes and their OpenAPI document, built from one list of handlers: each
/// handler's `#[utoipa::path]` gives both its route and its operation, so no route can be
/// served undocumented. CORS is added by `app` around both REST and Socket.IO.
pub fn router(ctx: ApiContext) -> Router {
    let api = OpenApiRouter::new()
        .routes(routes!(conversations::list, conversations::create))
        .routes(routes!(conversations::get, conversations::update, conversations::delete))
        .routes(routes!(conversations::add_participant))
        .routes(routes!(conversations::remove_participant))
        .routes(routes!(conversations::presence))
        .routes(routes!(messages::list, messages::create))
        .routes(routes!(messages::edit, messages::delete))
        .routes(routes!(threads::create))
        .routes(routes!(search::messages))
        .routes(routes!(threads::get, threads::post_message))
        .routes(routes!(attachments::download, attachments::delete))
        .routes(routes!(audit::list))
        .routes(routes!(internal::emit))
        .routes(routes!(internal::create))
        .routes(routes!(internal::list))
        .routes(routes!(internal::update_conversation))
        .routes(routes!(internal::update_conversation_at_update))
        .routes(routes!(docs::openapi_json))
        .routes(routes!(docs::page))
        // The one route that takes a body over `MAX_BODY_BYTES`: a 10 MiB file and its multipart framing.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(attachments::upload))
                .layer(axum::extract::DefaultBodyLimit::max(crate::domain::attachment::MAX_UPLOAD_BYTES + UPLOAD_FRAMING_BYTES)),
        );
    let api = keep_document(api, |api| {
        api.fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(ctx.clone(), middleware::rate_limit))
    });
    let top = OpenApiRouter::with_openapi(docs::ApiDoc::openapi()).routes(routes!(health::health));
    let (router, mut document) = keep_document(top, |top| top.method_not_allowed_fallback(method_not_allowed))
        .nest("/api", api)
        .split_for_parts();
    unique_operation_ids(&mut document);
    let document = docs::ApiDocument(serde_json::to_vec(&document).expect("the API document is JSON").into());
    let router = router
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), middleware::count_answers))
        // Operational pages, outside the REST API and its document.
        .route("/metrics", get(metrics))
        .route("/admin", get(admin::page))
        .route("/admin/assets/{name}", get(admin::asset))
        .route("/admin/api/errors", get(admin::recent_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), middleware::request_context))
        .layer(Extension(document));
    middleware::with_security_headers(router).with_state(ctx)
}

/// Applies to `routes` what `OpenApiRouter` does not pass through to axum, keeping its document.
fn keep_document<S: Clone + Send + Sync + 'static>(
    routes: OpenApiRouter<S>,
    change: impl FnOnce(Router<S>) -> Router<S>,
) -> OpenApiRouter<S> {
    let (router, document) = routes.split_for_parts();
    let mut routes = OpenApiRouter::from(change(router));
    *routes.get_openapi_mut() = document;
    routes
}

/// A handler served under several methods is one operation per method in the document, and
/// operation ids must be unique: each of those gets its method appended (`updateConversationPut`).
fn unique_operation_ids(document: &mut utoipa::openapi::OpenApi) {
    fn operations(item: &mut PathItem) -> [(&'static str, &mut Option<Operation>); 5] {
        [
            ("Get", &mut item.get),
            ("Put", &mut item.put),
            ("Post", &mut item.post),
            ("Delete", &mut item.delete),
            ("Patch", &mut item.patch),
        ]
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            if let Some(id) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                *uses.entry(id).or_default() += 1;
            }
        }
    }
    for item in document.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            if let Some(id) = operation.as_mut().and_then(|o| o.operation_id.as_mut())
                && uses[id.as_str()] > 1
            {
                id.push_str(method);
            }
        }
    }
}

/// Prometheus scrapes this (README "Metrics").
async fn metrics(State(ctx): State<ApiContext>, _reader: extract::MetricsReader) -> axum::response::Response {
    if !ctx.metrics.enabled() {
        return ApiError::RouteNotFound.into_response();
    }
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], ctx.metrics.render()).into_response()
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
