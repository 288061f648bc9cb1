//! Headers that steer a backend (issue: URL, method and client-address overrides reached
//! the upstream unchanged), and `Host`: what the upstream receives is the gateway's word.
//!
//! Each case sends the hostile headers, in several spellings, to a required and a public
//! route, and asserts the status, the body, and every header the upstream received.

use http::{Request, Version};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::*;
use crate::support::*;

/// Every steering header of SECURITY.md's list, as a client would send it.
const HOSTILE: &[(&str, &str)] = &[
    ("X-Original-URL", "/admin/delete"),
    ("X-Rewrite-URL", "/admin/delete"),
    ("X-Original-URI", "/admin"),
    ("X-Override-URL", "/admin"),
    ("X-Forwarded-Uri", "/admin"),
    ("X-Forwarded-Path", "/admin"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Envoy-Original-Path", "/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X-Host", "admin.internal"),
    ("X-Original-Host", "admin.internal"),
    ("X-Forwarded-Server", "admin.internal"),
    ("X-HTTP-Host-Override", "admin.internal"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Scheme", "https"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Url-Scheme", "https"),
    ("Front-End-Https", "on"),
    ("X-Real-IP", "10.0.0.1"),
    ("X-Client-IP", "10.0.0.1"),
    ("Client-IP", "10.0.0.1"),
    ("True-Client-IP", "10.0.0.1"),
    ("CF-Connecting-IP", "10.0.0.1"),
    ("CF-Connecting-IPv6", "::1"),
    ("CF-Pseudo-IPv4", "10.0.0.1"),
    ("Fastly-Client-IP", "10.0.0.1"),
    ("X-Cluster-Client-IP", "10.0.0.1"),
    ("X-Originating-IP", "10.0.0.1"),
    ("X-Remote-IP", "10.0.0.1"),
    ("X-Remote-Addr", "10.0.0.1"),
    ("X-AppEngine-User-IP", "10.0.0.1"),
    ("X-Azure-ClientIP", "10.0.0.1"),
    ("Forwarded-For", "10.0.0.1"),
    ("X-Forwarded", "for=10.0.0.1"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
];

/// The upstream received exactly the gateway's headers and no steering header, in any
/// spelling.
fn assert_clean(seen: &Seen, t: &Target, target: &str, case: &str) {
    for (name, _) in HOSTILE {
        let lower = name.to_ascii_lowercase();
        let under = lower.replace('-', "_");
        for k in seen.headers.keys() {
            let k = k.as_str();
            if k == "x-real-ip" {
                continue;
            }
            assert!(k != lower && k != under, "{case}: {k} reached the upstream");
        }
    }
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1", "{case}");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1", "{case}");
    // Host is the upstream's own authority; the client's goes in X-Forwarded-Host.
    assert_eq!(seen.headers["host"], t.up.addr.to_string(), "{case}");
    assert_eq!(
        seen.headers["x-forwarded-host"],
        t.gw.addr.to_string(),
        "{case}"
    );
    assert_eq!(seen.method, http::Method::GET, "{case}");
    assert_eq!(seen.target, target, "{case}");
}

/// Regression: `X-Original-URL`, `X-HTTP-Method-Override`, `True-Client-IP` and the rest
/// reached the upstream unchanged on public and required routes alike.
#[tokio::test]
async fn steering_headers_never_reach_the_upstream_in_any_spelling() {
    let t = target().await;
    let jwt = format!("JWT {}", token());
    for spelling in ["as-is", "lower", "underscore"] {
        let headers: Vec<(String, String)> = HOSTILE
            .iter()
            .map(|(n, v)| {
                let n = match spelling {
                    "lower" => n.to_ascii_lowercase(),
                    "underscore" => n.replace('-', "_"),
                    _ => n.to_string(),
                };
                (n, v.to_string())
            })
            .collect();
        for (route, path) in [("required", "/api/secret"), ("public", "/public/secret")] {
            let case = format!("{route} {spelling}");
            let mut h = headers.clone();
            if route == "required" {
                h.push(("authorization".into(), jwt.clone()));
            }
            let pairs: Vec<(&str, &str)> =
                h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let before = t.forwarded();
            let r = get(&t.gw.url(path), &pairs).await;
            assert_eq!(r.status, 200, "{case}: {}", r.text());
            assert_eq!(r.text(), "ok", "{case}");
            assert_eq!(t.forwarded(), before + 1, "{case}");
            let seen = t.up.last();
            assert_clean(&seen, &t, path, &case);
            if route == "required" {
                assert_eq!(seen.headers["x-identity"], "1", "{case}");
            }
        }
    }
    // Without a token the required route still forwards nothing, whatever the overrides say.
    let pairs: Vec<(&str, &str)> = HOSTILE.to_vec();
    let before = t.forwarded();
    let r = get(&t.gw.url("/api/secret"), &pairs).await;
    r.assert_error(
        401,
        "Authorization Required",
        "Request does not contain an access token",
    );
    assert_eq!(t.forwarded(), before);
}

/// The client-address family stays ours under `trust_forwarded` too: only the
/// `X-Forwarded-For` chain is kept and extended, and `X-Real-IP` is the connecting peer.
#[tokio::test]
async fn under_trust_forwarded_only_the_forwarded_chain_is_kept() {
    let t = target_with(gateway().server("trust_forwarded = true")).await;
    let r = get(
        &t.gw.url("/public/x"),
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.9"),
            ("true-client-ip", "203.0.113.9"),
            ("x-forwarded-host", "site.example"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = t.up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
    assert!(!seen.headers.contains_key("true-client-ip"));
    assert_eq!(seen.headers["x-forwarded-host"], "site.example");
    assert_eq!(seen.headers["host"], t.up.addr.to_string());
}

/// A route may let named steering headers through for a backend that needs one; only
/// that exact name passes, and the config check warns about it.
#[tokio::test]
async fn pass_headers_lets_only_the_named_header_through() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with(
            "/legacy",
            &up.url(),
            "public",
            &["pass_headers = [\"X-HTTP-Method-Override\"]"],
        )
        .route("/public", &up.url(), "public")
        .start()
        .await;
    let hostile = [
        ("x-http-method-override", "DELETE"),
        ("x_http_method_override", "PATCH"),
        ("x-original-url", "/admin"),
    ];
    let r = get(&gw.url("/legacy/x"), &hostile).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-http-method-override"], "DELETE");
    assert!(!seen.headers.contains_key("x_http_method_override"));
    assert!(!seen.headers.contains_key("x-original-url"));
    // Another route passes nothing.
    let r = get(&gw.url("/public/x"), &hostile).await;
    assert_eq!(r.status, 200);
    assert!(!up.last().headers.contains_key("x-http-method-override"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let route = |extra: &str| {
        format!(
            "[tokens]\nsecret_file = \"secret\"\n\
             [[routes]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"public\"\n\
             {extra}\n"
        )
    };
    let loaded = gateway::load::from_str(
        &route("pass_headers = [\"X-HTTP-Method-Override\"]"),
        dir.path(),
    )
    .unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.key == "routes[0].pass_headers[0]"),
        "{:?}",
        loaded.warnings
    );
    for (bad, words) in [
        ("True-Client-IP", "can never be passed"),
        ("Proxy-Authorization", "can never be passed"),
        ("X-Identity", "is not a header the gateway strips"),
    ] {
        let e = gateway::load::from_str(&route(&format!("pass_headers = [\"{bad}\"]")), dir.path())
            .unwrap_err();
        assert!(
            e.problems
                .iter()
                .any(|p| p.key == "routes[0].pass_headers[0]" && p.message.contains(words)),
            "{bad}: {e}"
        );
    }
}

/// `preserve_host = true` (per route, or as an upstream's default) keeps the client's
/// `Host` for a backend that serves several sites; `X-Forwarded-Host` is set either way.
#[tokio::test]
async fn preserve_host_keeps_the_clients_host() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/kept", &up.url(), "public", &["preserve_host = true"])
        .route("/pool", "sites", "public")
        .route("/own", &up.url(), "public")
        .raw(&format!(
            "[upstreams.sites]\nservers = [\"{}\"]\npreserve_host = true",
            up.url()
        ))
        .start()
        .await;
    for (path, want) in [
        ("/kept/x", "site.example"),
        ("/pool/x", "site.example"),
        ("/own/x", up.addr.to_string().as_str()),
    ] {
        let r = get(&gw.url(path), &[("host", "site.example")]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let seen = up.last();
        assert_eq!(seen.headers["host"], want, "{path}");
        assert_eq!(seen.headers["x-forwarded-host"], "site.example", "{path}");
        assert_eq!(seen.headers.get_all("host").iter().count(), 1, "{path}");
    }
}

/// Regression: HTTP/2 clients carry the host in `:authority`, and their requests reached
/// the upstream with no `X-Forwarded-Host`.
#[tokio::test]
async fn http2_clients_get_x_forwarded_host() {
    let t = target().await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let req = Request::get(t.gw.url("/api/x"))
        .header("authorization", format!("JWT {}", token()))
        .header("x-original-url", "/admin")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let seen = t.up.last();
    assert_eq!(seen.headers["x-forwarded-host"], t.gw.addr.to_string());
    assert_eq!(seen.headers["host"], t.up.addr.to_string());
    assert_eq!(seen.headers["x-identity"], "1");
    assert!(!seen.headers.contains_key("x-original-url"));
}
