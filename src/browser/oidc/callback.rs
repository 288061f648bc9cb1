//! The callback's back half: the authorization code exchanged at the token endpoint (with
//! the PKCE verifier), the ID token verified, and the provider's rules applied to it.
//!
//! The ID token arrives over our own TLS connection to the token endpoint, never through
//! the browser, and is still verified in full: signature with a key of the provider's JWKS
//! whose algorithm discovery announced, `iss`, `aud` (our client id), `exp`, `iat`, then
//! `azp` when present and the `nonce` bound to this login's flow cookie.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::discovery::{send, ClientAuth, Discovered, DiscoveryError};
use super::flow_cookie::Flow;
use super::{Backchannel, OidcError};
use crate::auth::Claims;
use crate::config::{OidcConfig, UserId};

/// A user the provider vouched for, after every check of its provider entry.
#[derive(Clone, PartialEq)]
pub struct Vouched {
    pub user: UserId,
    /// The configured `claims` found in the ID token.
    pub claims: Vec<(String, Value)>,
    /// Kept only for RP-initiated logout (sealed into a cookie, never logged).
    pub id_token: String,
}

impl std::fmt::Debug for Vouched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the ID token, even in debug output.
        f.debug_struct("Vouched")
            .field("user", &self.user)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: Option<String>,
}

/// The claims beyond the identity the checks read: the verifier keeps only these.
pub fn wanted(cfg: &OidcConfig) -> Vec<Arc<str>> {
    let mut names: Vec<Arc<str>> = vec![
        "nonce".into(),
        "azp".into(),
        "aud".into(),
        "email_verified".into(),
    ];
    for n in [&cfg.email_claim, &cfg.groups_claim]
        .into_iter()
        .chain(cfg.claims.iter())
    {
        if !names.iter().any(|w| &**w == n.as_str()) {
            names.push(n.as_str().into());
        }
    }
    names
}

/// Exchanges `code` and checks what comes back.
pub async fn complete(
    client: &Backchannel,
    cfg: &OidcConfig,
    d: &Discovered,
    flow: &Flow,
    code: &str,
    now: i64,
) -> Result<Vouched, OidcError> {
    let id_token = exchange(client, cfg, d, flow, code).await?;
    let claims = d
        .id_tokens
        .verify(&id_token, now)
        .await
        .map_err(OidcError::IdTokenRefused)?;
    check_azp(cfg, &claims)?;
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !bool::from(nonce.as_bytes().ct_eq(flow.nonce.as_bytes())) {
        return Err(OidcError::NonceMismatch);
    }
    check_email(cfg, &claims)?;
    check_groups(cfg, &claims)?;
    let carried = cfg
        .claims
        .iter()
        .filter_map(|name| Some((name.clone(), claim(cfg, &claims, name)?)))
        .collect();
    Ok(Vouched {
        user: claims.identity.clone(),
        claims: carried,
        id_token,
    })
}

/// A claim by name; the identity claim is read from where the verifier put it.
fn claim(cfg: &OidcConfig, claims: &Claims, name: &str) -> Option<Value> {
    if name == cfg.identity_claim {
        return Some(claims.identity.to_json());
    }
    claims.get(name).filter(|v| !v.is_null()).cloned()
}

/// `azp` (OpenID Connect Core §3.1.3.7 steps 4 and 5): when present it must be our
/// client id, and when the token names several audiences it must be present.
fn check_azp(cfg: &OidcConfig, claims: &Claims) -> Result<(), OidcError> {
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    let ok = match claims.get("azp") {
        Some(azp) => azp.as_str() == Some(cfg.client_id.as_str()),
        None => !several,
    };
    if ok {
        Ok(())
    } else {
        Err(OidcError::IdTokenRefused(
            crate::auth::TokenError::InvalidAudience,
        ))
    }
}

/// The email rules: whenever the email is the identity or domains are listed, the email
/// must be present, verified (`email_verified` exactly `true`, unless
/// `allow_unverified_email`) and one address (one `@`, a local part); with domains, its
/// domain (case aside) must be one of them exactly (a subdomain is another domain).
fn check_email(cfg: &OidcConfig, claims: &Claims) -> Result<(), OidcError> {
    let email_is_identity = cfg.identity_claim == cfg.email_claim;
    if cfg.allowed_email_domains.is_empty() && !email_is_identity {
        return Ok(());
    }
    let email = claim(cfg, claims, &cfg.email_claim);
    let Some(email) = email.as_ref().and_then(Value::as_str) else {
        return Err(OidcError::EmailNotAllowed);
    };
    let verified = claims.get("email_verified") == Some(&Value::Bool(true));
    if !verified && !cfg.allow_unverified_email {
        return Err(OidcError::EmailNotAllowed);
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(OidcError::EmailNotAllowed);
    };
    if local.is_empty() || domain.contains('@') {
        return Err(OidcError::EmailNotAllowed);
    }
    if cfg.allowed_email_domains.is_empty()
        || cfg
            .allowed_email_domains
            .contains(&domain.to_ascii_lowercase())
    {
        Ok(())
    } else {
        Err(OidcError::EmailNotAllowed)
    }
}

fn check_groups(cfg: &OidcConfig, claims: &Claims) -> Result<(), OidcError> {
    if cfg.allowed_groups.is_empty() {
        return Ok(());
    }
    let member = |g: &str| cfg.allowed_groups.iter().any(|a| a == g);
    let ok = match claim(cfg, claims, &cfg.groups_claim) {
        Some(Value::String(g)) => member(&g),
        Some(Value::Array(list)) => list.iter().any(|g| g.as_str().is_some_and(member)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(OidcError::GroupNotAllowed)
    }
}

/// The token request (RFC 6749 §4.1.3 with RFC 7636's `code_verifier`); the ID token of a
/// 200 answer.
async fn exchange(
    client: &Backchannel,
    cfg: &OidcConfig,
    d: &Discovered,
    flow: &Flow,
    code: &str,
) -> Result<String, OidcError> {
    let secret = String::from_utf8_lossy(&cfg.client_secret.bytes);
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &flow.redirect_uri)
            .append_pair("code_verifier", &flow.verifier)
            .append_pair("client_id", &cfg.client_id);
        if d.client_auth == ClientAuth::Post {
            form.append_pair("client_secret", &secret);
        }
        form.finish()
    };
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = d.token_endpoint.clone();
    let h = req.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if d.client_auth == ClientAuth::Basic {
        // RFC 6749 §2.3.1: both parts form-encoded before they are joined.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(&cfg.client_id), enc(&secret));
        let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
            .map_err(|_| OidcError::Internal("the client credentials are not header-safe"))?;
        value.set_sensitive(true);
        h.insert(AUTHORIZATION, value);
    }
    let (status, body) = send(client, req, cfg.fetch_timeout)
        .await
        .map_err(OidcError::ProviderUnavailable)?;
    if status == StatusCode::BAD_REQUEST {
        let error = serde_json::from_slice::<TokenRefusal>(&body)
            .ok()
            .and_then(|r| r.error);
        if error.as_deref() == Some("invalid_grant") {
            return Err(OidcError::CodeRefused);
        }
    }
    if status != StatusCode::OK {
        return Err(OidcError::ProviderUnavailable(DiscoveryError::Status(
            status,
        )));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
        OidcError::ProviderUnavailable(DiscoveryError::Malformed(
            "the token answer is not JSON".into(),
        ))
    })?;
    answer
        .id_token
        .ok_or(OidcError::ProviderUnavailable(DiscoveryError::Malformed(
            "the token answer has no id_token".into(),
        )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::oidc::discovery::tests::provider;
    use serde_json::json;

    fn claims(identity: &str, extra: Value) -> Claims {
        let extra: Vec<(Arc<str>, Value)> = extra
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), v.clone()))
            .collect();
        Claims {
            identity: UserId::Str(identity.into()),
            exp: 0.0,
            iat: None,
            extra: extra.into(),
        }
    }

    const IDP: &str = "https://idp.example";

    #[test]
    fn allowed_domains_match_exactly_case_aside() {
        let (cfg, _) = provider(IDP, "allowed_email_domains = [\"Example.com\"]\n");
        let email = |e: &str, verified: Value| {
            check_email(
                &cfg,
                &claims("x", json!({"email": e, "email_verified": verified})),
            )
            .is_ok()
        };
        assert!(email("a@example.com", json!(true)));
        assert!(email("a@EXAMPLE.com", json!(true)));
        for bad in [
            "a@sub.example.com",
            "a@example.com.evil.example",
            "a@evilexample.com",
            "a@example.com@evil.example",
            "a@evil.example@example.com",
            "@example.com",
            "example.com",
            "a@example.com.",
        ] {
            assert!(!email(bad, json!(true)), "{bad}");
        }
        // Verified means exactly true.
        for v in [json!(false), json!("true"), json!(1), Value::Null] {
            assert!(!email("a@example.com", v.clone()), "{v}");
        }
        assert!(check_email(&cfg, &claims("x", json!({}))).is_err());
    }

    #[test]
    fn an_email_identity_must_be_verified_even_without_domains() {
        let (cfg, _) = provider(IDP, "identity_claim = \"email\"\n");
        let ok = |c: Claims| check_email(&cfg, &c).is_ok();
        assert!(ok(claims("a@any.example", json!({"email_verified": true}))));
        assert!(!ok(claims(
            "a@any.example",
            json!({"email_verified": false})
        )));
        assert!(!ok(claims("a@any.example", json!({}))));
        let (cfg, _) = provider(
            IDP,
            "identity_claim = \"email\"\nallow_unverified_email = true\n",
        );
        assert!(check_email(&cfg, &claims("a@any.example", json!({}))).is_ok());
        // Neither the identity nor domains: the email is not read.
        let (cfg, _) = provider(IDP, "");
        assert!(check_email(&cfg, &claims("sub-1", json!({"email_verified": false}))).is_ok());
    }

    #[test]
    fn groups_match_exactly() {
        let (cfg, _) = provider(IDP, "allowed_groups = [\"staff\"]\n");
        let ok = |g: Value| check_groups(&cfg, &claims("x", json!({"groups": g}))).is_ok();
        assert!(ok(json!(["guests", "staff"])));
        assert!(ok(json!("staff")));
        for bad in [
            json!("Staff"),
            json!(["staff-x", "x-staff"]),
            json!("staff guests"),
            json!([["staff"]]),
            json!({"staff": true}),
            json!([]),
        ] {
            assert!(!ok(bad.clone()), "{bad}");
        }
        assert!(check_groups(&cfg, &claims("x", json!({}))).is_err());
    }

    #[test]
    fn azp_is_our_client_and_required_with_several_audiences() {
        let (cfg, _) = provider(IDP, "");
        let ok = |extra: Value| check_azp(&cfg, &claims("x", extra)).is_ok();
        assert!(ok(json!({"aud": "gateway"})));
        assert!(ok(json!({"aud": ["gateway"]})));
        assert!(ok(json!({"aud": ["gateway", "other"], "azp": "gateway"})));
        assert!(!ok(json!({"aud": ["gateway", "other"]})));
        assert!(!ok(json!({"aud": ["gateway", "other"], "azp": "other"})));
        assert!(!ok(json!({"aud": "gateway", "azp": "other"})));
        assert!(!ok(json!({"aud": "gateway", "azp": 1})));
    }
}
