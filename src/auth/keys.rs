//! The keyring: every key built once per configuration, each with its algorithm pinned.
//!
//! A token's `alg` header only selects among the keys that allow that algorithm; it never
//! decides how a key's bytes are read (so an RS256 public key can never check an HS256 MAC).
//! A `kid` selects exactly one key; without a `kid`, only a bounded few keys of the token's
//! algorithm are tried.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use super::TokenError;
pub use crate::config::{alg_name, is_hmac, parse_algorithm};
use crate::config::{KeyConfig, KeyMaterial, Pem, TokensConfig};

/// Keys tried for a token without a `kid`: enough for a rotation overlap, too few to turn
/// one request into a brute-force loop over a large keyring.
pub const MAX_UNTAGGED_TRIES: usize = 3;

/// RSA keys shorter than this are refused (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// Why key material could not be used. The message never contains key bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// A verification key ready for aws-lc-rs: the same primitives jsonwebtoken calls, with
/// the per-key set-up done once.
pub enum Prepared {
    Hmac(Box<aws_lc_rs::hmac::Key>),
    Public(aws_lc_rs::signature::ParsedPublicKey),
}

impl Prepared {
    /// Whether `signature` (decoded) is valid for `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Prepared::Hmac(key) => aws_lc_rs::hmac::verify(key, message, signature).is_ok(),
            Prepared::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }

    fn hmac(alg: Algorithm, secret: &[u8]) -> Option<Prepared> {
        let mac = match alg {
            Algorithm::HS256 => aws_lc_rs::hmac::HMAC_SHA256,
            Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
            Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
            _ => return None,
        };
        Some(Prepared::Hmac(Box::new(aws_lc_rs::hmac::Key::new(
            mac, secret,
        ))))
    }

    /// An RSA public key parsed once, from our own PEM: a public key (SPKI or PKCS#1) as
    /// it is, a private key (PKCS#8 or PKCS#1) through its key pair. The same verification
    /// algorithms jsonwebtoken uses.
    fn rsa(alg: Algorithm, pem: &[u8], private: bool) -> Option<Prepared> {
        use aws_lc_rs::signature::{self as sig, KeyPair, ParsedPublicKey, RsaKeyPair};
        let verification: &'static sig::RsaParameters = match alg {
            Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        };
        let der = pem::parse(pem).ok()?;
        let parsed = match private {
            false => ParsedPublicKey::new(verification, der.contents()),
            true => {
                let pair = RsaKeyPair::from_pkcs8(der.contents())
                    .or_else(|_| RsaKeyPair::from_der(der.contents()))
                    .ok()?;
                ParsedPublicKey::new(verification, pair.public_key().as_ref())
            }
        };
        parsed.ok().map(Prepared::Public)
    }

    /// The public key of a JWK we built from our own PEM, for the algorithms whose public
    /// key is a point (EC: uncompressed `04 || x || y`; Ed25519: `x`). The same
    /// verification algorithms jsonwebtoken uses.
    fn public(alg: Algorithm, jwk: &Jwk) -> Option<Prepared> {
        use aws_lc_rs::signature::{
            ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519,
        };
        let (verification, bytes): (&'static dyn aws_lc_rs::signature::VerificationAlgorithm, _) =
            match (&jwk.algorithm, alg) {
                (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256 | Algorithm::ES384) => {
                    let mut point = vec![4u8];
                    point.extend(URL_SAFE_NO_PAD.decode(&p.x).ok()?);
                    point.extend(URL_SAFE_NO_PAD.decode(&p.y).ok()?);
                    let v: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
                        if alg == Algorithm::ES256 {
                            &ECDSA_P256_SHA256_FIXED
                        } else {
                            &ECDSA_P384_SHA384_FIXED
                        };
                    (v, point)
                }
                (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
                    (&ED25519, URL_SAFE_NO_PAD.decode(&p.x).ok()?)
                }
                _ => return None,
            };
        ParsedPublicKey::new(verification, bytes)
            .ok()
            .map(Prepared::Public)
    }
}

/// One key with its pinned algorithm.
pub struct Key {
    /// The `kid`; `None` only for the legacy `[tokens]` secret.
    pub id: Option<String>,
    pub algorithm: Algorithm,
    /// The `alg` header value tokens verified by this key carry.
    pub alg_name: &'static str,
    /// Present when this key can sign (a secret or a private key).
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    /// The same verification key, set up once for aws-lc-rs (the HMAC key schedule, the
    /// parsed public key) so a request does not redo it; `None`: use `decoding` through
    /// jsonwebtoken.
    pub prepared: Option<Prepared>,
    /// The public JWK (`kid`, `alg`, `use` set); `None` for HMAC keys, which are never
    /// published.
    pub jwk: Option<Jwk>,
}

impl Key {
    /// Builds a configured key, checking that its material fits its algorithm.
    pub fn build(k: &KeyConfig) -> Result<Key, KeyError> {
        let alg = k.algorithm;
        let (encoding, decoding, jwk, prepared) = match &k.material {
            KeyMaterial::Secret(s) => {
                if !is_hmac(alg) {
                    return Err(KeyError(format!(
                        "{} needs a PEM key, not a secret",
                        alg_name(alg)
                    )));
                }
                let e = EncodingKey::from_secret(&s.bytes).map_err(err)?;
                let d = DecodingKey::from_secret(&s.bytes).map_err(err)?;
                (Some(e), d, None, Prepared::hmac(alg, &s.bytes))
            }
            KeyMaterial::Pem(_) if is_hmac(alg) => {
                return Err(KeyError(format!(
                    "{} uses a secret (secret_env or secret_file), not a PEM key",
                    alg_name(alg)
                )))
            }
            KeyMaterial::Pem(Pem::Private(pem)) => {
                let e = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
                    Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                    _ => EncodingKey::from_rsa_pem(pem),
                }
                .map_err(|e| pem_err(alg, e))?;
                let jwk = Jwk::from_encoding_key(&e, alg).map_err(|e| pem_err(alg, e))?;
                let d = DecodingKey::from_jwk(&jwk).map_err(err)?;
                // A key of another size or curve than the algorithm would only fail when the
                // first token is signed; find out now.
                let sig = jsonwebtoken::crypto::sign(b"self-test", &e, alg)
                    .map_err(|e| pem_err(alg, e))?;
                if !jsonwebtoken::crypto::verify(&sig, b"self-test", &d, alg).unwrap_or(false) {
                    return Err(KeyError(format!(
                        "the key does not work with {}",
                        alg_name(alg)
                    )));
                }
                // The prepared key must agree with jsonwebtoken on the self-test, or it is
                // not used.
                let prepared = Prepared::public(alg, &jwk)
                    .or_else(|| Prepared::rsa(alg, pem, true))
                    .filter(|p| {
                        URL_SAFE_NO_PAD
                            .decode(&sig)
                            .is_ok_and(|raw| p.verify(b"self-test", &raw))
                    });
                (Some(e), d, Some(jwk), prepared)
            }
            KeyMaterial::Pem(Pem::Public(pem)) => {
                let d = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                    _ => DecodingKey::from_rsa_pem(pem),
                }
                .map_err(|e| pem_err(alg, e))?;
                let jwk = Jwk::from_decoding_key(&d, Some(alg)).map_err(|e| pem_err(alg, e))?;
                // The same key bytes jsonwebtoken just parsed (no self-test: nothing signs).
                let prepared =
                    Prepared::public(alg, &jwk).or_else(|| Prepared::rsa(alg, pem, false));
                (None, d, Some(jwk), prepared)
            }
        };
        let jwk = jwk.map(|j| tag_jwk(j, k.id.as_deref(), alg));
        if let Some(j) = &jwk {
            check_fits(j, alg)?;
        }
        Ok(Key {
            id: k.id.clone(),
            algorithm: alg,
            alg_name: alg_name(alg),
            encoding,
            decoding,
            prepared,
            jwk,
        })
    }

    /// A verify-only key from a JWK published by an external issuer. Symmetric (`oct`) keys
    /// are refused: a secret fetched over the network is no secret.
    pub fn from_jwk(jwk: &Jwk) -> Result<Key, KeyError> {
        let alg = match (jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => Algorithm::try_from(a).map_err(err)?,
            // Some IdPs omit `alg`; the key type then fixes the algorithm.
            (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(KeyError("unsupported curve".into())),
            },
            (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
            (None, _) => return Err(KeyError("key without alg".into())),
        };
        if is_hmac(alg) || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(KeyError(
                "symmetric keys are never accepted from a JWKS".into(),
            ));
        }
        check_fits(jwk, alg)?;
        Ok(Key {
            id: jwk.common.key_id.clone(),
            algorithm: alg,
            alg_name: alg_name(alg),
            encoding: None,
            decoding: DecodingKey::from_jwk(jwk).map_err(err)?,
            prepared: Prepared::public(alg, jwk),
            jwk: None,
        })
    }

    pub fn is_asymmetric(&self) -> bool {
        !is_hmac(self.algorithm)
    }
}

/// Sets the members a published JWK must carry.
fn tag_jwk(mut jwk: Jwk, kid: Option<&str>, alg: Algorithm) -> Jwk {
    jwk.common.key_id = kid.map(str::to_string);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(alg.into());
    jwk
}

/// Refuses a key whose type, curve or size does not fit the algorithm.
fn check_fits(jwk: &Jwk, alg: Algorithm) -> Result<(), KeyError> {
    let ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(p), a) if is_rsa(a) => {
            let bits = URL_SAFE_NO_PAD
                .decode(&p.n)
                .map_or(0, |n| n.iter().skip_while(|b| **b == 0).count() * 8);
            if bits < MIN_RSA_BITS {
                return Err(KeyError(format!(
                    "RSA key of about {bits} bits; at least {MIN_RSA_BITS} are required"
                )));
            }
            true
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(KeyError(format!(
            "the key's type or curve does not fit {}",
            alg_name(alg)
        )))
    }
}

fn err(e: jsonwebtoken::errors::Error) -> KeyError {
    KeyError(e.to_string())
}

fn pem_err(alg: Algorithm, e: jsonwebtoken::errors::Error) -> KeyError {
    KeyError(format!("not a usable {} PEM key ({e})", alg_name(alg)))
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The keys tokens are verified with, and the one new tokens are signed with.
pub struct Keyring {
    keys: Vec<Key>,
    signing: Option<usize>,
    /// Whether any key has an id: only then does a token's `kid` select a key. The legacy
    /// single secret has none, so its tokens' `kid` is ignored as Flask-JWT ignores it.
    has_ids: bool,
    asymmetric: bool,
    /// Distinct for every keyring built in this process: caches keyed on it are flushed
    /// by construction when the keyring changes.
    generation: u64,
}

impl Keyring {
    /// `signing` indexes `keys`; it must name a key that can sign.
    pub fn new(keys: Vec<Key>, signing: Option<usize>) -> Keyring {
        let signing = signing.filter(|i| keys.get(*i).is_some_and(|k| k.encoding.is_some()));
        Keyring {
            has_ids: keys.iter().any(|k| k.id.is_some()),
            asymmetric: keys.iter().any(Key::is_asymmetric),
            keys,
            signing,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The keyring of `[tokens]` (the legacy secret or the `[[keys]]` entries).
    pub fn from_config(t: &TokensConfig) -> Result<Keyring, KeyError> {
        let mut keys = Vec::with_capacity(t.keys.len());
        for k in &t.keys {
            keys.push(Key::build(k).map_err(|e| {
                KeyError(format!(
                    "key {}: {e}",
                    k.id.as_deref().unwrap_or("[tokens]")
                ))
            })?);
        }
        let signing = t.keys.iter().position(|k| k.sign);
        Ok(Keyring::new(keys, signing))
    }

    /// The key new tokens are signed with.
    pub fn signing(&self) -> Option<&Key> {
        self.signing.map(|i| &self.keys[i])
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a token's `kid` selects among the keys.
    pub fn has_ids(&self) -> bool {
        self.has_ids
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn has_asymmetric(&self) -> bool {
        self.asymmetric
    }

    /// Whether tokens must name their key: more than one key, or a key others look up in
    /// our JWKS. A single HMAC key keeps Flask-JWT's exact header (no `kid`).
    pub fn tokens_carry_kid(&self) -> bool {
        self.has_ids && (self.keys.len() > 1 || self.has_asymmetric())
    }

    /// The keys a token with `alg` (and maybe `kid`) may be checked against.
    /// `UnknownKey` when `kid` names no key (or there are none); `AlgNotAllowed` when no
    /// key allows `alg`.
    pub fn candidates<'a>(
        &'a self,
        alg: &'a str,
        kid: Option<&'a str>,
    ) -> Result<impl Iterator<Item = &'a Key> + 'a, TokenError> {
        // The key is judged before the algorithm: a token whose key is gone (rotated out
        // of an issuer's set, or an issuer that publishes none now) is refused as signed
        // by an unknown key, whatever its alg, not as using a forbidden algorithm.
        if self.keys.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let kid = kid.filter(|_| self.has_ids);
        if let Some(kid) = kid {
            // The kid selects; no other key is tried when it names none.
            let mut named = self.keys.iter().filter(|k| k.id.as_deref() == Some(kid));
            match named.next() {
                None => return Err(TokenError::UnknownKey),
                Some(k) if k.alg_name != alg && !named.any(|k| k.alg_name == alg) => {
                    return Err(TokenError::AlgNotAllowed)
                }
                Some(_) => {}
            }
        }
        if !self.keys.iter().any(|k| k.alg_name == alg) {
            return Err(TokenError::AlgNotAllowed);
        }
        Ok(self
            .keys
            .iter()
            .filter(move |k| {
                k.alg_name == alg && kid.is_none_or(|kid| k.id.as_deref() == Some(kid))
            })
            .take(MAX_UNTAGGED_TRIES))
    }

    /// The public keys as a JWK set (HMAC keys are never included).
    pub fn public_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().filter_map(|k| k.jwk.clone()).collect(),
        }
    }
}

impl From<Key> for Keyring {
    /// A keyring of one key, which signs when it can.
    fn from(key: Key) -> Keyring {
        Keyring::new(vec![key], Some(0))
    }
}

fn is_rsa(a: Algorithm) -> bool {
    matches!(
        a,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_hmac_agrees_with_jsonwebtoken() {
        let secret = b"0123456789abcdef0123456789abcdef";
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let prepared = Prepared::hmac(alg, secret).unwrap();
            let sig = jsonwebtoken::crypto::sign(
                b"header.payload",
                &EncodingKey::from_secret(secret).unwrap(),
                alg,
            )
            .unwrap();
            let raw = URL_SAFE_NO_PAD.decode(&sig).unwrap();
            assert!(prepared.verify(b"header.payload", &raw));
            assert!(!prepared.verify(b"header.payloaD", &raw));
            assert!(!prepared.verify(b"header.payload", &raw[1..]));
        }
        assert!(Prepared::hmac(Algorithm::RS256, secret).is_none());
    }
}
