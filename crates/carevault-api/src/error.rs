//! The one error envelope (docs/ERROR_CODES.md): every error response, whatever produced it (a handler,
//! an extractor, axum's router, a layer, a panic), leaves as
//! `{"error": {"code", "message", "request_id", "detail"?}}`.
//!
//! Handlers return [`ApiError`], which only records the error in the response's extensions;
//! [`crate::middleware::finish_errors`] renders the body at the edge, where the request id and the
//! environment (no `detail` in production) are known, and also turns axum's own bare 404/405/413
//! responses into the envelope.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use carevault_db::{DbError, ValidationError};
use serde::Serialize;

use crate::auth::AuthError;

/// Every code the API can return, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum ErrorCode {
    /// 401: no token, malformed token, or a required claim missing or wrong (iss, aud, lifetime).
    #[serde(rename = "AUTH_001")]
    Auth001,
    /// 401: token expired or not yet valid.
    #[serde(rename = "AUTH_003")]
    Auth003,
    /// 401: bad signature, unknown key, algorithm not allowed.
    #[serde(rename = "AUTH_004")]
    Auth004,
    /// 403: tenant claim missing.
    #[serde(rename = "AUTH_005")]
    Auth005,
    /// 403: tenant claim not a UUID, tenant unknown, deleted or not active.
    #[serde(rename = "AUTH_007")]
    Auth007,
    /// 403: user soft-deleted.
    #[serde(rename = "AUTH_008")]
    Auth008,
    /// 403: the user's role does not allow this endpoint.
    #[serde(rename = "AUTH_009")]
    Auth009,
    /// 403: the token's `sub` is no user of the tenant, and just-in-time provisioning does not
    /// admit it (`JIT_PROVISIONING`).
    #[serde(rename = "AUTH_010")]
    Auth010,
    /// 401: platform credential missing or wrong.
    #[serde(rename = "PLAT_001")]
    Plat001,
    /// 400: the body is not valid JSON or has the wrong structure.
    #[serde(rename = "VAL_001")]
    Val001,
    /// 422: a required field is missing.
    #[serde(rename = "VAL_002")]
    Val002,
    /// 422: a field is invalid.
    #[serde(rename = "VAL_003")]
    Val003,
    /// 404: unknown route.
    #[serde(rename = "REQ_404")]
    Req404,
    /// 405: method not allowed on this route.
    #[serde(rename = "REQ_405")]
    Req405,
    /// 413: body too large.
    #[serde(rename = "REQ_413")]
    Req413,
    /// 415: body is not JSON.
    #[serde(rename = "REQ_415")]
    Req415,
    /// 429: the user's or the tenant's request rate limit is reached; `Retry-After` says when to retry.
    #[serde(rename = "REQ_429")]
    Req429,
    /// 404: resource not found (or another tenant's).
    #[serde(rename = "RES_404")]
    Res404,
    /// 409: conflict with the current state.
    #[serde(rename = "RES_409")]
    Res409,
    /// 412: `If-Match` names another version than the current one.
    #[serde(rename = "RES_412")]
    Res412,
    /// 503: database unreachable (or the identity provider's keys unavailable).
    #[serde(rename = "SYS_001")]
    Sys001,
    /// 500: unexpected error.
    #[serde(rename = "SYS_003")]
    Sys003,
    /// 503: database pool exhausted.
    #[serde(rename = "SYS_004")]
    Sys004,
    /// 504: request timeout.
    #[serde(rename = "SYS_005")]
    Sys005,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Auth001,
        ErrorCode::Auth003,
        ErrorCode::Auth004,
        ErrorCode::Auth005,
        ErrorCode::Auth007,
        ErrorCode::Auth008,
        ErrorCode::Auth009,
        ErrorCode::Auth010,
        ErrorCode::Plat001,
        ErrorCode::Val001,
        ErrorCode::Val002,
        ErrorCode::Val003,
        ErrorCode::Req404,
        ErrorCode::Req405,
        ErrorCode::Req413,
        ErrorCode::Req415,
        ErrorCode::Req429,
        ErrorCode::Res404,
        ErrorCode::Res409,
        ErrorCode::Res412,
        ErrorCode::Sys001,
        ErrorCode::Sys003,
        ErrorCode::Sys004,
        ErrorCode::Sys005,
    ];

    /// The stable text of the code (`AUTH_001`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::Auth001 => "AUTH_001",
            ErrorCode::Auth003 => "AUTH_003",
            ErrorCode::Auth004 => "AUTH_004",
            ErrorCode::Auth005 => "AUTH_005",
            ErrorCode::Auth007 => "AUTH_007",
            ErrorCode::Auth008 => "AUTH_008",
            ErrorCode::Auth009 => "AUTH_009",
            ErrorCode::Auth010 => "AUTH_010",
            ErrorCode::Plat001 => "PLAT_001",
            ErrorCode::Val001 => "VAL_001",
            ErrorCode::Val002 => "VAL_002",
            ErrorCode::Val003 => "VAL_003",
            ErrorCode::Req404 => "REQ_404",
            ErrorCode::Req405 => "REQ_405",
            ErrorCode::Req413 => "REQ_413",
            ErrorCode::Req415 => "REQ_415",
            ErrorCode::Req429 => "REQ_429",
            ErrorCode::Res404 => "RES_404",
            ErrorCode::Res409 => "RES_409",
            ErrorCode::Res412 => "RES_412",
            ErrorCode::Sys001 => "SYS_001",
            ErrorCode::Sys003 => "SYS_003",
            ErrorCode::Sys004 => "SYS_004",
            ErrorCode::Sys005 => "SYS_005",
        }
    }

    /// The HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        match self {
            ErrorCode::Auth001 | ErrorCode::Auth003 | ErrorCode::Auth004 | ErrorCode::Plat001 => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::Auth005 | ErrorCode::Auth007 | ErrorCode::Auth008 | ErrorCode::Auth009 | ErrorCode::Auth010 => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::Val001 => StatusCode::BAD_REQUEST,
            ErrorCode::Val002 | ErrorCode::Val003 => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Req404 | ErrorCode::Res404 => StatusCode::NOT_FOUND,
            ErrorCode::Req405 => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Req413 => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Req415 => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Req429 => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Res409 => StatusCode::CONFLICT,
            ErrorCode::Res412 => StatusCode::PRECONDITION_FAILED,
            ErrorCode::Sys001 | ErrorCode::Sys004 => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Sys003 => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Sys005 => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The message used when a handler gives none.
    pub fn default_message(&self) -> &'static str {
        match self {
            ErrorCode::Auth001 => "authentication required",
            ErrorCode::Auth003 => "token expired or not yet valid",
            ErrorCode::Auth004 => "token signature or algorithm not accepted",
            ErrorCode::Auth005 => "token carries no tenant",
            ErrorCode::Auth007 => "tenant not found or not active",
            ErrorCode::Auth008 => "user is deactivated",
            ErrorCode::Auth009 => "your role does not allow this",
            ErrorCode::Auth010 => "no such user in this tenant; an administrator must add you",
            ErrorCode::Plat001 => "platform credential missing or wrong",
            ErrorCode::Val001 => "request body is not valid JSON of the expected structure",
            ErrorCode::Val002 => "a required field is missing",
            ErrorCode::Val003 => "a field is invalid",
            ErrorCode::Req404 => "no such route",
            ErrorCode::Req405 => "method not allowed",
            ErrorCode::Req413 => "request body too large",
            ErrorCode::Req415 => "request body must be application/json",
            ErrorCode::Req429 => "too many requests, retry later",
            ErrorCode::Res404 => "resource not found",
            ErrorCode::Res409 => "conflict with the current state",
            ErrorCode::Res412 => "the resource changed since that version was read",
            ErrorCode::Sys001 => "service temporarily unavailable",
            ErrorCode::Sys003 => "unexpected error",
            ErrorCode::Sys004 => "service busy, retry later",
            ErrorCode::Sys005 => "request timed out",
        }
    }
}

/// An error answer. Rendered into the envelope by [`crate::middleware::finish_errors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code.
    pub code: ErrorCode,
    /// A message safe for any caller (never PHI, never internals).
    pub message: Cow<'static, str>,
    /// More detail, shown outside production only.
    pub detail: Option<String>,
    /// Seconds for the `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError { code, message: Cow::Borrowed(code.default_message()), detail: None, retry_after: None }
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> ApiError {
        self.message = message.into();
        self
    }

    /// Adds a `Retry-After` of `seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds detail (dropped in production).
    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.code.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> ApiError {
        ApiError::new(ErrorCode::Val003).with_message(format!("{}: {}", error.field, error.reason))
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> ApiError {
        match error {
            DbError::NotFound => ApiError::new(ErrorCode::Res404),
            DbError::Conflict(why) => ApiError::new(ErrorCode::Res409).with_message(why),
            DbError::Invalid(invalid) => invalid.into(),
            DbError::PoolExhausted => ApiError::new(ErrorCode::Sys004),
            DbError::Unavailable(_) => ApiError::new(ErrorCode::Sys001),
            // A key the database does not hold, or clocks that disagree: readiness says so too.
            DbError::ContextRefused(_) => {
                tracing::error!("the database refused the tenant context: is TENANT_CONTEXT_KEY added to it?");
                ApiError::new(ErrorCode::Sys001)
            }
            other => {
                // Logged with its cause here, never shown to the caller. sqlx errors carry no
                // bound values, so this cannot log PHI.
                tracing::error!(error = %other, "database error");
                ApiError::new(ErrorCode::Sys003)
            }
        }
    }
}

/// The answer to a refused token. `KeysUnavailable` is not the client's fault (the identity
/// provider's keys were never fetched, so the token cannot be checked either way): a retryable
/// 503, not a 401.
impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::Malformed(_) => ApiError::new(ErrorCode::Auth001),
            AuthError::Expired | AuthError::NotYetValid => ApiError::new(ErrorCode::Auth003),
            AuthError::BadSignature(_) => ApiError::new(ErrorCode::Auth004),
            AuthError::KeysUnavailable(why) => {
                tracing::warn!(%why, "identity provider keys unavailable");
                ApiError::new(ErrorCode::Sys001)
            }
        }
    }
}

/// The body of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The error inside [`ErrorEnvelope`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `AUTH_001`.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The request id (also in the `X-Request-ID` header).
    pub request_id: String,
    /// More detail (never in production).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
