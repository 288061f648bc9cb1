//! External issuers (`[[issuers]]`): an IdP's tokens, checked with its fetched JWKS.
//!
//! The key set is cached and refreshed in the background at 3/4 of `cache_ttl`, so requests
//! never wait for the IdP. A token whose `kid` (or `alg`) no cached key has triggers one
//! refetch at once: concurrent requests share it (single-flight) and such refetches happen
//! at most once per `min_refetch_interval`, so a flood of random `kid`s cannot hammer the
//! IdP. A failed fetch, or an answer without a usable key, never replaces the last good
//! set: while the IdP is down, the keys it last published keep working.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use super::keys::{KeyError, Keyring};
use super::verify::Verifier;
use super::{jwks, Claims, TokenError};
use crate::config::{IssuerConfig, JwksSource, TokensConfig};

/// A JWKS larger than this is refused unread.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS fetch failed: {0}")]
    Unreachable(String),
    #[error("JWKS fetch timed out")]
    Timeout,
    #[error("JWKS answered status {0}")]
    Status(StatusCode),
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
}

#[derive(Default)]
struct FetchState {
    /// The set behind the current keyring: an identical answer keeps the keyring (and so
    /// the verified-token cache) as it is.
    current: Option<JwkSet>,
    /// The last refetch triggered by an unknown `kid` (background refreshes do not count).
    last_forced: Option<Instant>,
}

/// One external issuer: its claim rules and its current key set.
pub struct ExternalIssuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    verifier: Verifier,
    keys: ArcSwap<Keyring>,
    source: JwksSource,
    cache_ttl: Duration,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
    fetch: Mutex<FetchState>,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Only keys of these algorithms are used; `None`: any the key type allows.
    algorithms: Option<Vec<jsonwebtoken::Algorithm>>,
}

impl ExternalIssuer {
    /// Builds the issuer; a `jwks_file` is read now, a `jwks_url` on the first refresh.
    /// Fails when the TLS settings for an https `jwks_url` cannot be loaded.
    pub fn new(
        i: &IssuerConfig,
        t: &TokensConfig,
        wanted: Vec<Arc<str>>,
    ) -> Result<ExternalIssuer, KeyError> {
        let connector = crate::tls::connector(
            &i.jwks_tls,
            i.fetch_timeout,
            crate::config::UpstreamProtocol::Http1,
            matches!(&i.jwks, JwksSource::Url(u) if u.scheme() == Some(&http::uri::Scheme::HTTPS)),
        )
        .map_err(|e| KeyError(format!("issuer {}: {e}", i.issuer)))?;
        let this = ExternalIssuer {
            issuer: i.issuer.clone(),
            verifier: Verifier::for_issuer(i, t, wanted),
            keys: ArcSwap::from_pointee(Keyring::new(Vec::new(), None)),
            source: i.jwks.clone(),
            cache_ttl: i.cache_ttl,
            min_refetch_interval: i.min_refetch_interval,
            fetch_timeout: i.fetch_timeout,
            fetch: Mutex::new(FetchState::default()),
            client: Client::builder(TokioExecutor::new()).build(connector),
            algorithms: None,
        };
        if let JwksSource::File(path) = &this.source {
            match load_file(path) {
                Ok((set, ring)) => {
                    this.keys.store(Arc::new(ring));
                    if let Ok(mut st) = this.fetch.try_lock() {
                        st.current = Some(set);
                    }
                }
                Err(e) => tracing::warn!(issuer = %this.issuer, error = %e, "JWKS file unusable"),
            }
        }
        Ok(this)
    }

    /// The same issuer, using only keys whose pinned algorithm is in `algorithms` (an
    /// OpenID provider's `id_token_signing_alg_values_supported`). Call it before the first
    /// fetch: a `jwks_file` already read is not filtered.
    pub fn with_algorithms(mut self, algorithms: Vec<jsonwebtoken::Algorithm>) -> ExternalIssuer {
        self.algorithms = Some(algorithms);
        self
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<Keyring> {
        self.keys.load_full()
    }

    /// Verifies one of this issuer's tokens, refetching the key set once if no cached key
    /// fits the token's `kid`/`alg` (within the refetch rate limit).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let keys = self.keys.load_full();
        match self.verifier.verify_with(&keys, token, now) {
            Err(e @ (TokenError::UnknownKey | TokenError::AlgNotAllowed)) => {
                if self.refetch_after(keys.generation()).await {
                    self.verifier.verify_with(&self.keys.load(), token, now)
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Refetches because keyring `seen` lacked a key; true when a newer keyring is in place.
    async fn refetch_after(&self, seen: u64) -> bool {
        // Single flight: whoever waits here while another request fetches sees its result.
        let mut st = self.fetch.lock().await;
        if self.keys.load().generation() != seen {
            return true;
        }
        if st
            .last_forced
            .is_some_and(|t| t.elapsed() < self.min_refetch_interval)
        {
            return false;
        }
        st.last_forced = Some(Instant::now());
        match self.fetch_locked(&mut st).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refetch for an unknown \
                    kid failed; keeping the last good key set");
                false
            }
        }
    }

    /// Fetches the key set now; `Ok(true)` when it changed. On error the old set stays.
    pub async fn refresh(&self) -> Result<bool, FetchError> {
        let mut st = self.fetch.lock().await;
        self.fetch_locked(&mut st).await
    }

    async fn fetch_locked(&self, st: &mut FetchState) -> Result<bool, FetchError> {
        let bytes = match &self.source {
            JwksSource::Url(uri) => tokio::time::timeout(self.fetch_timeout, self.get(uri.clone()))
                .await
                .map_err(|_| FetchError::Timeout)??,
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| FetchError::Unreachable(format!("{}: {e}", path.display())))?
                .into(),
        };
        let set = jwks::parse(&bytes)?;
        if st.current.as_ref() == Some(&set) {
            return Ok(false);
        }
        let ring = jwks::keyring_for(&set, self.algorithms.as_deref())?;
        tracing::info!(issuer = %self.issuer, keys = ring.len(), "JWKS key set updated");
        self.keys.store(Arc::new(ring));
        st.current = Some(set);
        Ok(true)
    }

    async fn get(&self, uri: http::Uri) -> Result<Bytes, FetchError> {
        let req = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        if res.status() != StatusCode::OK {
            return Err(FetchError::Status(res.status()));
        }
        Limited::new(res.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| FetchError::Unreachable(e.to_string()))
    }

    /// Keeps the key set fresh in the background until the issuer is dropped: a fetch at
    /// once, then every 3/4 of `cache_ttl`; after a failure, retries sooner.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let ttl = self.cache_ttl;
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                let wait = match this.refresh().await {
                    Ok(_) => ttl.mul_f64(0.75),
                    Err(e) => {
                        tracing::warn!(issuer = %this.issuer, error = %e, "JWKS refresh failed; \
                            keeping the last good key set");
                        (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
                    }
                };
                // No strong reference while sleeping: dropping the pipeline ends the task.
                drop(this);
                tokio::time::sleep(wait).await;
            }
        });
    }
}

fn load_file(path: &Path) -> Result<(JwkSet, Keyring), FetchError> {
    let bytes = std::fs::read(path)
        .map_err(|e| FetchError::Unreachable(format!("{}: {e}", path.display())))?;
    let set = jwks::parse(&bytes)?;
    let ring = jwks::keyring(&set)?;
    Ok((set, ring))
}
