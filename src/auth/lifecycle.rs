//! What the token-lifecycle endpoints (refresh, logout, `POST /revocations`) share: their
//! error type and the reader of their small JSON bodies.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// Bodies of the lifecycle endpoints are tiny; more is refused unread.
pub const MAX_BODY: usize = 4096;

/// Why a refresh, logout or operator revocation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The method is not allowed; the value is the `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("content type is not JSON")]
    NotJson,
    #[error("malformed body: {0}")]
    MalformedBody(&'static str),
    #[error("body too large")]
    BodyTooLarge,
    /// Unknown, expired, revoked, or its user is gone (the log says which).
    #[error("invalid refresh token: {0}")]
    InvalidRefreshToken(&'static str),
    /// A used refresh token was presented again: its family is now revoked.
    #[error("refresh token reused; its family is revoked")]
    RefreshReused,
    /// The access token carries no `jti`, so it cannot be revoked alone.
    #[error("the token has no jti")]
    NoJti,
    /// The store did not take the change. A revocation is in force on this instance
    /// already (and reaches the others at the first resync the store answers).
    #[error("store unavailable: {0}")]
    Unavailable(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl LifecycleError {
    pub fn reason(&self) -> &'static str {
        match self {
            LifecycleError::MethodNotAllowed(_) => "method_not_allowed",
            LifecycleError::NotJson | LifecycleError::MalformedBody(_) => "malformed_body",
            LifecycleError::BodyTooLarge => "body_too_large",
            LifecycleError::InvalidRefreshToken(_) => "invalid_refresh_token",
            LifecycleError::RefreshReused => "refresh_reused",
            LifecycleError::NoJti => "no_jti",
            LifecycleError::Unavailable(_) => "store_unavailable",
            LifecycleError::Internal(_) => "internal",
        }
    }
}

/// `application/json`, `application/json; charset=utf-8`, and `application/*+json`.
pub fn is_json(value: Option<&HeaderValue>) -> bool {
    let Some(mime) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why a bounded request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReadError {
    /// Declared or found to be over the limit.
    TooLarge,
    /// The body failed while it was read (bad framing, a cut connection).
    Unreadable,
}

/// Reads a whole request body of at most `limit` bytes. A declared `Content-Length` over
/// the limit is refused before any of the body is read.
pub async fn read_bounded<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, BodyReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyReadError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyReadError::TooLarge)
        }
        Err(_) => Err(BodyReadError::Unreadable),
    }
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes into `T` (whose serde derive refuses
/// unknown members). An empty body reads as `empty` when given, else it is refused.
pub async fn read_json<T, B>(
    headers: &HeaderMap,
    body: B,
    empty: Option<T>,
) -> Result<T, LifecycleError>
where
    T: DeserializeOwned,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes = read_bounded(headers, body, MAX_BODY)
        .await
        .map_err(|e| match e {
            BodyReadError::TooLarge => LifecycleError::BodyTooLarge,
            BodyReadError::Unreadable => {
                LifecycleError::MalformedBody("The request body could not be read")
            }
        })?;
    if bytes.is_empty() {
        if let Some(e) = empty {
            return Ok(e);
        }
    }
    if !is_json(headers.get(CONTENT_TYPE)) {
        return Err(LifecycleError::NotJson);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            LifecycleError::MalformedBody(
                "The request body has a missing, unknown or mistyped member",
            )
        } else {
            LifecycleError::MalformedBody("The request body is not valid JSON")
        }
    })
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
