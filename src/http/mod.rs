//! The REST API (axum): one module per resource, one `ApiContext`, one error type. Handlers
//! parse the request, call the service, and shape the answer; nothing else.

mod admin;
mod conversations;
pub mod error;
mod extract;
mod internal;
mod messages;
pub mod middleware;
mod threads;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::json;

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

#[derive(Clone)]
pub struct ApiContext {
    pub service: Arc<ChatService>,
    pub auth: Arc<Authenticator>,
    pub rest_limiter: Arc<RateLimiter>,
    pub presence: Arc<Presence>,
    /// Set when the service runs with Redis; `/health` reports it.
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Arc<Metrics>,
    /// What the admin console lists as recent errors.
    pub recent_errors: Arc<RecentErrors>,
}

/// The REST routes. CORS is added by `app` around both REST and Socket.IO.
pub fn router(ctx: ApiContext) -> Router {
    let api = Router::new()
        .route("/conversations", get(conversations::list).post(conversations::create))
        .route(
            "/conversations/{id}",
            get(conversations::get).put(conversations::update).patch(conversations::update).delete(conversations::delete),
        )
        .route("/conversations/{id}/messages", get(messages::list).post(messages::create))
        .route("/conversations/{id}/messages/{mid}", patch(messages::edit).delete(messages::delete))
        .route("/conversations/{id}/threads", post(threads::create))
        .route("/conversations/{id}/threads/{tid}", get(threads::get).post(threads::post_message))
        .route("/conversations/{id}/participants", post(conversations::add_participant))
        .route("/conversations/{id}/participants/{user_id}", axum::routing::delete(conversations::remove_participant))
        .route("/conversations/{id}/presence", get(conversations::presence))
        .route("/internal/messages/emit", post(internal::emit))
        .route("/internal/messages/create", post(internal::create))
        .route("/internal/messages/list", post(internal::list))
        .route("/internal/conversations/{id}", patch(internal::update_conversation).put(internal::update_conversation))
        .route(
            "/internal/conversations/{id}/update",
            patch(internal::update_conversation).post(internal::update_conversation).put(internal::update_conversation),
        )
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), middleware::rate_limit));

    let router = Router::new()
        .route("/health", get(health))
        .method_not_allowed_fallback(method_not_allowed)
        .nest("/api", api)
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), middleware::count_answers))
        .route("/metrics", get(metrics))
        .route("/admin", get(admin::page))
        .route("/admin/assets/{name}", get(admin::asset))
        .route("/admin/api/errors", get(admin::recent_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    middleware::with_security_headers(router).with_state(ctx)
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

/// 200 while the store answers. Redis being unreachable is reported as `degraded` (the node
/// keeps serving on its own) and does not fail the check. The agent service is reported as
/// its last call found it, and changes nothing: users' messages never wait for it.
async fn health(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let timestamp = crate::domain::time::to_iso(&crate::domain::time::now());
    let store = ctx.service.health().await;
    let mut checks = serde_json::Map::new();
    checks.insert(
        "store".into(),
        match &store {
            Ok(kind) => json!({ "status": "ok", "kind": kind }),
            Err(e) => json!({ "status": "down", "kind": ctx.service.store().kind(), "error": e }),
        },
    );
    let redis_up = ctx.cluster.as_ref().map(|c| c.is_up());
    if let Some(up) = redis_up {
        checks.insert(
            "redis".into(),
            if up { json!({ "status": "ok" }) } else { json!({ "status": "degraded", "error": "unreachable; serving from this node only" }) },
        );
    }
    if let Some(agent) = ctx.service.agent_health() {
        checks.insert(
            "agent".into(),
            match agent.last_failure {
                None => json!({ "status": "ok", "pending": agent.pending }),
                Some(e) => json!({ "status": "failing", "pending": agent.pending, "error": e }),
            },
        );
    }
    let (code, status) = match (&store, redis_up) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "error"),
        (Ok(_), Some(false)) => (StatusCode::OK, "degraded"),
        (Ok(_), _) => (StatusCode::OK, "ok"),
    };
    (code, Json(json!({ "status": status, "service": "chat-service", "timestamp": timestamp, "checks": checks })))
}
