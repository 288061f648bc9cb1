//! The gateway as a forward-auth decider: one set of routes every forward-auth test shares,
//! tokens for them, and requests shaped as Traefik's ForwardAuth and Envoy's ext_authz HTTP
//! client send them (neither proxy is packaged here):
//! - Traefik (<https://doc.traefik.io/traefik/middlewares/http/forwardauth/>): a GET to the
//!   address with the client's headers and `X-Forwarded-Method/-Proto/-Host/-Uri/-For`.
//! - Envoy ([ext_authz.proto][envoy]): the original method and `Host`, `path_prefix` +
//!   the original path, `Content-Length: 0`, the allowed headers (`Authorization` always).
//!
//! [envoy]: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto

use std::net::SocketAddr;

use http::HeaderMap;
use serde_json::json;

use super::{gateway, get, jwt_header, mint, now, request, sign_with, Gateway, Resp, Upstream};

/// `[server] trusted_proxies` is loopback (the test client plays the proxy). Routes every
/// test shares: `/` public, `/api` required, `/admin` needs the admin role,
/// `/reports` is GET only, and the host `admin.example.com` is required everywhere.
pub async fn decider(up: &Upstream, forward_auth: &str) -> Gateway {
    gateway()
        .route("/", &up.url(), "public")
        .route("/api", &up.url(), "required")
        .route_with(
            "/admin",
            &up.url(),
            "required",
            &["require = { roles = [\"admin\"] }"],
        )
        .route_with("/reports", &up.url(), "required", &["methods = [\"GET\"]"])
        .route_with(
            "/",
            &up.url(),
            "required",
            &["host = \"admin.example.com\""],
        )
        .raw("[identity]\nclaims = { \"X-Roles\" = \"roles\" }")
        // The test client is the proxy: on loopback, trusted as the proxies in front.
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw(&format!("[forward_auth]\n{forward_auth}"))
        .start()
        .await
}

/// The decision listener: `[forward_auth] listen` is bound after the main listeners.
pub fn decisions(gw: &Gateway) -> SocketAddr {
    *gw.addrs.last().unwrap()
}

pub const OWN_LISTENER: &str = "listen = \"127.0.0.1:0\"";

pub fn token_with(roles: &[&str], lifetime: i64) -> String {
    let t = now();
    mint(json!({"exp": t + lifetime, "iat": t, "nbf": t, "identity": 1, "roles": roles}))
}

/// Every value of every header whose name reads as `name` to a WSGI/CGI backend.
pub fn spellings(h: &HeaderMap, name: &str) -> Vec<String> {
    h.iter()
        .filter(|(k, _)| k.as_str().replace('_', "-") == name)
        .map(|(_, v)| v.to_str().unwrap().to_string())
        .collect()
}

pub fn forged() -> String {
    let t = now();
    sign_with(
        jsonwebtoken::Algorithm::HS256,
        r#"{"typ":"JWT","alg":"HS256"}"#,
        &json!({"exp": t + 300, "iat": t, "nbf": t, "identity": 1}).to_string(),
        b"another-secret-another-secret-0123456789",
    )
}

/// A request shaped as Traefik's ForwardAuth sends it: GET to the address, the client's
/// headers, and the X-Forwarded-* set from the original request.
pub async fn traefik(
    gw: &Gateway,
    method: &str,
    uri: &str,
    host: &str,
    auth: Option<&str>,
) -> Resp {
    let mut headers = vec![
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-host", host),
        ("x-forwarded-method", method),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-uri", uri),
        ("accept-encoding", "gzip"),
    ];
    let auth = auth.map(jwt_header);
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let url = format!("http://{}/forward-auth/traefik", decisions(gw));
    get(&url, &headers).await
}

/// A check request shaped as Envoy's ext_authz HTTP client sends it.
pub async fn envoy(gw: &Gateway, method: &str, path: &str, host: &str, auth: Option<&str>) -> Resp {
    let mut headers = vec![
        ("host", host),
        ("content-length", "0"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6f1c3c1e-2b7a-4a8e-9a47-0d3f3c1f2a11"),
        ("x-envoy-expected-rq-timeout-ms", "1000"),
    ];
    let auth = auth.map(jwt_header);
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let url = format!("http://{}/forward-auth/envoy{path}", decisions(gw));
    request(method, &url, &headers, "").await
}
