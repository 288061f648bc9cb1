//! HTTP/1.1 framing attacks on raw sockets: request smuggling, odd request targets and
//! methods, Host games, h2c upgrade smuggling. A client library would normalize all of it.
//!
//! The gateway is the front server here. What must never happen: the upstream receives a
//! request the gateway did not route and authorize as such (marked `/api/smuggled`, a
//! required path, sent without a token), or the body framing the upstream sees differs from
//! what the gateway read.

use crate::harness::*;
use crate::support::*;

/// The request a desync would slip past the gateway: a required path with no token.
const SMUGGLED: &str = "GET /api/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";

/// Sends `bytes`, then asserts that the gateway answered only with the allowed statuses (or
/// closed), and that the upstream never saw the smuggled request.
async fn assert_no_smuggling(t: &Target, case: &str, bytes: &[u8], allowed: &[u16]) -> Exchange {
    let ex = exchange(t.gw.addr, bytes, 3).await;
    for r in &ex.responses {
        assert!(
            allowed.contains(&r.status),
            "{case}: got {} in {ex:?}",
            r.status
        );
        if r.status == 401 {
            assert_error_shape(&r.body, 401, case);
        }
    }
    assert!(
        !ex.responses.is_empty() || ex.closed,
        "{case}: neither answered nor closed"
    );
    for seen in t.up.requests() {
        assert!(
            !seen.target.contains("smuggled"),
            "{case}: smuggled {seen:?}"
        );
        assert!(seen.target.starts_with("/public"), "{case}: {seen:?}");
    }
    ex
}

#[tokio::test]
async fn request_smuggling_is_refused_or_harmless() {
    let t = target().await;
    let chunk = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let cases: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{chunk}"
            ),
        ),
        (
            "TE.CL, TE first",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 4\r\n\r\n{chunk}"
            ),
        ),
        (
            "conflicting Content-Length",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\
                 Content-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        (
            "conflicting Content-Length in one field",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0, {}\r\n\r\n\
                 {SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        (
            "signed Content-Length",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\n\
                 Content-Length: +0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "hex Content-Length",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\n\
                 Content-Length: 0x0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "Transfer-Encoding: chunked, identity",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\n\
                 Transfer-Encoding: chunked, identity\r\n\r\n{chunk}"
            ),
        ),
        (
            "Transfer-Encoding: xchunked",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\n\r\n\
                 {chunk}"
            ),
        ),
        (
            "Transfer-Encoding twice, identity last",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\
                 Transfer-Encoding: identity\r\n\r\n{chunk}"
            ),
        ),
        (
            "obs-folded Transfer-Encoding",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\
                 Transfer-Encoding:\r\n chunked\r\n\r\n{chunk}"
            ),
        ),
        (
            "space before colon",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\
                 Content-Length: 0\r\n\r\n{chunk}"
            ),
        ),
        (
            "chunked in HTTP/1.0",
            format!(
                "POST /public/x HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {chunk}"
            ),
        ),
        (
            "chunk size overflow",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
                 ffffffffffffffffffff\r\n{SMUGGLED}"
            ),
        ),
        (
            "chunk size with bare LF",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n1\n\
                 A\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "bare CR in a header",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\rContent-Length: 0\r\n\r\n{SMUGGLED}"),
        ),
    ];
    for (case, bytes) in &cases {
        // 400 for a refused head; 200 (the public request) then 401 (the smuggled one seen
        // by the gateway as the next request, and refused) is harmless. A chunked body that
        // turns malformed after the head was forwarded ends the exchange with 502 today
        // (the client's fault reported as the upstream's; see SECURITY.md, known gaps).
        assert_no_smuggling(&t, case, bytes.as_bytes(), &[200, 400, 401, 502]).await;
    }
    assert_eq!(cases.len(), 16);
    t.still_serves("after smuggling").await;
}

#[tokio::test]
async fn conflicting_lengths_get_400() {
    let t = target().await;
    for (case, bytes) in [
        (
            "conflicting Content-Length",
            "POST /public/x HTTP/1.1\r\nHost: gw\r\n\
             Content-Length: 1\r\nContent-Length: 2\r\n\r\nAB",
        ),
        (
            "signed Content-Length",
            "POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: +1\r\n\
             \r\nA",
        ),
        (
            "TE not ending in chunked",
            "POST /public/x HTTP/1.1\r\nHost: gw\r\n\
             Transfer-Encoding: chunked, identity\r\n\r\n1\r\nA\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n 2\r\n\r\n",
        ),
        (
            "NUL in the target",
            "GET /public/\0x HTTP/1.1\r\nHost: gw\r\n\r\n",
        ),
        (
            "space in the target",
            "GET /public/a b HTTP/1.1\r\nHost: gw\r\n\r\n",
        ),
        ("bad version", "GET /public/x HTTP/9.9\r\nHost: gw\r\n\r\n"),
    ] {
        let ex = exchange(t.gw.addr, bytes.as_bytes(), 1).await;
        assert_eq!(ex.statuses(), [400], "{case}: {ex:?}");
    }
    t.assert_nothing_forwarded("conflicting lengths");
}

#[tokio::test]
async fn bare_lf_requests_are_refused_or_held_to_the_same_rules() {
    let t = target().await;
    // httparse accepts bare LF line ends; the request is then read exactly once, and a
    // required route still wants a token.
    for (case, bytes) in [
        ("bare LF head", "GET /api/secret HTTP/1.1\nHost: gw\n\n"),
        (
            "bare LF with spoofed identity",
            "GET /api/secret HTTP/1.1\nHost: gw\nX-Identity: 1\n\n",
        ),
        (
            "mixed line ends",
            "GET /api/secret HTTP/1.1\r\nHost: gw\nX-Identity: 1\r\n\r\n",
        ),
    ] {
        let ex = exchange(t.gw.addr, bytes.as_bytes(), 1).await;
        match ex.responses.first() {
            Some(r) if r.status == 401 => assert_error_shape(&r.body, 401, case),
            Some(r) => assert_eq!(r.status, 400, "{case}"),
            None => assert!(ex.closed, "{case}"),
        }
    }
    t.assert_nothing_forwarded("bare LF");
}

#[tokio::test]
async fn odd_targets_and_methods_never_reach_a_required_route_unauthenticated() {
    let t = target().await;
    let cases = [
        (
            "absolute-form, other host",
            "GET http://admin.internal/api/secret HTTP/1.1\r\n\
             Host: gw\r\n\r\n",
        ),
        (
            "absolute-form, userinfo",
            "GET http://user:pw@gw/api/secret HTTP/1.1\r\nHost: gw\r\n\
             \r\n",
        ),
        (
            "CONNECT to the upstream",
            "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
        ),
        ("asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n"),
        (
            "lowercase method",
            "get /api/secret HTTP/1.1\r\nHost: gw\r\n\r\n",
        ),
        (
            "unknown method",
            "FOO /api/secret HTTP/1.1\r\nHost: gw\r\n\r\n",
        ),
        ("missing Host", "GET /api/secret HTTP/1.1\r\n\r\n"),
        (
            "duplicate Host",
            "GET /api/secret HTTP/1.1\r\nHost: gw\r\nHost: admin.internal\r\n\r\n",
        ),
        ("HTTP/1.0 without Host", "GET /api/secret HTTP/1.0\r\n\r\n"),
        (
            "Expect: 100-continue",
            "POST /api/secret HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\n\
             Content-Length: 5\r\n\r\n",
        ),
    ];
    for (case, bytes) in cases {
        let ex = exchange(t.gw.addr, bytes.as_bytes(), 1).await;
        let r = ex
            .responses
            .first()
            .unwrap_or_else(|| panic!("{case}: no answer {ex:?}"));
        assert!([400, 401].contains(&r.status), "{case}: {ex:?}");
        if r.status == 401 || r.head.contains("application/json") {
            assert_error_shape(&r.body, r.status, case);
        }
    }
    t.assert_nothing_forwarded("odd targets");
}

#[tokio::test]
async fn absolute_form_targets_reach_the_upstream_in_origin_form() {
    let t = target().await;
    let req = "GET http://gw/public/x?q=1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let ex = exchange(t.gw.addr, req.as_bytes(), 1).await;
    assert_eq!(ex.statuses(), [200], "{ex:?}");
    let seen = t.up.last();
    assert_eq!(seen.target, "/public/x?q=1");
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
}

/// Regression: on a public route, two `Host` headers were both forwarded (with
/// `X-Forwarded-Host` from the first), a missing one was filled with the upstream's, and
/// an absolute-form target could name another host than `Host`: the gateway and the
/// backend could disagree on the site. RFC 9112 §3.2: 400.
#[tokio::test]
async fn ambiguous_hosts_are_refused_not_forwarded() {
    let t = target().await;
    let cases = [
        (
            "duplicate Host",
            "GET /public/x HTTP/1.1\r\nHost: gw\r\nHost: admin.internal\r\n\r\n",
        ),
        (
            "duplicate equal Host",
            "GET /public/x HTTP/1.1\r\nHost: gw\r\nHost: gw\r\n\r\n",
        ),
        ("missing Host", "GET /public/x HTTP/1.1\r\n\r\n"),
        ("empty Host", "GET /public/x HTTP/1.1\r\nHost:\r\n\r\n"),
        (
            "list in Host",
            "GET /public/x HTTP/1.1\r\nHost: gw, admin.internal\r\n\r\n",
        ),
        (
            "userinfo in Host",
            "GET /public/x HTTP/1.1\r\nHost: gw@admin.internal\r\n\r\n",
        ),
        (
            "absolute-form, other host",
            "GET http://admin.internal/public/x HTTP/1.1\r\nHost: gw\r\n\r\n",
        ),
        (
            "duplicate Host on login",
            "POST /auth HTTP/1.1\r\nHost: gw\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (case, bytes) in cases {
        let ex = exchange(t.gw.addr, bytes.as_bytes(), 1).await;
        assert_eq!(ex.statuses(), [400], "{case}: {ex:?}");
        // Well-formed HTTP: the gateway itself answers, in its error shape.
        assert_error_shape(&ex.responses[0].body, 400, case);
    }
    t.assert_nothing_forwarded("ambiguous hosts");
    // HTTP/1.0 may omit Host.
    let ex = exchange(t.gw.addr, b"GET /public/x HTTP/1.0\r\n\r\n", 1).await;
    assert_eq!(ex.statuses(), [200], "{ex:?}");
}

#[tokio::test]
async fn h2c_upgrade_cannot_smuggle_past_the_gateway() {
    let t = target().await;
    let upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                   HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA";
    // No token: refused, never a protocol switch.
    let req = format!("GET /api/secret HTTP/1.1\r\nHost: gw\r\n{upgrade}\r\n\r\n");
    let ex = exchange(t.gw.addr, req.as_bytes(), 1).await;
    assert_eq!(ex.statuses(), [401], "{ex:?}");
    t.assert_nothing_forwarded("h2c without a token");
    // With a token, and on a public route: forwarded as a plain request.
    let req = format!(
        "GET /api/secret HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n{upgrade}\r\n\r\n\
         GET /public/x HTTP/1.1\r\nHost: gw\r\n{upgrade}\r\n\r\n",
        jwt_header(&token())
    );
    let ex = exchange(t.gw.addr, req.as_bytes(), 2).await;
    assert_eq!(ex.statuses(), [200, 200], "{ex:?}");
    for seen in t.up.requests() {
        assert!(!seen.headers.contains_key("upgrade"), "{seen:?}");
        assert!(!seen.headers.contains_key("http2-settings"), "{seen:?}");
    }
    assert_eq!(t.forwarded(), 2);
}

#[tokio::test]
async fn pipelined_requests_are_each_held_to_their_route() {
    let t = target().await;
    let req = format!(
        "GET /public/a HTTP/1.1\r\nHost: gw\r\n\r\nGET /api/secret HTTP/1.1\r\nHost: gw\r\n\
         X-Identity: 1\r\n\r\nGET /api/secret HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        jwt_header(&token())
    );
    let ex = exchange(t.gw.addr, req.as_bytes(), 3).await;
    assert_eq!(ex.statuses(), [200, 401, 200], "{ex:?}");
    let seen = t.up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].target, "/public/a");
    assert!(!seen[0].headers.contains_key("x-identity"));
    assert_eq!(seen[1].headers["x-identity"], "1");
}
