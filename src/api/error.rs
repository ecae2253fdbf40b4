//! The one place where failures become HTTP responses, in the contract's error shape.

use serde::Serialize;
use warp::http::StatusCode;

use crate::store::StoreError;
use crate::wallet::WalletError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with an optional offending parameter.
    #[error("{message}")]
    InvalidRequest {
        /// Human-readable reason.
        message: String,
        /// The parameter at fault.
        param: Option<String>,
    },
    /// 401.
    #[error("{0}")]
    Authentication(&'static str),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 408: the body did not arrive within `server.request_timeout_ms`.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 503: a dependency (the database) is unreachable right now.
    #[error("service temporarily unavailable")]
    Unavailable,
    /// 500: logged with its cause, never echoed.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 naming `param`.
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// A 400 with no particular parameter.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Authentication(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::MethodNotAllowed
            | Self::PayloadTooLarge
            | Self::RequestTimeout => "invalid_request",
            Self::Authentication(_) => "authentication",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Unavailable | Self::Internal(_) => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind(),
                message: self.to_string(),
                param: match self {
                    Self::InvalidRequest { param, .. } => param.as_deref(),
                    _ => None,
                },
                request_id: request_id.to_string(),
            },
        }
    }
}

/// `{"error": {...}}`
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail<'a> {
    /// `invalid_request`, `authentication`, `not_found`, `conflict`, `rate_limited` or `internal`.
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
    request_id: String,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // A backstop: inputs are checked for control characters before they reach SQL.
        if e.is_invalid_input() {
            Self::invalid("a text value contains a character that cannot be stored (NUL)")
        } else if e.is_retryable() {
            Self::Unavailable
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<WalletError> for ApiError {
    fn from(e: WalletError) -> Self {
        // The signer away (and no stored key for the account yet): try again later.
        if e.is_retryable() {
            Self::Unavailable
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from(e).into()
    }
}
