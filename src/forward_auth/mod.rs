//! Forward-auth: the gateway as the auth service of another proxy (nginx `auth_request`,
//! Traefik `ForwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`) that asks, before it
//! forwards a request itself, "may this pass, and as whom?".
//!
//! The answer is `Pipeline::decide`, the very decision proxy mode makes, run over the
//! original request the proxy describes (its method, host and path, normalized with the
//! same bypass checks: the original URI is the client's, whatever the proxy says about
//! it) and the headers the proxy passed (the token). An allow is an empty 200 carrying
//! `X-Identity` and the route's claim headers, for the proxy to copy onto the request;
//! a refusal is the response proxy mode would give, JSON body and `WWW-Authenticate`
//! included. What each proxy sends and does with the answer is in [`contract`].
//!
//! The describing headers are believed only from the trusted proxies (`[server]
//! trusted_proxies`, or `[forward_auth]`'s own list; anyone else gets 400): the endpoints
//! live on their own listener (`listen`) or under `path` on the main listeners.
//!
//! Caching: an allow carries `Cache-Control: private, max-age=N`, N at most `max_age` and
//! never past the token's `exp`, plus `X-Accel-Expires: N` for nginx (whose
//! `proxy_cache` would skip a `private` answer otherwise); a refusal carries `no-store`
//! (and `X-Accel-Expires: 0`). So does every answer on a browser route and every allow
//! authenticated by the session cookie: a proxy's cache key does not hold the cookie.
//!
//! Cookies: with browser mode on, an allow for a request that carried `Cookie` also
//! carries [`X_GATEWAY_COOKIE`], that header without the gateway's own cookies (empty when
//! nothing else was there), and [`X_GATEWAY_COOKIE_SET`] `: 1`, for the proxy to forward
//! in place of the client's (the nginx and Caddy examples do): the application never sees
//! the session token. Such an allow depends on the cookie, so it is never cached either.

pub mod contract;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{CACHE_CONTROL, COOKIE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};

use crate::body::{full, Body};
use crate::config::{Contract, ForwardAuthConfig};
use crate::pipeline::{Answer, Conn, Decision, Outcome, Pipeline};
use crate::rejection::{self, Rejection};
use crate::routing;

const X_ACCEL_EXPIRES: HeaderName = HeaderName::from_static("x-accel-expires");
/// The request's `Cookie` without the gateway's cookies, on an allow (browser mode).
pub const X_GATEWAY_COOKIE: HeaderName = HeaderName::from_static("x-gateway-cookie");
/// `1` beside [`X_GATEWAY_COOKIE`]: a proxy tells "forward no cookie" (an empty
/// `X-Gateway-Cookie`) from an answer without one (keep the client's).
pub const X_GATEWAY_COOKIE_SET: HeaderName = HeaderName::from_static("x-gateway-cookie-set");
/// Envoy deletes the request headers named here after copying ours (on a 200 only).
const X_ENVOY_AUTH_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// Whether `path`, on a main listener, is a forward-auth endpoint (mounted there when
/// `[forward_auth]` has no `listen` of its own).
pub fn mounted(pipeline: &Pipeline, path: &str) -> bool {
    pipeline
        .forward_auth()
        .filter(|f| f.listen.is_none())
        .is_some_and(|f| under(&f.path, path).is_some())
}

/// What follows `prefix` in `path` when `path` is `prefix` or below it.
fn under<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The contract an endpoint path names, and what follows it (Envoy's original path).
fn endpoint<'a>(settings: &ForwardAuthConfig, path: &'a str) -> Option<(Contract, &'a str)> {
    let rest = under(&settings.path, path)?;
    settings.contracts.iter().find_map(|&c| {
        let tail = rest.strip_prefix('/')?.strip_prefix(c.name())?;
        match c {
            // Envoy appends the original path, which always starts with `/`.
            Contract::Envoy => tail.starts_with('/').then_some((c, tail)),
            _ => tail.is_empty().then_some((c, tail)),
        }
    })
}

/// Answers one forward-auth request that came on `conn` (the proxy's connection). Never
/// panics on input; never allows what proxy mode would refuse.
pub async fn handle<B>(pipeline: &Pipeline, mut req: Request<B>, conn: &Conn) -> Response<Body> {
    let started = Instant::now();
    let Some(settings) = pipeline.forward_auth() else {
        // A reload removed [forward_auth]; its listener stays bound until a restart.
        return not_found();
    };
    let Some((contract, rest)) = endpoint(settings, req.uri().path()) else {
        return not_found();
    };
    // Owned: the request's head is taken apart below.
    let rest = rest.to_string();
    let peer = conn.peer;
    if !trusted(settings, peer) {
        tracing::debug!(%peer, "forward-auth request from a peer outside trusted_proxies");
        return no_store(rejection::json(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Forward-auth requests are believed only from the trusted proxies",
        ));
    }
    if let Err(r) = pipeline.check_header_size(req.headers()) {
        return no_store(r.into_response(pipeline.errors()));
    }
    let original = match contract::describe(contract, &req, &rest) {
        Ok(o) => o,
        Err(why) => {
            let contract = contract.name();
            let error = why.to_string();
            tracing::debug!(%peer, contract, error, "forward-auth request describes nothing");
            return no_store(rejection::json(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("Forward-auth request refused: {why}"),
            ));
        }
    };
    // The original request's head: its method, target and host as described, and the
    // headers the proxy passed on (the token among them).
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = original.method;
    parts.uri = Uri::from(original.target);
    parts.headers = std::mem::take(req.headers_mut());
    parts.headers.remove(HOST);
    if let Some(host) = original.host.as_deref() {
        match HeaderValue::from_str(host) {
            Ok(v) => {
                parts.headers.insert(HOST, v);
            }
            Err(_) => {
                return no_store(rejection::json(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "Forward-auth request refused: the host is not a header value",
                ))
            }
        }
    }
    // Before the decision removes the gateway's cookies from it.
    let had_cookie = parts.headers.contains_key(COOKIE);
    let mut outcome = Outcome::default();
    // The same refusal as proxy mode's first check: `get` for `GET` would let a backend
    // that upper-cases methods run another method than the one the decision routed on.
    let decided = match routing::check_method(&parts.method) {
        Err(why) => Err(Rejection::BadMethod(why)),
        // A proxy cannot pass a redirect to the login page on (nginx makes it a 500), and
        // does not send the body: a cookie-authenticated form needs the CSRF header here.
        Ok(()) => match pipeline.decide(&mut parts, conn, &mut outcome, false).await {
            Ok(d) if d.csrf_form.is_some() => {
                Err(Rejection::Browser(crate::browser::BrowserError::Csrf(
                    "behind forward-auth a form must send the CSRF header",
                )))
            }
            decided => decided,
        },
    };
    // A client-certificate subject set by ④ is the proxy's own certificate, not the
    // client's: never part of the answer.
    if let Some((name, _)) = &conn.client_subject {
        parts.headers.remove(name);
    }
    let (response, reason, token_refused) = match decided {
        Ok(d) => (
            allow(pipeline, settings, contract, &d, &parts.headers, had_cookie),
            None,
            false,
        ),
        Err(rejection) => {
            pipeline.log_refusal(&outcome, &rejection, parts.uri.path());
            let reason = rejection.reason();
            let token = matches!(rejection, Rejection::Token(_) | Rejection::Forbidden(_));
            (
                never_cached(refuse(pipeline, contract, rejection), contract),
                Some(reason),
                token,
            )
        }
    };
    pipeline.record_answer(
        &outcome,
        &Answer {
            method: &parts.method,
            path: parts.uri.path(),
            client: peer,
            front: contract.name(),
            status: response.status().as_u16(),
            elapsed: started.elapsed(),
            reason,
            token_refused,
        },
    );
    response
}

/// Whether `peer` may describe requests. IPv4 peers of a dual-stack socket arrive mapped
/// (`::ffff:a.b.c.d`) and are compared as IPv4.
fn trusted(settings: &ForwardAuthConfig, peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    settings.trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// The allow: an empty 200 with the identity headers the decision set on `decided` (the
/// original request's headers after ④), the cleaned `Cookie` when browser mode is on and
/// the request `had_cookie`, and how long it may be cached.
fn allow(
    pipeline: &Pipeline,
    settings: &ForwardAuthConfig,
    contract: Contract,
    decision: &Decision<'_>,
    decided: &HeaderMap,
    had_cookie: bool,
) -> Response<Body> {
    let mut res = Response::new(full(bytes::Bytes::new()));
    let headers = res.headers_mut();
    // ④ stripped every spelling of these from the request, then set ours: whatever is
    // left under their names is the gateway's.
    let owned = pipeline.identity_headers().names();
    for name in owned {
        for value in decided.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if contract == Contract::Envoy {
        // Envoy leaves a client-sent header in place when our answer lacks it (a public
        // route sets none): name the ones we did not set, for Envoy to delete.
        let unset: Vec<&str> = owned
            .iter()
            .filter(|n| !headers.contains_key(*n))
            .map(HeaderName::as_str)
            .collect();
        if !unset.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&unset.join(", ")) {
                headers.insert(X_ENVOY_AUTH_HEADERS_TO_REMOVE, v);
            }
        }
    }
    let cookie_set = had_cookie && pipeline.has_browser_mode();
    if cookie_set {
        // ④ removed our cookies from `decided`; HTTP/2 may have split the rest in several
        // headers, which one Cookie header joins with "; " (RFC 9113 §8.2.3).
        let kept: Vec<&[u8]> = decided
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        // Bytes of valid values joined by "; " are a valid value; were they not, the
        // answer would still say "forward no cookie", never "keep the client's".
        let v = HeaderValue::from_bytes(&kept.join(&b"; "[..]))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.insert(X_GATEWAY_COOKIE, v);
        headers.insert(X_GATEWAY_COOKIE_SET, HeaderValue::from_static("1"));
    }
    if decision.via_cookie || decision.browser_route || cookie_set {
        // A proxy's decision cache is keyed on what it knows of the request (the shipped
        // nginx example: `Authorization` and the URL), never on the cookie: an allow
        // cached for one browser's session would be served to anyone asking for that
        // URL. Answers on a browser route are never kept, nor those carrying a cookie.
        return never_cached(res, contract);
    }
    let max_age = cache_seconds(settings, decision);
    if contract == Contract::Nginx {
        // nginx reads this before Cache-Control, and it wins over `private`.
        headers.insert(X_ACCEL_EXPIRES, HeaderValue::from(max_age));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={max_age}")) {
        headers.insert(CACHE_CONTROL, v);
    }
    res
}

/// `no-store`, and for nginx `X-Accel-Expires: 0` (which it reads before
/// `Cache-Control`).
fn never_cached(res: Response<Body>, contract: Contract) -> Response<Body> {
    let mut res = no_store(res);
    if contract == Contract::Nginx {
        res.headers_mut()
            .insert(X_ACCEL_EXPIRES, HeaderValue::from_static("0"));
    }
    res
}

/// Seconds an allow stays good: `max_age`, cut to the token's remaining lifetime.
fn cache_seconds(settings: &ForwardAuthConfig, decision: &Decision<'_>) -> u64 {
    let cap = settings.max_age.as_secs();
    match &decision.claims {
        None => cap,
        Some(c) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let left = (c.exp - now).floor();
            if left <= 0.0 {
                0
            } else {
                cap.min(left as u64)
            }
        }
    }
}

/// The refusal proxy mode would answer, never cached. nginx turns anything but 401 and
/// 403 into a 500 of its own, so there the other client errors become 403 (the body says
/// why); a gateway failure stays a 5xx.
fn refuse(pipeline: &Pipeline, contract: Contract, rejection: Rejection) -> Response<Body> {
    let why = (contract == Contract::Nginx).then(|| rejection.to_string());
    let res = rejection.into_response(pipeline.errors());
    let status = res.status();
    match why {
        Some(why)
            if status.is_client_error()
                && status != StatusCode::UNAUTHORIZED
                && status != StatusCode::FORBIDDEN =>
        {
            no_store(rejection::json(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &capitalized(&why),
            ))
        }
        _ => no_store(res),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn not_found() -> Response<Body> {
    no_store(rejection::json(
        StatusCode::NOT_FOUND,
        "Not Found",
        "No forward-auth endpoint at this path",
    ))
}

fn no_store(mut res: Response<Body>) -> Response<Body> {
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(contracts: &[Contract]) -> ForwardAuthConfig {
        ForwardAuthConfig {
            listen: None,
            path: "/forward-auth".into(),
            contracts: contracts.to_vec(),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn endpoints_by_contract() {
        let s = settings(&Contract::ALL);
        assert_eq!(
            endpoint(&s, "/forward-auth/nginx"),
            Some((Contract::Nginx, ""))
        );
        assert_eq!(
            endpoint(&s, "/forward-auth/traefik"),
            Some((Contract::Traefik, ""))
        );
        assert_eq!(
            endpoint(&s, "/forward-auth/caddy"),
            Some((Contract::Caddy, ""))
        );
        assert_eq!(
            endpoint(&s, "/forward-auth/envoy/api/x"),
            Some((Contract::Envoy, "/api/x"))
        );
        assert_eq!(
            endpoint(&s, "/forward-auth/envoy/"),
            Some((Contract::Envoy, "/"))
        );
        // The prefix is compared raw: dot segments belong to Envoy's original path.
        assert_eq!(
            endpoint(&s, "/forward-auth/envoy/../admin"),
            Some((Contract::Envoy, "/../admin"))
        );
        for miss in [
            "/forward-auth",
            "/forward-auth/",
            "/forward-auth/nginx/",
            "/forward-auth/nginxx",
            "/forward-auth/envoy",
            "/forward-authx/nginx",
            "/forward-auth/../forward-auth/nginx",
        ] {
            assert_eq!(endpoint(&s, miss), None, "{miss}");
        }
        let only = settings(&[Contract::Traefik]);
        assert_eq!(endpoint(&only, "/forward-auth/nginx"), None);
    }

    #[test]
    fn trust_by_peer_address() {
        let s = settings(&Contract::ALL);
        assert!(trusted(&s, "10.1.2.3:5000".parse().unwrap()));
        assert!(trusted(&s, "[::ffff:10.1.2.3]:5000".parse().unwrap()));
        assert!(trusted(&s, "[::1]:5000".parse().unwrap()));
        assert!(!trusted(&s, "127.0.0.1:5000".parse().unwrap()));
        assert!(!trusted(&s, "11.0.0.1:5000".parse().unwrap()));
    }
}
