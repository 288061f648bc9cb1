//! Login attacks: user enumeration, hostile JSON, huge passwords, brute force against the
//! shipped limits (which must not tell existing accounts from others either).

use serde_json::json;

use crate::harness::*;
use crate::support::*;

async fn login_raw(gw: &Gateway, content_type: &str, body: impl Into<bytes::Bytes>) -> Resp {
    request(
        "POST",
        &gw.url("/auth"),
        &[("content-type", content_type)],
        body,
    )
    .await
}

/// The response with its `date` header removed, for byte comparison.
fn fingerprint(r: &Resp) -> String {
    let mut headers: Vec<String> = r
        .headers
        .iter()
        // The date and the per-request id differ for every answer by design.
        .filter(|(k, _)| *k != "date" && *k != "x-request-id")
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    headers.sort();
    format!("{}\n{}\n{}", r.status, headers.join("\n"), r.text())
}

#[tokio::test]
async fn credential_failures_are_indistinguishable() {
    // Limits above the 17 failures below: each must reach the credential check.
    let t = target_with(
        gateway().table("[login.limits]\npair_failures = 100\naccount_failures = 100\n"),
    )
    .await;
    let long = "p".repeat(15 * 1024);
    let bodies = [
        json!({"username": "user1", "password": "wrong"}),
        json!({"username": "nobody", "password": "abcxyz"}),
        json!({"username": "nobody", "password": "wrong"}),
        json!({"username": "USER1", "password": "abcxyz"}),
        json!({"username": "user1 ", "password": "abcxyz"}),
        json!({"username": "\u{ff55}ser1", "password": "abcxyz"}),
        json!({"username": "user1\u{0}", "password": "abcxyz"}),
        json!({"username": "user1", "password": "abcxyz\u{0}"}),
        json!({"username": "user1", "password": ""}),
        json!({"username": "user1", "password": null}),
        json!({"username": "user1", "password": 1}),
        json!({"username": "user1", "password": ["abcxyz"]}),
        json!({"username": 1, "password": "abcxyz"}),
        json!({"username": "user1"}),
        json!({"username": "user1", "password": "abcxyz", "admin": true}),
        // Over the 1024-byte cap: refused after the same (capped) work, never hashed in full.
        json!({"username": "user1", "password": long}),
        json!({"username": "nobody", "password": long}),
    ];
    let first = fingerprint(&post_json(&t.gw.url("/auth"), &bodies[0].to_string()).await);
    assert!(first.starts_with("401 "), "{first}");
    assert!(first.contains("Invalid credentials"), "{first}");
    for body in &bodies[1..] {
        let r = post_json(&t.gw.url("/auth"), &body.to_string()).await;
        assert_refused(&r, 401, &body.to_string()[..body.to_string().len().min(80)]);
        assert_eq!(
            fingerprint(&r),
            first,
            "{}",
            &body.to_string()[..60.min(body.to_string().len())]
        );
    }
    assert_eq!(bodies.len(), 17);
    t.assert_nothing_forwarded("login");
    // The real credentials still work.
    assert!(!t.gw.login("user1", PASSWORD).await.is_empty());
}

#[tokio::test]
async fn hostile_login_bodies_get_a_clean_refusal() {
    let t = target().await;
    let deep_array = format!("{}{}", "[".repeat(8000), "]".repeat(8000));
    let deep_member = format!(
        r#"{{"username":{}"x"{},"password":"abcxyz"}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let deep_object = format!(r#"{}1{}"#, r#"{"a":"#.repeat(2000), "}".repeat(2000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("deeply nested array", deep_array.into_bytes()),
        ("deeply nested member", deep_member.into_bytes()),
        ("deeply nested object", deep_object.into_bytes()),
        (
            "non-UTF-8 string",
            b"{\"username\":\"user1\xff\",\"password\":\"abcxyz\"}".to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"username":"user1\ud800","password":"abcxyz"}"#.to_vec(),
        ),
        (
            "UTF-16 body",
            "{\"username\":\"user1\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
        (
            "duplicate username",
            br#"{"username":"nobody","username":"user1","password":"abcxyz"}"#.to_vec(),
        ),
        (
            "duplicate password",
            br#"{"username":"user1","password":"x","password":"abcxyz"}"#.to_vec(),
        ),
        (
            "trailing garbage",
            br#"{"username":"user1","password":"abcxyz"} {}"#.to_vec(),
        ),
        ("not an object", br#"["user1","abcxyz"]"#.to_vec()),
        ("empty", Vec::new()),
        ("NUL bytes", vec![0; 1000]),
        (
            "huge number",
            format!(r#"{{"username":1{},"password":"x"}}"#, "0".repeat(10000)).into_bytes(),
        ),
    ];
    for (case, body) in &cases {
        let r = login_raw(&t.gw, "application/json", body.clone()).await;
        // 400 for a malformed body; a credential failure is 401: never a token, never a 500.
        assert!(
            [400, 401].contains(&r.status.as_u16()),
            "{case}: {}",
            r.text()
        );
        assert_refused(&r, r.status.as_u16(), case);
    }
    assert_eq!(cases.len(), 13);
    t.assert_nothing_forwarded("hostile login bodies");
    t.still_serves("after hostile login bodies").await;
}

#[tokio::test]
async fn oversized_login_bodies_are_refused_unread() {
    let t = target().await;
    let pw = "p".repeat(1024 * 1024);
    let body = json!({"username": "user1", "password": pw}).to_string();
    // Declared length over the 16 KiB limit.
    let r = post_json(&t.gw.url("/auth"), &body).await;
    assert_refused(&r, 413, "1 MiB password");
    // Chunked, with no declared length: counted while reading.
    let stream = futures_util::stream::iter((0..64).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b' ';
            16 * 1024
        ])))
    }));
    let client: hyper_util::client::legacy::Client<_, http_body_util::StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(t.gw.url("/auth"))
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(stream))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 413);
    // A wrong content type is refused before the body is read.
    let r = login_raw(&t.gw, "text/plain", body).await;
    assert_refused(&r, 400, "text/plain login");
    t.still_serves("after oversized logins").await;
}

#[tokio::test]
async fn brute_force_is_refused_alike_for_real_and_unknown_accounts() {
    // The shipped limits: five failures for one (address, account) pair.
    let t = target().await;
    let mut locked = Vec::new();
    for user in ["user1", "nobody"] {
        for i in 0..5 {
            let body = json!({"username": user, "password": format!("guess{i}")});
            assert_refused(
                &post_json(&t.gw.url("/auth"), &body.to_string()).await,
                401,
                user,
            );
        }
        // The right password does not get through either: guessing it gains nothing.
        let body = json!({"username": user, "password": PASSWORD});
        let r = post_json(&t.gw.url("/auth"), &body.to_string()).await;
        assert_refused(&r, 429, user);
        assert!(r.header("retry-after").is_some(), "{user}");
        locked.push((r.status, r.body.clone()));
    }
    // Byte-identical: a lockout reveals no account.
    assert_eq!(locked[0], locked[1]);
    t.assert_nothing_forwarded("login");
    // Another account from the same address is not locked.
    assert!(!t.gw.login("user2", PASSWORD).await.is_empty());
}
