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
}

pub const SECURE: Names = Names {
    access: "__Host-gateway-session",
    refresh: "__Secure-gateway-refresh",
    csrf: "__Host-gateway-csrf",
    login: "__Host-gateway-login",
};

pub const PLAIN: Names = Names {
    access: "gateway-session",
    refresh: "gateway-refresh",
    csrf: "gateway-csrf",
    login: "gateway-login",
};

/// The names used on a secure (`https://`) or plain origin.
pub fn names(secure: bool) -> &'static Names {
    if secure {
        &SECURE
    } else {
        &PLAIN
    }
}

fn is_ours(name: &str) -> bool {
    [&SECURE, &PLAIN]
        .iter()
        .any(|n| [n.access, n.refresh, n.csrf, n.login].contains(&name))
}

/// How one cookie is set.
pub struct Spec<'a> {
    pub name: &'a str,
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

    /// `Set-Cookie` for `value`, kept by the browser for `max_age`.
    pub fn set(&self, value: &str, max_age: Duration) -> Option<HeaderValue> {
        let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let c = self
            .build(value)
            .max_age(cookie::time::Duration::seconds(secs))
            .build();
        HeaderValue::from_str(&c.to_string()).ok()
    }

    /// `Set-Cookie` that removes the cookie (same name, path and attributes).
    pub fn clear(&self) -> HeaderValue {
        let c = self.build("").removal().build();
        HeaderValue::from_str(&c.to_string()).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The value of the first cookie called `name` in the request's `Cookie` headers
/// (HTTP/2 may split them in several).
pub fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| match (c.name_raw(), c.value_raw()) {
            (Some(_), Some(v)) => Some(v),
            _ => None,
        })
}

/// Removes our cookies (either kind of name) from the request's `Cookie` headers; a
/// header left with no cookie is removed. Backends never see our tokens.
pub fn strip(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    let mut kept: Vec<HeaderValue> = Vec::with_capacity(values.len());
    let mut changed = false;
    for v in &values {
        let Ok(text) = v.to_str() else {
            // Not text: it cannot hold one of our (ASCII) names as a cookie we parse.
            kept.push(v.clone());
            continue;
        };
        let pieces: Vec<&str> = text
            .split(';')
            .filter(|p| {
                let name = p.split('=').next().unwrap_or("").trim();
                !is_ours(name)
            })
            .collect();
        if pieces.len() == text.split(';').count() {
            kept.push(v.clone());
            continue;
        }
        changed = true;
        let rest = pieces
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if let Ok(v) = HeaderValue::from_str(&rest) {
            if !rest.is_empty() {
                kept.push(v);
            }
        }
    }
    if changed {
        headers.remove(COOKIE);
        for v in kept {
            headers.append(COOKIE, v);
        }
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
        let mut untouched = headers(&["a=1; b=2"]);
        strip(&mut untouched);
        assert_eq!(untouched.get(COOKIE).unwrap(), "a=1; b=2");
    }
}
