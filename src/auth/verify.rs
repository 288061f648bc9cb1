//! ③ Token verification: compact JWS → [`Claims`], in Flask-JWT's order of checks.
//!
//! Order (the first failing check is reported): segments → header → payload and signature
//! encoding → `alg` → signature → payload JSON → required claims → claim types → `iat` →
//! `nbf` → `exp` → `aud` → `iss` → identity. The signature is checked before any claim is
//! trusted; nothing from an unverified payload is ever used.
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

use super::claims::{Claims, PayloadSeed, RawClaims, TimeClaim, NOT_AN_OBJECT};
use super::keys::{alg_name, Key};
use super::{PayloadProblem, TokenError};
use crate::config::{RequiredClaims, TokensConfig, UserId};

/// The JOSE header fields we read. Typed, so a duplicated `alg` is refused by serde.
#[derive(Deserialize)]
struct JoseHeader {
    alg: Option<Value>,
    // Any `crit` extension is one we do not implement (RFC 7515 §4.1.11: must reject).
    crit: Option<serde::de::IgnoredAny>,
}

/// Everything needed to verify a token, built once per configuration.
pub struct Verifier {
    key: Key,
    alg: &'static str,
    leeway: f64,
    required: RequiredClaims,
    identity_claim: String,
    wanted: Vec<Arc<str>>,
    audience: Option<String>,
    issuer: Option<String>,
    max_token_bytes: usize,
}

impl Verifier {
    /// `wanted` names the claims beyond the registered ones that callers will read.
    pub fn new(t: &TokensConfig, key: Key, wanted: Vec<Arc<str>>) -> Verifier {
        Verifier {
            alg: alg_name(key.algorithm),
            key,
            leeway: t.leeway.as_secs_f64(),
            required: t.required,
            identity_claim: t.identity_claim.clone(),
            wanted,
            audience: t.audience.clone(),
            issuer: t.issuer.clone(),
            max_token_bytes: t.max_token_bytes,
        }
    }

    /// Verifies `token` at Unix time `now`; returns the claims or the first failing check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
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
        let header = parse_header(&header_json)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::BadPayloadEncoding)?;
        if URL_SAFE_NO_PAD.decode(signature).is_err() {
            return Err(TokenError::BadSignatureEncoding);
        }

        // The algorithm is pinned by configuration; the header may only agree with it.
        match &header.alg {
            Some(Value::String(a)) if a == self.alg => {}
            _ => return Err(TokenError::AlgNotAllowed),
        }
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        match jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &self.key.decoding,
            self.key.algorithm,
        ) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(TokenError::BadSignature),
        }

        let raw = parse_payload(&payload, &self.identity_claim, &self.wanted)?;
        self.check_claims(raw, now as f64)
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
        let iat = number(raw.iat, "iat")?;
        let nbf = number(raw.nbf, "nbf")?;
        let exp = number(raw.exp, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        if iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if exp < now - self.leeway {
            return Err(TokenError::Expired);
        }
        match (&self.audience, &raw.aud) {
            (None, None) => {}
            // Flask-JWT: a token meant for some audience is not meant for us unless we say so.
            (None, Some(_)) => return Err(TokenError::InvalidAudience),
            (Some(_), None) => return Err(TokenError::MissingClaim("aud")),
            (Some(want), Some(aud)) => {
                let ok = match aud {
                    Value::String(s) => s == want,
                    Value::Array(list) => list.iter().any(|v| v.as_str() == Some(want.as_str())),
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
        let identity = match raw.identity {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("identity")),
            Some(Value::Number(n)) => UserId::Int(n.as_i64().ok_or(TokenError::BadIdentity)?),
            Some(Value::String(s)) if !s.is_empty() => UserId::Str(s),
            Some(_) => return Err(TokenError::BadIdentity),
        };
        Ok(Claims {
            identity,
            exp,
            extra: raw.extra,
        })
    }
}

fn number(c: TimeClaim, name: &'static str) -> Result<Option<f64>, TokenError> {
    match c {
        TimeClaim::Missing => Ok(None),
        TimeClaim::Number(n) => Ok(Some(n)),
        TimeClaim::NotANumber => Err(TokenError::NotANumber(name)),
    }
}

fn parse_header(json: &[u8]) -> Result<JoseHeader, TokenError> {
    // serde accepts a JSON array for a struct too; a JOSE header must be an object.
    let is_object = json.trim_ascii_start().first() == Some(&b'{');
    match serde_json::from_slice::<JoseHeader>(json) {
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
