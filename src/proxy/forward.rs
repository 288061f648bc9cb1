//! Header rules for a message crossing the gateway (RFC 9110 §7.6.1).
//!
//! hyper does no hop-by-hop handling of its own: without this, a client's
//! `Connection: X-Identity` would make the next hop drop the identity header we set.

use std::net::SocketAddr;

use http::header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Removes the connection-specific headers: every header named in `Connection`, then the
/// fixed hop-by-hop set. Call it on the inbound message *before* setting any header of ours,
/// so a listed name can only ever remove what the client itself sent.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names (standard names compare
    // as enum tags) instead of seven hashed removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        // `Connection: host` must not make the request lose its Host.
        if name != HOST {
            headers.remove(&name);
        }
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The fixed hop-by-hop set (a name listed in `Connection` needs `Connection` itself).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // A match on the text compiles to a length switch, cheaper than seven comparisons.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Sets `X-Forwarded-For/-Proto/-Host`. Untrusted inbound values (and `Forwarded`) are
/// dropped first, so a client cannot pose as another address; with `trust` the client's
/// chain is kept and extended, for a gateway behind a load balancer we control.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
    trust: bool,
) {
    // One pass over the names finds whether the client sent any forwarding header, in any
    // spelling; most requests carry none, and then there is nothing to remove or extend.
    let sent = headers.keys().any(|k| {
        let k = k.as_str();
        k.contains('_') || k == "forwarded" || k.starts_with("x-forwarded-")
    });
    if sent {
        strip_underscore_spellings(headers);
    }
    let host = headers.get(HOST).cloned();
    let chain = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if trust => {
            HeaderValue::from_str(&format!("{prior}, {}", client_ip.to_str().unwrap_or(""))).ok()
        }
        _ => Some(client_ip.clone()),
    };
    if sent && !trust {
        headers.remove(FORWARDED);
        headers.remove(X_FORWARDED_HOST);
        headers.remove(X_FORWARDED_PROTO);
    }
    if let Some(v) = chain {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(trust && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if let Some(host) = host {
        if !(trust && headers.contains_key(X_FORWARDED_HOST)) {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
}

/// A client address as an `X-Forwarded-For` element; made once per connection.
pub fn client_ip(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is a valid header value")
}

/// Removes `X_Forwarded_For` and the like. WSGI/CGI/PHP backends read them as the dashed
/// headers we set, and neither we nor a load balancer ever sends the underscore form, so
/// it is removed even when `trust_forwarded` keeps the dashed ones.
fn strip_underscore_spellings(headers: &mut HeaderMap) {
    let owned = [
        FORWARDED,
        X_FORWARDED_FOR,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
    ];
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| {
            owned
                .iter()
                .any(|o| k.as_str().replace('_', "-") == o.as_str())
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Identity, x-secret, host"),
        );
        h.insert("x-identity", HeaderValue::from_static("admin"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(HOST, HeaderValue::from_static("example"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-other", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key(HOST) && h.contains_key("x-other"));
    }

    #[test]
    fn forwarded_headers_replace_untrusted_values() {
        let addr: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(HOST, HeaderValue::from_static("gw.example"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        set_forwarded(&mut h, &client_ip(addr), "http", false);
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.9");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "gw.example");
        assert!(!h.contains_key(FORWARDED));

        let mut t = HeaderMap::new();
        t.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        t.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        t.insert("X_Forwarded-Host", HeaderValue::from_static("evil"));
        set_forwarded(&mut t, &client_ip(addr), "http", true);
        assert_eq!(t[X_FORWARDED_FOR], "10.0.0.1, 127.0.0.9");
        assert!(!t.contains_key("x_forwarded_for") && !t.contains_key("x_forwarded-host"));
    }
}
