//! Forward-auth decision endpoints, in process: the Traefik and Envoy contracts with
//! requests shaped as those proxies send them (`support/decider.rs`), the same decisions as
//! proxy mode, trust, cache lifetimes, metrics, the example gateway config, `[forward_auth]`
//! problems. Real nginx and Caddy in front: `tests/process/forward_auth.rs`.

use serde_json::json;

use crate::support::proxies::raw_status;
use crate::support::*;

#[tokio::test]
async fn traefik_forward_auth_contract() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let user = token_with(&["user"], 300);

    let r = traefik(
        &gw,
        "GET",
        "/api/items?page=2",
        "app.example.com",
        Some(&user),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-identity"), Some("1"));
    assert_eq!(r.header("x-roles"), Some("user"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=60"));
    assert!(r.body.is_empty());

    let r = traefik(&gw, "GET", "/api/items", "app.example.com", None).await;
    r.assert_error(
        401,
        "Authorization Required",
        "Request does not contain an access token",
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("JWT realm=\"Login Required\"")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let r = traefik(&gw, "GET", "/admin", "app.example.com", Some(&user)).await;
    assert_eq!(r.status, 403);
    // The original method decides: /reports takes GET only.
    let r = traefik(&gw, "POST", "/reports", "app.example.com", Some(&user)).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    // The original host decides: admin.example.com is required everywhere.
    let r = traefik(&gw, "GET", "/", "admin.example.com:443", None).await;
    assert_eq!(r.status, 401);
    let r = traefik(&gw, "GET", "/", "www.example.com", None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-identity").is_none());
    // A path trick in X-Forwarded-Uri is refused, as proxy mode refuses it.
    let r = traefik(&gw, "GET", "/static/../api/items", "app.example.com", None).await;
    r.assert_error(
        400,
        "Bad Request",
        "The path routes differently once normalized",
    );

    // Without a describing header the request describes nothing.
    let url = format!("http://{}/forward-auth/traefik", decisions(&gw));
    let r = get(
        &url,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "app.example.com"),
        ],
    )
    .await;
    r.assert_error(
        400,
        "Bad Request",
        "Forward-auth request refused: the X-Forwarded-Uri header is missing",
    );
    assert!(up.requests().is_empty(), "a decision reached the upstream");
}

#[tokio::test]
async fn allows_are_cached_no_longer_than_the_token_lives() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let short = token_with(&["user"], 20);
    let r = traefik(&gw, "GET", "/api/x", "app.example.com", Some(&short)).await;
    assert_eq!(r.status, 200);
    let age: u64 = r
        .header("cache-control")
        .and_then(|v| v.strip_prefix("private, max-age="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", r.headers));
    assert!(
        (15..=20).contains(&age),
        "max-age={age} for a token with 20 s left"
    );
    // The nginx contract says the same in nginx's own header.
    let url = format!("http://{}/forward-auth/nginx", decisions(&gw));
    let r = get(
        &url,
        &[
            ("x-original-method", "GET"),
            ("x-original-host", "app.example.com"),
            ("x-original-uri", "/api/x"),
            ("authorization", &jwt_header(&short)),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let accel: u64 = r.header("x-accel-expires").unwrap().parse().unwrap();
    assert!((15..=20).contains(&accel), "X-Accel-Expires: {accel}");
}

#[tokio::test]
async fn envoy_ext_authz_contract() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let user = token_with(&["user"], 300);

    let r = envoy(
        &gw,
        "POST",
        "/api/items?page=2",
        "app.example.com",
        Some(&user),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-identity"), Some("1"));
    assert_eq!(r.header("x-roles"), Some("user"));
    // Everything ours was set: nothing for Envoy to delete.
    assert!(r.header("x-envoy-auth-headers-to-remove").is_none());

    // A public route sets no identity: Envoy is told to delete a client's copy.
    let r = envoy(&gw, "GET", "/", "www.example.com", None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-identity").is_none());
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("x-identity, x-roles")
    );

    let r = envoy(&gw, "GET", "/api/items", "app.example.com", None).await;
    r.assert_error(
        401,
        "Authorization Required",
        "Request does not contain an access token",
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("JWT realm=\"Login Required\"")
    );
    let r = envoy(&gw, "GET", "/", "admin.example.com", None).await;
    assert_eq!(r.status, 401);
    let r = envoy(&gw, "GET", "/admin/x", "app.example.com", Some(&user)).await;
    assert_eq!(r.status, 403);
    let r = envoy(&gw, "DELETE", "/reports", "app.example.com", Some(&user)).await;
    assert_eq!(r.status, 405);

    // The original path comes after the prefix raw: its dot segments are the client's.
    let (status, text) = raw_status(
        decisions(&gw),
        "GET /forward-auth/envoy/static/../api/items HTTP/1.1\r\nHost: app.example.com\r\n\
         content-length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("The path routes differently once normalized"),
        "{text}"
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn forward_auth_decides_exactly_as_proxy_mode() {
    let up = Upstream::start().await;
    let gw = decider(&up, OWN_LISTENER).await;
    let user = token_with(&["user"], 300);
    let admin = token_with(&["admin"], 300);
    let expired =
        mint(json!({"exp": now() - 60, "iat": now() - 400, "nbf": now() - 400, "identity": 1}));
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("GET", "/api/items", "app.example.com", Some(&user)),
        ("GET", "/api/items", "app.example.com", None),
        ("GET", "/api/items", "app.example.com", Some(&expired)),
        ("GET", "/admin", "app.example.com", Some(&user)),
        ("GET", "/admin", "app.example.com", Some(&admin)),
        ("GET", "/", "app.example.com", None),
        ("GET", "/API/items", "app.example.com", None),
        ("GET", "/static/../api", "app.example.com", None),
        ("GET", "/api%2Fitems", "app.example.com", None),
        ("PUT", "/reports", "app.example.com", Some(&user)),
        ("GET", "/reports", "app.example.com", Some(&user)),
        ("GET", "/", "admin.example.com", None),
        ("GET", "/", "admin.example.com", Some(&user)),
        // A case variant of a standard method is refused by both modes (400).
        ("get", "/", "app.example.com", None),
    ];
    for &(method, path, host, token) in cases {
        let auth = token.map(jwt_header);
        let (proxied, _) = raw_status(
            gw.addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{}Connection: close\r\n\r\n",
                auth.as_ref()
                    .map(|a| format!("Authorization: {a}\r\n"))
                    .unwrap_or_default()
            ),
        )
        .await;
        let t = traefik(&gw, method, path, host, token).await;
        let e = envoy(&gw, method, path, host, token).await;
        assert_eq!(
            (t.status.as_u16(), e.status.as_u16()),
            (proxied, proxied),
            "{method} {host}{path} with {}",
            if token.is_some() {
                "a token"
            } else {
                "no token"
            }
        );
    }
}

#[tokio::test]
async fn describing_headers_are_believed_only_from_trusted_proxies() {
    let up = Upstream::start().await;
    let user = token_with(&["admin"], 300);
    // [forward_auth] trusted_proxies replaces [server] trusted_proxies for the endpoints.
    let own = decider(
        &up,
        &format!("{OWN_LISTENER}\ntrusted_proxies = [\"10.0.0.0/8\"]"),
    )
    .await;
    let r = traefik(&own, "GET", "/api/items", "app.example.com", Some(&user)).await;
    r.assert_error(
        400,
        "Bad Request",
        "Forward-auth requests are believed only from the trusted proxies",
    );
    assert!(r.header("x-identity").is_none());
    let r = envoy(&own, "GET", "/", "www.example.com", None).await;
    assert_eq!(r.status, 400);
    // Without a list of its own, the endpoints believe the proxies in front: the test
    // client (loopback) is not one of them here.
    let shared = gateway()
        .route("/api", &up.url(), "required")
        .server("trusted_proxies = [\"10.0.0.0/8\"]")
        .raw(&format!("[forward_auth]\n{OWN_LISTENER}"))
        .start()
        .await;
    let r = traefik(&shared, "GET", "/api/items", "app.example.com", Some(&user)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn endpoints_mounted_on_the_main_listener() {
    let up = Upstream::start().await;
    let gw = decider(&up, "contracts = [\"traefik\"]").await;
    assert_eq!(gw.addrs.len(), 1, "no listener of its own");
    let user = token_with(&["user"], 300);
    let r = get(
        &gw.url("/forward-auth/traefik"),
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/api/items"),
            ("authorization", &jwt_header(&user)),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-identity"), Some("1"));
    // A contract that is off is no endpoint: the path is not a route either.
    let r = get(&gw.url("/forward-auth/nginx"), &[]).await;
    r.assert_error(404, "Not Found", "No forward-auth endpoint at this path");
    // Proxy mode is unchanged beside it.
    let r = get(
        &gw.url("/api/items"),
        &[("authorization", &jwt_header(&user))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(spellings(&up.last().headers, "x-identity"), ["1"]);
}

#[test]
fn the_example_gateway_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forward-auth/gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    // The example reads the secret from the environment; the test points it at a file.
    let text = text.replace(
        "secret_env = \"GATEWAY_SECRET\"",
        "secret_file = \"secret\"",
    );
    let loaded = gateway::load::from_str(&text, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let fa = loaded.config.forward_auth.expect("[forward_auth]");
    assert_eq!(fa.listen.unwrap().to_string(), "127.0.0.1:9191");
    assert_eq!(fa.contracts.len(), 4);
}

fn problems(toml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    match gateway::load::from_str(toml, dir.path()) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn bad_forward_auth_configs_name_their_keys() {
    let base = "[tokens]\nsecret_file = \"secret\"\n[[routes]]\npath = \"/api\"\n\
                upstream = \"http://127.0.0.1:1\"\nauth = \"required\"\n";
    let cases = [
        (
            "[forward_auth]\ncontracts = [\"haproxy\"]",
            "forward_auth.contracts",
            "haproxy",
        ),
        (
            "[forward_auth]\ntrusted_proxies = [\"10.0.0.0/33\"]",
            "forward_auth.trusted_proxies[0]",
            "CIDR",
        ),
        (
            "[forward_auth]\ncontracts = [\"nginx\"]",
            "server.trusted_proxies",
            "no proxy may describe a request",
        ),
        (
            "[server]\ntrusted_proxies = [\"::/0\"]\n[forward_auth]\n",
            "server.trusted_proxies[0]",
            "every address",
        ),
        (
            "[forward_auth]\ntrusted_proxies = [\"0.0.0.0/0\"]",
            "forward_auth.trusted_proxies[0]",
            "every address",
        ),
        (
            "[forward_auth]\ntrusted_proxies = []",
            "forward_auth.trusted_proxies",
            "empty",
        ),
        (
            "[forward_auth]\npath = \"decide\"",
            "forward_auth.path",
            "not a path prefix",
        ),
        (
            "[forward_auth]\nlisten = \"nowhere\"",
            "forward_auth.listen",
            "not an address",
        ),
        (
            "[forward_auth]\nmax_age = \"soon\"",
            "forward_auth.max_age",
            "not a duration",
        ),
        (
            "[forward_auth]\npath = \"/api\"",
            "routes[0].path",
            "under the forward-auth path",
        ),
    ];
    for (table, key, words) in cases {
        let p = problems(&format!("{base}{table}\n"));
        assert!(
            p.iter().any(|p| p.starts_with(key) && p.contains(words)),
            "no problem at {key} mentioning {words:?} in {p:#?}"
        );
    }
    let p = problems(&format!(
        "{base}[forward_auth]\nlisen = \"127.0.0.1:9191\"\n"
    ));
    assert!(p.iter().any(|p| p.contains("lisen")), "{p:#?}");
    // Trusting everyone is fine on a listener only the proxy reaches.
    assert!(problems(&format!(
        "{base}[forward_auth]\nlisten = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"0.0.0.0/0\", \"::/0\"]\n"
    ))
    .is_empty());
}

#[tokio::test]
async fn decisions_are_counted_like_proxied_requests() {
    let up = Upstream::start().await;
    // The admin table rides after [forward_auth] (decider appends that table last).
    let gw = decider(
        &up,
        &format!("{OWN_LISTENER}\n[admin]\nlisten = \"127.0.0.1:0\""),
    )
    .await;
    let user = token_with(&["user"], 300);
    let r = traefik(&gw, "GET", "/api/items", "app.example.com", Some(&user)).await;
    assert_eq!(r.status, 200);
    let r = traefik(&gw, "GET", "/api/items", "app.example.com", None).await;
    assert_eq!(r.status, 401);
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.text();
    let sample = |name: &str, labels: &[&str]| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect()
    };
    let api = "route=\"routes[1]\"";
    assert_eq!(
        sample("gateway_requests_total", &[api, "status=\"200\""]),
        ["1"],
        "{metrics}"
    );
    assert_eq!(
        sample("gateway_requests_total", &[api, "status=\"401\""]),
        ["1"]
    );
    assert_eq!(
        sample("gateway_token_rejections_total", &["reason=\"missing\""]),
        ["1"]
    );
}

/// With browser mode on, an allow for a request with cookies carries them without the
/// gateway's (split `Cookie` headers joined), marked, and is never cached; without
/// cookies, or without browser mode, the answer names no cookie and stays cacheable.
#[tokio::test]
async fn allows_carry_the_cookies_without_ours_when_browser_mode_is_on() {
    let up = Upstream::start().await;
    let browser = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .route("/api", &up.url(), "required")
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw(&format!("[forward_auth]\n{OWN_LISTENER}"))
        .start()
        .await;
    let plain = decider(&up, OWN_LISTENER).await;
    let token = token_with(&["user"], 300);
    let session = format!("gateway-session={token}");
    let ask = async |gw: &Gateway, path: &str, extra: &[(&str, &str)]| {
        let url = format!("http://{}/forward-auth/nginx", decisions(gw));
        let mut headers = vec![
            ("x-original-method", "GET"),
            ("x-original-host", "app.example.com"),
            ("x-original-uri", path),
        ];
        headers.extend_from_slice(extra);
        get(&url, &headers).await
    };
    let auth = jwt_header(&token);
    // A browser route, by the session cookie; two Cookie headers, ours in both.
    let r = ask(
        &browser,
        "/app/inbox",
        &[
            ("cookie", &format!("theirs=1; {session}")),
            ("cookie", "gateway-csrf=a.b; other=2"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-identity"), Some("1"));
    assert_eq!(r.header("x-gateway-cookie"), Some("theirs=1; other=2"));
    assert_eq!(r.header("x-gateway-cookie-set"), Some("1"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-accel-expires"), Some("0"));
    // Only ours: the cleaned Cookie is empty, still marked.
    let r = ask(&browser, "/app/inbox", &[("cookie", &session)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-cookie"), Some(""));
    assert_eq!(r.header("x-gateway-cookie-set"), Some("1"));
    // A header-token route with cookies: the same, and not cacheable.
    let r = ask(
        &browser,
        "/api/x",
        &[
            ("authorization", &auth),
            ("cookie", &format!("{session}; a=b")),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-cookie"), Some("a=b"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // No cookie: nothing to say, and cacheable as before.
    let r = ask(&browser, "/api/x", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-cookie"), None);
    assert_eq!(r.header("x-gateway-cookie-set"), None);
    assert!(
        r.header("cache-control")
            .is_some_and(|v| v.starts_with("private, max-age=")),
        "{:?}",
        r.headers
    );
    // Browser mode off: the gateway has no cookies, the client's go on untouched.
    let r = ask(
        &plain,
        "/api/x",
        &[
            ("authorization", &auth),
            ("cookie", &format!("{session}; a=b")),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-cookie"), None);
    assert_eq!(r.header("x-gateway-cookie-set"), None);
    // A refusal names no cookie.
    let r = ask(&browser, "/app/inbox", &[("cookie", "theirs=1")]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("x-gateway-cookie"), None);
}
