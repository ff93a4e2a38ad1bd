//! Cross-cutting HTTP behaviour: the REST rate limit with its headers, security headers, CORS.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::error::ApiError;
use super::ApiContext;
use crate::config::Config;
use crate::service::ServiceError;

/// Counts each `/api` request against the caller's address; over the limit answers 429.
/// `RateLimit-*` headers go on every answer, allowed or not.
pub async fn rate_limit(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let decision = ctx.rest_limiter.hit(&key).await;
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
        ApiError::Service(ServiceError::RateLimited).into_response()
    };
    let h = response.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(decision.reset_secs));
    if !decision.allowed {
        h.insert(header::RETRY_AFTER, HeaderValue::from(decision.reset_secs));
    }
    response
}

/// nosniff, no framing, no referrer, and a CSP that lets a JSON answer load nothing.
pub fn with_security_headers<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    router
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
        .layer(set(header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"))
}

/// One origin list for REST and Socket.IO; credentials allowed, as the deployed clients send them.
pub fn cors(config: &Config) -> CorsLayer {
    let origins = if config.cors_any() {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(config.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
}
