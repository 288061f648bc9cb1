//! Forward-auth behind real proxies: nginx (`auth_request`,
//! <https://nginx.org/en/docs/http/ngx_http_auth_request_module.html>) and Caddy
//! (`forward_auth`, <https://caddyserver.com/docs/caddyfile/directives/forward_auth>), each
//! started from its shipped example in `deploy/forward-auth/` in front of a recording
//! upstream, with the gateway as its auth service; and every example validated by its own
//! tool (`nginx -t`, `caddy validate`) or parsed (Traefik, Envoy).

use serde_json::json;

use crate::support::proxies::{self, raw_status, Proxy};
use crate::support::*;

/// What every proxy in front must give: the gateway's identity upstream and nothing a
/// client sent under its names; the gateway's refusals at the client; no allow for a
/// path trick.
async fn proxy_contract(p: &Proxy, up: &Upstream, name: &str) {
    let user = token_with(&["user"], 300);

    // Allowed: the upstream gets the gateway's headers, never the client's.
    let r = get(
        &p.url("/api/items?page=2"),
        &[
            ("authorization", &jwt_header(&user)),
            ("x-identity", "admin"),
            ("x_identity", "admin"),
            ("X-Roles", "admin"),
            ("x_roles", "admin"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}\n{}", r.text(), p.log());
    let seen = up.last();
    assert_eq!(seen.target, "/api/items?page=2", "{name}");
    assert_eq!(spellings(&seen.headers, "x-identity"), ["1"], "{name}");
    assert_eq!(spellings(&seen.headers, "x-roles"), ["user"], "{name}");

    // No token: the gateway's 401, body and challenge, at the client; nothing forwarded.
    let before = up.requests().len();
    let r = get(&p.url("/api/items"), &[]).await;
    r.assert_error(
        401,
        "Authorization Required",
        "Request does not contain an access token",
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("JWT realm=\"Login Required\""),
        "{name}"
    );

    // A claim rule unmet: 403 with the gateway's body.
    let r = get(
        &p.url("/admin/users"),
        &[("authorization", &jwt_header(&user))],
    )
    .await;
    r.assert_error(
        403,
        "Forbidden",
        "The token does not grant access to this resource",
    );

    // Expired and forged tokens: 401 with the precise compat message.
    let expired =
        mint(json!({"exp": now() - 60, "iat": now() - 400, "nbf": now() - 400, "identity": 1}));
    let r = get(
        &p.url("/api/items"),
        &[("authorization", &jwt_header(&expired))],
    )
    .await;
    r.assert_error(401, "Invalid token", "Signature has expired");
    let r = get(
        &p.url("/api/items"),
        &[("authorization", &jwt_header(&forged()))],
    )
    .await;
    r.assert_error(401, "Invalid token", "Signature verification failed");
    assert_eq!(
        up.requests().len(),
        before,
        "{name}: a refusal was forwarded"
    );

    // Path tricks through the proxy: never an allow, never forwarded.
    for target in [
        "/static/../api/items",
        "/static/%2e%2e/api/items",
        "/static/..;/api/items",
        "//api/items",
        "/static/..%2fapi/items",
        "/static%2f..%2fapi/items",
    ] {
        let (status, text) = raw_status(
            p.addr(),
            &format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(
            status == 400 || status == 403,
            "{name}: {target} got {status}:\n{text}"
        );
    }
    // Lenient backend spellings of a required path take the required route.
    for target in ["/API/items", "/api;x=1/items"] {
        let (status, text) = raw_status(
            p.addr(),
            &format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 401, "{name}: {target}:\n{text}");
    }
    assert_eq!(
        up.requests().len(),
        before,
        "{name}: a path trick was forwarded"
    );

    // Without browser mode the gateway has no cookies: the client's reach the app as they
    // came, whatever a client says in the headers the gateway answers them in.
    let r = get(
        &p.url("/api/items"),
        &[
            ("authorization", &jwt_header(&user)),
            ("cookie", "theirs=1; gateway-session=x"),
            ("x-gateway-cookie", "forged=1"),
            ("x-gateway-cookie-set", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.headers.get("cookie").map(|v| v.as_bytes()),
        Some(&b"theirs=1; gateway-session=x"[..]),
        "{name}: {:?}",
        seen.headers
    );

    // A public route: allowed without a token, and a client's X-Identity still stripped.
    let r = get(
        &p.url("/"),
        &[("x-identity", "admin"), ("x_identity", "admin")],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    let seen = up.last();
    assert!(
        spellings(&seen.headers, "x-identity").is_empty(),
        "{name}: {:?}",
        seen.headers
    );
}

#[tokio::test]
async fn nginx_auth_request_in_front() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let nginx = proxies::nginx(decisions(&gw), up.addr).await;
    proxy_contract(&nginx, &up, "nginx").await;

    // nginx makes any refusal but 401/403 a 500 of its own: a method the route does not
    // take is a 403 there, with the gateway's body saying why.
    let user = token_with(&["user"], 300);
    let r = request(
        "DELETE",
        &nginx.url("/reports/7"),
        &[("authorization", &jwt_header(&user))],
        "",
    )
    .await;
    r.assert_error(403, "Forbidden", "Method not allowed on this route");
}

#[tokio::test]
async fn nginx_caches_allows_by_token_and_never_refusals() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let nginx = proxies::nginx(decisions(&gw), up.addr).await;
    let user = token_with(&["user"], 300);
    let cache = |r: &Resp| r.header("x-gateway-decision-cache").map(str::to_string);
    let first = get(
        &nginx.url("/api/cached"),
        &[("authorization", &jwt_header(&user))],
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(cache(&first).as_deref(), Some("MISS"));
    let second = get(
        &nginx.url("/api/cached"),
        &[("authorization", &jwt_header(&user))],
    )
    .await;
    assert_eq!(second.status, 200);
    assert_eq!(cache(&second).as_deref(), Some("HIT"), "{}", nginx.log());
    // The cached allow still sets the identity upstream.
    assert_eq!(spellings(&up.last().headers, "x-identity"), ["1"]);
    for _ in 0..2 {
        let r = get(&nginx.url("/api/cached"), &[]).await;
        assert_eq!(r.status, 401);
        assert_ne!(cache(&r).as_deref(), Some("HIT"));
    }
}

#[tokio::test]
async fn caddy_forward_auth_in_front() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let caddy = proxies::caddy(decisions(&gw), up.addr).await;
    proxy_contract(&caddy, &up, "caddy").await;

    // Caddy returns any non-2xx as the gateway sent it: a 405 stays a 405 with Allow.
    let user = token_with(&["user"], 300);
    let r = request(
        "DELETE",
        &caddy.url("/reports/7"),
        &[("authorization", &jwt_header(&user))],
        "",
    )
    .await;
    r.assert_error(
        405,
        "Method Not Allowed",
        "The method is not allowed for the requested URL.",
    );
    assert_eq!(r.header("allow"), Some("GET"));
}

#[test]
fn the_example_proxy_configs_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forward-auth");
    let caddy = std::process::Command::new("caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("caddy is needed (tests/prepare.sh installs it)");
    assert!(
        caddy.status.success(),
        "{}",
        String::from_utf8_lossy(&caddy.stderr)
    );
    let nginx = proxies::nginx_check(&dir.join("nginx.conf"));
    assert!(
        nginx.status.success(),
        "{}",
        String::from_utf8_lossy(&nginx.stderr)
    );
    // No Traefik or Envoy here: their files must at least parse, with the shapes the
    // gateway's contract relies on.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/check_forward_auth.py");
    let py = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.join("traefik.yaml"))
        .arg(dir.join("envoy.yaml"))
        .output()
        .expect("python3 is needed");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
}

/// With browser mode on, the application behind a proxy gets the client's cookies without
/// the gateway's (the session token above all), on browser routes and others, whatever
/// the client sends in the headers the gateway answers them in.
async fn our_cookies_stop_at_the_proxy(p: &Proxy, up: &Upstream, name: &str) {
    let session = format!("gateway-session={}", token_with(&["user"], 300));
    let cookie = |r: &Seen| {
        r.headers
            .get_all("cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
    };
    let r = get(
        &p.url("/app/inbox"),
        &[
            ("cookie", &format!("theirs=1; {session}; gateway-csrf=a.b")),
            ("x-gateway-cookie", &session),
            ("x-gateway-cookie-set", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}\n{}", r.text(), p.log());
    let seen = up.last();
    assert_eq!(spellings(&seen.headers, "x-identity"), ["1"], "{name}");
    assert_eq!(cookie(&seen), ["theirs=1"], "{name}: {:?}", seen.headers);
    for h in ["x-gateway-cookie", "x-gateway-cookie-set"] {
        assert!(
            seen.headers.get(h).is_none(),
            "{name}: {h}: {:?}",
            seen.headers
        );
    }
    // Nothing but ours: no Cookie at all.
    let r = get(&p.url("/app/inbox"), &[("cookie", &session)]).await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    let seen = up.last();
    assert!(cookie(&seen).is_empty(), "{name}: {:?}", seen.headers);
    // A header-token route: our cookies stop there too, the app's pass.
    let user = token_with(&["user"], 300);
    let r = get(
        &p.url("/api/items"),
        &[
            ("authorization", &jwt_header(&user)),
            ("cookie", &format!("{session}; theirs=2")),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    assert_eq!(cookie(&up.last()), ["theirs=2"], "{name}");
    // No cookie sent: none forwarded.
    let r = get(
        &p.url("/api/items"),
        &[("authorization", &jwt_header(&user))],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    assert!(cookie(&up.last()).is_empty(), "{name}");
}

/// A browser route behind nginx: an allow won by one browser's session cookie must never
/// be served from nginx's decision cache (keyed on `Authorization` and the URL, not the
/// cookie) to a request without credentials.
#[tokio::test]
async fn nginx_never_caches_an_allow_won_by_a_session_cookie() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .route("/api", &up.url(), "required")
        .raw("[identity]\nclaims = { \"X-Roles\" = \"roles\" }")
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw(&format!("[forward_auth]\n{OWN_LISTENER}"))
        .start()
        .await;
    let nginx = proxies::nginx(decisions(&gw), up.addr).await;
    let cache = |r: &Resp| r.header("x-gateway-decision-cache").map(str::to_string);
    our_cookies_stop_at_the_proxy(&nginx, &up, "nginx").await;
    let session = format!("gateway-session={}", token_with(&["user"], 300));
    for _ in 0..2 {
        let r = get(
            &nginx.url("/app/inbox"),
            &[("cookie", &session), ("x-gateway-csrf", "a.b")],
        )
        .await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), nginx.log());
        assert_ne!(cache(&r).as_deref(), Some("HIT"), "{}", nginx.log());
        assert_eq!(spellings(&up.last().headers, "x-identity"), ["1"]);
        // The gateway's CSRF header stops at nginx.
        assert!(up.last().headers.get("x-gateway-csrf").is_none());
    }
    let before = up.requests().len();
    for _ in 0..2 {
        let r = get(&nginx.url("/app/inbox"), &[]).await;
        r.assert_error(
            401,
            "Authorization Required",
            "Request does not contain an access token",
        );
        assert_ne!(cache(&r).as_deref(), Some("HIT"));
    }
    assert_eq!(
        up.requests().len(),
        before,
        "an anonymous request reached the upstream on another browser's session"
    );
    // A header-borne token on a plain route is still cached (per token).
    let user = token_with(&["user"], 300);
    for expected in ["MISS", "HIT"] {
        let r = get(
            &nginx.url("/api/cached"),
            &[("authorization", &jwt_header(&user))],
        )
        .await;
        assert_eq!(cache(&r).as_deref(), Some(expected), "{}", nginx.log());
    }
    // With cookies, the same token and URL are neither answered from that entry (its
    // answer has no cleaned Cookie) nor stored (theirs does).
    for _ in 0..2 {
        let r = get(
            &nginx.url("/api/cached"),
            &[
                ("authorization", &jwt_header(&user)),
                ("cookie", &format!("{session}; theirs=3")),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_ne!(cache(&r).as_deref(), Some("HIT"), "{}", nginx.log());
        assert_eq!(
            up.last().headers.get("cookie").map(|v| v.as_bytes()),
            Some(&b"theirs=3"[..])
        );
    }
}

/// Caddy in front of a browser route: the session cookie's allow sets the identity, and
/// the gateway's CSRF header (read by the gateway) stops at Caddy.
#[tokio::test]
async fn caddy_in_front_of_a_browser_route() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .route("/api", &up.url(), "required")
        .raw("[identity]\nclaims = { \"X-Roles\" = \"roles\" }")
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw(&format!("[forward_auth]\n{OWN_LISTENER}"))
        .start()
        .await;
    let caddy = proxies::caddy(decisions(&gw), up.addr).await;
    our_cookies_stop_at_the_proxy(&caddy, &up, "caddy").await;
    let session = format!("gateway-session={}", token_with(&["user"], 300));
    let r = get(
        &caddy.url("/app/inbox"),
        &[("cookie", &session), ("x-gateway-csrf", "a.b")],
    )
    .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), caddy.log());
    let seen = up.last();
    assert_eq!(spellings(&seen.headers, "x-identity"), ["1"]);
    assert!(
        seen.headers.get("x-gateway-csrf").is_none(),
        "{:?}",
        seen.headers
    );
    let r = get(&caddy.url("/app/inbox"), &[]).await;
    assert_eq!(r.status, 401);
}
