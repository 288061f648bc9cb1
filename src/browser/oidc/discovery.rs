//! OpenID Connect discovery: `{issuer}/.well-known/openid-configuration` → the endpoints,
//! the client authentication method and the ID token algorithms this provider uses.
//!
//! The document must name exactly the configured issuer (OpenID Connect Discovery §4.3),
//! or a provider could speak for another. Under an https issuer every endpoint must be
//! https too. Algorithms default to RS256 (Discovery §3); `none` and HMAC algorithms are
//! never used, so the ID token is always checked with a key from the provider's JWKS.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::Backchannel;
use crate::auth::issuers::ExternalIssuer;
use crate::config::{
    is_hmac, parse_algorithm, IssuerConfig, JwksSource, OidcConfig, RequiredClaims, TokensConfig,
};

/// A discovery document or token answer larger than this is refused unread.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// How the gateway authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_secret_post`: both in the form body.
    Post,
}

/// What discovery found, with the ID token verifier it implies.
pub struct Discovered {
    /// The `iss` ID tokens carry, exactly as the provider writes it.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: Uri,
    /// Present when the provider offers RP-initiated logout.
    pub end_session_endpoint: Option<String>,
    pub client_auth: ClientAuth,
    /// The provider's JWKS, restricted to the announced algorithms; `iss`, `aud` (the
    /// client id), `exp` and `iat` are checked by it.
    pub id_tokens: Arc<ExternalIssuer>,
}

/// Why discovery gave nothing usable. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot reach the provider: {0}")]
    Unreachable(String),
    #[error("no answer within the fetch timeout")]
    Timeout,
    #[error("the provider answered status {0}")]
    Status(StatusCode),
    #[error("the provider's answer is unusable: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    id_token_signing_alg_values_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// Fetches and checks the provider's discovery document.
pub async fn discover(
    client: &Backchannel,
    cfg: &OidcConfig,
    tokens: &TokensConfig,
    wanted: Vec<Arc<str>>,
) -> Result<Discovered, DiscoveryError> {
    let url = format!("{}/.well-known/openid-configuration", cfg.issuer);
    let uri: Uri = url
        .parse()
        .map_err(|_| DiscoveryError::Malformed("the discovery URL is not a URL".into()))?;
    let req = Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| DiscoveryError::Malformed(e.to_string()))?;
    let (status, body) = send(client, req, cfg.fetch_timeout).await?;
    if status != StatusCode::OK {
        return Err(DiscoveryError::Status(status));
    }
    let doc: Document = serde_json::from_slice(&body)
        .map_err(|e| DiscoveryError::Malformed(format!("not a discovery document: {e}")))?;
    check(doc, cfg, tokens, wanted)
}

/// Sends one backchannel request and reads its whole (bounded) answer within `timeout`.
pub async fn send(
    client: &Backchannel,
    req: Request<Full<Bytes>>,
    timeout: std::time::Duration,
) -> Result<(StatusCode, Bytes), DiscoveryError> {
    let exchange = async {
        let res = client.request(req).await.map_err(|e| {
            DiscoveryError::Unreachable(if e.is_connect() {
                "connect failed".into()
            } else {
                "request failed".into()
            })
        })?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|_| DiscoveryError::Malformed("unreadable or too large".into()))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DiscoveryError::Timeout)?
}

fn check(
    doc: Document,
    cfg: &OidcConfig,
    tokens: &TokensConfig,
    wanted: Vec<Arc<str>>,
) -> Result<Discovered, DiscoveryError> {
    let bad = |what: String| Err(DiscoveryError::Malformed(what));
    if doc.issuer.trim_end_matches('/') != cfg.issuer {
        return bad(format!(
            "the document names issuer `{}`, not the configured one",
            doc.issuer
        ));
    }
    let https = cfg.issuer.starts_with("https://");
    let endpoint = |name: &str, text: &str| -> Result<Uri, DiscoveryError> {
        let uri: Uri = text
            .parse()
            .map_err(|_| DiscoveryError::Malformed(format!("{name} is not a URL")))?;
        match uri.scheme_str() {
            Some("https") if uri.authority().is_some() => Ok(uri),
            Some("http") if uri.authority().is_some() && !https => Ok(uri),
            _ => Err(DiscoveryError::Malformed(format!(
                "{name} is not an {} URL",
                if https { "https://" } else { "http(s)://" }
            ))),
        }
    };
    endpoint("authorization_endpoint", &doc.authorization_endpoint)?;
    let token_endpoint = endpoint("token_endpoint", &doc.token_endpoint)?;
    let jwks_uri = endpoint("jwks_uri", &doc.jwks_uri)?;
    let end_session_endpoint = match &doc.end_session_endpoint {
        Some(e) => {
            endpoint("end_session_endpoint", e)?;
            Some(e.clone())
        }
        None => None,
    };
    if let Some(methods) = &doc.code_challenge_methods_supported {
        if !methods.iter().any(|m| m == "S256") {
            return bad("the provider does not offer PKCE with S256".into());
        }
    }
    let methods = doc
        .token_endpoint_auth_methods_supported
        .unwrap_or_else(|| vec!["client_secret_basic".into()]);
    let client_auth = if methods.iter().any(|m| m == "client_secret_basic") {
        ClientAuth::Basic
    } else if methods.iter().any(|m| m == "client_secret_post") {
        ClientAuth::Post
    } else {
        return bad("the token endpoint takes neither client_secret_basic nor _post".into());
    };
    let algorithms: Vec<Algorithm> = doc
        .id_token_signing_alg_values_supported
        .unwrap_or_else(|| vec!["RS256".into()])
        .iter()
        .filter_map(|a| parse_algorithm(a))
        .filter(|a| !is_hmac(*a))
        .collect();
    if algorithms.is_empty() {
        return bad("no ID token algorithm the gateway verifies with a public key".into());
    }
    let issuer = IssuerConfig {
        issuer: doc.issuer.clone(),
        audiences: vec![cfg.client_id.clone()],
        jwks: JwksSource::Url(jwks_uri),
        jwks_tls: cfg.tls.clone(),
        identity_claim: cfg.identity_claim.clone(),
        required: RequiredClaims {
            iat: true,
            nbf: false,
        },
        required_custom: vec!["nonce".into()],
        max_lifetime: None,
        cache_ttl: std::time::Duration::from_secs(300),
        min_refetch_interval: std::time::Duration::from_secs(30),
        fetch_timeout: cfg.fetch_timeout,
    };
    let id_tokens = ExternalIssuer::new(&issuer, tokens, wanted)
        .map_err(|e| DiscoveryError::Malformed(e.to_string()))?
        .with_algorithms(algorithms);
    Ok(Discovered {
        issuer: doc.issuer,
        authorization_endpoint: doc.authorization_endpoint,
        token_endpoint,
        end_session_endpoint,
        client_auth,
        id_tokens: Arc::new(id_tokens),
    })
}
