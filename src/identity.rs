//! ④ Identity headers: strip every inbound spelling, then set ours from verified claims.
//!
//! Stripping happens on every route, public ones too: a backend must be able to trust
//! `X-Identity` (and every configured claim header) whenever it is present. Names are
//! compared with `_` folded to `-`, because WSGI/CGI/PHP backends read `X_Identity` as
//! `X-Identity`.
//!
//! Claim encodings: strings as they are, numbers and booleans as JSON, arrays comma-joined
//! (strings as they are, other items as JSON) or as compact JSON, objects as compact JSON;
//! `null` and absent claims set nothing. A value that cannot be a header value (CR, LF, NUL,
//! other controls) or is over [`MAX_CLAIM_HEADER_BYTES`] refuses the request: never
//! truncated, never a panic.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::{Claims, TokenError};
use crate::config::ArrayEncoding;
use crate::steering::same_spelling;

/// The identity header the gateway sets.
pub const X_IDENTITY: HeaderName = HeaderName::from_static("x-identity");

/// Longest claim header value we forward; most servers refuse header lines past 8 KiB.
pub const MAX_CLAIM_HEADER_BYTES: usize = 8 * 1024;

/// Header → claim pairs a route sets.
pub type ClaimHeaders = Vec<(HeaderName, Arc<str>)>;

/// The headers the gateway owns toward upstreams, and how claims are written into them.
pub struct IdentityHeaders {
    /// Every header any route sets: stripped from every inbound request.
    owned: Vec<HeaderName>,
    arrays: ArrayEncoding,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders::new(std::iter::empty(), ArrayEncoding::Comma)
    }
}

impl IdentityHeaders {
    /// `claim_headers`: every header name any route maps a claim to.
    pub fn new<'a>(
        claim_headers: impl Iterator<Item = &'a HeaderName>,
        arrays: ArrayEncoding,
    ) -> Self {
        let mut owned = vec![X_IDENTITY];
        for h in claim_headers {
            if !owned.contains(h) {
                owned.push(h.clone());
            }
        }
        IdentityHeaders { owned, arrays }
    }

    /// Every header name we set on some route (`X-Identity` first).
    pub fn names(&self) -> &[HeaderName] {
        &self.owned
    }

    /// Removes every inbound header that is, or could be read as, one we set.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                self.owned
                    .iter()
                    .any(|o| same_spelling(k.as_str(), o.as_str()))
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }

    /// Sets `X-Identity` and the route's claim headers from the claims.
    pub fn set(
        &self,
        headers: &mut HeaderMap,
        claims: &Claims,
        mapping: &[(HeaderName, Arc<str>)],
    ) -> Result<(), TokenError> {
        let text = claims.identity.header_text();
        // Parsers drop a field value's surrounding SP/HTAB (RFC 9110 §5.5): " admin" would
        // reach the backend as "admin", another user's identity.
        if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
            return Err(TokenError::IdentityNotHeaderSafe);
        }
        let value = HeaderValue::from_bytes(text.as_bytes())
            .map_err(|_| TokenError::IdentityNotHeaderSafe)?;
        headers.insert(X_IDENTITY, value);
        for (header, claim) in mapping {
            let Some(v) = claims.get(claim) else { continue };
            if let Some(encoded) = self.encode(v)? {
                headers.insert(header.clone(), encoded);
            }
        }
        Ok(())
    }

    fn encode(&self, v: &Value) -> Result<Option<HeaderValue>, TokenError> {
        let text: std::borrow::Cow<'_, str> = match v {
            Value::Null => return Ok(None),
            Value::String(s) => s.as_str().into(),
            Value::Array(items) if self.arrays == ArrayEncoding::Comma => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
                .into(),
            other => other.to_string().into(),
        };
        if text.len() > MAX_CLAIM_HEADER_BYTES {
            return Err(TokenError::ClaimNotHeaderSafe);
        }
        HeaderValue::from_bytes(text.as_bytes())
            .map(Some)
            .map_err(|_| TokenError::ClaimNotHeaderSafe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserId;
    use serde_json::json;

    fn claims(identity: UserId, extra: &[(&str, Value)]) -> Claims {
        Claims {
            identity,
            exp: 0.0,
            iat: None,
            extra: extra
                .iter()
                .map(|(k, v)| (Arc::from(*k), v.clone()))
                .collect(),
        }
    }

    fn mapping(pairs: &[(&'static str, &str)]) -> ClaimHeaders {
        pairs
            .iter()
            .map(|(h, c)| (HeaderName::from_static(h), Arc::from(*c)))
            .collect()
    }

    #[test]
    fn strips_every_spelling() {
        let roles = HeaderName::from_static("x-roles");
        let ids = IdentityHeaders::new([&roles].into_iter(), ArrayEncoding::Comma);
        let mut h = HeaderMap::new();
        h.append("X-Identity", HeaderValue::from_static("admin"));
        h.append("x-identity", HeaderValue::from_static("root"));
        h.append("X_Identity", HeaderValue::from_static("admin"));
        h.append("x_identitY", HeaderValue::from_static("admin"));
        h.append("X_Roles", HeaderValue::from_static("admin"));
        h.append("x-identity-extra", HeaderValue::from_static("keep"));
        ids.strip(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-identity-extra"));
    }

    #[test]
    fn refuses_unsafe_values() {
        let ids = IdentityHeaders::default();
        let mut h = HeaderMap::new();
        let bad = claims(UserId::Str("a\r\nX-Admin: 1".into()), &[]);
        assert_eq!(
            ids.set(&mut h, &bad, &[]),
            Err(TokenError::IdentityNotHeaderSafe)
        );
        for padded in [" admin", "admin ", "\tadmin", "admin\t"] {
            let c = claims(UserId::Str(padded.into()), &[]);
            assert_eq!(
                ids.set(&mut h, &c, &[]),
                Err(TokenError::IdentityNotHeaderSafe)
            );
        }
        assert!(h.is_empty());
        ids.set(&mut h, &claims(UserId::Int(7), &[]), &[]).unwrap();
        assert_eq!(h[X_IDENTITY], "7");
    }

    #[test]
    fn claim_encodings() {
        let c = claims(
            UserId::Int(1),
            &[
                ("roles", json!(["a", "b", 3])),
                ("name", json!("Zoë")),
                ("n", json!(42)),
                ("flag", json!(true)),
                ("org", json!({"id": 1, "name": "x"})),
                ("gone", Value::Null),
            ],
        );
        let m = mapping(&[
            ("x-roles", "roles"),
            ("x-name", "name"),
            ("x-n", "n"),
            ("x-flag", "flag"),
            ("x-org", "org"),
            ("x-gone", "gone"),
            ("x-missing", "missing"),
        ]);
        let comma = IdentityHeaders::new(m.iter().map(|(h, _)| h), ArrayEncoding::Comma);
        let mut h = HeaderMap::new();
        comma.set(&mut h, &c, &m).unwrap();
        assert_eq!(h["x-roles"], "a,b,3");
        assert_eq!(h["x-name"].as_bytes(), "Zoë".as_bytes());
        assert_eq!(h["x-n"], "42");
        assert_eq!(h["x-flag"], "true");
        assert_eq!(h["x-org"], r#"{"id":1,"name":"x"}"#);
        assert!(!h.contains_key("x-gone") && !h.contains_key("x-missing"));
        let json = IdentityHeaders::new(m.iter().map(|(h, _)| h), ArrayEncoding::Json);
        let mut h = HeaderMap::new();
        json.set(&mut h, &c, &m).unwrap();
        assert_eq!(h["x-roles"], r#"["a","b",3]"#);
    }

    #[test]
    fn oversized_or_broken_claims_refuse_the_request() {
        let ids = IdentityHeaders::default();
        let m = mapping(&[("x-big", "big")]);
        let big = claims(
            UserId::Int(1),
            &[("big", json!("x".repeat(MAX_CLAIM_HEADER_BYTES + 1)))],
        );
        assert_eq!(
            ids.set(&mut HeaderMap::new(), &big, &m),
            Err(TokenError::ClaimNotHeaderSafe)
        );
        let crlf = claims(UserId::Int(1), &[("big", json!("a\nb"))]);
        assert_eq!(
            ids.set(&mut HeaderMap::new(), &crlf, &m),
            Err(TokenError::ClaimNotHeaderSafe)
        );
        let fits = claims(
            UserId::Int(1),
            &[("big", json!("x".repeat(MAX_CLAIM_HEADER_BYTES)))],
        );
        assert!(ids.set(&mut HeaderMap::new(), &fits, &m).is_ok());
    }
}
