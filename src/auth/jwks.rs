//! JWK sets: publishing ours at `/.well-known/jwks.json`, and reading an issuer's.
//!
//! Ours holds every asymmetric key of the keyring (verify-only ones too, so relying parties
//! keep verifying tokens signed before a rotation) and never an HMAC secret. The body is
//! serialized once per configuration.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response};
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};

use super::keys::{Key, Keyring};
use crate::body::{empty, full, Body};
use crate::config::JwksConfig;

/// The JWKS endpoint, built once.
pub struct PublishedJwks {
    pub path: String,
    body: bytes::Bytes,
    cache_control: HeaderValue,
}

impl PublishedJwks {
    /// `None` when publishing is disabled or the keyring has no public key to publish.
    pub fn new(cfg: &JwksConfig, keys: &Keyring) -> Option<PublishedJwks> {
        if !cfg.enabled || !keys.has_asymmetric() {
            return None;
        }
        let body = serde_json::to_vec(&keys.public_jwks()).ok()?;
        let cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", cfg.max_age.as_secs())).ok()?;
        Some(PublishedJwks {
            path: cfg.path.clone(),
            body: body.into(),
            cache_control,
        })
    }

    /// The answer to a request for [`PublishedJwks::path`]; `None` for methods other than
    /// GET and HEAD (those fall through to routing).
    pub fn response(&self, method: &Method) -> Option<Response<Body>> {
        let body = match *method {
            Method::GET => full(self.body.clone()),
            Method::HEAD => empty(),
            _ => return None,
        };
        let mut res = Response::new(body);
        let h = res.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        h.insert(CACHE_CONTROL, self.cache_control.clone());
        Some(res)
    }
}

/// Why an issuer's key set could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWK set: {0}")]
    NotJwks(String),
    #[error("no usable signing key in the set ({0} skipped)")]
    NoUsableKey(usize),
}

/// Parses an issuer's JWKS document.
pub fn parse(json: &[u8]) -> Result<JwkSet, JwksError> {
    serde_json::from_slice(json).map_err(|e| JwksError::NotJwks(e.to_string()))
}

/// The verify-only keyring of a JWK set. Keys meant for encryption, symmetric keys and
/// unsupported types are skipped; a set with no usable key is an error, so a broken
/// answer never replaces a working key set.
pub fn keyring(set: &JwkSet) -> Result<Keyring, JwksError> {
    keyring_for(set, None)
}

/// Like [`keyring`], keeping only keys whose pinned algorithm is in `allowed` (when given):
/// an OpenID provider's discovery document names the algorithms its ID tokens use.
pub fn keyring_for(
    set: &JwkSet,
    allowed: Option<&[jsonwebtoken::Algorithm]>,
) -> Result<Keyring, JwksError> {
    let mut keys = Vec::new();
    let mut skipped = 0;
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            skipped += 1;
            continue;
        }
        match Key::from_jwk(jwk) {
            Ok(k) if allowed.is_some_and(|a| !a.contains(&k.algorithm)) => {
                tracing::debug!(kid = ?jwk.common.key_id, alg = k.alg_name, "JWKS key skipped: \
                    its algorithm is not one the issuer announced");
                skipped += 1;
            }
            Ok(k) => keys.push(k),
            Err(e) => {
                tracing::debug!(kid = ?jwk.common.key_id, error = %e, "JWKS key skipped");
                skipped += 1;
            }
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey(skipped));
    }
    Ok(Keyring::new(keys, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey};

    fn set_of(alg: Algorithm) -> JwkSet {
        let g = super::super::keygen::generate(alg).unwrap();
        let key = EncodingKey::from_ec_pem(g.private.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some("k1".into());
        JwkSet { keys: vec![jwk] }
    }

    #[test]
    fn keys_of_algorithms_the_issuer_did_not_announce_are_skipped() {
        let set = set_of(Algorithm::ES256);
        assert_eq!(keyring_for(&set, None).unwrap().len(), 1);
        assert_eq!(
            keyring_for(&set, Some(&[Algorithm::ES256, Algorithm::RS256]))
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            keyring_for(&set, Some(&[Algorithm::RS256])),
            Err(JwksError::NoUsableKey(1))
        ));
    }
}
