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
    /// `authorization_response_iss_parameter_supported`: every callback then names the
    /// issuer (RFC 9207), and one without `iss` is refused.
    pub iss_parameter_supported: bool,
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

/// The members of a discovery document the gateway reads.
#[derive(Deserialize)]
pub(super) struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    id_token_signing_alg_values_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    authorization_response_iss_parameter_supported: Option<bool>,
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

pub(super) fn check(
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
    // The issuer's own rule for every endpoint: plain HTTP under a plain-HTTP issuer, and
    // then only on loopback unless `insecure_http` (a loopback issuer's document may not
    // send the client secret or fetch the keys across the network in clear).
    let endpoint = |name: &str, text: &str| -> Result<Uri, DiscoveryError> {
        let uri: Uri = text
            .parse()
            .map_err(|_| DiscoveryError::Malformed(format!("{name} is not a URL")))?;
        let plain_ok =
            !https && (cfg.insecure_http || uri.host().is_some_and(crate::config::is_loopback));
        match uri.scheme_str() {
            Some("https") if uri.authority().is_some() => Ok(uri),
            Some("http") if uri.authority().is_some() && plain_ok => Ok(uri),
            _ => Err(DiscoveryError::Malformed(format!(
                "{name} is not an {} URL",
                if https {
                    "https://"
                } else if cfg.insecure_http {
                    "http(s)://"
                } else {
                    "https:// (or loopback http://)"
                }
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
        iss_parameter_supported: doc
            .authorization_response_iss_parameter_supported
            .unwrap_or(false),
        client_auth,
        id_tokens: Arc::new(id_tokens),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::check_str_with_env;

    /// A checked `[[oidc]]` entry `corp` at `issuer` (with `more` keys), and `[tokens]`.
    pub(in crate::browser::oidc) fn provider(
        issuer: &str,
        more: &str,
    ) -> (OidcConfig, TokensConfig) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("secret"),
            "q8Xv2LpR7mNc4TzW9bKs1HdY6fGj3AeU0oIx",
        )
        .unwrap();
        let env = |name: &str| (name == "IDP_SECRET").then(|| "s3cret".to_string());
        let text = format!(
            "[tokens]\nsecret_file = \"secret\"\n[login]\n[[users]]\nid = 1\nusername = \"u\"\n\
             password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$wSaoz+WjVyDsS0mngmCCZw$\
             lmrh+SyHdtpcel/Vv+nEzSbKyrsRTlKEFpoT+qiXaQw\"\n[[routes]]\npath = \"/app\"\n\
             upstream = \"http://127.0.0.1:1\"\nauth = \"required\"\nbrowser = true\n\
             [oauth2]\ncookie_key_file = \"secret\"\n[[oidc]]\nname = \"corp\"\n\
             issuer = \"{issuer}\"\nclient_id = \"gateway\"\nclient_secret_env = \"IDP_SECRET\"\n{more}"
        );
        let c = check_str_with_env(&text, dir.path(), &env)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .config;
        (c.oidc[0].clone(), c.tokens)
    }

    fn doc(issuer: &str) -> Document {
        Document {
            issuer: issuer.into(),
            authorization_endpoint: format!("{issuer}/auth"),
            token_endpoint: format!("{issuer}/token"),
            jwks_uri: format!("{issuer}/jwks"),
            end_session_endpoint: None,
            token_endpoint_auth_methods_supported: None,
            id_token_signing_alg_values_supported: None,
            code_challenge_methods_supported: None,
            authorization_response_iss_parameter_supported: None,
        }
    }

    fn checked(d: Document, issuer: &str) -> Result<Discovered, DiscoveryError> {
        let (cfg, tokens) = provider(issuer, "");
        check(d, &cfg, &tokens, vec!["nonce".into()])
    }

    const IDP: &str = "https://idp.example/realms/main";

    #[test]
    fn the_document_must_name_the_configured_issuer() {
        assert!(checked(doc(IDP), IDP).is_ok());
        // A trailing slash is the same issuer; another realm or host is not.
        assert!(checked(doc(&format!("{IDP}/")), IDP).is_ok());
        for other in [
            "https://idp.example/realms/other",
            "https://evil.example/realms/main",
            "http://idp.example/realms/main",
        ] {
            let e = checked(doc(other), IDP).err().unwrap();
            assert!(
                e.to_string().contains("not the configured one"),
                "{other}: {e}"
            );
        }
    }

    #[test]
    fn endpoints_under_an_https_issuer_must_be_https() {
        for field in ["authorization", "token", "jwks", "end_session"] {
            let mut d = doc(IDP);
            let plain = "http://idp.example/x".to_string();
            match field {
                "authorization" => d.authorization_endpoint = plain,
                "token" => d.token_endpoint = plain,
                "jwks" => d.jwks_uri = plain,
                _ => d.end_session_endpoint = Some(plain),
            }
            let e = checked(d, IDP).err().unwrap();
            assert!(
                e.to_string().contains("is not an https:// URL"),
                "{field}: {e}"
            );
        }
        // A loopback http issuer may use http endpoints, on loopback only.
        let local = "http://127.0.0.1:9000";
        assert!(checked(doc(local), local).is_ok());
        for field in ["token", "jwks", "authorization"] {
            let mut d = doc(local);
            let remote = "http://idp.internal/x".to_string();
            match field {
                "token" => d.token_endpoint = remote,
                "jwks" => d.jwks_uri = remote,
                _ => d.authorization_endpoint = remote,
            }
            let e = checked(d, local).err().unwrap();
            assert!(
                e.to_string().contains("(or loopback http://)"),
                "{field}: {e}"
            );
        }
        let mut d = doc(local);
        d.token_endpoint = "http://[::1]:9000/token".into();
        assert!(checked(d, local).is_ok());
        // insecure_http: the operator's choice, for every endpoint.
        let (cfg, tokens) = provider("http://idp.internal", "insecure_http = true\n");
        let mut d = doc("http://idp.internal");
        d.jwks_uri = "http://keys.internal/jwks".into();
        assert!(check(d, &cfg, &tokens, vec![]).is_ok());
    }

    #[test]
    fn only_public_key_algorithms_are_kept_and_pkce_s256_is_required() {
        let mut d = doc(IDP);
        d.id_token_signing_alg_values_supported =
            Some(vec!["none".into(), "HS256".into(), "HS512".into()]);
        let e = checked(d, IDP).err().unwrap();
        assert!(e.to_string().contains("no ID token algorithm"), "{e}");
        let mut d = doc(IDP);
        d.id_token_signing_alg_values_supported =
            Some(vec!["none".into(), "HS256".into(), "ES256".into()]);
        assert!(checked(d, IDP).is_ok());
        let mut d = doc(IDP);
        d.code_challenge_methods_supported = Some(vec!["plain".into()]);
        let e = checked(d, IDP).err().unwrap();
        assert!(e.to_string().contains("S256"), "{e}");
        let mut d = doc(IDP);
        d.code_challenge_methods_supported = Some(vec!["plain".into(), "S256".into()]);
        assert!(checked(d, IDP).is_ok());
    }

    #[test]
    fn the_client_authentication_prefers_basic_then_post() {
        let auth = |methods: Option<&[&str]>| {
            let mut d = doc(IDP);
            d.token_endpoint_auth_methods_supported =
                methods.map(|m| m.iter().map(|s| s.to_string()).collect());
            checked(d, IDP).map(|d| d.client_auth)
        };
        assert_eq!(auth(None).unwrap(), ClientAuth::Basic);
        assert_eq!(
            auth(Some(&["client_secret_post", "client_secret_basic"])).unwrap(),
            ClientAuth::Basic
        );
        assert_eq!(
            auth(Some(&["private_key_jwt", "client_secret_post"])).unwrap(),
            ClientAuth::Post
        );
        assert!(auth(Some(&["private_key_jwt", "none"])).is_err());
    }

    #[test]
    fn the_iss_parameter_is_required_only_when_announced() {
        assert!(!checked(doc(IDP), IDP).unwrap().iss_parameter_supported);
        let mut d = doc(IDP);
        d.authorization_response_iss_parameter_supported = Some(true);
        assert!(checked(d, IDP).unwrap().iss_parameter_supported);
    }
}
