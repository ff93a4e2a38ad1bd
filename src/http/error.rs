//! The HTTP layer's error: every failure becomes a status code and `{ error, details? }`,
//! decided here and nowhere else.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::service::ServiceError;

/// Every error answer of the REST API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// For invalid input: `[{ field, message }]`, or a sentence on what could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// Only on 429: "Please try again later".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorBody {
    fn new(error: impl Into<String>) -> Self {
        ErrorBody { error: error.into(), details: None, message: None }
    }

    fn with_details(mut self, details: impl Serialize) -> Self {
        self.details = serde_json::to_value(details).ok();
        self
    }
}

/// The errors any route under `/api` may answer with, for the OpenAPI document.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ApiErrors {
    /// Invalid input (`details` names each field), an unreadable body, query string or path
    /// parameter, or a caller without a company.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No token, or an invalid or expired one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such conversation, message or thread in the caller's company.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Over the REST rate limit; `RateLimit-*` headers say when to retry.
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// The store is unreachable or the node is stopping; for `/api/internal`, also when
    /// `INTERNAL_SERVICE_TOKEN` is not set.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

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
                    ServiceError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ServiceError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                    ServiceError::Unavailable(_) | ServiceError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let body = match &e {
                    ServiceError::Validation(v) => ErrorBody::new(&v.message).with_details(&v.details),
                    ServiceError::RateLimited => {
                        ErrorBody { message: Some("Please try again later".into()), ..ErrorBody::new("Too many requests") }
                    }
                    other => ErrorBody::new(other.to_string()),
                };
                (status, body)
            }
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, ErrorBody::new(m)),
            ApiError::Malformed(part, details) => {
                let error = match part {
                    RequestPart::Body => "Invalid request body",
                    RequestPart::Query => "Invalid query string",
                    RequestPart::Path => "Invalid path",
                };
                (StatusCode::BAD_REQUEST, ErrorBody::new(error).with_details(details))
            }
            ApiError::PayloadTooLarge => {
                // The rest of the body is never read, so the connection cannot carry another
                // request: say so, or a client may reuse it and see its next request fail.
                let body = Json(ErrorBody::new("Request body too large"));
                return (StatusCode::PAYLOAD_TOO_LARGE, [(axum::http::header::CONNECTION, "close")], body).into_response();
            }
            ApiError::InternalApiDisabled => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new("Internal API is disabled: INTERNAL_SERVICE_TOKEN is not set"),
            ),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, ErrorBody::new("Not found")),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, ErrorBody::new("Method not allowed")),
            ApiError::UriTooLong => (StatusCode::URI_TOO_LONG, ErrorBody::new("URI too long")),
            ApiError::HeadersTooLarge => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ErrorBody::new("Request header fields too large"))
            }
        };
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
