//! Header attacks: Authorization shapes, identity spoofing in every spelling, hop-by-hop
//! abuse and `X-Forwarded-*` spoofing.

use crate::harness::*;
use crate::support::*;

/// A case name, the request headers, and the expected description.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

#[tokio::test]
async fn authorization_shapes_are_refused() {
    let t = target().await;
    let tok = token();
    let jwt = jwt_header(&tok);
    let cases: Vec<Case> = vec![
        (
            "two identical headers",
            vec![
                ("authorization", jwt.clone()),
                ("authorization", jwt.clone()),
            ],
            "Token contains spaces",
        ),
        (
            "valid then garbage",
            vec![
                ("authorization", jwt.clone()),
                ("authorization", "JWT x".into()),
            ],
            "Token contains spaces",
        ),
        (
            "garbage then valid",
            vec![
                ("authorization", "JWT x".into()),
                ("authorization", jwt.clone()),
            ],
            "Token contains spaces",
        ),
        (
            "valid then empty",
            vec![
                ("authorization", jwt.clone()),
                ("authorization", String::new()),
            ],
            "Token contains spaces",
        ),
        (
            "comma-joined",
            vec![("authorization", format!("{jwt}, {jwt}"))],
            "Token contains spaces",
        ),
        (
            "three words",
            vec![("authorization", format!("{jwt} x"))],
            "Token contains spaces",
        ),
        (
            "Bearer scheme",
            vec![("authorization", format!("Bearer {tok}"))],
            "Unsupported authorization type",
        ),
        (
            "Basic scheme",
            vec![("authorization", "Basic dXNlcjE6YWJjeHl6".into())],
            "Unsupported authorization type",
        ),
        (
            "scheme with a colon",
            vec![("authorization", format!("JWT: {tok}"))],
            "Unsupported authorization type",
        ),
        (
            "scheme glued to the token",
            vec![("authorization", format!("JWT{tok}"))],
            "Unsupported authorization type",
        ),
        (
            "bare token",
            vec![("authorization", tok.clone())],
            "Unsupported authorization type",
        ),
        (
            "prefix only",
            vec![("authorization", "JWT".into())],
            "Token missing",
        ),
        (
            "non-ASCII",
            vec![("authorization", "JWT t\u{f6}k".into())],
            "Token contains invalid characters",
        ),
        (
            "token in another header",
            vec![("x-authorization", jwt.clone())],
            "Request does not contain an access token",
        ),
        (
            "token in a cookie",
            vec![("cookie", format!("access_token={tok}"))],
            "Request does not contain an access token",
        ),
        (
            "token as a proxy credential",
            vec![("proxy-authorization", jwt.clone())],
            "Request does not contain an access token",
        ),
    ];
    for (case, headers, description) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = t.api(&h).await;
        assert_refused(&r, 401, case);
        assert_eq!(r.json()["description"], *description, "{case}");
        t.assert_nothing_forwarded(case);
    }
    assert_eq!(cases.len(), 16);
    // A token in the query string is not a credential either.
    let r = get(
        &t.gw
            .url(&format!("/api/secret?jwt={tok}&access_token={tok}")),
        &[],
    )
    .await;
    assert_refused(&r, 401, "token in the query");
    t.assert_nothing_forwarded("token in the query");
    // Flask-JWT's accepted variants stay accepted (case-insensitive scheme, any whitespace).
    for value in [
        format!("jwt {tok}"),
        format!("JwT\t{tok}"),
        format!("JWT   {tok}  "),
    ] {
        let r = t.api(&[("authorization", &value)]).await;
        assert_eq!(r.status, 200, "{value:?}");
        assert_eq!(t.up.last().headers["x-identity"], "1");
    }
}

#[tokio::test]
async fn spoofed_identity_never_reaches_the_upstream() {
    let t = target().await;
    let jwt = jwt_header(&token());
    let spoofs: [&[(&str, &str)]; 8] = [
        &[("X-Identity", "admin")],
        &[("x-identity", "2")],
        &[("X-IDENTITY", "admin")],
        &[("X_Identity", "admin")],
        &[("x_identity", "admin")],
        &[("x_IDENTITY", "alice")],
        &[("X-Identity", "a"), ("X-Identity", "b")],
        &[
            ("X-Identity", "admin"),
            ("X_Identity", "admin"),
            ("x-identity", "root"),
        ],
    ];
    for spoof in spoofs {
        let case = format!("{spoof:?}");
        // Required route: exactly ours.
        let mut h = spoof.to_vec();
        h.push(("authorization", &jwt));
        let r = t.api(&h).await;
        assert_eq!(r.status, 200, "{case}");
        let seen = t.up.last();
        let ids: Vec<_> = seen.headers.get_all("x-identity").iter().collect();
        assert_eq!(ids, ["1"], "{case}");
        assert!(!seen.headers.contains_key("x_identity"), "{case}");
        // Public route: none at all.
        let r = get(&t.gw.url("/public/page"), spoof).await;
        assert_eq!(r.status, 200, "{case}");
        let seen = t.up.last();
        assert!(!seen.headers.contains_key("x-identity"), "{case}");
        assert!(!seen.headers.contains_key("x_identity"), "{case}");
        // Without a token on the required route: refused, nothing forwarded.
        let before = t.forwarded();
        let r = t.api(spoof).await;
        assert_refused(&r, 401, &case);
        assert_eq!(t.forwarded(), before, "{case}");
    }
}

#[tokio::test]
async fn malformed_identity_headers_on_the_wire_are_refused() {
    let t = target().await;
    let jwt = format!("Authorization: {}", jwt_header(&token()));
    // Spellings a lenient parser might fold into `X-Identity`; hyper refuses the head.
    let lines = [
        "X-Identity : admin",
        "X-Identity:\r\n admin",
        "X-Identity: a\r\n\tadmin",
        " X-Identity: admin",
        "X-Identity\u{0}: admin",
        "X\u{2010}Identity: admin",
    ];
    for line in lines {
        let req = head(&[
            "GET /api/secret HTTP/1.1",
            "Host: gw",
            &jwt,
            line,
            "Connection: close",
        ]);
        let ex = exchange(t.gw.addr, req.as_bytes(), 1).await;
        if let Some(r) = ex.responses.first() {
            assert_eq!(r.status, 400, "{line:?}: {ex:?}");
        } else {
            assert!(ex.closed, "{line:?}: neither answered nor closed");
        }
    }
    t.assert_nothing_forwarded("malformed identity headers");
    t.still_serves("after malformed headers").await;
}

#[tokio::test]
async fn hop_by_hop_abuse_cannot_remove_or_forge_what_the_gateway_sets() {
    let t = target().await;
    let jwt = jwt_header(&token());
    for connection in [
        "X-Identity",
        "x-identity, X_Identity",
        "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
        "Host",
        "close, X-Identity, keep-alive",
    ] {
        let r = t
            .api(&[
                ("authorization", &jwt),
                ("connection", connection),
                ("x-identity", "admin"),
            ])
            .await;
        assert_eq!(r.status, 200, "{connection}");
        let seen = t.up.last();
        assert_eq!(seen.headers["x-identity"], "1", "{connection}");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1", "{connection}");
        assert_eq!(seen.headers["x-forwarded-proto"], "http", "{connection}");
        assert!(seen.headers.contains_key("host"), "{connection}");
        assert!(!seen.headers.contains_key("connection"), "{connection}");
    }
    // Naming the credential hop-by-hop is refused for what it is (see
    // `requests::token_header_listed_in_connection_is_a_bad_request`).
    for connection in ["Authorization", "X-Identity, Authorization"] {
        let before = t.forwarded();
        let r = t
            .api(&[("authorization", &jwt), ("connection", connection)])
            .await;
        assert_refused(&r, 400, connection);
        assert_eq!(t.forwarded(), before, "{connection}");
    }
    // The fixed hop-by-hop set never crosses.
    let r = t
        .api(&[
            ("authorization", &jwt),
            ("keep-alive", "timeout=1000"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "X-Identity"),
            ("upgrade", "websocket"),
        ])
        .await;
    assert_eq!(r.status, 200);
    let seen = t.up.last();
    for h in ["keep-alive", "proxy-connection", "te", "trailer", "upgrade"] {
        assert!(!seen.headers.contains_key(h), "{h} crossed");
    }
}

#[tokio::test]
async fn connection_content_length_cannot_desync_the_upstream() {
    let t = target().await;
    let body = "A".repeat(100);
    let r = request(
        "POST",
        &t.gw.url("/public/upload"),
        &[("connection", "content-length"), ("content-length", "100")],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = t.up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
}

#[tokio::test]
async fn forwarded_headers_cannot_be_spoofed() {
    let t = target().await;
    let jwt = jwt_header(&token());
    let r = t
        .api(&[
            ("authorization", &jwt),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "192.168.0.1"),
            ("X_Forwarded_For", "10.9.9.9"),
            ("forwarded", "for=10.0.0.1;proto=https;host=admin.internal"),
            ("x-forwarded-host", "admin.internal"),
            ("x-forwarded-proto", "https"),
        ])
        .await;
    assert_eq!(r.status, 200);
    let seen = t.up.last();
    let all = |name: &str| -> Vec<String> {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("x-forwarded-host"), [t.gw.addr.to_string()]);
    assert!(all("forwarded").is_empty());
}

/// Regression: `X_Forwarded_For` (and the other underscore spellings) crossed the gateway,
/// and WSGI/CGI/PHP backends read them as the `X-Forwarded-*` headers the gateway sets.
#[tokio::test]
async fn underscore_spellings_of_forwarded_headers_are_stripped() {
    let t = target().await;
    let spoofs = [
        ("X_Forwarded_For", "10.9.9.9"),
        ("x_forwarded_proto", "https"),
        ("X_Forwarded_Host", "admin.internal"),
        ("x_forwarded-for", "10.9.9.9"),
    ];
    let r = get(&t.gw.url("/public/x"), &spoofs).await;
    assert_eq!(r.status, 200);
    let seen = t.up.last();
    for (name, _) in spoofs {
        assert!(!seen.headers.contains_key(name), "{name} crossed: {seen:?}");
    }
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    // Also behind a trusted load balancer, which never sends the underscore form.
    let trusted = target_with(gateway().server("trust_forwarded = true")).await;
    let r = get(&trusted.gw.url("/public/x"), &spoofs).await;
    assert_eq!(r.status, 200);
    let seen = trusted.up.last();
    for (name, _) in spoofs {
        assert!(!seen.headers.contains_key(name), "{name} crossed: {seen:?}");
    }
}

/// Chunked trailers are headers too for some backends (they merge them): an identity sent
/// as a trailer must never reach the upstream, on a public or a required route.
#[tokio::test]
async fn identity_in_chunked_trailers_never_reaches_the_upstream() {
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};
    let trailers: Arc<Mutex<Vec<Option<http::HeaderMap>>>> = Arc::default();
    let seen = trailers.clone();
    let up = Upstream::with(Arc::new(
        move |req: http::Request<hyper::body::Incoming>| {
            let seen = seen.clone();
            Box::pin(async move {
                let body = req.into_body().collect().await.unwrap();
                seen.lock().unwrap().push(body.trailers().cloned());
                http::Response::new(gateway::body::full("ok"))
            })
        },
    ))
    .await;
    let gw = gateway()
        .route("/public", &up.url(), "public")
        .route("/api", &up.url(), "required")
        .start()
        .await;
    let auth = format!("Authorization: {}\r\n", jwt_header(&token()));
    for (path, auth) in [("/public/x", ""), ("/api/x", auth.as_str())] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\n\
             Trailer: X-Identity, X_Identity\r\nTE: trailers\r\nConnection: close\r\n\r\n3\r\n\
             abc\r\n0\r\nX-Identity: admin\r\nX_Identity: admin\r\n\r\n"
        );
        let ex = exchange(gw.addr, req.as_bytes(), 1).await;
        assert_eq!(ex.statuses(), [200], "{path}: {ex:?}");
    }
    let seen = trailers.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for t in seen.iter().flatten() {
        for name in t.keys() {
            assert_ne!(name.as_str().replace('_', "-"), "x-identity", "{t:?}");
        }
    }
    let heads = up.requests();
    assert!(!heads[0].headers.contains_key("x-identity"));
    assert_eq!(heads[1].headers["x-identity"], "1");
}

/// The same rules over HTTP/2 (h2c prior knowledge): spoofed identities are stripped, a
/// missing token is refused, and `:authority` must agree with `Host`.
#[tokio::test]
async fn http2_requests_are_held_to_the_same_rules() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let t = target().await;
    let h2: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let send = |path: &str, headers: &[(&str, String)]| {
        let mut b = http::Request::get(t.gw.url(path));
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let req = b.body(Full::new(Bytes::new())).unwrap();
        let fut = h2.request(req);
        async move {
            let res = fut.await.unwrap();
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    let spoof = [
        ("x-identity", "admin".to_string()),
        ("x_identity", "admin".to_string()),
    ];
    let (status, body) = send("/api/secret", &spoof).await;
    assert_eq!(status, 401);
    assert_error_shape(&body, 401, "h2 without a token");
    t.assert_nothing_forwarded("h2 without a token");
    let mut with_token = spoof.to_vec();
    with_token.push(("authorization", jwt_header(&token())));
    let (status, _) = send("/api/secret", &with_token).await;
    assert_eq!(status, 200);
    let seen = t.up.last();
    assert_eq!(
        seen.headers
            .get_all("x-identity")
            .iter()
            .collect::<Vec<_>>(),
        ["1"]
    );
    assert!(!seen.headers.contains_key("x_identity"));
    let (status, body) = send("/public/x", &[("host", "admin.internal".to_string())]).await;
    assert_eq!(status, 400);
    assert_error_shape(&body, 400, "h2 Host unlike :authority");
    let (status, _) = send("/public/x", &spoof).await;
    assert_eq!(status, 200);
    assert!(!t.up.last().headers.contains_key("x-identity"));
}
