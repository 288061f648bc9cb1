//! Path attacks: the spellings a backend may resolve under a required route while the
//! gateway matched them to a public one. The dangerous layout is used: a required `/api`
//! next to a public catch-all `/` and a public `/public`, all on one backend.
//!
//! Each hostile path, sent without a token, must be refused (400) or held to the required
//! route (401), and never forwarded. Sent on raw sockets: a client library would normalize.

use crate::harness::*;
use crate::support::*;

async fn layout() -> Target {
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/api", &up.url(), "required")
        .route("/public", &up.url(), "public")
        .route("/", &up.url(), "public")
        .start()
        .await;
    Target { gw, up }
}

async fn send(t: &Target, path: &str) -> Exchange {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    exchange(t.gw.addr, req.as_bytes(), 1).await
}

/// Each path must be refused (400), held to the required route (401), or, when its dot
/// segments resolve inside the route it matched, forwarded normalized: never with a dot
/// segment, and never to a path a lenient backend would read as under `/api`.
async fn assert_held(t: &Target, family: &str, paths: &[&str]) {
    for path in paths {
        let case = format!("{family}: {path}");
        let before = t.up.requests().len();
        let ex = send(t, path).await;
        let r = ex
            .responses
            .first()
            .unwrap_or_else(|| panic!("{case}: no answer {ex:?}"));
        if r.status == 200 {
            let seen = t.up.requests();
            assert_eq!(seen.len(), before + 1, "{case}");
            let target = seen[before].target.clone();
            let lenient: Vec<String> = target.split('?').next().unwrap_or("")[1..]
                .split('/')
                .map(|s| s.split(';').next().unwrap_or("").to_ascii_lowercase())
                .collect();
            assert!(
                lenient
                    .iter()
                    .all(|s| s != "." && s != ".." && !s.contains("%2e")),
                "{case}: forwarded as {target}"
            );
            assert!(
                lenient.first().map(String::as_str) != Some("api"),
                "{case}: forwarded as {target}"
            );
            continue;
        }
        assert!([400, 401].contains(&r.status), "{case}: {ex:?}");
        // hyper answers an unparsable request line itself, without our JSON body.
        if r.head.contains("application/json") {
            assert_error_shape(&r.body, r.status, &case);
        }
        assert_eq!(
            t.up.requests().len(),
            before,
            "{case}: forwarded {:?}",
            t.up.requests().last()
        );
    }
}

/// Regression (the IIS `%u002e` spelling): see `overlong_utf8_and_needless_encoding_are_refused`.
#[tokio::test]
async fn dot_segments_raw_and_encoded_are_refused() {
    let t = layout().await;
    assert_held(
        &t,
        "dot segments",
        &[
            "/public/../api/secret",
            "/public/./../api/secret",
            "/public/..",
            "/public/.",
            "/public/x/../../api/secret",
            "/public/%2e%2e/api/secret",
            "/public/%2E%2E/api/secret",
            "/public/.%2e/api/secret",
            "/public/%2e./api/secret",
            "/public/%2e/../api",
            "/public/%252e%252e/api/secret",
            "/public/%25%32%65%25%32%65/api/secret",
            "/public/%u002e%u002e/api/secret",
        ],
    )
    .await;
    assert_eq!(get(&t.gw.url("/public/a..b/.c"), &[]).await.status, 200);
}

#[tokio::test]
async fn slashes_backslashes_and_nul_are_refused() {
    let t = layout().await;
    assert_held(
        &t,
        "separators",
        &[
            "//api/secret",
            "///api/secret",
            "/public//../api/secret",
            "/public\\..\\api\\secret",
            "/public/..\\api/secret",
            "/\\api/secret",
            "/public%2f..%2fapi%2fsecret",
            "/api%2fsecret",
            "/api%2Fsecret",
            "/public%5c..%5capi",
            "/api%00/secret",
            "/public/x%00/../../api",
            "/api\0/secret",
            "/api\t/secret",
        ],
    )
    .await;
}

/// Regression: `%c0%ae` (overlong `.`), `%61` (needlessly encoded `a`) and malformed escapes
/// such as `%u002e` passed the path check, so a decoding backend read a public path as
/// `/api/...` or as a dot segment.
#[tokio::test]
async fn overlong_utf8_and_needless_encoding_are_refused() {
    let t = layout().await;
    assert_held(
        &t,
        "encodings",
        &[
            // Overlong forms of `.` and `/`: broken UTF-8 decoders read them as the ASCII.
            "/public/%c0%ae%c0%ae/api/secret",
            "/public/%e0%80%ae%e0%80%ae/api/secret",
            "/public%c0%afapi/secret",
            "/public/%c1%9c../api",
            "/public/%f0%80%80%ae%f0%80%80%ae/api",
            // Encoded unreserved characters: a decoding backend reads `/api/secret`.
            "/%61pi/secret",
            "/%41PI/secret",
            "/ap%69/secret",
            "/api%3bx/secret",
            // Malformed escapes are read differently by different decoders.
            "/public/%zz/../api",
            "/public/%2",
            // Raw non-ASCII in the request target.
            "/public/\u{e9}/../api",
        ],
    )
    .await;
    // A legitimately encoded reserved character still passes.
    assert_eq!(get(&t.gw.url("/public/a%20b?x=%2F"), &[]).await.status, 200);
}

/// Regression: `/API/secret` and `/api;x/secret` matched the public catch-all `/` and were
/// forwarded without a token to a backend that reads them as `/api/secret`.
#[tokio::test]
async fn params_and_case_games_cannot_reach_a_required_prefix_through_a_public_route() {
    let t = layout().await;
    assert_held(
        &t,
        "params and case",
        &[
            // Tomcat/Jetty/Spring drop `;params` from segments: `..;` is `..`, `api;x` is `api`.
            "/public/..;/api/secret",
            "/public/.;/../api",
            "/public/..;x=1/api/secret",
            "/api;jsessionid=0/secret",
            "/api;/secret",
            "/api;",
            // Case-insensitive backends read these as /api.
            "/API/secret",
            "/Api/secret",
            "/aPI",
            "/API;x/secret",
        ],
    )
    .await;
    // With a token they go to the required route, as sent.
    let jwt = jwt_header(&token());
    let r = get(&t.gw.url("/API/secret"), &[("authorization", &jwt)]).await;
    assert_eq!(r.status, 200);
    let seen = t.up.last();
    assert_eq!(seen.target, "/API/secret");
    assert_eq!(seen.headers["x-identity"], "1");
}
