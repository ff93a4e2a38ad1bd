//! GET /health: whether the store (and Redis, when configured) answers. Never rate limited.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiContext;
use crate::store::SearchMethod;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything answers.
    Ok,
    /// Redis is unreachable: the node serves on its own.
    Degraded,
    /// The store is unreachable.
    Error,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Degraded,
    Down,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// Always `chat-service`.
    pub service: &'static str,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub checks: HealthChecks,
}

#[derive(Serialize, ToSchema)]
pub struct HealthChecks {
    pub store: StoreCheck,
    /// Present when the node runs with `REDIS_URL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisCheck>,
    /// Present when an agent service is configured; as its last call found it. Never changes
    /// the overall status: users' messages never wait for the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCheck>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Ok,
    Failing,
}

#[derive(Serialize, ToSchema)]
pub struct AgentCheck {
    pub status: AgentStatus,
    /// User messages whose agent work is queued or running.
    pub pending: u64,
    /// Why the last call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StoreCheck {
    pub status: CheckStatus,
    /// `sqlite` or `mongodb`.
    pub kind: &'static str,
    /// How message search runs: `fts5` (SQLite), `text` (MongoDB `$text`) or `regex` (MongoDB
    /// without `$text`: escaped regular expressions, newest first; README "Search").
    pub search: SearchMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RedisCheck {
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// Health
///
/// 200 while the store answers. Redis being unreachable is reported as `degraded` (the node
/// keeps serving on its own) and does not fail the check. Never rate limited.
#[utoipa::path(
    get, path = "/health", tag = "health", operation_id = "getHealth",
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "The store is unreachable", body = Health),
    ),
)]
pub async fn health(State(ctx): State<ApiContext>) -> (StatusCode, Json<Health>) {
    let timestamp = crate::domain::time::to_iso(&crate::domain::time::now());
    let search = ctx.service.store().search_method();
    let store = match ctx.service.health().await {
        Ok(kind) => StoreCheck { status: CheckStatus::Ok, kind, search, error: None },
        Err(e) => StoreCheck { status: CheckStatus::Down, kind: ctx.service.store().kind(), search, error: Some(e) },
    };
    let redis = ctx.cluster.as_ref().map(|c| match c.is_up() {
        true => RedisCheck { status: CheckStatus::Ok, error: None },
        false => RedisCheck { status: CheckStatus::Degraded, error: Some("unreachable; serving from this node only") },
    });
    let agent = ctx.service.agent_health().map(|a| AgentCheck {
        status: if a.last_failure.is_some() { AgentStatus::Failing } else { AgentStatus::Ok },
        pending: a.pending,
        error: a.last_failure,
    });
    let (code, status) = match (&store.status, &redis) {
        (CheckStatus::Down, _) => (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Error),
        (_, Some(RedisCheck { status: CheckStatus::Degraded, .. })) => (StatusCode::OK, HealthStatus::Degraded),
        _ => (StatusCode::OK, HealthStatus::Ok),
    };
    (code, Json(Health { status, service: "chat-service", timestamp, checks: HealthChecks { store, redis, agent } }))
}
