//! ④ Identity headers: strip every inbound spelling, then set ours from verified claims.
//!
//! Stripping happens on every route, public ones too: a backend must be able to trust
//! `X-Identity` whenever it is present. Names are compared with `_` folded to `-`, because
//! WSGI/CGI/PHP backends read `X_Identity` as `X-Identity`.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::{Claims, TokenError};

/// The identity header the gateway sets.
pub const X_IDENTITY: HeaderName = HeaderName::from_static("x-identity");

/// The set of headers the gateway owns toward upstreams.
pub struct IdentityHeaders {
    owned: Vec<HeaderName>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            owned: vec![X_IDENTITY],
        }
    }
}

/// `name` equals `owned` when `_` and `-` are treated alike (names are already lowercase).
fn same_name(name: &str, owned: &str) -> bool {
    name.len() == owned.len()
        && name
            .bytes()
            .zip(owned.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

impl IdentityHeaders {
    /// Removes every inbound header that is, or could be read as, one we set.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.owned.iter().any(|o| same_name(k.as_str(), o.as_str())))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }

    /// Sets `X-Identity` from the claims. A value that cannot be a header value (CR, LF, NUL,
    /// other controls) refuses the request: never truncated, never a panic. So does a value
    /// with leading or trailing whitespace, which HTTP would not carry intact.
    pub fn set(&self, headers: &mut HeaderMap, claims: &Claims) -> Result<(), TokenError> {
        let text = claims.identity.header_text();
        // Parsers drop a field value's surrounding SP/HTAB (RFC 9110 §5.5): " admin" would
        // reach the backend as "admin", another user's identity.
        if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
            return Err(TokenError::IdentityNotHeaderSafe);
        }
        let value = HeaderValue::from_bytes(text.as_bytes())
            .map_err(|_| TokenError::IdentityNotHeaderSafe)?;
        headers.insert(X_IDENTITY, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserId;

    #[test]
    fn strips_every_spelling() {
        let mut h = HeaderMap::new();
        h.append("X-Identity", HeaderValue::from_static("admin"));
        h.append("x-identity", HeaderValue::from_static("root"));
        h.append("X_Identity", HeaderValue::from_static("admin"));
        h.append("x_identitY", HeaderValue::from_static("admin"));
        h.append("x-identity-extra", HeaderValue::from_static("keep"));
        IdentityHeaders::default().strip(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-identity-extra"));
    }

    #[test]
    fn refuses_unsafe_values() {
        let ids = IdentityHeaders::default();
        let mut h = HeaderMap::new();
        let bad = Claims {
            identity: UserId::Str("a\r\nX-Admin: 1".into()),
            exp: 0.0,
            extra: Vec::new(),
        };
        assert_eq!(
            ids.set(&mut h, &bad),
            Err(TokenError::IdentityNotHeaderSafe)
        );
        for padded in [" admin", "admin ", "\tadmin", "admin\t"] {
            let c = Claims {
                identity: UserId::Str(padded.into()),
                exp: 0.0,
                extra: Vec::new(),
            };
            assert_eq!(ids.set(&mut h, &c), Err(TokenError::IdentityNotHeaderSafe));
        }
        assert!(h.is_empty());
        let good = Claims {
            identity: UserId::Int(7),
            exp: 0.0,
            extra: Vec::new(),
        };
        ids.set(&mut h, &good).unwrap();
        assert_eq!(h[X_IDENTITY], "7");
    }
}
