//! Forwarding to real upstreams: identity, spoofing, hop-by-hop, X-Forwarded-*, failures.

use std::sync::Arc;

use http::Response;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn seed_flow_reaches_the_upstream_with_x_identity() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/api/", &up.url(), "required")
        .start()
        .await;
    let token = gw.login("user1", PASSWORD).await;
    let r = get(
        &gw.url("/api/users?page=2"),
        &[("authorization", &jwt_header(&token))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    let seen = up.last();
    assert_eq!(seen.target, "/api/users?page=2");
    assert_eq!(seen.headers["x-identity"], "1");
    assert_eq!(seen.headers.get_all("x-identity").iter().count(), 1);
    // The token itself never reaches the backend.
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.addr.to_string());
}

#[tokio::test]
async fn required_route_without_a_token_forwards_nothing() {
    let up = Upstream::start().await;
    let gw = gateway().route("/api", &up.url(), "required").start().await;
    let bad = [None, Some("JWT garbage"), Some("Bearer x")];
    for auth in bad {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let r = get(&gw.url("/api/x"), &headers).await;
        assert_eq!(r.status, 401);
    }
    let expired =
        mint(json!({"exp": now() - 3600, "iat": now() - 4000, "nbf": now() - 4000, "identity": 1}));
    assert_eq!(
        get(&gw.url("/api"), &[("authorization", &jwt_header(&expired))])
            .await
            .status,
        401
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/public", &up.url(), "public")
        .route("/api", &up.url(), "required")
        .start()
        .await;
    let spoofs = [
        ("X-Identity", "admin"),
        ("x-identity", "root"),
        ("X_Identity", "admin"),
        ("x_IDENTITY", "0"),
    ];
    // Public route: every spelling is removed and none is set.
    for (name, value) in spoofs {
        let r = get(&gw.url("/public/page"), &[(name, value)]).await;
        assert_eq!(r.status, 200);
        let seen = up.last();
        assert!(
            seen.headers
                .keys()
                .all(|k| k.as_str().replace('_', "-") != "x-identity"),
            "{name} leaked: {:?}",
            seen.headers
        );
    }
    // Protected route: ours replaces all of them.
    let auth = jwt_header(&token());
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend(spoofs);
    assert_eq!(get(&gw.url("/api"), &headers).await.status, 200);
    let seen = up.last();
    assert_eq!(
        seen.headers
            .get_all("x-identity")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>(),
        ["1"]
    );
    assert!(!seen.headers.contains_key("x_identity"));
}

#[tokio::test]
async fn connection_header_cannot_remove_ours() {
    let up = Upstream::start().await;
    let gw = gateway().route("/api", &up.url(), "required").start().await;
    let auth = jwt_header(&token());
    let r = get(
        &gw.url("/api"),
        &[
            ("authorization", &auth),
            ("connection", "X-Identity, X-Forwarded-For, keep-alive"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-identity"], "1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert!(!seen.headers.contains_key("connection") || seen.headers["connection"] == "keep-alive");
    assert_eq!(seen.headers["x-custom"], "kept");
}

#[tokio::test]
async fn connection_listed_and_hop_by_hop_headers_are_dropped() {
    let up = Upstream::start().await;
    let gw = gateway().route("/p", &up.url(), "public").start().await;
    let r = get(
        &gw.url("/p"),
        &[
            ("connection", "x-secret"),
            ("x-secret", "s"),
            ("te", "gzip"),
            ("proxy-connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    for h in ["x-secret", "te", "proxy-connection", "keep-alive"] {
        assert!(
            !seen.headers.contains_key(h),
            "{h} was forwarded: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn forwarded_headers_from_clients_are_replaced() {
    let up = Upstream::start().await;
    let gw = gateway().route("/p", &up.url(), "public").start().await;
    get(
        &gw.url("/p"),
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6"),
        ],
    )
    .await;
    let seen = up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert!(!seen.headers.contains_key("forwarded"));
}

#[tokio::test]
async fn authorization_is_forwarded_only_when_the_route_says_so() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with(
            "/api",
            &up.url(),
            "required",
            &["forward_authorization = true"],
        )
        .start()
        .await;
    let auth = jwt_header(&token());
    assert_eq!(
        get(&gw.url("/api"), &[("authorization", &auth)])
            .await
            .status,
        200
    );
    assert_eq!(up.last().headers["authorization"], auth.as_str());
}

#[tokio::test]
async fn routes_match_whole_segments_and_most_specific_wins() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = gateway()
        .route("/api/", &a.url(), "public")
        .route("/api/admin", &b.url(), "required")
        .start()
        .await;
    assert_eq!(get(&gw.url("/api"), &[]).await.status, 200);
    get(&gw.url("/apiary"), &[]).await.assert_error(
        404,
        "Not Found",
        "No route matches the requested URL",
    );
    assert_eq!(get(&gw.url("/api/admin/x"), &[]).await.status, 401);
    assert_eq!(get(&gw.url("/api/administrator"), &[]).await.status, 200);
    assert_eq!(a.requests().len(), 2);
    assert!(b.requests().is_empty());
}

#[tokio::test]
async fn ambiguous_paths_are_refused_not_forwarded() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/public", &up.url(), "public")
        .route("/admin", &up.url(), "required")
        .start()
        .await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public%2fadmin",
        "//admin",
        "/public/%2E%2E/admin",
    ] {
        let r = raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let port = closed_port().await;
    let gw = gateway()
        .route("/p", &format!("http://{port}"), "public")
        .start()
        .await;
    get(&gw.url("/p"), &[]).await.assert_error(
        502,
        "Bad Gateway",
        "The upstream service could not be reached",
    );
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let up = Upstream::hanging().await;
    let gw = gateway()
        .route_with("/p", &up.url(), "public", &["timeout = \"200ms\""])
        .start()
        .await;
    get(&gw.url("/p"), &[]).await.assert_error(
        504,
        "Gateway Timeout",
        "The upstream service did not answer in time",
    );
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn upstream_status_headers_and_body_pass_through() {
    let up = Upstream::with(Arc::new(|_req| {
        Box::pin(async {
            Response::builder()
                .status(418)
                .header("x-upstream", "yes")
                .header("connection", "x-hidden")
                .header("x-hidden", "1")
                .body(gateway::body::full("teapot"))
                .unwrap()
        })
    }))
    .await;
    let gw = gateway().route("/p", &up.url(), "public").start().await;
    let r = get(&gw.url("/p"), &[]).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert!(r.header("x-hidden").is_none());
    assert_eq!(r.text(), "teapot");
}

#[tokio::test]
async fn route_body_limit_is_413() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/p", &up.url(), "public", &["max_body = \"1KiB\""])
        .start()
        .await;
    let r = request("POST", &gw.url("/p"), &[], vec![b'x'; 4096]).await;
    r.assert_error(
        413,
        "Payload Too Large",
        "The request body is larger than this route accepts",
    );
    assert!(up.requests().is_empty());
    assert_eq!(
        request("POST", &gw.url("/p"), &[], vec![b'x'; 512])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let gw = gateway().respond_identity("/protected").start().await;
    get(&gw.url("/nowhere"), &[]).await.assert_error(
        404,
        "Not Found",
        "No route matches the requested URL",
    );
}

#[tokio::test]
async fn identity_that_cannot_be_a_header_is_refused() {
    let up = Upstream::start().await;
    let gw = gateway()
        .without_users()
        .route("/api", &up.url(), "required")
        .start()
        .await;
    let t = mint(claims(json!("bob\r\nX-Admin: yes")));
    let r = get(&gw.url("/api"), &[("authorization", &jwt_header(&t))]).await;
    r.assert_error(
        401,
        "Invalid token",
        "Identity claim cannot be forwarded as a header",
    );
    assert!(up.requests().is_empty());
    // Without a user list, any signed identity is forwarded as is.
    let t = mint(claims(json!("bob")));
    assert_eq!(
        get(&gw.url("/api"), &[("authorization", &jwt_header(&t))])
            .await
            .status,
        200
    );
    assert_eq!(up.last().headers["x-identity"], "bob");
}
