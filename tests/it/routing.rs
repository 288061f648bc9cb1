//! Routing by host, path and method; path normalization; prefix rewriting; claim
//! requirements (403) and claim headers.

use serde_json::json;

use crate::support::*;

fn bearer(claims: serde_json::Value) -> String {
    jwt_header(&mint(claims))
}

#[tokio::test]
async fn most_specific_route_wins() {
    let any = Upstream::start().await;
    let exact_host = Upstream::start().await;
    let wild_host = Upstream::start().await;
    let exact_path = Upstream::start().await;
    let posts = Upstream::start().await;
    let gw = gateway()
        .route("/", &any.url(), "public")
        .route_with(
            "/",
            &exact_host.url(),
            "public",
            &["host = \"api.example.com\""],
        )
        .route_with(
            "/",
            &wild_host.url(),
            "public",
            &["host = \"*.example.com\""],
        )
        .route_with(
            "/status",
            &exact_path.url(),
            "public",
            &["match = \"exact\""],
        )
        .route_with("/items", &posts.url(), "public", &["methods = [\"POST\"]"])
        .start()
        .await;
    let host = |h: &'static str| vec![("host", h)];
    get(&gw.url("/x"), &host("API.example.com:8080")).await;
    assert_eq!(exact_host.requests().len(), 1);
    get(&gw.url("/x"), &host("a.b.example.com")).await;
    assert_eq!(wild_host.requests().len(), 1);
    get(&gw.url("/x"), &host("example.com")).await;
    get(&gw.url("/status/x"), &[]).await;
    assert_eq!(any.requests().len(), 2);
    get(&gw.url("/status"), &[]).await;
    assert_eq!(exact_path.requests().len(), 1);
    request("POST", &gw.url("/items/1"), &[], "x").await;
    assert_eq!(posts.requests().len(), 1);
    get(&gw.url("/items/1"), &[]).await;
    assert_eq!(any.requests().len(), 3);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with(
            "/ro",
            &up.url(),
            "public",
            &["methods = [\"GET\", \"HEAD\"]"],
        )
        .start()
        .await;
    let r = request("DELETE", &gw.url("/ro"), &[], "").await;
    r.assert_error(
        405,
        "Method Not Allowed",
        "The method is not allowed for the requested URL.",
    );
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn paths_route_safely() {
    let api = Upstream::start().await;
    let admin = Upstream::start().await;
    let gw = gateway()
        .route("/api/", &api.url(), "public")
        .route("/admin", &admin.url(), "required")
        .start()
        .await;
    // Each of these would reach /admin's backend through /api's public route if the raw
    // path were matched and the backend normalized it.
    for path in [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api/%2E%2e/admin/x",
        "/api%2fadmin",
        "/api/..%2fadmin",
        "//admin",
        "/api/%252e%252e/admin",
        "/api\\..\\admin",
    ] {
        let r = raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            r.starts_with("HTTP/1.1 400") || r.starts_with("HTTP/1.1 401"),
            "{path}: {r}"
        );
    }
    assert!(
        admin.requests().is_empty(),
        "a request reached the admin backend"
    );
    // Dot segments that stay inside the route are normalized and forwarded normalized.
    let r = raw(
        gw.addr,
        b"GET /api/./v1//users/../items HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(api.last().target, "/api/v1/items");
    get(&gw.url("/apiary"), &[]).await.assert_error(
        404,
        "Not Found",
        "No route matches the requested URL",
    );
}

#[tokio::test]
async fn prefixes_are_stripped_or_rewritten() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/api/", &up.url(), "public", &["strip_prefix = true"])
        .route_with(
            "/v1",
            &up.url(),
            "public",
            &["rewrite_prefix = \"/internal/v2\""],
        )
        .route_with("/base", &format!("{}/mount", up.url()), "public", &[])
        .start()
        .await;
    get(&gw.url("/api/users?x=1"), &[]).await;
    assert_eq!(up.last().target, "/users?x=1");
    get(&gw.url("/api"), &[]).await;
    assert_eq!(up.last().target, "/");
    get(&gw.url("/v1/items"), &[]).await;
    assert_eq!(up.last().target, "/internal/v2/items");
    get(&gw.url("/base/x"), &[]).await;
    assert_eq!(up.last().target, "/mount/base/x");
}

#[tokio::test]
async fn claim_requirements_answer_403() {
    let up = Upstream::start().await;
    let gw = gateway()
        .without_users()
        .route_with(
            "/admin",
            &up.url(),
            "required",
            &["require = { roles = [\"admin\", \"ops\"] }"],
        )
        .route_with(
            "/both",
            &up.url(),
            "required",
            &["require = { roles = { all_of = [\"admin\", \"ops\"] } }"],
        )
        .route_with(
            "/write",
            &up.url(),
            "required",
            &["require = { scope = [\"write\"] }"],
        )
        .start()
        .await;
    let t = now();
    let user = |roles: serde_json::Value, scope: &str| {
        bearer(json!({
            "exp": t + 60, "iat": t, "nbf": t,
            "identity": "u", "roles": roles, "scope": scope,
        }))
    };
    let admin = user(json!(["admin"]), "read");
    let both = user(json!(["ops", "admin"]), "read write");
    let nobody = user(json!(["viewer"]), "read");
    assert_eq!(
        get(&gw.url("/admin"), &[("authorization", &admin)])
            .await
            .status,
        200
    );
    get(&gw.url("/admin"), &[("authorization", &nobody)])
        .await
        .assert_error(
            403,
            "Forbidden",
            "The token does not grant access to this resource",
        );
    get(&gw.url("/both"), &[("authorization", &admin)])
        .await
        .assert_error(
            403,
            "Forbidden",
            "The token does not grant access to this resource",
        );
    assert_eq!(
        get(&gw.url("/both"), &[("authorization", &both)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&gw.url("/write"), &[("authorization", &both)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&gw.url("/write"), &[("authorization", &admin)])
            .await
            .status,
        403
    );
    // No claim at all: forbidden, not an error.
    let bare = bearer(json!({"exp": t + 60, "iat": t, "nbf": t, "identity": "u"}));
    assert_eq!(
        get(&gw.url("/admin"), &[("authorization", &bare)])
            .await
            .status,
        403
    );
    assert_eq!(up.requests().len(), 3);
}

#[tokio::test]
async fn claim_headers_are_encoded_and_never_spoofed() {
    let up = Upstream::start().await;
    let gw = gateway()
        .without_users()
        .route("/p", &up.url(), "public")
        .route_with(
            "/api",
            &up.url(),
            "required",
            &["claim_headers = { \"X-Tenant\" = \"org\" }"],
        )
        .raw(
            "[identity]\narrays = \"comma\"\n\
             claims = { \"X-Identity-Roles\" = \"roles\", \"X-Identity-Level\" = \"level\" }",
        )
        .start()
        .await;
    let t = now();
    let token = bearer(json!({
        "exp": t + 60, "iat": t, "nbf": t,
        "identity": "u", "roles": ["a", "b"], "level": 3, "org": {"id": 7},
    }));
    let spoof = [
        ("x-identity-roles", "admin"),
        ("X_Identity_Level", "99"),
        ("x-tenant", "evil"),
    ];
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(spoof);
    assert_eq!(get(&gw.url("/api"), &headers).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-identity-roles"], "a,b");
    assert_eq!(seen.headers["x-identity-level"], "3");
    assert_eq!(seen.headers["x-tenant"], r#"{"id":7}"#);
    assert_eq!(seen.headers.get_all("x-identity-roles").iter().count(), 1);
    assert!(!seen.headers.contains_key("x_identity_level"));
    // Public route: every configured claim header is stripped, none set.
    assert_eq!(get(&gw.url("/p"), &spoof).await.status, 200);
    let seen = up.last();
    for h in [
        "x-identity-roles",
        "x_identity_level",
        "x-identity-level",
        "x-tenant",
    ] {
        assert!(!seen.headers.contains_key(h), "{h} reached the upstream");
    }
    // A claim that cannot be a header refuses the request.
    let bad =
        bearer(json!({"exp": t + 60, "iat": t, "nbf": t, "identity": "u", "roles": ["a\r\nx: y"]}));
    get(&gw.url("/api"), &[("authorization", &bad)])
        .await
        .assert_error(
            401,
            "Invalid token",
            "A claim cannot be forwarded as a header",
        );
    let huge = bearer(
        json!({"exp": t + 60, "iat": t, "nbf": t, "identity": "u", "org": "x".repeat(9000)}),
    );
    let r = get(&gw.url("/api"), &[("authorization", &huge)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn json_array_encoding() {
    let up = Upstream::start().await;
    let gw = gateway()
        .without_users()
        .route("/api", &up.url(), "required")
        .raw("[identity]\narrays = \"json\"\nclaims = { \"X-Roles\" = \"roles\" }")
        .start()
        .await;
    let t = now();
    let token =
        bearer(json!({"exp": t + 60, "iat": t, "nbf": t, "identity": "u", "roles": ["a", "b"]}));
    assert_eq!(
        get(&gw.url("/api"), &[("authorization", &token)])
            .await
            .status,
        200
    );
    assert_eq!(up.last().headers["x-roles"], r#"["a","b"]"#);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let up = Upstream::start().await;
    let gw = gateway().route("/p", &up.url(), "public").start().await;
    let r = get(&gw.url("/p"), &[("x-request-id", "client-chosen")]).await;
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32, "a generated id by default");
    assert_eq!(up.last().headers["x-request-id"], id.as_str());
    let r = get(&gw.url("/nowhere"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.header("x-request-id").is_some());

    let trusting = gateway()
        .server("request_id = \"trust\"")
        .route("/p", &up.url(), "public")
        .start()
        .await;
    let r = get(&trusting.url("/p"), &[("x-request-id", "client-chosen")]).await;
    assert_eq!(r.header("x-request-id"), Some("client-chosen"));
    assert_eq!(up.last().headers["x-request-id"], "client-chosen");
}
