//! Request headers that steer a backend: stripped from every request, on every route.
//!
//! Frameworks behind a proxy believe certain headers about the request itself: the URL it
//! was "really" for (Symfony, Laravel and IIS honour `X-Original-URL`), its method
//! (Express `method-override`, Rails, Spring read `X-HTTP-Method-Override`), the client's
//! address (`X-Real-IP`, `True-Client-IP`, ...), the scheme and host it arrived on. A
//! client that sets them could reach a protected path through a public route, change a
//! `GET` into a `DELETE` after routing, or pose as another address. [`STEERING`] is the one
//! list; [`strip`] removes every spelling of every entry (case-insensitive as all header
//! names, and with `_` read as `-`, as WSGI/CGI/PHP backends read it), except the exact
//! names a route passes. The gateway then sets its own `X-Forwarded-*` and `X-Real-IP`.
//!
//! This module depends on nothing else in the crate, so the config check and the request
//! path share the same list.

use http::{HeaderMap, HeaderName};

/// What a steering header claims about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steers {
    /// The request target (path, prefix or whole URL).
    Url,
    /// The request method.
    Method,
    /// The host, port or scheme the request arrived on.
    Origin,
    /// The client's address. Never passed: the gateway sets `X-Forwarded-For` and
    /// `X-Real-IP` itself.
    ClientAddress,
    /// Credentials for a proxy (us), never for a backend. Never passed.
    ProxyCredentials,
}

impl Steers {
    /// Whether a route may let a header of this kind through (`pass_headers`).
    pub fn passable(self) -> bool {
        matches!(self, Steers::Url | Steers::Method | Steers::Origin)
    }
}

/// Every header stripped from inbound requests, lowercase with dashes, and what it steers.
/// Surveyed from Symfony/Laravel (`Request::getRequestUri`, trusted headers), IIS URL
/// Rewrite, Express `method-override`, Rails/Rack (`Rack::MethodOverride`, `Rack::Request`
/// scheme and host), Spring (`HiddenHttpMethodFilter`, `ForwardedHeaderFilter`), Django's
/// and nginx's real-IP conventions, and the client-IP lists of `request-ip` and
/// `django-ipware`. The `X-Forwarded-For/-Proto/-Host` and `Forwarded` headers are not
/// here: `proxy::forward` owns them (replaced, or kept under `trust_forwarded`).
pub const STEERING: &[(&str, Steers)] = &[
    ("x-original-url", Steers::Url),
    ("x-rewrite-url", Steers::Url),
    ("x-original-uri", Steers::Url),
    ("x-override-url", Steers::Url),
    ("x-forwarded-uri", Steers::Url),
    ("x-forwarded-path", Steers::Url),
    ("x-forwarded-prefix", Steers::Url),
    ("x-envoy-original-path", Steers::Url),
    ("x-http-method-override", Steers::Method),
    ("x-http-method", Steers::Method),
    ("x-method-override", Steers::Method),
    ("x-host", Steers::Origin),
    ("x-original-host", Steers::Origin),
    ("x-forwarded-server", Steers::Origin),
    ("x-http-host-override", Steers::Origin),
    ("x-forwarded-port", Steers::Origin),
    ("x-forwarded-scheme", Steers::Origin),
    ("x-forwarded-ssl", Steers::Origin),
    ("x-url-scheme", Steers::Origin),
    ("front-end-https", Steers::Origin),
    ("x-real-ip", Steers::ClientAddress),
    ("x-client-ip", Steers::ClientAddress),
    ("client-ip", Steers::ClientAddress),
    ("true-client-ip", Steers::ClientAddress),
    ("cf-connecting-ip", Steers::ClientAddress),
    ("cf-connecting-ipv6", Steers::ClientAddress),
    ("cf-pseudo-ipv4", Steers::ClientAddress),
    ("fastly-client-ip", Steers::ClientAddress),
    ("x-cluster-client-ip", Steers::ClientAddress),
    ("x-originating-ip", Steers::ClientAddress),
    ("x-remote-ip", Steers::ClientAddress),
    ("x-remote-addr", Steers::ClientAddress),
    ("x-appengine-user-ip", Steers::ClientAddress),
    ("x-azure-clientip", Steers::ClientAddress),
    ("forwarded-for", Steers::ClientAddress),
    ("x-forwarded", Steers::ClientAddress),
    ("proxy-authorization", Steers::ProxyCredentials),
    ("proxy-connection", Steers::ProxyCredentials),
];

/// What `name` (any case) is in [`STEERING`], if it is one of its dashed names.
pub fn lookup(name: &str) -> Option<Steers> {
    STEERING
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
}

/// `name` equals `canonical` when `_` in `name` is read as `-`. Both lowercase (header
/// names from `http` always are).
pub fn same_spelling(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// For each byte, whether a [`STEERING`] name starts with it. Header names are lowercase
/// and an `_` spelling keeps the first letter, so most names (`host`, `accept`,
/// `authorization`...) are ruled out by their first byte, without the list's scan.
const FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < STEERING.len() {
        t[STEERING[i].0.as_bytes()[0] as usize] = true;
        i += 1;
    }
    t
};

/// Removes every steering header in every spelling, except the exact names in `pass`.
pub fn strip(headers: &mut HeaderMap, pass: &[HeaderName]) {
    // Most requests carry none: one pass over the names finds out without allocating.
    let doomed = |k: &HeaderName| {
        let name = k.as_str();
        name.as_bytes().first().is_some_and(|b| FIRST[*b as usize])
            && !pass.contains(k)
            && STEERING.iter().any(|(n, _)| same_spelling(name, n))
    };
    if !headers.keys().any(doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_spelling_goes_unless_passed_by_its_exact_name() {
        let mut h = HeaderMap::new();
        for name in [
            "X-Original-URL",
            "x_rewrite_url",
            "X_HTTP_Method_Override",
            "X-HTTP-Method-Override",
            "True-Client-IP",
            "proxy-authorization",
            "x-forwarded-prefix",
            "x-original-url-not",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        strip(&mut h, &[HeaderName::from_static("x-http-method-override")]);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-http-method-override", "x-original-url-not"]);
    }

    #[test]
    fn the_list_is_lowercase_dashed_and_unique() {
        for (i, (name, _)) in STEERING.iter().enumerate() {
            assert!(HeaderName::from_static(name).as_str() == *name);
            assert!(!name.contains('_'));
            assert!(STEERING[..i].iter().all(|(n, _)| n != name), "{name}");
        }
        assert_eq!(lookup("X-Real-IP"), Some(Steers::ClientAddress));
        assert!(!Steers::ClientAddress.passable() && Steers::Method.passable());
    }
}
