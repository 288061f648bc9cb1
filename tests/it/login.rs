//! `POST /auth`: Flask-JWT's login endpoint.

use std::sync::Arc;

use serde_json::json;

use crate::support::*;

const INVALID: (u16, &str, &str) = (401, "Bad Request", "Invalid credentials");

async fn seed() -> Gateway {
    gateway().respond_identity("/protected").start().await
}

#[tokio::test]
async fn success_returns_a_token() {
    let gw = seed().await;
    let r = post_json(
        &gw.url("/auth"),
        r#"{"username":"user1","password":"abcxyz"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.text().ends_with("}\n"));
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(token.split('.').count(), 3);
    // A string id is issued with its JSON type.
    let t2 = gw.login("user2", PASSWORD).await;
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &jwt_header(&t2))],
    )
    .await;
    assert_eq!(r.json(), json!({"identity": "alice"}));
}

#[tokio::test]
async fn every_bad_credential_gets_the_same_answer() {
    // Limits high enough for every kind of failure to reach the credential check.
    let gw = gateway()
        .table("[login.limits]\npair_failures = 100\naccount_failures = 100\n")
        .start()
        .await;
    let bodies = [
        r#"{"username":"nobody","password":"abcxyz"}"#,
        r#"{"username":"user1","password":"wrong"}"#,
        r#"{"username":"user1","password":""}"#,
        r#"{"username":"user1","password":null}"#,
        r#"{"username":"user1"}"#,
        r#"{"password":"abcxyz"}"#,
        r#"{"username":"user1","password":"abcxyz","admin":true}"#,
        r#"{"username":1,"password":"abcxyz"}"#,
        r#"{"username":"user1","password":123}"#,
        r#"{"username":"user1","password":["abcxyz"]}"#,
        r#"{}"#,
    ];
    let mut answers = Vec::new();
    for body in bodies {
        let r = post_json(&gw.url("/auth"), body).await;
        r.assert_error(INVALID.0, INVALID.1, INVALID.2);
        answers.push((r.status, r.body.clone()));
    }
    // Byte-identical: nothing tells an unknown user from a wrong password.
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn content_types() {
    let gw = seed().await;
    let body = r#"{"username":"user1","password":"abcxyz"}"#;
    for ct in [
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let r = request(
            "POST",
            &gw.url("/auth"),
            &[("content-type", ct)],
            body.to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
    }
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| vec![("content-type", c)]).unwrap_or_default();
        let r = request("POST", &gw.url("/auth"), &headers, body.to_string()).await;
        r.assert_error(
            400,
            "Bad Request",
            "The request body must be JSON (Content-Type: application/json)",
        );
    }
}

#[tokio::test]
async fn malformed_bodies_get_a_clean_400() {
    let gw = seed().await;
    let cases = [
        ("[1,2]", "The request body must be a JSON object"),
        ("\"user1\"", "The request body must be a JSON object"),
        ("{\"username\":", "The request body is not valid JSON"),
        ("", "The request body is not valid JSON"),
        (
            r#"{"username":"user1","username":"user2","password":"abcxyz"}"#,
            "The request body repeats a member",
        ),
    ];
    for (body, description) in cases {
        post_json(&gw.url("/auth"), body)
            .await
            .assert_error(400, "Bad Request", description);
    }
    // Non-UTF-8 bytes.
    let r = request(
        "POST",
        &gw.url("/auth"),
        &[("content-type", "application/json")],
        vec![0xff, 0xfe, b'{'],
    )
    .await;
    assert_eq!(r.status, 400);
    // Nesting deeper than the parser's recursion limit: an error, not a stack overflow.
    let deep = format!("{{\"username\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let r = post_json(&gw.url("/auth"), &deep).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let gw = seed().await;
    let big = format!(
        r#"{{"username":"user1","password":"{}"}}"#,
        "x".repeat(20 * 1024)
    );
    post_json(&gw.url("/auth"), &big).await.assert_error(
        413,
        "Payload Too Large",
        "The login request body is too large",
    );
    // A password over the hashing cap but under the body cap: refused after bounded work.
    let long = format!(
        r#"{{"username":"user1","password":"{}"}}"#,
        "x".repeat(4096)
    );
    post_json(&gw.url("/auth"), &long)
        .await
        .assert_error(INVALID.0, INVALID.1, INVALID.2);
}

#[tokio::test]
async fn other_methods() {
    let gw = seed().await;
    for m in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = request(m, &gw.url("/auth"), &[], "").await;
        r.assert_error(
            405,
            "Method Not Allowed",
            "The method is not allowed for the requested URL.",
        );
        assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    }
    let r = request("HEAD", &gw.url("/auth"), &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = request("OPTIONS", &gw.url("/auth"), &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
}

#[tokio::test]
async fn attempts_are_rate_limited_per_client() {
    let gw = gateway()
        .login("max_attempts = 3")
        .login("attempts_window = \"1h\"")
        .respond_identity("/protected")
        .start()
        .await;
    let wrong = r#"{"username":"user1","password":"wrong"}"#;
    for _ in 0..3 {
        post_json(&gw.url("/auth"), wrong)
            .await
            .assert_error(INVALID.0, INVALID.1, INVALID.2);
    }
    // Even the right password is refused once the budget is spent: brute force gains nothing.
    let r = post_json(
        &gw.url("/auth"),
        r#"{"username":"user1","password":"abcxyz"}"#,
    )
    .await;
    r.assert_error(
        429,
        "Too Many Requests",
        "Too many login attempts; retry later",
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1200).contains(&retry), "retry-after {retry}");
    // Protected routes are not affected.
    let t = token();
    assert_eq!(
        get(&gw.url("/protected"), &[("authorization", &jwt_header(&t))])
            .await
            .status,
        200
    );
}

/// (name, nice value) of each thread of this process.
fn threads() -> Vec<(String, i64)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the command name (which may hold spaces) start at field 3;
            // nice is field 19.
            let rest = &stat[stat.rfind(')')? + 1..];
            let nice = rest.split_whitespace().nth(19 - 3)?.parse().ok()?;
            Some((name.trim().to_string(), nice))
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn password_hashing_runs_below_request_priority_on_threads_of_its_own() {
    let gw = Arc::new(seed().await);
    // Four logins, hashed one or two at a time: long enough to watch the hashing threads.
    let logins: Vec<_> = (0..4)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.login("user1", PASSWORD).await })
        })
        .collect();
    // Nice values seen on hashing threads (a thread is seen at 0 for the instant between
    // its start and its first statement).
    let mut seen = std::collections::BTreeSet::new();
    while !logins.iter().all(|l| l.is_finished()) {
        seen.extend(
            threads()
                .into_iter()
                .filter(|(name, _)| name == "gateway-hash")
                .map(|(_, nice)| nice),
        );
        tokio::task::yield_now().await;
    }
    for l in logins {
        l.await.unwrap();
    }
    assert!(seen.contains(&10), "no hashing thread at nice 10: {seen:?}");
    // Only hashing threads run lowered (other tests' may be alive too): the priority does
    // not stay behind on a pool thread. The workers keep the normal priority.
    let after = threads();
    assert!(
        after
            .iter()
            .all(|(name, nice)| *nice == 0 || name == "gateway-hash"),
        "{after:?}"
    );
    assert!(after
        .iter()
        .any(|(name, nice)| name.starts_with("gateway-worker") && *nice == 0));
}
