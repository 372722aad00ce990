//! The one place that maps failures to HTTP statuses and `{"error": CODE, "message": ...}`.
//!
//! A 5xx body reveals nothing internal: the detail is logged here, once, and the client gets a
//! generic message.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raftcron_client::{ErrorBody, ErrorCode};

use crate::cluster::ClusterError;
use crate::state::StateError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Logged at the boundary, never sent.
    pub detail: Option<String>,
    /// Seconds to wait (429): sent as `Retry-After` and in the body.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), detail: None, retry_after: None }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationError, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::AuthenticationRequired, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::AccessDenied, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, message)
    }

    /// 429 with how long to wait.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        ApiError { retry_after: Some(retry_after_secs.max(1)), ..ApiError::new(ErrorCode::RateLimitExceeded, message) }
    }

    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::InternalError,
            message: "internal error; see the server log".into(),
            detail: Some(detail.into()),
            retry_after: None,
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        match e {
            ClusterError::NoLeader => {
                ApiError::new(ErrorCode::NoLeader, "the cluster has no leader right now; retry shortly")
            }
            ClusterError::OutcomeUnknown(d) => ApiError {
                code: ErrorCode::OutcomeUnknown,
                message: "the write was sent but its outcome is unknown; read before retrying".into(),
                detail: Some(d),
                retry_after: None,
            },
            ClusterError::Refused(m) => ApiError::new(ErrorCode::Conflict, m),
            ClusterError::Failed(d) => ApiError {
                code: ErrorCode::Unavailable,
                message: "the cluster could not complete the request; retry shortly".into(),
                detail: Some(d),
                retry_after: None,
            },
        }
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        ApiError::internal(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::new(ErrorCode::UnsupportedMediaType, "expected Content-Type: application/json")
            }
            _ => ApiError::new(ErrorCode::InvalidJson, r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(detail) = &self.detail {
            if status.is_server_error() {
                tracing::error!(code = self.code.as_str(), detail = %detail, "request failed");
            }
        }
        let body = ErrorBody { error: self.code, message: self.message, retry_after: self.retry_after };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
