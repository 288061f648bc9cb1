//! Header rules for a message crossing the gateway (RFC 9110 §7.6.1), and the two visits a
//! forwarded request pays to this module: [`strip_inbound`] as the decision starts,
//! [`prepare`] before the send and [`finish`] on the response.
//!
//! hyper does no hop-by-hop handling of its own: without this, a client's
//! `Connection: X-Identity` would make the next hop drop the identity header we set.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::cluster::Outbound;
use super::upgrade;
use crate::body::{Body, ClientBodyError};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The client address as the gateway resolved it (never the client's own claim).
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Removes the connection-specific headers: every header named in `Connection`, then the
/// fixed hop-by-hop set. Call it on the inbound message *before* setting any header of ours,
/// so a listed name can only ever remove what the client itself sent.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (standard names compare as enum tags) notes which of the
    // fixed set are present. Most requests carry none of them and most responses one
    // (`Connection: keep-alive`): only those present are removed, not all seven.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name.as_str()) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` lists more names to remove. Its usual values (`keep-alive`, `close`,
    // `upgrade`) name only fixed ones, which go below anyway: nothing to collect then.
    let listed = || {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !is_fixed_hop_by_hop(t))
    };
    if present & 1 != 0 && listed().next().is_some() {
        let names: Vec<HeaderName> = listed()
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in names {
            // `Connection: host` must not make the request lose its Host.
            if name != HOST {
                headers.remove(&name);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The fixed hop-by-hop set, `Connection` first (a name listed in `Connection` needs
/// `Connection` itself).
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// The position of a (lowercase) name in [`HOP_BY_HOP`].
fn hop_by_hop_index(name: &str) -> Option<u8> {
    // A match on the text compiles to a length switch, cheaper than seven comparisons.
    match name {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "te" => Some(3),
        "trailer" => Some(4),
        "transfer-encoding" => Some(5),
        "upgrade" => Some(6),
        _ => None,
    }
}

/// Whether a `Connection` token (any case) names one of the fixed set.
fn is_fixed_hop_by_hop(token: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|name| name.as_str().eq_ignore_ascii_case(token))
}

/// Sets `X-Forwarded-For/-Proto/-Host`. Untrusted inbound values (and
/// `Forwarded`) are dropped first, so a client cannot pose as another address; with `trust`
/// the client's chain is kept and extended, for a gateway behind a load balancer we
/// control. `host` is the client's validated host (its `Host`, or HTTP/2 `:authority`).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
    trust: bool,
    host: Option<HeaderValue>,
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
        X_REAL_IP,
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
    fn only_the_hop_by_hop_headers_present_go() {
        // A response's usual `Connection: keep-alive` names only a fixed header.
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(CONTENT_LENGTH));

        // Listed names go in any case; a fixed name listed but absent changes nothing.
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("close"));
        h.append(CONNECTION, HeaderValue::from_static(" , X-Secret ,TE"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-other", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-other"));
    }

    #[test]
    fn forwarded_headers_replace_untrusted_values() {
        let addr: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(HOST, HeaderValue::from_static("gw.example"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        let host = h.get(HOST).cloned();
        set_forwarded(&mut h, &client_ip(addr), "http", false, host);
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.9");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "gw.example");
        assert!(!h.contains_key(FORWARDED));

        let mut t = HeaderMap::new();
        t.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        t.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        t.insert("X_Forwarded-Host", HeaderValue::from_static("evil"));
        set_forwarded(&mut t, &client_ip(addr), "http", true, None);
        assert_eq!(t[X_FORWARDED_FOR], "10.0.0.1, 127.0.0.9");
        assert!(!t.contains_key("x_forwarded_for") && !t.contains_key("x_forwarded-host"));
    }
}

/// What the inbound strip removes but the upstream leg must still see.
#[derive(Debug, Default)]
pub struct Noted {
    /// The `Upgrade` protocol the client asked for (WebSocket), restored for the upstream.
    upgrade: Option<HeaderValue>,
    /// The client sent `TE: trailers`.
    trailers: bool,
}

/// Notes an upgrade request and `TE: trailers`, then removes the hop-by-hop headers and
/// `Expect` (we answer `100-continue` ourselves as the body is read). Call it before
/// anything else reads or sets a header of the request.
pub fn strip_inbound(headers: &mut HeaderMap) -> Noted {
    let noted = Noted {
        upgrade: upgrade::requested(headers),
        trailers: headers.get_all(TE).iter().any(|v| {
            v.to_str().is_ok_and(|t| {
                t.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("trailers"))
            })
        }),
    };
    strip_hop_by_hop(headers);
    headers.remove(EXPECT);
    noted
}

/// The request declares a body larger than the route's `max_body` (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the declared body is over the route's max_body")]
pub struct BodyTooLarge;

/// Where the request goes and what the route allows, for [`prepare`].
pub struct Leg<'a> {
    /// The client's address as an `X-Forwarded-For` element.
    pub client_ip: &'a HeaderValue,
    /// Whether the client came over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    pub trust_forwarded: bool,
    /// The path (after the route's rewrite) and query sent upstream.
    pub path_and_query: String,
    pub max_body: Option<u64>,
    /// The route's response timeout, when it overrides the cluster's.
    pub timeout: Option<Duration>,
    /// Send the client's `Host` instead of the upstream's own authority.
    pub preserve_host: bool,
}

/// ⑤ before the send: refuses a declared oversize body, sets `X-Forwarded-*`, `Host` (the client's only with `preserve_host`; else the cluster sets the
/// server's) and `TE: trailers`, restores an upgrade and takes the client side of it, and
/// wraps the body in the route's limit. Returns the outbound request and, for an
/// upgrade, the client's half of the tunnel.
pub fn prepare(
    mut req: Request<Incoming>,
    noted: Noted,
    leg: Leg<'_>,
) -> Result<(Outbound, Option<OnUpgrade>), BodyTooLarge> {
    if let Some(max) = leg.max_body {
        // A declared oversize body is refused before anything is sent upstream.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(BodyTooLarge);
        }
    }
    let proto = if leg.tls { "https" } else { "http" };
    // The client's host, checked by `routing::check_host`: its `Host`, or the `:authority`
    // HTTP/2 carries instead. It goes upstream as `X-Forwarded-Host`. `Host` itself is the
    // upstream's own authority (the cluster sets it, as nginx's proxy_pass does), so a
    // backend never picks a site on the client's word, unless the route preserves it.
    let client_host = req.headers().get(HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    set_forwarded(
        req.headers_mut(),
        leg.client_ip,
        proto,
        leg.trust_forwarded,
        client_host.clone(),
    );
    match client_host {
        Some(host) if leg.preserve_host => {
            req.headers_mut().insert(HOST, host);
        }
        _ => {
            req.headers_mut().remove(HOST);
        }
    }
    if noted.trailers {
        req.headers_mut()
            .insert(TE, HeaderValue::from_static("trailers"));
    }
    let retryable = is_idempotent(req.method()) && http_body::Body::is_end_stream(req.body());
    // An upgrade keeps the client's connection for the tunnel; it is never retried.
    let on_client = noted.upgrade.map(|protocol| {
        upgrade::restore(req.headers_mut(), protocol);
        hyper::upgrade::on(&mut req)
    });
    let (parts, body) = req.into_parts();
    let out = Outbound {
        method: parts.method,
        path_and_query: leg.path_and_query,
        headers: parts.headers,
        body: limit_body(body, leg.max_body),
        retryable: retryable && on_client.is_none(),
        timeout: leg.timeout,
    };
    Ok((out, on_client))
}

/// ⑤ after the send: the upstream's hop-by-hop headers stay on its leg, and the response
/// takes the client's protocol version: an intermediary answers in its own (RFC 9110 §6.2),
/// so an HTTP/1.0 upstream does not close an HTTP/1.1 client's keep-alive connection.
pub fn finish<B>(res: &mut Response<B>, client_version: Version) {
    strip_hop_by_hop(res.headers_mut());
    *res.version_mut() = client_version;
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Boxes the inbound body for the upstream, counting it against the route's limit while it
/// streams (no buffering).
fn limit_body(body: Incoming, max: Option<u64>) -> Body {
    // The client's body errors are marked as the client's (see `ClientBodyError`).
    let body = body.map_err(ClientBodyError);
    match max {
        None => body.map_err(Into::into).boxed(),
        Some(max) => Limited::new(body, max as usize).boxed(),
    }
}
