//! Browser mode on real sockets: the form login, the session cookie as a token, what
//! the upstream sees (and never sees), sign-in redirects, CSRF on cookie-authenticated
//! unsafe requests, cookie attributes, renewal through the refresh path, logout, and
//! `/auth` unchanged for API clients. (A real browser drives it in `tests/process`.)

use serde_json::json;

use crate::support::*;

const ACCESS: &str = "gateway-session";
const REFRESH: &str = "gateway-refresh";
const CSRF: &str = "gateway-csrf";
const LOGIN: &str = "gateway-login";

/// A gateway with `/app` (a browser route to `up`), `/api` (the same upstream, for API
/// clients) and refresh tokens and revocation on.
async fn browser_gateway(up: &Upstream) -> Gateway {
    browser_gateway_with(up, "").await
}

async fn browser_gateway_with(up: &Upstream, refresh: &str) -> Gateway {
    gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .route("/api", &up.url(), "required")
        .table(&format!("[refresh]\n{refresh}\n[revocation]\n"))
        .start()
        .await
}

fn same_site(gw: &Gateway) -> Vec<(String, String)> {
    vec![
        ("origin".into(), format!("http://{}", gw.addr)),
        ("sec-fetch-site".into(), "same-origin".into()),
    ]
}

async fn send(
    method: &str,
    url: &str,
    jar: &Jar,
    extra: &[(String, String)],
    more: &[(&str, &str)],
    body: &str,
) -> Resp {
    // Only the cookies a browser sends to that path (the refresh cookie only below the
    // refresh path).
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let cookie = jar.header_for(path);
    let mut headers: Vec<(&str, &str)> = vec![("cookie", cookie.as_str())];
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    headers.extend_from_slice(more);
    request(method, url, &headers, body.to_string()).await
}

#[tokio::test]
async fn a_form_login_opens_a_cookie_session_the_upstream_never_sees() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let mut jar = Jar::default();
    let r = form_login(&gw, &mut jar, "user1", PASSWORD, "/app/inbox?page=2").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/inbox?page=2"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The login form's nonce cookie is spent.
    assert!(jar.get(LOGIN).is_none());
    for name in [ACCESS, REFRESH, CSRF] {
        assert!(jar.get(name).is_some(), "{name} in {:?}", jar.cookies);
    }

    let mut with_other = jar.clone();
    with_other
        .cookies
        .insert("theme".into(), ("dark".into(), String::new()));
    // Every cookie, the refresh cookie too (a browser would not send it here): none of
    // ours may pass.
    let r = get(
        &gw.url("/app/inbox"),
        &[
            ("cookie", &with_other.header()),
            ("accept", "text/html"),
            ("x-gateway-csrf", "anything"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers.get("x-identity").unwrap(), "1");
    let cookies: Vec<&str> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        ["theme=dark"],
        "only the app's own cookies go upstream"
    );
    assert!(seen.headers.get("x-gateway-csrf").is_none());
    let everything = format!("{:?}", seen.headers);
    for name in [ACCESS, REFRESH, CSRF] {
        assert!(
            !everything.contains(jar.get(name).unwrap()),
            "{name} leaked upstream"
        );
    }
}

#[tokio::test]
async fn navigations_without_a_session_go_to_the_login_page_and_api_clients_get_401() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let r = get(
        &gw.url("/app/reports?year=2026"),
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/auth/login?return_to=%2Fapp%2Freports%3Fyear%3D2026")
    );
    // A script's fetch, and an API client, keep the JSON 401.
    for headers in [
        vec![("accept", "text/html"), ("sec-fetch-mode", "cors")],
        vec![("accept", "application/json")],
        vec![],
    ] {
        let r = get(&gw.url("/app/reports"), &headers).await;
        r.assert_error(
            401,
            "Authorization Required",
            "Request does not contain an access token",
        );
    }
    // A bad session cookie on a navigation: sign in again.
    let r = get(
        &gw.url("/app"),
        &[("accept", "text/html"), ("cookie", "gateway-session=a.b.c")],
    )
    .await;
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with("/auth/login?"));
    assert!(up.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn the_header_wins_over_the_cookie() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let alice = gw.login("user2", PASSWORD).await;
    let r = send(
        "GET",
        &gw.url("/app"),
        &jar,
        &[],
        &[("authorization", &jwt_header(&alice))],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers.get("x-identity").unwrap(), "alice");
    // A bad header is refused as such, never replaced by the cookie.
    let r = send(
        "GET",
        &gw.url("/app"),
        &jar,
        &[],
        &[("authorization", "JWT x")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    // The cookie is ours only on browser routes.
    let r = send("GET", &gw.url("/api"), &jar, &[], &[], "").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn cookie_authenticated_unsafe_requests_need_the_csrf_token() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let token = jar.get(CSRF).unwrap().to_string();
    let url = gw.url("/app/items");
    let json_type = ("content-type", "application/json");
    let forbidden = "The request did not come from this site's pages (CSRF check failed)";

    // No token: 403, nothing forwarded.
    let r = send("POST", &url, &jar, &same_site(&gw), &[json_type], "{}").await;
    r.assert_error(403, "Forbidden", forbidden);
    // A wrong token, and another session's token.
    let other = browser_session(&gw).await;
    for wrong in ["x", other.get(CSRF).unwrap()] {
        let r = send(
            "DELETE",
            &url,
            &jar,
            &same_site(&gw),
            &[("x-gateway-csrf", wrong)],
            "",
        )
        .await;
        assert_eq!(r.status, 403, "{wrong}");
    }
    // A form posted from another site, even carrying the right token (a leaked one).
    for cross in [
        vec![("origin".to_string(), "http://evil.example".to_string())],
        vec![("sec-fetch-site".to_string(), "cross-site".to_string())],
        vec![("origin".to_string(), "null".to_string())],
    ] {
        let body = form(&[("gateway_csrf", &token), ("title", "x")]);
        let r = send(
            "POST",
            &url,
            &jar,
            &cross,
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await;
        r.assert_error(403, "Forbidden", forbidden);
    }
    // A form without the field.
    let r = send(
        "POST",
        &url,
        &jar,
        &same_site(&gw),
        &[("content-type", "application/x-www-form-urlencoded")],
        "title=x",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        up.requests().is_empty(),
        "a refused request reached the upstream"
    );

    // The header passes; so does the form field, and the body arrives whole.
    let r = send(
        "POST",
        &url,
        &jar,
        &same_site(&gw),
        &[json_type, ("x-gateway-csrf", &token)],
        "{\"a\":1}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(up.last().headers.get("x-gateway-csrf").is_none());
    let body = form(&[("title", "x y"), ("gateway_csrf", &token)]);
    let r = send(
        "POST",
        &url,
        &jar,
        &same_site(&gw),
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body_len, body.len());
    assert_eq!(up.last().headers.get("x-identity").unwrap(), "1");

    // A header-authenticated POST needs no CSRF token, whatever its origin.
    let access = gw.login("user1", PASSWORD).await;
    let r = request(
        "POST",
        &url,
        &[
            ("authorization", &jwt_header(&access)),
            ("origin", "http://evil.example"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 3);

    // `Origin: null` from our own page (Sec-Fetch-Site says so) with the token passes.
    let r = send(
        "POST",
        &url,
        &jar,
        &[
            ("origin".to_string(), "null".to_string()),
            ("sec-fetch-site".to_string(), "same-origin".to_string()),
        ],
        &[("x-gateway-csrf", &token)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests().len(), 4);
}

#[tokio::test]
async fn cookies_carry_their_attributes_and_secure_names_on_secure_origins() {
    let up = Upstream::start().await;
    let plain = browser_gateway(&up).await;
    let jar = browser_session(&plain).await;
    let access = jar.attributes(ACCESS);
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=300"] {
        assert!(access.contains(attr), "{attr}: {access}");
    }
    assert!(!access.contains("Secure"), "plain HTTP: {access}");
    let refresh = jar.attributes(REFRESH);
    assert!(refresh.contains("Path=/auth/refresh") && refresh.contains("HttpOnly"));
    let csrf = jar.attributes(CSRF);
    assert!(
        !csrf.contains("HttpOnly") && csrf.contains("Path=/"),
        "{csrf}"
    );

    // TLS ended in front: __Host- and Secure everywhere (the refresh cookie, whose
    // path is not /, gets __Secure-).
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .table("[refresh]\n[browser]\nsecure_cookies = \"always\"\n")
        .start()
        .await;
    let page = get(&gw.url("/auth/login"), &[("accept", "text/html")]).await;
    let set: Vec<&str> = page
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with("__Host-gateway-login="), "{}", set[0]);
    let mut jar = Jar::default();
    jar.take(&page);
    let body = form(&[
        ("gateway_csrf", &hidden(&page.text(), "gateway_csrf")),
        ("username", "user1"),
        ("password", PASSWORD),
    ]);
    let r = request(
        "POST",
        &gw.url("/auth"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &jar.header()),
            ("origin", &format!("https://{}", gw.addr)),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    jar.take(&r);
    for name in [
        "__Host-gateway-session",
        "__Host-gateway-csrf",
        "__Secure-gateway-refresh",
    ] {
        let line = jar.attributes(name);
        assert!(
            line.contains("Secure") && line.contains("SameSite=Lax"),
            "{line}"
        );
        assert!(!line.contains("Domain"), "{line}");
    }
    assert!(
        jar.attributes("__Host-gateway-session").contains("Path=/;")
            || jar.attributes("__Host-gateway-session").ends_with("Path=/")
    );
    // The plain names are not read on a secure origin.
    let r = get(
        &gw.url("/app"),
        &[(
            "cookie",
            &format!(
                "gateway-session={}",
                jar.get("__Host-gateway-session").unwrap()
            ),
        )],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = get(&gw.url("/app"), &[("cookie", &jar.header())]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn login_errors_say_nothing_about_which_users_exist() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let mut answers = Vec::new();
    for (user, password) in [("user1", "wrong"), ("nobody", "wrong"), ("", "")] {
        let mut jar = Jar::default();
        // The same form nonce for each, so the pages can be compared byte for byte.
        jar.cookies.insert(
            LOGIN.into(),
            ("AAAAAAAAAAAAAAAAAAAAAA".into(), String::new()),
        );
        let r = form_login(&gw, &mut jar, user, password, "/app").await;
        assert_eq!(r.status, 401, "{user}");
        assert!(r.text().contains("Invalid username or password."));
        assert!(jar.get(ACCESS).is_none());
        answers.push(r.body.clone());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

#[tokio::test]
async fn the_login_form_itself_is_csrf_protected() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let page = get(&gw.url("/auth/login"), &[("accept", "text/html")]).await;
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(
        !page.text().contains("<script"),
        "the page needs no JavaScript"
    );
    let mut jar = Jar::default();
    jar.take(&page);
    let token = hidden(&page.text(), "gateway_csrf");
    let post = |cookie: String, token: String, origin: &'static str| {
        let url = gw.url("/auth");
        async move {
            let body = form(&[
                ("gateway_csrf", &token),
                ("username", "user1"),
                ("password", PASSWORD),
            ]);
            request(
                "POST",
                &url,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", &cookie),
                    ("origin", origin),
                ],
                body,
            )
            .await
        }
    };
    let origin: &'static str = Box::leak(format!("http://{}", gw.addr).into_boxed_str());
    // Without the nonce cookie, with a forged token, from another site: no session.
    let r = post(String::new(), token.clone(), origin).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("The sign-in form expired"));
    let r = post(jar.header(), "forged.token".into(), origin).await;
    assert_eq!(r.status, 403);
    let r = post(jar.header(), token.clone(), "http://evil.example").await;
    r.assert_error(
        403,
        "Forbidden",
        "The request did not come from this site's pages (CSRF check failed)",
    );
    let r = post(jar.header(), token, origin).await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn return_urls_outside_the_site_are_refused() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    for evil in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/a\r\nSet-Cookie: x=1",
    ] {
        let mut jar = Jar::default();
        let r = form_login(&gw, &mut jar, "user1", PASSWORD, evil).await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/"), "{evil:?}");
        let page = get(
            &format!("{}?{}", gw.url("/auth/login"), form(&[("return_to", evil)])),
            &[("accept", "text/html")],
        )
        .await;
        assert_eq!(hidden(&page.text(), "return_to"), "/", "{evil:?}");
    }
}

#[tokio::test]
async fn an_expiring_session_renews_through_the_refresh_path() {
    let up = Upstream::start().await;
    // No grace window: a used refresh token presented again is a reuse at once.
    let gw = browser_gateway_with(&up, "grace = \"0s\"").await;
    let jar = browser_session(&gw).await;
    // The browser dropped the access cookie (its Max-Age passed): a navigation goes
    // through the renewal, since the session's CSRF cookie is still there.
    let expired = jar.without(ACCESS);
    let r = send(
        "GET",
        &gw.url("/app/x?y=1"),
        &expired,
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(r.status, 302);
    let to = r.header("location").unwrap().to_string();
    assert_eq!(to, "/auth/refresh?return_to=%2Fapp%2Fx%3Fy%3D1");
    let r = send(
        "GET",
        &gw.url(&to),
        &expired,
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/x?y=1"));
    let mut renewed = expired.clone();
    renewed.take(&r);
    assert_ne!(renewed.get(REFRESH), jar.get(REFRESH));
    // The CSRF token stays the session's across the renewal.
    assert_eq!(renewed.get(CSRF), jar.get(CSRF));
    let r = send(
        "GET",
        &gw.url("/app/x"),
        &renewed,
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        "POST",
        &gw.url("/app/x"),
        &renewed,
        &same_site(&gw),
        &[("x-gateway-csrf", renewed.get(CSRF).unwrap())],
        "",
    )
    .await;
    assert_eq!(r.status, 200);

    // The used refresh token again: the family is revoked, the renewal leads to the
    // login page and clears the cookies.
    let r = send(
        "GET",
        &gw.url(&to),
        &expired,
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(r.status, 302);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/auth/login?return_to="));
    let r = send("GET", &gw.url(&to), &renewed.without(ACCESS), &[], &[], "").await;
    assert!(r.header("location").unwrap().starts_with("/auth/login?"));
    let mut cleared = renewed.clone();
    cleared.take(&r);
    assert!(cleared.get(CSRF).is_none() && cleared.get(REFRESH).is_none());
}

#[tokio::test]
async fn logout_ends_the_session_everywhere() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let page = send(
        "GET",
        &gw.url("/auth/login"),
        &jar,
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    let html = page.text();
    assert!(html.contains("signed in as <strong>1</strong>"), "{html}");
    let token = hidden(&html, "gateway_csrf");
    assert_eq!(Some(token.as_str()), jar.get(CSRF));
    // Without the token, or from another site: refused, still signed in.
    let r = send(
        "POST",
        &gw.url("/auth/refresh/logout"),
        &jar,
        &same_site(&gw),
        &[("content-type", "application/x-www-form-urlencoded")],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = send(
        "POST",
        &gw.url("/auth/refresh/logout"),
        &jar,
        &[("origin".into(), "http://evil.example".into())],
        &[("content-type", "application/x-www-form-urlencoded")],
        &form(&[("gateway_csrf", &token)]),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = send("GET", &gw.url("/app"), &jar, &[], &[], "").await;
    assert_eq!(r.status, 200);

    let r = send(
        "POST",
        &gw.url("/auth/refresh/logout"),
        &jar,
        &same_site(&gw),
        &[("content-type", "application/x-www-form-urlencoded")],
        &form(&[("gateway_csrf", &token)]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/auth/login"));
    let mut after = jar.clone();
    after.take(&r);
    assert!(after.cookies.is_empty(), "{:?}", after.cookies);
    // The old cookies, replayed (say, by another tab or a thief), are dead: the access
    // token is revoked and so is the refresh family.
    let r = send(
        "GET",
        &gw.url("/app"),
        &jar,
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(r.status, 302);
    let r = send("GET", &gw.url("/app"), &jar, &[], &[], "").await;
    r.assert_error(401, "Invalid token", "Token has been revoked");
    let r = send(
        "GET",
        &gw.url("/auth/refresh?return_to=%2Fapp"),
        &jar,
        &[],
        &[],
        "",
    )
    .await;
    assert!(r.header("location").unwrap().starts_with("/auth/login?"));
}

#[tokio::test]
async fn tokens_never_appear_in_locations() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let mut jar = Jar::default();
    let r = form_login(&gw, &mut jar, "user1", PASSWORD, "/app").await;
    let mut locations = vec![r.header("location").unwrap().to_string()];
    let r = send(
        "GET",
        &gw.url("/app"),
        &jar.without(ACCESS),
        &[],
        &[("accept", "text/html")],
        "",
    )
    .await;
    locations.push(r.header("location").unwrap().to_string());
    let r = send(
        "GET",
        &gw.url("/auth/refresh"),
        &jar.without(ACCESS),
        &[],
        &[],
        "",
    )
    .await;
    locations.push(r.header("location").unwrap().to_string());
    for l in &locations {
        for (name, (value, _)) in &jar.cookies {
            assert!(!l.contains(value.as_str()), "{name} in {l}");
        }
        assert!(!l.contains("eyJ"), "{l}");
    }
}

#[tokio::test]
async fn auth_stays_the_api_contract_with_browser_mode_on() {
    let up = Upstream::start().await;
    let on = browser_gateway(&up).await;
    let off = gateway()
        .route("/api", &up.url(), "required")
        .table("[refresh]\n[revocation]\n")
        .start()
        .await;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            "POST",
            vec![("content-type", "application/json")],
            json!({"username": "user1", "password": "nope"}).to_string(),
        ),
        ("POST", vec![("content-type", "text/plain")], "x".into()),
        (
            "POST",
            vec![("content-type", "application/json")],
            "[1]".into(),
        ),
        ("GET", vec![], String::new()),
        ("OPTIONS", vec![], String::new()),
        // An API client's form post: the API's answer, not the sign-in page.
        (
            "POST",
            vec![("content-type", "application/x-www-form-urlencoded")],
            "username=user1&password=nope".into(),
        ),
    ];
    for (method, headers, body) in cases {
        let a = request(method, &on.url("/auth"), &headers, body.clone()).await;
        let b = request(method, &off.url("/auth"), &headers, body).await;
        assert_eq!(a.status, b.status, "{method} {headers:?}");
        assert_eq!(a.body, b.body, "{method} {headers:?}");
        assert_eq!(a.header("content-type"), b.header("content-type"));
        assert_eq!(a.header("allow"), b.header("allow"));
        assert_eq!(a.header("www-authenticate"), b.header("www-authenticate"));
    }
    // The refresh path's GET, for an API client: the API's 405, no cookies.
    for method in ["GET", "HEAD"] {
        let a = request(method, &on.url("/auth/refresh"), &[], "").await;
        let b = request(method, &off.url("/auth/refresh"), &[], "").await;
        assert_eq!(a.status, 405, "{method}");
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{method}");
        assert_eq!(a.header("allow"), b.header("allow"));
        assert!(a.headers.get("set-cookie").is_none(), "{method}");
    }
    let good = json!({"username": "user1", "password": PASSWORD}).to_string();
    let a = post_json(&on.url("/auth"), &good).await;
    assert_eq!(a.status, 200);
    let keys: Vec<String> = a.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["access_token", "refresh_token"]);
    assert!(
        a.headers.get("set-cookie").is_none(),
        "an API login sets no cookie"
    );
}

/// One request over HTTPS with curl (trusting `ca`); returns the status line's code and
/// the response head.
async fn curl_https(port: u16, ca: &std::path::Path, args: &[&str], path: &str) -> (u16, String) {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}{path}");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(ca)
        .args(["--resolve", &resolve])
        .args(args)
        .arg(&url)
        .output()
        .await
        .expect("curl is needed (tests/prepare.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head)
}

fn set_cookies(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .collect()
}

#[tokio::test]
async fn on_a_tls_listener_cookies_are_secure_and_host_prefixed() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::support::pki::Pki::new("browser CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "server");
    let ca_file = ca.write_ca(dir.path(), "ca.pem");
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .table("[refresh]\n")
        .raw(&format!(
            "[[listeners]]\naddr = \"127.0.0.1:0\"\n[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[listeners]]\naddr = \"127.0.0.1:0\"\n",
            cert.display(),
            key.display()
        ))
        .start()
        .await;
    let port = gw.addrs[0].port();
    let (code, head) = curl_https(port, &ca_file, &[], "/auth/login").await;
    assert_eq!(code, 200, "{head}");
    let login = set_cookies(&head);
    assert_eq!(login.len(), 1, "{head}");
    let nonce_cookie = login[0].split(';').next().unwrap().to_string();
    assert!(nonce_cookie.starts_with("__Host-gateway-login="), "{head}");
    // The page's token, from the same nonce (a second page load reuses the cookie's).
    let page = {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca_file)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-H", &format!("Cookie: {nonce_cookie}")])
            .arg(format!("https://localhost:{port}/auth/login"))
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let body = form(&[
        ("gateway_csrf", &hidden(&page, "gateway_csrf")),
        ("username", "user1"),
        ("password", PASSWORD),
    ]);
    let (code, head) = curl_https(
        port,
        &ca_file,
        &[
            "-H",
            &format!("Cookie: {nonce_cookie}"),
            "-H",
            &format!("Origin: https://localhost:{port}"),
            "--data",
            &body,
        ],
        "/auth",
    )
    .await;
    assert_eq!(code, 303, "{head}");
    let set = set_cookies(&head);
    let find = |name: &str| {
        *set.iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    for (name, http_only, path) in [
        ("__Host-gateway-session", true, "Path=/"),
        ("__Secure-gateway-refresh", true, "Path=/auth/refresh"),
        ("__Host-gateway-csrf", false, "Path=/"),
    ] {
        let c = find(name);
        assert!(c.contains("; Secure"), "{c}");
        assert!(c.contains("SameSite=Lax"), "{c}");
        assert!(c.contains(path), "{c}");
        assert_eq!(c.contains("HttpOnly"), http_only, "{c}");
        assert!(!c.contains("Domain"), "{c}");
    }
    assert!(find("__Host-gateway-login").contains("Max-Age=0"));
    // The same gateway's plain listener keeps the unprefixed names, without Secure.
    let plain = format!("http://{}", gw.addrs[1]);
    let page = get(&format!("{plain}/auth/login"), &[]).await;
    let c = page.header("set-cookie").unwrap();
    assert!(
        c.starts_with("gateway-login=") && !c.contains("Secure"),
        "{c}"
    );
}

#[tokio::test]
async fn a_page_load_renews_a_token_about_to_expire() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let at = |exp_in: i64| {
        let t = now();
        mint(
            json!({"exp": t + exp_in, "iat": t + exp_in - 300, "nbf": t + exp_in - 300,
                    "identity": 1, "sid": "s1"}),
        )
    };
    let html = [("accept", "text/html")];
    // 20 s left, under renew_before (60 s): through the renewal first.
    let r = get(&gw.url("/api"), &[("authorization", &jwt_header(&at(20)))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = format!("{ACCESS}={}", at(20));
    let r = get(&gw.url("/app/a"), &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&gw.url("/app/a"), &[html[0], ("cookie", &cookie)]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/auth/refresh?return_to=%2Fapp%2Fa")
    );
    // A script's request with the same token still passes: only page loads renew.
    let r = get(&gw.url("/app/a"), &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    // Plenty of time left: straight through.
    let cookie = format!("{ACCESS}={}", at(250));
    let r = get(&gw.url("/app/a"), &[html[0], ("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn behind_forward_auth_a_browser_route_takes_the_cookie_but_never_redirects() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw("[forward_auth]\nlisten = \"127.0.0.1:0\"\n")
        .start()
        .await;
    let jar = browser_session(&gw).await;
    let csrf = jar.get(CSRF).unwrap().to_string();
    let url = format!("http://{}/forward-auth/traefik", gw.addrs.last().unwrap());
    let ask = |method: &'static str, extra: Vec<(&'static str, String)>| {
        let url = url.clone();
        let cookie = jar.header();
        async move {
            let mut headers: Vec<(&str, String)> = vec![
                ("x-forwarded-method", method.into()),
                ("x-forwarded-proto", "http".into()),
                ("x-forwarded-host", "app.example".into()),
                ("x-forwarded-uri", "/app/x".into()),
                ("cookie", cookie),
            ];
            headers.extend(extra);
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(&url, &h).await
        }
    };
    let r = ask("GET", vec![("accept", "text/html".into())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-identity"), Some("1"));
    // No session: the proxy gets a 401 it can pass on, not a redirect.
    let r = get(
        &url,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-uri", "/app/x"),
            ("accept", "text/html"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    // A form is never read here: it needs the header.
    let form_type = (
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    );
    let r = ask("POST", vec![form_type.clone()]).await;
    assert_eq!(r.status, 403);
    let r = ask("POST", vec![form_type, ("x-gateway-csrf", csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_websocket_handshake_on_the_cookie_must_come_from_our_pages() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let r = send(
        "GET",
        &gw.url("/app/ws"),
        &jar,
        &[("origin".into(), "http://evil.example".into())],
        &[key],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(up.requests().is_empty());
    let r = send("GET", &gw.url("/app/ws"), &jar, &same_site(&gw), &[key], "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn csrf_tokens_survive_a_signing_key_rotation() {
    use jsonwebtoken::Algorithm;
    let up = Upstream::start().await;
    let old = "first signing secret, long enough 0123456789";
    let new = "second signing secret, long enough 987654321";
    let build = |tables: String| {
        gateway()
            .route_with("/app", &up.url(), "required", &["browser = true"])
            .file("old", old)
            .file("new", new)
            .table(&tables)
            .start()
    };
    // Before: the old key signs. After (step 3 of the runbook): the new key signs, the old
    // one still verifies.
    let before = build(key_table(
        "old",
        Algorithm::HS256,
        "secret_file = \"old\"",
        true,
    ))
    .await;
    let after = build(format!(
        "{}{}",
        key_table("new", Algorithm::HS256, "secret_file = \"new\"", true),
        key_table("old", Algorithm::HS256, "secret_file = \"old\"", false)
    ))
    .await;
    let jar = browser_session(&before).await;
    let token = jar.get(CSRF).unwrap().to_string();
    let r = send(
        "POST",
        &after.url("/app/x"),
        &jar,
        &[("origin".into(), format!("http://{}", after.addr))],
        &[("x-gateway-csrf", &token)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A session begun after the rotation is not valid where the new key is unknown.
    let fresh = browser_session(&after).await;
    let r = send(
        "POST",
        &before.url("/app/x"),
        &fresh,
        &[],
        &[("x-gateway-csrf", fresh.get(CSRF).unwrap())],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
}

/// The access token a renewal's answer set, and whom it names upstream.
async fn renewed_as(gw: &Gateway, up: &Upstream, r: &Resp) -> Option<String> {
    let mut jar = Jar::default();
    jar.take(r);
    let access = jar.get(ACCESS)?.to_string();
    let ok = get(
        &gw.url("/app"),
        &[("cookie", &format!("{ACCESS}={access}"))],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    Some(
        up.last()
            .headers
            .get("x-identity")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string(),
    )
}

#[tokio::test]
async fn a_planted_refresh_cookie_never_signs_the_browser_in_as_its_planter() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let victim = browser_session(&gw).await;
    let mut attacker = Jar::default();
    let r = form_login(&gw, &mut attacker, "user2", PASSWORD, "/app").await;
    assert_eq!(r.status, 303);
    let planted = format!("{REFRESH}={}", attacker.get(REFRESH).unwrap());
    let url = gw.url("/auth/refresh?return_to=%2Fapp");
    let html = ("accept", "text/html");

    // Only the planted cookie beside the victim's CSRF cookie: no renewal at all.
    let csrf = format!("{CSRF}={}", victim.get(CSRF).unwrap());
    let r = get(&url, &[html, ("cookie", &format!("{planted}; {csrf}"))]).await;
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with("/auth/login?"));
    assert_eq!(renewed_as(&gw, &up, &r).await, None);

    // Sent first, before the victim's own: the victim's session is the one renewed.
    let cookie = format!("{planted}; {}", victim.without(ACCESS).header());
    let r = get(&url, &[html, ("cookie", &cookie)]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app"));
    assert_eq!(renewed_as(&gw, &up, &r).await.as_deref(), Some("1"));

    // Bound by an expired access cookie of the session alone (no CSRF cookie): renewed.
    let fresh = browser_session(&gw).await;
    let payload = fresh.get(ACCESS).unwrap().split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let t = now();
    let expired = mint(json!({"exp": t - 600, "iat": t - 900, "nbf": t - 900,
                              "identity": 1, "sid": claims["sid"]}));
    let cookie = format!(
        "{planted}; {REFRESH}={}; {ACCESS}={expired}",
        fresh.get(REFRESH).unwrap()
    );
    let r = get(&url, &[html, ("cookie", &cookie)]).await;
    assert_eq!(renewed_as(&gw, &up, &r).await.as_deref(), Some("1"));
    // A forged access cookie names nobody.
    let forged = format!("{planted}; {ACCESS}={}", forged());
    let r = get(&url, &[html, ("cookie", &forged)]).await;
    assert_eq!(renewed_as(&gw, &up, &r).await, None);

    // The attacker's token was never rotated by any of this: it still renews their own.
    let mut own = attacker.without(ACCESS);
    own.cookies.remove(REFRESH);
    let cookie = format!("{planted}; {}", own.header());
    let r = get(&url, &[html, ("cookie", &cookie)]).await;
    assert_eq!(renewed_as(&gw, &up, &r).await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn logout_revokes_the_family_of_the_session_not_a_planted_one() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let victim = browser_session(&gw).await;
    let mut attacker = Jar::default();
    form_login(&gw, &mut attacker, "user2", PASSWORD, "/app").await;
    let planted = format!("{REFRESH}={}", attacker.get(REFRESH).unwrap());
    let token = victim.get(CSRF).unwrap().to_string();
    let cookie = format!("{planted}; {}", victim.header());
    let mut headers = same_site(&gw);
    headers.push(("cookie".into(), cookie));
    headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = request(
        "POST",
        &gw.url("/auth/refresh/logout"),
        &h,
        form(&[("gateway_csrf", &token)]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    // The victim's family is over; the planter's is untouched.
    let url = gw.url("/auth/refresh?return_to=%2Fapp");
    let r = get(&url, &[("cookie", &victim.without(ACCESS).header())]).await;
    assert!(r.header("location").unwrap().starts_with("/auth/login?"));
    let r = get(&url, &[("cookie", &attacker.without(ACCESS).header())]).await;
    assert_eq!(r.header("location"), Some("/app"));
}

#[tokio::test]
async fn a_utf8_cookie_beside_ours_neither_hides_ours_nor_lets_them_upstream() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let cookie = format!("name=J\u{f6}rg; {}; lang=en", jar.header());
    let mut req = http::Request::get(gw.url("/app/inbox"));
    req = req.header(
        "cookie",
        http::HeaderValue::from_bytes(cookie.as_bytes()).unwrap(),
    );
    let r = send_request(req.body(String::new()).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers.get("x-identity").unwrap(), "1");
    let sent: Vec<&[u8]> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    assert_eq!(sent, ["name=J\u{f6}rg; lang=en".as_bytes()]);
}

#[tokio::test]
async fn an_apps_own_csrf_header_and_field_are_left_to_the_app() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let ours = jar.get(CSRF).unwrap().to_string();
    // Rails / Laravel send X-CSRF-Token for their own checks: it reaches the app on a
    // browser route (beside ours, which does not) and on any other route.
    let r = send(
        "POST",
        &gw.url("/app/items"),
        &jar,
        &same_site(&gw),
        &[("x-gateway-csrf", &ours), ("x-csrf-token", "the-apps-own")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers.get("x-csrf-token").unwrap(), "the-apps-own");
    assert!(seen.headers.get("x-gateway-csrf").is_none());
    let access = gw.login("user1", PASSWORD).await;
    let r = request(
        "POST",
        &gw.url("/api/items"),
        &[
            ("authorization", &jwt_header(&access)),
            ("x-csrf-token", "the-apps-own"),
            ("x-gateway-csrf", "not-ours-here"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers.get("x-csrf-token").unwrap(), "the-apps-own");
    assert_eq!(seen.headers.get("x-gateway-csrf").unwrap(), "not-ours-here");
    // The old name is no proof for us.
    let r = send(
        "POST",
        &gw.url("/app/items"),
        &jar,
        &same_site(&gw),
        &[("x-csrf-token", &ours)],
        "",
    )
    .await;
    assert_eq!(r.status, 403);
    // A Flask-WTF form carries its own csrf_token field beside ours: both arrive.
    let body = form(&[("csrf_token", "flask-wtf"), ("gateway_csrf", &ours)]);
    let r = send(
        "POST",
        &gw.url("/app/items"),
        &jar,
        &same_site(&gw),
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body_len, body.len());

    // A name of the operator's choosing.
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .table("[browser]\ncsrf_header = \"X-My-Csrf\"\n")
        .start()
        .await;
    let jar = browser_session(&gw).await;
    let ours = jar.get(CSRF).unwrap().to_string();
    let r = send(
        "POST",
        &gw.url("/app/items"),
        &jar,
        &same_site(&gw),
        &[("x-my-csrf", &ours)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(up.last().headers.get("x-my-csrf").is_none());
}

#[tokio::test]
async fn a_browser_that_drops_the_renewed_cookie_lands_on_an_error_not_a_loop() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let url = gw.url("/auth/refresh?return_to=%2Fapp");
    let html = ("accept", "text/html");
    // The first renewal goes through and marks itself.
    let r = get(&url, &[html, ("cookie", &jar.without(ACCESS).header())]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app"));
    let mut renewed = jar.clone();
    renewed.take(&r);
    let marker = renewed.attributes("gateway-renewed");
    assert!(
        marker.contains("HttpOnly") && marker.contains("Path=/auth/refresh"),
        "{marker}"
    );
    // The browser kept everything but the access cookie: back at the renewal at once.
    let r = get(&url, &[html, ("cookie", &renewed.without(ACCESS).header())]).await;
    r.assert_error(
        400,
        "Bad Request",
        "The browser did not keep the session cookies set a moment ago (are cookies for \
         this site blocked or full?); sign in again in a little while",
    );
    assert!(r.headers.get("set-cookie").is_none(), "{:?}", r.headers);
    // Another session's marker is no reason to stop this one.
    let other = browser_session(&gw).await;
    let r = get(
        &gw.url("/auth/refresh?return_to=%2Fapp"),
        &[("cookie", &other.without(ACCESS).header())],
    )
    .await;
    let mut other_renewed = other.clone();
    other_renewed.take(&r);
    let cookie = format!(
        "gateway-renewed={}; {}",
        other_renewed.get("gateway-renewed").unwrap(),
        jar.without(ACCESS).without(REFRESH).header()
    );
    let cookie = format!("{cookie}; {REFRESH}={}", renewed.get(REFRESH).unwrap());
    let r = get(&url, &[html, ("cookie", &cookie)]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app"));
}

#[tokio::test]
async fn a_session_too_large_for_a_cookie_is_refused_with_a_reason() {
    let up = Upstream::start().await;
    let big = "x".repeat(4000);
    let gw = gateway()
        .without_users()
        .tokens("user_claims = [\"roles\"]")
        .raw(&format!(
            "[[users]]\nid = 1\nusername = \"user1\"\npassword_hash = \"{HASH1}\"\n\
             claims = {{ roles = [\"{big}\"] }}\n"
        ))
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .table("[login]\n[refresh]\n")
        .start()
        .await;
    let mut jar = Jar::default();
    let r = form_login(&gw, &mut jar, "user1", PASSWORD, "/app").await;
    r.assert_error(
        500,
        "Internal Server Error",
        "The session does not fit in a browser cookie; the gateway's log says why",
    );
    assert!(jar.get(ACCESS).is_none() && jar.get(REFRESH).is_none());
}

#[tokio::test]
async fn a_page_served_on_the_session_cookie_is_private_and_varies_by_cookie() {
    let up = Upstream::start().await;
    let gw = browser_gateway(&up).await;
    let jar = browser_session(&gw).await;
    let r = send("GET", &gw.url("/app/inbox"), &jar, &[], &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("private"));
    assert!(
        r.headers
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Cookie")),
        "{:?}",
        r.headers
    );
    // A header-authenticated request is left as the upstream answered.
    let access = gw.login("user1", PASSWORD).await;
    let r = get(
        &gw.url("/app/inbox"),
        &[("authorization", &jwt_header(&access))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("cache-control").is_none());
    // The refresh cookie goes only below the refresh path.
    assert!(!jar.header_for("/app").contains(REFRESH));
    assert!(jar.header_for("/auth/refresh").contains(REFRESH));
    assert!(jar.header_for("/auth/refresh/logout").contains(REFRESH));
    assert!(!jar.header_for("/auth/refreshx").contains(REFRESH));
}
