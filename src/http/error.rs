//! The HTTP layer's error: every failure becomes a status code and `{ error, details? }`,
//! decided here and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    Unauthorized(&'static str),
    BadBody(String),
    PayloadTooLarge,
    InternalApiDisabled,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<crate::domain::ValidationError> for ApiError {
    fn from(e: crate::domain::ValidationError) -> Self {
        ApiError::Service(ServiceError::Validation(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Service(e) => {
                let status = match &e {
                    ServiceError::Validation(_) | ServiceError::NoCompany => StatusCode::BAD_REQUEST,
                    ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                    ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
                    ServiceError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                    ServiceError::Unavailable(_) | ServiceError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let body = match &e {
                    ServiceError::Validation(v) => json!({ "error": v.message, "details": v.details }),
                    ServiceError::RateLimited => json!({ "error": "Too many requests", "message": "Please try again later" }),
                    other => json!({ "error": other.to_string() }),
                };
                (status, body)
            }
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({ "error": m })),
            ApiError::BadBody(d) => (StatusCode::BAD_REQUEST, json!({ "error": "Invalid request body", "details": d })),
            ApiError::PayloadTooLarge => {
                // The rest of the body is never read, so the connection cannot carry another
                // request: say so, or a client may reuse it and see its next request fail.
                let body = Json(json!({ "error": "Request body too large" }));
                return (StatusCode::PAYLOAD_TOO_LARGE, [(axum::http::header::CONNECTION, "close")], body).into_response();
            }
            ApiError::InternalApiDisabled => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "Internal API is disabled: INTERNAL_SERVICE_TOKEN is not set" }))
            }
        };
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
