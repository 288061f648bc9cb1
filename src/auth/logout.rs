//! The logout endpoint: `POST` with the access token, and optionally
//! `{"refresh_token": ..., "everywhere": true}`.
//!
//! It revokes the presented access token by its `jti` (until its `exp`), the family of
//! the refresh token in the body (only when it belongs to the same user), and with
//! `everywhere` sets the user's cut-off: every token of theirs issued until now is
//! refused, on every instance. A new login afterwards works.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response};
use serde::Deserialize;
use serde_json::json;

use super::lifecycle::{read_json, unix_millis, LifecycleError};
use super::refresh::Refresh;
use super::revocation::Revocation;
use super::Claims;
use crate::body::{empty, full, Body};

/// The methods the logout path answers.
pub const ALLOW_LOGOUT: &str = "POST, OPTIONS";

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    refresh_token: Option<String>,
    #[serde(default)]
    everywhere: bool,
}

/// The answer to `OPTIONS`.
pub fn options() -> Response<Body> {
    let mut res = Response::new(empty());
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(ALLOW_LOGOUT));
    res
}

/// Logs out the holder of `claims` (already verified, and not revoked).
pub async fn logout<B>(
    headers: &HeaderMap,
    body: B,
    claims: &Claims,
    revocation: &Revocation,
    refresh: Option<&Refresh>,
) -> Result<Response<Body>, LifecycleError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let asked: LogoutBody = read_json(headers, body, Some(LogoutBody::default())).await?;
    let jti = claims.get("jti").and_then(|v| v.as_str());
    if jti.is_none() && !asked.everywhere {
        return Err(LifecycleError::NoJti);
    }
    let now_ms = unix_millis();
    // Each step is in force on this instance even when the store fails; the first
    // failure is reported so the client knows to retry.
    let mut failure = None;
    if let Some(jti) = jti {
        if let Err(e) = revocation
            .revoke_jti(jti, claims.exp.ceil() as i64, "logout")
            .await
        {
            failure.get_or_insert(e);
        }
    }
    let mut family = false;
    if let (Some(r), Some(token)) = (refresh, asked.refresh_token.as_deref()) {
        match r.revoke_family_of(token, &claims.identity, now_ms).await {
            Ok(revoked) => family = revoked,
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if asked.everywhere {
        if let Err(e) = revocation
            .revoke_user(&claims.identity, now_ms, "logout")
            .await
        {
            failure.get_or_insert(e);
        }
    }
    if let Some(e) = failure {
        tracing::warn!(error = %e, "logout: the store did not take every revocation");
        return Err(LifecycleError::Unavailable(e));
    }
    let mut text = json!({
        "status": "logged out",
        "everywhere": asked.everywhere,
        "refresh_family_revoked": family,
    })
    .to_string();
    text.push('\n');
    let mut res = Response::new(full(text));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}
