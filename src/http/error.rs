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
    /// A part of the request that could not be read as the route expects; the details say why.
    Malformed(RequestPart, String),
    PayloadTooLarge,
    InternalApiDisabled,
    /// No route at this path.
    RouteNotFound,
    /// A route at this path, not for this method.
    MethodNotAllowed,
    UriTooLong,
    HeadersTooLarge,
}

/// Where in a request a malformed value was found.
#[derive(Debug, Clone, Copy)]
pub enum RequestPart {
    Body,
    Query,
    Path,
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
            ApiError::Malformed(part, details) => {
                let error = match part {
                    RequestPart::Body => "Invalid request body",
                    RequestPart::Query => "Invalid query string",
                    RequestPart::Path => "Invalid path",
                };
                (StatusCode::BAD_REQUEST, json!({ "error": error, "details": details }))
            }
            ApiError::PayloadTooLarge => {
                // The rest of the body is never read, so the connection cannot carry another
                // request: say so, or a client may reuse it and see its next request fail.
                let body = Json(json!({ "error": "Request body too large" }));
                return (StatusCode::PAYLOAD_TOO_LARGE, [(axum::http::header::CONNECTION, "close")], body).into_response();
            }
            ApiError::InternalApiDisabled => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "Internal API is disabled: INTERNAL_SERVICE_TOKEN is not set" }))
            }
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, json!({ "error": "Not found" })),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, json!({ "error": "Method not allowed" })),
            ApiError::UriTooLong => (StatusCode::URI_TOO_LONG, json!({ "error": "URI too long" })),
            ApiError::HeadersTooLarge => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, json!({ "error": "Request header fields too large" }))
            }
        };
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
