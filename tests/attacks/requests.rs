//! Request-line and header games a backend reads differently from the gateway: a method's
//! spelling, escapes of unreserved characters, and the token header named in `Connection`.

use crate::harness::*;
use crate::support::*;

/// A required `/api` (GET only) next to a public catch-all, all on one backend.
async fn layout() -> Target {
    let up = Upstream::start().await;
    let gw = gateway()
        .route_with("/api", &up.url(), "required", &["methods = [\"GET\"]"])
        .route("/public", &up.url(), "public")
        .route("/", &up.url(), "public")
        .start()
        .await;
    Target { gw, up }
}

async fn send(t: &Target, line: &str, extra: &[&str]) -> RawResp {
    let mut lines = vec![line, "Host: gw", "Connection: close"];
    lines.extend_from_slice(extra);
    let ex = exchange(t.gw.addr, head(&lines).as_bytes(), 1).await;
    ex.responses
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{line}: no answer"))
}

fn body(r: &RawResp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// Regression: `get /public/x` (and `Post`, `dElEtE` ...) was routed and forwarded; a
/// backend that upper-cases methods then ran a method the route table never matched.
#[tokio::test]
async fn case_variants_of_standard_methods_are_refused_before_routing() {
    let t = layout().await;
    let jwt = format!("Authorization: JWT {}", token());
    for method in [
        "get", "Get", "post", "Post", "dElEtE", "put", "patch", "head", "options", "trace",
    ] {
        for path in ["/public/x", "/api/secret"] {
            let case = format!("{method} {path}");
            let r = send(&t, &format!("{method} {path} HTTP/1.1"), &[&jwt]).await;
            assert_eq!(r.status, 400, "{case}: {r:?}");
            assert_error_shape(&r.body, 400, &case);
            assert_eq!(
                body(&r)["description"],
                "The method is a case variant of a standard method; methods are case-sensitive",
                "{case}"
            );
            t.assert_nothing_forwarded(&case);
        }
    }
    // Extension methods keep working, whatever their case, and the standard spellings too.
    for method in ["PROPFIND", "purge", "GET"] {
        let r = send(&t, &format!("{method} /public/x HTTP/1.1"), &[]).await;
        assert_eq!(r.status, 200, "{method}: {r:?}");
        let seen = t.up.last();
        assert_eq!(seen.method.as_str(), method);
        assert_eq!(seen.target, "/public/x");
    }
}

/// Regression: `%7E` (and other escapes of unreserved characters) were refused as
/// "needless"; they mean the characters themselves (RFC 3986 §6.2.2.2) and are now decoded,
/// routed and forwarded decoded. Encoded slashes, dots and double encoding stay refused.
#[tokio::test]
async fn unreserved_escapes_are_decoded_then_routed_and_forwarded() {
    let t = layout().await;
    for (raw, forwarded) in [
        ("/public/%7Euser", "/public/~user"),
        ("/public/%41%2D%5f%2e%30", "/public/A-_.0"),
        ("/%70ublic/x?q=%7E", "/public/x?q=%7E"),
        ("/public/a%20b/%7e", "/public/a%20b/~"),
    ] {
        let r = send(&t, &format!("GET {raw} HTTP/1.1"), &[]).await;
        assert_eq!(r.status, 200, "{raw}: {r:?}");
        assert_eq!(r.body, b"ok");
        assert_eq!(t.up.last().target, forwarded, "{raw}");
    }
    // A decoded path is held to the route it names: `/%61pi` is `/api`, which needs a token.
    let before = t.forwarded();
    let r = send(&t, "GET /%61pi/secret HTTP/1.1", &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        body(&r)["description"],
        "Request does not contain an access token"
    );
    assert_eq!(t.forwarded(), before);
    let jwt = format!("Authorization: JWT {}", token());
    let r = send(&t, "GET /%61pi/secr%65t HTTP/1.1", &[&jwt]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = t.up.last();
    assert_eq!(seen.target, "/api/secret");
    assert_eq!(seen.headers["x-identity"], "1");
    // Still refused: encoded slashes, dots that climb out, double encoding.
    for (raw, why) in [
        ("/public%2fx", "The path contains an encoded slash"),
        (
            "/public/%2e%2e/api/secret",
            "The path routes differently once normalized",
        ),
        (
            "/public/%252e%252e/api",
            "The path contains a double-encoded dot, slash or NUL",
        ),
        (
            "/public/%25%32%65%25%32%65/api",
            "The path contains a double-encoded dot, slash or NUL",
        ),
        ("/public/%7", "The path contains a malformed percent escape"),
    ] {
        let before = t.forwarded();
        let r = send(&t, &format!("GET {raw} HTTP/1.1"), &[]).await;
        assert_eq!(r.status, 400, "{raw}: {r:?}");
        assert_error_shape(&r.body, 400, raw);
        assert_eq!(body(&r)["description"], why, "{raw}");
        assert_eq!(t.forwarded(), before, "{raw}");
    }
}

/// Regression: `Connection: Authorization` with a valid token answered 401 "Request does
/// not contain an access token", which is false. Still refused (fail closed), as a 400
/// that says what happened.
#[tokio::test]
async fn token_header_listed_in_connection_is_a_bad_request() {
    let t = target_with(gateway().tokens("header = \"X-Auth\"")).await;
    let jwt = format!("JWT {}", token());
    for connection in ["X-Auth", "keep-alive, x-auth", "X_Auth"] {
        let r = t.api(&[("x-auth", &jwt), ("connection", connection)]).await;
        r.assert_error(
            400,
            "Bad Request",
            concat!(
                "The x-auth header is listed in Connection, ",
                "which removes it before the token can be read"
            ),
        );
        t.assert_nothing_forwarded(connection);
    }
    // Without the listing the same token works; on a public route the listing is harmless.
    let r = t.api(&[("x-auth", &jwt)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(t.up.last().headers["x-identity"], "1");
    let r = get(
        &t.gw.url("/public/x"),
        &[("x-auth", &jwt), ("connection", "x-auth")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = t.up.last();
    assert!(!seen.headers.contains_key("x-auth"));
    assert!(!seen.headers.contains_key("x-identity"));
}
