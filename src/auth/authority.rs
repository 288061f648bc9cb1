//! ③ Who may vouch for a token: our own keyring, plus the external issuers a route allows.
//!
//! A token goes to an external issuer only when the route allows issuers and the token's
//! (still unverified) `iss` names one of them, as Envoy's jwt_authn picks its provider.
//! That issuer's verifier then checks everything, `iss` included, with that issuer's keys
//! only; every other token is checked with our keyring, exactly as before. The unverified
//! `iss` only chooses which keys to try, so naming an issuer buys a token nothing.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::issuers::ExternalIssuer;
use super::keys::{KeyError, Keyring};
use super::verify::Verifier;
use super::{Claims, TokenError};
use crate::config::Config;

/// A verified token and who vouched for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub claims: Claims,
    /// `None`: our keyring; `Some(i)`: [`Authority::issuer`] `i`.
    pub issuer: Option<usize>,
}

/// Our verifier and the external issuers, built once per configuration.
pub struct Authority {
    pub local: Verifier,
    issuers: Vec<Arc<ExternalIssuer>>,
}

impl Authority {
    /// Our verifier over `keys` (built once per load, see `crate::load`) and the issuers.
    /// `wanted` (claims callers will read) applies to both our tokens and the issuers'.
    pub fn build(
        config: &Config,
        keys: Arc<Keyring>,
        wanted: Vec<Arc<str>>,
    ) -> Result<Authority, KeyError> {
        Ok(Authority {
            local: Verifier::new(&config.tokens, keys, wanted.clone()),
            issuers: config
                .issuers
                .iter()
                .map(|i| ExternalIssuer::new(i, &config.tokens, wanted.clone()).map(Arc::new))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Our keyring.
    pub fn keys(&self) -> &Arc<Keyring> {
        self.local.keys()
    }

    /// The index of the issuer whose `iss` is `name`.
    pub fn issuer_index(&self, name: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.issuer == name)
    }

    pub fn issuer(&self, i: usize) -> Option<&Arc<ExternalIssuer>> {
        self.issuers.get(i)
    }

    /// Starts the background JWKS refreshers (needs a tokio runtime).
    pub fn spawn_refreshers(&self) {
        for i in &self.issuers {
            i.spawn_refresher();
        }
    }

    /// Fetches every issuer's key set once (the operator CLI, which has no background).
    pub async fn refresh_all(&self) {
        for i in &self.issuers {
            if let Err(e) = i.refresh().await {
                tracing::warn!(issuer = %i.issuer, error = %e, "JWKS fetch failed");
            }
        }
    }

    /// Verifies `token` at `now` with our keyring, or with the issuer among `allowed`
    /// (indices) that its `iss` names.
    pub async fn verify(
        &self,
        token: &str,
        now: i64,
        allowed: &[usize],
    ) -> Result<Verified, TokenError> {
        let result = self.verify_inner(token, now, allowed).await;
        if let Err(e) = &result {
            // The access log has the reason label; this adds which key the token named
            // (read unverified, on the failure path only). Never the token itself.
            let kid = unverified_kid(token);
            let kid = kid.as_deref().unwrap_or("-");
            tracing::debug!(reason = %e, kid, "token refused");
        }
        result
    }

    /// Verifies one of our own tokens as of its expiry when that has passed: everything
    /// but its freshness. Binds a browser's cookies to one session (an expired access
    /// cookie still names it); never a reason to let a request in.
    pub async fn verify_ours_ignoring_exp(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        let at = unverified_exp(token).map_or(now, |exp| now.min(exp));
        self.verify(token, at, &[]).await.map(|v| v.claims)
    }

    async fn verify_inner(
        &self,
        token: &str,
        now: i64,
        allowed: &[usize],
    ) -> Result<Verified, TokenError> {
        if !allowed.is_empty() {
            if let Some(iss) = unverified_iss(token) {
                let chosen = allowed.iter().copied().find(|i| {
                    self.issuers
                        .get(*i)
                        .is_some_and(|issuer| issuer.issuer == iss)
                });
                if let Some(i) = chosen {
                    let claims = self.issuers[i].verify(token, now).await?;
                    return Ok(Verified {
                        claims,
                        issuer: Some(i),
                    });
                }
            }
        }
        Ok(Verified {
            claims: self.local.verify(token, now)?,
            issuer: None,
        })
    }
}

/// The `iss` of a token's payload, read without verification: it only picks the key set.
fn unverified_iss(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&json).ok()?.iss
}

/// The `exp` of a token's payload, read without verification (whole seconds).
fn unverified_exp(token: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Exp {
        exp: Option<f64>,
    }
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let exp = serde_json::from_slice::<Exp>(&json).ok()?.exp?;
    exp.is_finite().then(|| exp.floor() as i64)
}

/// The `kid` of a token's header, read without verification, for the log.
fn unverified_kid(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Kid {
        kid: Option<String>,
    }
    let header = token.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    let kid = serde_json::from_slice::<Kid>(&json).ok()?.kid?;
    // Bounded and printable: the log must not carry arbitrary client bytes.
    Some(
        kid.chars()
            .filter(char::is_ascii_graphic)
            .take(64)
            .collect(),
    )
}
