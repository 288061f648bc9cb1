//! ③ Token verification: compact JWS → [`Claims`], in Flask-JWT's order of checks.
//!
//! Order (the first failing check is reported): segments → header → payload and signature
//! encoding → `alg` → `kid` → signature → payload JSON → required claims → claim types →
//! `iat` → `nbf` → `exp` → lifetime → `aud` → `iss` → required custom claims → identity.
//! The signature is checked before any claim is trusted; nothing from an unverified payload
//! is ever used.
//!
//! The keyring decides which keys may check a token: the `alg` header must be one a key
//! allows, a `kid` selects exactly one key, and without a `kid` only a bounded few keys of
//! that algorithm are tried (see `keys.rs`). With the legacy single secret (no key ids) the
//! header is read exactly as before, so the Flask-JWT compat path is unchanged.
//!
//! Only the signature itself is computed by `jsonwebtoken` (its `crypto::verify`); the claim
//! rules are ours because jsonwebtoken's defaults differ from Flask-JWT's (60 s leeway, `nbf`
//! unchecked, `iat` never checked, no size limit).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeSeed;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

use super::cache::TokenCache;
use super::claims::{Claims, PayloadSeed, RawClaims, TimeClaim, NOT_AN_OBJECT};
use super::keys::{Key, Keyring};
use super::{PayloadProblem, TimeClaimName, TokenError};
use crate::config::{IssuerConfig, RequiredClaims, TokensConfig, UserId};

/// Room for a decoded signature on the stack: RSA-4096 needs 512 bytes.
const SIGNATURE_BUF: usize = 1024;

/// The JOSE header fields we read. Typed, so a duplicated `alg` is refused by serde.
#[derive(Deserialize)]
struct JoseHeader {
    alg: Option<Value>,
    // Any `crit` extension is one we do not implement (RFC 7515 §4.1.11: must reject).
    crit: Option<serde::de::IgnoredAny>,
}

/// The header of a token checked against a keyring with key ids: `kid` is read too (a
/// string; a duplicated or non-string `kid` is a malformed header).
#[derive(Deserialize)]
struct JoseHeaderKid {
    alg: Option<Value>,
    crit: Option<serde::de::IgnoredAny>,
    kid: Option<String>,
}

/// Everything needed to verify a token, built once per configuration.
pub struct Verifier {
    keys: Arc<Keyring>,
    leeway: f64,
    required: RequiredClaims,
    /// Claims beyond the registered ones that must be present (external issuers).
    required_custom: Vec<Arc<str>>,
    identity_claim: String,
    wanted: Vec<Arc<str>>,
    /// Accepted `aud` values; empty: a token carrying `aud` is refused (Flask-JWT).
    audiences: Vec<String>,
    issuer: Option<String>,
    max_lifetime: Option<f64>,
    max_token_bytes: usize,
    /// Only for keyrings with asymmetric keys: an HMAC costs about what the lookup costs.
    cache: Option<TokenCache>,
}

impl From<Key> for Arc<Keyring> {
    fn from(key: Key) -> Arc<Keyring> {
        Arc::new(Keyring::from(key))
    }
}

impl Verifier {
    /// A verifier for our own tokens with `keys` (a [`Keyring`], or one [`Key`]).
    /// `wanted` names the claims beyond the registered ones that callers will read.
    pub fn new(t: &TokensConfig, keys: impl Into<Arc<Keyring>>, wanted: Vec<Arc<str>>) -> Verifier {
        let keys = keys.into();
        let cache = (t.cache_size > 0).then(|| TokenCache::new(t.cache_size));
        Verifier {
            keys,
            leeway: t.leeway.as_secs_f64(),
            required: t.required,
            required_custom: Vec::new(),
            identity_claim: t.identity_claim.clone(),
            wanted,
            audiences: t.audience.iter().cloned().collect(),
            issuer: t.issuer.clone(),
            max_lifetime: t.max_lifetime.map(|d| d.as_secs_f64()),
            max_token_bytes: t.max_token_bytes,
            cache,
        }
    }

    /// A verifier for an external issuer's tokens; its keys are passed to
    /// [`Verifier::verify_with`] as they are fetched. Leeway, size limit and cache size come
    /// from `[tokens]`.
    pub fn for_issuer(i: &IssuerConfig, t: &TokensConfig, mut wanted: Vec<Arc<str>>) -> Verifier {
        let required_custom: Vec<Arc<str>> = i
            .required_custom
            .iter()
            .map(|c| Arc::from(c.as_str()))
            .collect();
        for c in &required_custom {
            if !wanted.contains(c) {
                wanted.push(c.clone());
            }
        }
        Verifier {
            keys: Arc::new(Keyring::new(Vec::new(), None)),
            leeway: t.leeway.as_secs_f64(),
            required: i.required,
            required_custom,
            identity_claim: i.identity_claim.clone(),
            wanted,
            audiences: i.audiences.clone(),
            issuer: Some(i.issuer.clone()),
            max_lifetime: i.max_lifetime.map(|d| d.as_secs_f64()),
            max_token_bytes: t.max_token_bytes,
            cache: (t.cache_size > 0).then(|| TokenCache::new(t.cache_size)),
        }
    }

    /// The keyring [`Verifier::verify`] uses.
    pub fn keys(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// Verifies `token` at Unix time `now`; returns the claims or the first failing check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.verify_with(&self.keys, token, now)
    }

    /// [`Verifier::verify`] with another keyring (an external issuer's current key set).
    pub fn verify_with(&self, keys: &Keyring, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let cache = self.cache.as_ref();
        if let Some(hit) =
            cache.and_then(|c| c.get(token, keys.generation(), now as f64, self.leeway))
        {
            return Ok(hit);
        }
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or(TokenError::NotEnoughSegments)?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(TokenError::NotEnoughSegments)?;
        if payload_b64.contains('.') {
            return Err(TokenError::TooManySegments);
        }

        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| TokenError::BadHeader("Invalid header padding"))?;
        let (alg, crit, kid) = if keys.has_ids() {
            let h: JoseHeaderKid = parse_header(&header_json)?;
            (h.alg, h.crit.is_some(), h.kid)
        } else {
            let h: JoseHeader = parse_header(&header_json)?;
            (h.alg, h.crit.is_some(), None)
        };
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::BadPayloadEncoding)?;
        // Decoded once, on the stack when it fits (every supported algorithm's signature
        // does), and used by the prepared keys.
        let mut sig_buf = [0u8; SIGNATURE_BUF];
        let decoded_sig;
        let sig_bytes: &[u8] = match URL_SAFE_NO_PAD.decode_slice(signature, &mut sig_buf) {
            Ok(n) => &sig_buf[..n],
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                decoded_sig = URL_SAFE_NO_PAD
                    .decode(signature)
                    .map_err(|_| TokenError::BadSignatureEncoding)?;
                &decoded_sig
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => {
                return Err(TokenError::BadSignatureEncoding)
            }
        };

        // Each key's algorithm is pinned by configuration; the header may only select
        // among the keys that allow it.
        let Some(Value::String(alg)) = &alg else {
            return Err(TokenError::AlgNotAllowed);
        };
        let candidates = keys.candidates(alg, kid.as_deref())?;
        if crit {
            return Err(TokenError::CriticalHeader);
        }
        let mut candidates = candidates;
        let verified = candidates.any(|key| match &key.prepared {
            Some(prepared) => prepared.verify(signing_input.as_bytes(), sig_bytes),
            None => jsonwebtoken::crypto::verify(
                signature,
                signing_input.as_bytes(),
                &key.decoding,
                key.algorithm,
            )
            .unwrap_or(false),
        });
        if !verified {
            return Err(TokenError::BadSignature);
        }

        let raw = parse_payload(&payload, &self.identity_claim, &self.wanted)?;
        let claims = self.check_claims(raw, now as f64)?;
        if let Some(c) = cache {
            c.insert(token, keys.generation(), &claims, now as f64, self.leeway);
        }
        Ok(claims)
    }

    fn check_claims(&self, raw: RawClaims, now: f64) -> Result<Claims, TokenError> {
        if raw.exp == TimeClaim::Missing {
            return Err(TokenError::MissingClaim("exp"));
        }
        if self.required.iat && raw.iat == TimeClaim::Missing {
            return Err(TokenError::MissingClaim("iat"));
        }
        if self.required.nbf && raw.nbf == TimeClaim::Missing {
            return Err(TokenError::MissingClaim("nbf"));
        }
        let iat = number(raw.iat, TimeClaimName::Iat)?;
        let nbf = number(raw.nbf, TimeClaimName::Nbf)?;
        let exp = number(raw.exp, TimeClaimName::Exp)?.ok_or(TokenError::MissingClaim("exp"))?;
        if iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if exp < now - self.leeway {
            return Err(TokenError::Expired);
        }
        if let Some(max) = self.max_lifetime {
            let iat = iat.ok_or(TokenError::MissingClaim("iat"))?;
            if exp - iat > max {
                return Err(TokenError::LifetimeTooLong);
            }
        }
        match (self.audiences.is_empty(), &raw.aud) {
            (true, None) => {}
            // Flask-JWT: a token meant for some audience is not meant for us unless we say so.
            (true, Some(_)) => return Err(TokenError::InvalidAudience),
            (false, None) => return Err(TokenError::MissingClaim("aud")),
            (false, Some(aud)) => {
                let wanted = |v: &str| self.audiences.iter().any(|w| w == v);
                let ok = match aud {
                    Value::String(s) => wanted(s),
                    Value::Array(list) => list.iter().any(|v| v.as_str().is_some_and(wanted)),
                    _ => false,
                };
                if !ok {
                    return Err(TokenError::InvalidAudience);
                }
            }
        }
        if let Some(want) = &self.issuer {
            match &raw.iss {
                None => return Err(TokenError::MissingClaim("iss")),
                Some(Value::String(s)) if s == want => {}
                Some(_) => return Err(TokenError::InvalidIssuer),
            }
        }
        for name in &self.required_custom {
            let present = raw.extra.iter().any(|(n, v)| n == name && !v.is_null());
            if !present {
                return Err(TokenError::MissingRequiredClaim(name.clone()));
            }
        }
        let identity = match raw.identity {
            // Name the configured claim (`sub` for most issuers) in the message.
            None | Some(Value::Null) if self.identity_claim == "identity" => {
                return Err(TokenError::MissingClaim("identity"))
            }
            None | Some(Value::Null) => {
                return Err(TokenError::MissingRequiredClaim(
                    self.identity_claim.as_str().into(),
                ))
            }
            Some(Value::Number(n)) => UserId::Int(n.as_i64().ok_or(TokenError::BadIdentity)?),
            Some(Value::String(s)) if !s.is_empty() => UserId::Str(s),
            Some(_) => return Err(TokenError::BadIdentity),
        };
        let mut extra = raw.extra;
        // `aud` has its own slot; a caller that reads it (an OIDC login's `azp` rule)
        // asks for it by name.
        if let (Some(aud), Some(name)) = (raw.aud, self.wanted.iter().find(|w| &***w == "aud")) {
            extra.push((name.clone(), aud));
        }
        Ok(Claims {
            identity,
            exp,
            iat,
            extra: extra.into(),
        })
    }
}

/// The last second of year 9999 (RFC 7519 NumericDates beyond it are not dates anyone
/// issues; `1e300` or an integer past `u64::MAX` would otherwise mean "never expires").
pub const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// A time claim's value: finite and within `0 ..= MAX_NUMERIC_DATE`, fractions allowed.
fn number(c: TimeClaim, name: TimeClaimName) -> Result<Option<f64>, TokenError> {
    match c {
        TimeClaim::Missing => Ok(None),
        TimeClaim::Number(n) if n.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&n) => {
            Ok(Some(n))
        }
        TimeClaim::Number(_) => Err(TokenError::DateOutOfRange(name)),
        TimeClaim::NotANumber => Err(TokenError::NotANumber(name)),
    }
}

fn parse_header<H: serde::de::DeserializeOwned>(json: &[u8]) -> Result<H, TokenError> {
    // serde accepts a JSON array for a struct too; a JOSE header must be an object.
    let is_object = json.trim_ascii_start().first() == Some(&b'{');
    match serde_json::from_slice::<H>(json) {
        Ok(h) if is_object => Ok(h),
        Ok(_) => Err(TokenError::BadHeader(
            "Invalid header string: must be a json object",
        )),
        // Classify the failure only on the error path, keeping the hot path to one parse.
        Err(_) => Err(TokenError::BadHeader(
            match serde_json::from_slice::<Value>(json) {
                Ok(Value::Object(_)) => "Invalid header string: duplicate or malformed member",
                Ok(_) => "Invalid header string: must be a json object",
                Err(_) => "Invalid header string: not JSON",
            },
        )),
    }
}

fn parse_payload(
    json: &[u8],
    identity_claim: &str,
    wanted: &[Arc<str>],
) -> Result<RawClaims, TokenError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw = PayloadSeed {
        identity_claim,
        wanted,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        let text = e.to_string();
        TokenError::BadPayload(if text.starts_with(NOT_AN_OBJECT) {
            PayloadProblem::NotAnObject
        } else if text.starts_with("duplicate claim") {
            PayloadProblem::DuplicateClaim
        } else {
            PayloadProblem::NotJson
        })
    })?;
    de.end()
        .map_err(|_| TokenError::BadPayload(PayloadProblem::NotJson))?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_tokens_are_cached_and_forged_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "an-hmac-secret-of-more-than-32-bytes!";
        std::fs::write(dir.path().join("secret"), secret).unwrap();
        let cfg = crate::config::check_str("[tokens]\nsecret_file = \"secret\"\n", dir.path())
            .unwrap()
            .config;
        let keys = Arc::new(Keyring::from_config(&cfg.tokens).unwrap());
        let v = Verifier::new(&cfg.tokens, keys, Vec::new());
        let now = 1_700_000_000;
        let claims = serde_json::json!({"exp": now + 60, "iat": now, "nbf": now, "identity": 1});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap();
        let cache = v.cache.as_ref().unwrap();
        let first = v.verify(&token, now).unwrap();
        assert_eq!(cache.len(), 1);
        // The repeat is answered from the cache, with the same claims.
        assert_eq!(v.verify(&token, now + 1).unwrap(), first);
        assert_eq!(cache.len(), 1);
        // A forged signature is refused and not remembered.
        // Another last signature character (both canonical base64: low bits zero).
        let other = if token.ends_with('A') { 'E' } else { 'A' };
        let forged = format!("{}{other}", &token[..token.len() - 1]);
        assert!(v.verify(&forged, now).is_err());
        assert_eq!(cache.len(), 1);
    }
}
