//! Our cookies: their names, their `Set-Cookie` values, finding them in a request and
//! removing them before a request goes upstream.
//!
//! On a secure origin (a TLS listener, or `secure_cookies = "always"`) the names carry
//! the prefixes browsers enforce: `__Host-` (Secure, `Path=/`, no `Domain`: no other
//! host can set or shadow it) and, for the refresh cookie whose path is narrower,
//! `__Secure-`. Browsers refuse both prefixes from `http://` origins, so a plain
//! listener uses the same names without prefix.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The names of our cookies on one kind of origin.
#[derive(Debug)]
pub struct Names {
    /// The access token (HttpOnly, `Path=/`).
    pub access: &'static str,
    /// The refresh token (HttpOnly, `Path` = the refresh path).
    pub refresh: &'static str,
    /// The session's CSRF token (readable by the page's scripts, `Path=/`).
    pub csrf: &'static str,
    /// The login form's CSRF nonce (HttpOnly, `Path=/`).
    pub login: &'static str,
    /// Marks a renewal just made (HttpOnly, `Path` = the refresh path, seconds long): a
    /// second renewal within its life means the browser is not keeping our cookies.
    pub renewed: &'static str,
}

/// Browsers are only sure to keep a cookie of up to 4096 bytes (RFC 6265 §6.1: name,
/// value and attributes); ours stay under this, with room to spare. A larger one would be
/// dropped without a word, and every page load would go round the renewal again.
pub const MAX_COOKIE: usize = 4000;

/// A cookie we cannot set.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    #[error("the {name} cookie would be {bytes} bytes, over the {MAX_COOKIE} browsers are sure to keep (fewer or shorter claims in [tokens] user_claims)")]
    TooLarge { name: &'static str, bytes: usize },
    #[error("the {0} cookie is not a header value")]
    NotHeaderSafe(&'static str),
}

pub const SECURE: Names = Names {
    access: "__Host-gateway-session",
    refresh: "__Secure-gateway-refresh",
    csrf: "__Host-gateway-csrf",
    login: "__Host-gateway-login",
    renewed: "__Secure-gateway-renewed",
};

pub const PLAIN: Names = Names {
    access: "gateway-session",
    refresh: "gateway-refresh",
    csrf: "gateway-csrf",
    login: "gateway-login",
    renewed: "gateway-renewed",
};

/// The names used on a secure (`https://`) or plain origin.
pub fn names(secure: bool) -> &'static Names {
    if secure {
        &SECURE
    } else {
        &PLAIN
    }
}

/// The OIDC login's cookies (the flow and the logout hint, both kinds of origin): ours
/// too, so never forwarded.
pub const OIDC: [&str; 4] = [
    "__Secure-gateway-oidc-flow",
    "gateway-oidc-flow",
    "__Secure-gateway-oidc-logout",
    "gateway-oidc-logout",
];

/// How one cookie is set.
pub struct Spec<'a> {
    pub name: &'static str,
    pub path: &'a str,
    /// Hidden from the page's scripts.
    pub http_only: bool,
    pub secure: bool,
}

impl Spec<'_> {
    fn build<'c>(&self, value: &'c str) -> cookie::CookieBuilder<'c> {
        Cookie::build((self.name.to_string(), value))
            .path(self.path.to_string())
            .http_only(self.http_only)
            .secure(self.secure)
            .same_site(SameSite::Lax)
    }

    /// `Set-Cookie` for `value`, kept by the browser for `max_age`; refused when over
    /// [`MAX_COOKIE`] bytes.
    pub fn checked(&self, value: &str, max_age: Duration) -> Result<HeaderValue, CookieError> {
        let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let c = self
            .build(value)
            .max_age(cookie::time::Duration::seconds(secs))
            .build()
            .to_string();
        if c.len() > MAX_COOKIE {
            return Err(CookieError::TooLarge {
                name: self.name,
                bytes: c.len(),
            });
        }
        HeaderValue::from_str(&c).map_err(|_| CookieError::NotHeaderSafe(self.name))
    }

    /// [`Spec::checked`], for callers with an answer of their own to a refusal.
    pub fn set(&self, value: &str, max_age: Duration) -> Option<HeaderValue> {
        self.checked(value, max_age).ok()
    }

    /// `Set-Cookie` that removes the cookie (same name, path and attributes).
    pub fn clear(&self) -> HeaderValue {
        let c = self.build("").removal().build();
        HeaderValue::from_str(&c.to_string()).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The `name=value` pairs of one `Cookie` header value, split at the byte level: a
/// browser may send bytes over 0x7f in another site's cookie (UTF-8), which makes the
/// header no text for `HeaderValue::to_str`, and ours must still be found and removed.
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|b| *b == b';').filter_map(|piece| {
        let piece = piece.trim_ascii();
        let eq = piece.iter().position(|b| *b == b'=')?;
        Some((piece[..eq].trim_ascii(), piece[eq + 1..].trim_ascii()))
    })
}

fn is_ours(name: &[u8]) -> bool {
    [&SECURE, &PLAIN].iter().any(|n| {
        [n.access, n.refresh, n.csrf, n.login, n.renewed]
            .iter()
            .any(|ours| ours.as_bytes() == name)
    }) || OIDC.iter().any(|ours| ours.as_bytes() == name)
}

/// The values of every cookie called `name` in the request's `Cookie` headers (HTTP/2
/// may split them in several), in the order sent. A value that is not text is skipped
/// (ours are ASCII).
pub fn find_all<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| pairs(v.as_bytes()))
        .filter(move |(n, _)| *n == name.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
}

/// The value of the first cookie called `name` in the request's `Cookie` headers.
pub fn find<'h>(headers: &'h HeaderMap, name: &'h str) -> Option<&'h str> {
    find_all(headers, name).next()
}

/// Removes our cookies (either kind of name) from the request's `Cookie` headers; a
/// header left with no cookie is removed. Backends never see our tokens. Works on the
/// header's bytes, so a cookie of another site's that is not ASCII changes nothing.
pub fn strip(headers: &mut HeaderMap) {
    let ours = |piece: &[u8]| {
        let piece = piece.trim_ascii();
        let name = piece.split(|b| *b == b'=').next().unwrap_or(piece);
        is_ours(name.trim_ascii())
    };
    let touched = headers
        .get_all(COOKIE)
        .iter()
        .any(|v| v.as_bytes().split(|b| *b == b';').any(ours));
    if !touched {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| {
            let rest: Vec<&[u8]> = v
                .as_bytes()
                .split(|b| *b == b';')
                .filter(|p| !ours(p))
                .map(<[u8]>::trim_ascii)
                .filter(|p| !p.is_empty())
                .collect();
            // Every byte left came from a valid header value, and "; " joins them.
            HeaderValue::from_bytes(&rest.join(&b"; "[..]))
                .ok()
                .filter(|v| !v.is_empty())
        })
        .collect();
    headers.remove(COOKIE);
    for v in kept {
        headers.append(COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn set_cookie_attributes() {
        let spec = Spec {
            name: SECURE.access,
            path: "/",
            http_only: true,
            secure: true,
        };
        let v = spec.set("a.b.c", Duration::from_secs(300)).unwrap();
        let text = v.to_str().unwrap();
        assert!(text.starts_with("__Host-gateway-session=a.b.c"), "{text}");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=300",
        ] {
            assert!(text.contains(attr), "{attr} in {text}");
        }
        assert!(!text.contains("Domain"));
        let big = spec.checked(&"a".repeat(MAX_COOKIE), Duration::from_secs(1));
        assert!(
            matches!(big, Err(CookieError::TooLarge { bytes, .. }) if bytes > MAX_COOKIE),
            "{big:?}"
        );
        let cleared = spec.clear();
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
        let plain = Spec {
            name: PLAIN.csrf,
            path: "/",
            http_only: false,
            secure: false,
        }
        .set("x", Duration::from_secs(1))
        .unwrap();
        let plain = plain.to_str().unwrap();
        assert!(
            !plain.contains("HttpOnly") && !plain.contains("Secure"),
            "{plain}"
        );
    }

    #[test]
    fn finds_and_strips_only_ours() {
        let mut h = headers(&[
            "theme=dark; __Host-gateway-session=tok; gateway-csrf=c",
            "gateway-session=plain",
            "lang=en",
        ]);
        assert_eq!(find(&h, SECURE.access), Some("tok"));
        assert_eq!(find(&h, PLAIN.access), Some("plain"));
        assert_eq!(find(&h, "missing"), None);
        strip(&mut h);
        let left: Vec<&str> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["theme=dark", "lang=en"]);
        // Another site's cookie with UTF-8 in it: ours are still found and removed.
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes(
                "name=J\u{f6}rg; gateway-session=tok; gateway-csrf=c; x=1".as_bytes(),
            )
            .unwrap(),
        );
        assert_eq!(find(&h, PLAIN.access), Some("tok"));
        assert_eq!(find_all(&h, PLAIN.csrf).collect::<Vec<_>>(), ["c"]);
        strip(&mut h);
        assert_eq!(
            h.get(COOKIE).unwrap().as_bytes(),
            "name=J\u{f6}rg; x=1".as_bytes()
        );
        let mut untouched = headers(&["a=1; b=2"]);
        strip(&mut untouched);
        assert_eq!(untouched.get(COOKIE).unwrap(), "a=1; b=2");
    }
}
