//! The service layer's one error type. `http::error` maps it to a status code and JSON body,
//! `realtime` to an `error` event; neither decides anything else about it.

use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("User is not associated with a company")]
    NoCompany,
    /// Not found, or belonging to another tenant: the two are indistinguishable on purpose.
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// An upload whose content is not an accepted type, or not the type its name or claim says.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Too many requests")]
    RateLimited,
    /// Too much work already queued (for this socket or the whole process): refused at once,
    /// nothing stored, rather than queued without bound.
    #[error("Server is busy, try again")]
    Busy,
    #[error("Service temporarily unavailable")]
    Unavailable(String),
    #[error("Internal server error")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                ServiceError::Unavailable(m)
            }
            other => {
                tracing::error!(error = %other, "store error");
                ServiceError::Internal(other.to_string())
            }
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
