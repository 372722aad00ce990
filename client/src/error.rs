//! Stable error codes and the JSON error body every non-2xx answer carries.
//!
//! The codes are part of the public API: never rename one; add new ones at the end.

use serde::{Deserialize, Serialize};

/// A machine-readable error code, serialized as `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// A field or parameter failed validation (400).
    ValidationError,
    /// The request body is not valid JSON or does not match the expected shape (400).
    InvalidJson,
    /// The request is malformed in some other way (400).
    BadRequest,
    /// No key, or a malformed, unknown, expired or revoked key (401).
    AuthenticationRequired,
    /// A valid key outside its scopes or its IP allowlist (403).
    AccessDenied,
    /// A quota of the tenant is reached (403).
    PlanLimitReached,
    /// The schedule fires more often than the tenant allows (403).
    IntervalTooShort,
    /// The resource does not exist or belongs to another tenant (404).
    NotFound,
    /// The method is not allowed on this route (405).
    MethodNotAllowed,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The request body is too large (413).
    PayloadTooLarge,
    /// The content type is not `application/json` (415).
    UnsupportedMediaType,
    /// Too many requests (429).
    RateLimitExceeded,
    /// An unexpected server-side failure; details are in the server log only (500).
    InternalError,
    /// The cluster has no leader right now; retry shortly (503).
    NoLeader,
    /// The node is not ready to serve this request (503).
    Unavailable,
    /// The write was sent but its outcome is unknown (504): it may or may not have been applied.
    OutcomeUnknown,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ValidationError | ErrorCode::InvalidJson | ErrorCode::BadRequest => 400,
            ErrorCode::AuthenticationRequired => 401,
            ErrorCode::AccessDenied | ErrorCode::PlanLimitReached | ErrorCode::IntervalTooShort => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimitExceeded => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::NoLeader | ErrorCode::Unavailable => 503,
            ErrorCode::OutcomeUnknown => 504,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::AuthenticationRequired => "AUTHENTICATION_REQUIRED",
            ErrorCode::AccessDenied => "ACCESS_DENIED",
            ErrorCode::PlanLimitReached => "PLAN_LIMIT_REACHED",
            ErrorCode::IntervalTooShort => "INTERVAL_TOO_SHORT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::NoLeader => "NO_LEADER",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
        }
    }
}

/// The body of every error answer: `{"error": CODE, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
    /// Seconds to wait before retrying, on 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [
            ErrorCode::ValidationError,
            ErrorCode::AuthenticationRequired,
            ErrorCode::NoLeader,
            ErrorCode::OutcomeUnknown,
            ErrorCode::PlanLimitReached,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
