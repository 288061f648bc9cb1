//! The delegated credential check (`[login.remote]`): an existing user service keeps
//! owning passwords, as with Flask-JWT's `authentication_handler`.
//!
//! The gateway POSTs `{"username": ..., "password": ...}` as JSON. 200 with a JSON object
//! → logged in, with the identity (keeping its JSON type) and the configured claims taken
//! from the answer; 401 or 403 → bad credentials; anything else, a timeout or a malformed
//! answer → the login is refused with 503. Nothing here logs a credential or an answer.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::Value;

use crate::config::{RemoteLogin, UpstreamProtocol, UpstreamTls, UserId};

/// Larger answers are refused: a user record is small.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why the user service gave no usable answer (the login gets 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the user service: {0}")]
    Unreachable(String),
    #[error("unexpected status {0}")]
    Status(u16),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
}

impl RemoteError {
    /// The `outcome` label of the metric.
    pub fn label(&self) -> &'static str {
        match self {
            RemoteError::Timeout(_) => "timeout",
            RemoteError::Unreachable(_) => "unreachable",
            RemoteError::Status(_) => "bad_status",
            RemoteError::Malformed(_) => "malformed",
        }
    }
}

/// A user the service vouched for.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteUser {
    pub id: UserId,
    /// The configured claims present in the answer.
    pub claims: Vec<(String, Value)>,
}

#[derive(Serialize)]
struct Ask<'a> {
    username: &'a str,
    password: &'a str,
}

/// The client for one `[login.remote]`; its connections are pooled.
pub struct Remote {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
    identity: String,
    claims: Vec<String>,
}

impl Remote {
    /// Fails only when the TLS material of an https URL cannot be loaded.
    pub fn new(c: &RemoteLogin) -> Result<Remote, String> {
        let tls = UpstreamTls {
            ca_file: c.ca_file.clone(),
            ..UpstreamTls::default()
        };
        let https = c.url.scheme() == Some(&http::uri::Scheme::HTTPS);
        let connector = crate::tls::connector(&tls, c.timeout, UpstreamProtocol::Http1, https)
            .map_err(|e| format!("login.remote: {e}"))?;
        Ok(Remote {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url: c.url.clone(),
            timeout: c.timeout,
            identity: c.identity.clone(),
            claims: c.claims.clone(),
        })
    }

    /// Asks the service; `Ok(None)` when it refused the credentials.
    pub async fn check(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<RemoteUser>, RemoteError> {
        match tokio::time::timeout(self.timeout, self.ask(username, password)).await {
            Ok(answer) => answer,
            Err(_) => Err(RemoteError::Timeout(self.timeout)),
        }
    }

    async fn ask(&self, username: &str, password: &str) -> Result<Option<RemoteUser>, RemoteError> {
        let body = serde_json::to_vec(&Ask { username, password })
            .map_err(|_| RemoteError::Malformed("cannot encode the request"))?;
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.url.clone();
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let res = self.client.request(req).await.map_err(|e| {
            // The error names the address and the kind only: never the request body.
            RemoteError::Unreachable(if e.is_connect() {
                "connect failed".into()
            } else {
                "request failed".into()
            })
        })?;
        let status = res.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(RemoteError::Status(status.as_u16()));
        }
        let bytes = Limited::new(res.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| RemoteError::Malformed("the answer could not be read or is too large"))?
            .to_bytes();
        self.read_answer(&bytes).map(Some)
    }

    fn read_answer(&self, bytes: &[u8]) -> Result<RemoteUser, RemoteError> {
        let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(bytes) else {
            return Err(RemoteError::Malformed("the answer is not a JSON object"));
        };
        let id = match answer.remove(&self.identity) {
            Some(Value::String(s)) if !s.is_empty() => UserId::Str(s),
            Some(Value::Number(n)) => n.as_i64().map(UserId::Int).ok_or(RemoteError::Malformed(
                "the identity is not an integer or a string",
            ))?,
            Some(_) => {
                return Err(RemoteError::Malformed(
                    "the identity is not an integer or a string",
                ))
            }
            None => return Err(RemoteError::Malformed("the answer has no identity member")),
        };
        let claims = self
            .claims
            .iter()
            .filter_map(|c| Some((c.clone(), answer.remove(c)?)))
            .collect();
        Ok(RemoteUser { id, claims })
    }
}
