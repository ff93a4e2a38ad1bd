//! Request extractors: the caller's identity (user/widget token, internal service token, an
//! admin or a metrics scraper),
//! and JSON bodies, query strings and path parameters whose rejections answer in the
//! contract's error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, RequestPart};
use super::ApiContext;
use crate::auth::{bearer, AuthError, Principal};
use crate::domain::audit::{ActorKind, AuditAction};
use crate::service::On;

/// The authenticated caller of a public route.
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    ApiContext: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = ApiContext::from_ref(state);
        let verified = bearer_token(parts).and_then(|token| verified(&ctx, token));
        if let Err(ApiError::Unauthorized(why)) = &verified {
            auth_refused(&ctx, why);
        }
        verified.map(Caller)
    }
}

/// Records a refused authentication: who it was is unknown, so it is in no company's trail
/// (operators find it in the store and in the log, by its request id).
fn auth_refused(ctx: &ApiContext, why: &str) {
    tracing::info!(reason = why, "authentication refused");
    ctx.service.auditor().record_as(ActorKind::Anonymous, None, AuditAction::AuthRefused, None, On::default().detail(why));
}

/// The `Authorization: Bearer` token of a request, or the contract's 401.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    bearer(header).ok_or(ApiError::Unauthorized("Missing or invalid authorization header"))
}

/// The principal a user or widget token names, or the contract's 401.
fn verified(ctx: &ApiContext, token: &str) -> Result<Principal, ApiError> {
    ctx.auth.verify(token).map_err(|e| match e {
        AuthError::Missing => ApiError::Unauthorized("Missing or invalid authorization header"),
        AuthError::Invalid => ApiError::Unauthorized("Invalid or expired token"),
    })
}

/// Whoever may read `/metrics`: anyone when `METRICS_TOKEN` is unset, else a bearer of that
/// token or of an admin's JWT.
pub struct MetricsReader;

impl<S> FromRequestParts<S> for MetricsReader
where
    ApiContext: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = ApiContext::from_ref(state);
        if !ctx.auth.metrics_protected() {
            return Ok(MetricsReader);
        }
        let token = bearer_token(parts)?;
        if ctx.auth.verify_metrics_token(token) {
            return Ok(MetricsReader);
        }
        admin(&ctx, token).map(|_| MetricsReader)
    }
}

/// An admin (`Principal::is_admin`), by their JWT.
pub struct AdminCaller;

impl<S> FromRequestParts<S> for AdminCaller
where
    ApiContext: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = ApiContext::from_ref(state);
        admin(&ctx, bearer_token(parts)?).map(|_| AdminCaller)
    }
}

fn admin(ctx: &ApiContext, token: &str) -> Result<Principal, ApiError> {
    let p = verified(ctx, token)?;
    if p.is_admin() { Ok(p) } else { Err(ApiError::Unauthorized("Admin access required")) }
}

/// A sibling service holding `INTERNAL_SERVICE_TOKEN`.
pub struct InternalCaller;

impl<S> FromRequestParts<S> for InternalCaller
where
    ApiContext: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = ApiContext::from_ref(state);
        if !ctx.auth.internal_enabled() {
            return Err(ApiError::InternalApiDisabled);
        }
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let refused = match bearer(header) {
            Some(t) if ctx.auth.verify_internal(t) => return Ok(InternalCaller),
            Some(_) => "Invalid service token",
            None => "Missing or invalid authorization header",
        };
        auth_refused(&ctx, refused);
        Err(ApiError::Unauthorized(refused))
    }
}

/// `axum::Json`, with malformed, mistyped or oversized bodies answered as JSON errors.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::Malformed(RequestPart::Body, "expected Content-Type: application/json".into()))
            }
            Err(e) => Err(ApiError::Malformed(RequestPart::Body, e.body_text())),
        }
    }
}

/// `axum::extract::Query`, with an unreadable query string (a key given twice, a value of the
/// wrong type) answered as a JSON error.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(e) => Err(ApiError::Malformed(RequestPart::Query, e.body_text())),
        }
    }
}

/// `axum::extract::Path`, with undecodable parameters (percent-encoded bytes that are not
/// UTF-8) answered as a JSON error.
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParams(v)),
            Err(e) => Err(ApiError::Malformed(RequestPart::Path, e.body_text())),
        }
    }
}
