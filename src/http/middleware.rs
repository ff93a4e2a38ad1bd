//! Cross-cutting HTTP behaviour: limits on the request head, request ids, the REST rate limit
//! with its headers, security headers, CORS.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::error::ApiError;
use super::ApiContext;
use tracing::Instrument;

use crate::config::Config;
use crate::domain::audit::{ActorKind, AuditAction, Transport};
use crate::service::{with_origin, On, Origin, ServiceError};

/// Longest request target (path and query, and the authority of an absolute URI) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 100;
/// Most header bytes accepted in one request: names, values and the `: ` and line break of each.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses an oversized request head before any work is done for it: 414 for a long URI,
/// 431 for too many or too large header fields, as JSON errors. hyper answers heads beyond
/// its own parser limits itself (without a body); these limits sit below those.
pub async fn limit_request_head(req: Request, next: Next) -> Response {
    if uri_bytes(req.uri()) > MAX_URI_BYTES {
        return ApiError::UriTooLong.into_response();
    }
    if req.headers().len() > MAX_HEADERS || header_bytes(req.headers()) > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    next.run(req).await
}

fn uri_bytes(uri: &Uri) -> usize {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    authority + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

/// Records a refusal of the REST rate limit: by the caller its bearer token names, when it
/// names one (then in its company's trail), else as anonymous.
fn note_rate_limited(ctx: &ApiContext, headers: &HeaderMap) {
    let auditor = ctx.service.auditor();
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let on = On::default().detail("rest");
    match crate::auth::bearer(header).and_then(|t| ctx.auth.verify(t).ok()) {
        Some(p) => auditor.record(&p, AuditAction::RateLimited, None, on),
        None => auditor.record_as(ActorKind::Anonymous, None, AuditAction::RateLimited, None, on),
    }
}

/// Counts each `/api` request against the caller's address (the client's, behind a trusted
/// proxy); over the limit answers 429. `RateLimit-*` headers go on every answer, allowed or not.
pub async fn rate_limit(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| ctx.trusted_proxies.client_address(c.0.ip(), req.headers()).to_string())
        .unwrap_or_else(|| "unknown".into());
    let decision = ctx.rest_limiter.hit(&key).await;
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
        note_rate_limited(&ctx, req.headers());
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

/// Longest `X-Request-Id` taken from a client (or a proxy in front); longer ones are replaced.
const MAX_REQUEST_ID: usize = 64;

/// Gives each request an id (the caller's `X-Request-Id` when it is a plain token, else a new
/// one), answers with it, puts it on every log line of the request (a `request` span) and
/// makes it, with the client's address and the transport, the origin of the audit records the
/// request causes.
pub async fn request_context(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let client_address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| ctx.trusted_proxies.client_address(c.0.ip(), req.headers()).to_string());
    let transport = if req.uri().path().starts_with("/api/internal/") { Transport::Internal } else { Transport::Rest };
    let span = tracing::info_span!("request", id = %request_id);
    let origin = Origin { transport, client_address, request_id: Some(request_id.clone()) };
    let mut response = with_origin(origin, next.run(req).instrument(span)).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Counts every answer by its status class (`chat_http_requests_total`).
pub async fn count_answers(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    ctx.metrics.http_answered(response.status().as_u16());
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    /// The head limits on their own: hyper (at its default of 100 header fields) refuses a
    /// request with more fields itself before this middleware could see it.
    async fn answer(fields: usize) -> (u16, String) {
        let app = Router::new().route("/", get(|| async { "ok" })).layer(axum::middleware::from_fn(limit_request_head));
        let mut req = Request::builder().uri("/");
        for i in 0..fields {
            req = req.header(format!("x-f{i}"), "1");
        }
        let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn more_than_100_header_fields_are_refused() {
        assert_eq!(answer(MAX_HEADERS).await, (200, "ok".into()));
        assert_eq!(answer(MAX_HEADERS + 1).await, (431, r#"{"error":"Request header fields too large"}"#.into()));
    }
}
