//! The server's one error type, and the one function that maps it to a wire error (§5).
//! Internals (store failures, bugs) are logged here and never reach clients.

use confab_protocol::v1::{self, ErrorCode};
use std::borrow::Cow;
use std::time::Duration;

use crate::store::StoreError;

/// Every way a request can fail. Handlers and services return this; only [`ServerError::to_wire`]
/// turns it into what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid argument {field}: {message}")]
    InvalidArgument { field: Cow<'static, str>, message: String },
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("rate limited for {0:?}")]
    RateLimited(Duration),
    #[error("too large {field}: {message}")]
    TooLarge { field: &'static str, message: String },
    #[error("unsupported protocol version: {0}")]
    UnsupportedVersion(String),
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
    /// An error another node of the cluster answered to a request it served for this one.
    #[error("answered by another node: {0:?}")]
    Relayed(v1::Error),
}

impl ServerError {
    /// INVALID_ARGUMENT naming `field` (a request field path, e.g. `send_message.text`).
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), message: message.into() }
    }

    /// The wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Store(e) if e.is_unavailable() => ErrorCode::Unavailable,
            Self::Store(StoreError::Suspended) => ErrorCode::PermissionDenied,
            Self::Store(StoreError::AccountGone) => ErrorCode::Unauthenticated,
            Self::Store(_) | Self::Internal(_) => ErrorCode::Internal,
            Self::Relayed(e) => ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal),
        }
    }

    /// The error as the client sees it. The one place server errors become wire errors.
    pub fn to_wire(&self) -> v1::Error {
        let code = self.code();
        let mut e = v1::Error::new(code, "");
        match self {
            Self::Unauthenticated(m)
            | Self::PermissionDenied(m)
            | Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::FailedPrecondition(m)
            | Self::UnsupportedVersion(m)
            | Self::Unimplemented(m)
            | Self::Unavailable(m) => e.message = m.clone(),
            Self::InvalidArgument { field, message } => {
                e.message = message.clone();
                e.field = field.to_string();
            }
            Self::TooLarge { field, message } => {
                e.message = message.clone();
                e.field = (*field).to_string();
            }
            Self::RateLimited(after) => {
                e.message = "too many attempts".into();
                e.retry_after_ms = after.as_millis().max(1) as u64;
            }
            Self::Store(StoreError::AccountGone) => e.message = "wrong username, email or password".into(),
            Self::Store(StoreError::Suspended) => {
                e.message = "this account is suspended".into();
                e.reason = v1::ErrorReason::AccountSuspended as i32;
            }
            Self::Store(err) if err.is_unavailable() => {
                tracing::warn!(error = %err, "store unavailable");
                e.message = "the server's store is unavailable; retry shortly".into();
                e.retry_after_ms = 1000;
            }
            Self::Store(_) | Self::Internal(_) => {
                tracing::error!(error = %self, "internal error");
                e.message = "internal server error".into();
            }
            Self::Relayed(relayed) => return relayed.clone(),
        }
        e
    }
}
