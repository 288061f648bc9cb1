//! Claim attacks: correctly signed tokens whose claims have the wrong type, sign or size.
//! The signature is valid in every case here, so only the claim rules stand in the way.

use serde_json::{json, Value};

use crate::harness::*;
use crate::support::*;

const NOT_INT: [(&str, &str); 3] = [
    ("exp", "Expiration Time claim (exp) must be an integer."),
    ("iat", "Issued At claim (iat) must be an integer."),
    ("nbf", "Not Before claim (nbf) must be an integer."),
];

/// Valid claims for user 1 with `name` replaced by the raw JSON text `value`.
fn with_raw(name: &str, value: &str) -> String {
    let t = now();
    let mut parts = vec![
        ("exp", (t + 300).to_string()),
        ("iat", t.to_string()),
        ("nbf", t.to_string()),
        ("identity", "1".to_string()),
    ];
    for p in &mut parts {
        if p.0 == name {
            p.1 = value.to_string();
        }
    }
    let body: Vec<String> = parts.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

#[tokio::test]
async fn time_claims_of_the_wrong_type_are_refused() {
    let t = target().await;
    let mut cases = 0;
    for (name, not_int) in NOT_INT {
        for value in [
            r#""123""#,
            r#""1e10""#,
            "true",
            "false",
            "{}",
            "[]",
            r#"[99999999999]"#,
        ] {
            let p = with_raw(name, value);
            t.refuses_token(&p, &sign_raw(&p), Some(not_int)).await;
            cases += 1;
        }
        let p = with_raw(name, "null");
        let missing = format!("Token is missing the \"{name}\" claim");
        t.refuses_token(&p, &sign_raw(&p), Some(&missing)).await;
        // Out of f64 range: not a JSON number serde will read.
        let p = with_raw(name, "1e400");
        t.refuses_token(&p, &sign_raw(&p), Some("Invalid payload string: not JSON"))
            .await;
        cases += 2;
    }
    assert_eq!(cases, 27);
    t.still_serves("after time claim types").await;
}

#[tokio::test]
async fn extreme_time_values_fail_closed() {
    let t = target().await;
    let now = now();
    let expired = "Signature has expired";
    let future_iat = "Issued At claim (iat) cannot be in the future.";
    let future_nbf = "The token is not yet valid (nbf)";
    // Beyond every date (regression: `exp = 1e300` meant "never expires").
    let exp_range = "Expiration Time claim (exp) must be a date between 1970 and 9999.";
    let iat_range = "Issued At claim (iat) must be a date between 1970 and 9999.";
    let nbf_range = "Not Before claim (nbf) must be a date between 1970 and 9999.";
    let cases: Vec<(&str, String, &str)> = vec![
        ("exp", "0".into(), expired),
        ("exp", format!("{}.5", now - 3600), expired),
        ("exp", format!("{}", now - 11), expired),
        ("exp", "-1".into(), exp_range),
        ("exp", "-1e300".into(), exp_range),
        ("exp", "-9223372036854775808".into(), exp_range),
        ("exp", "18446744073709551615".into(), exp_range),
        ("exp", "18446744073709551616".into(), exp_range),
        ("exp", "1e300".into(), exp_range),
        ("exp", "253402300800".into(), exp_range),
        ("iat", format!("{}", now + 3600), future_iat),
        ("iat", "253402300799".into(), future_iat),
        ("iat", "18446744073709551615".into(), iat_range),
        ("iat", "1e300".into(), iat_range),
        ("iat", "-1e300".into(), iat_range),
        ("nbf", "253402300799".into(), future_nbf),
        ("nbf", "18446744073709551615".into(), nbf_range),
        ("nbf", "1e300".into(), nbf_range),
        ("nbf", "9223372036854775807".into(), nbf_range),
        ("nbf", "-9223372036854775808".into(), nbf_range),
    ];
    for (name, value, description) in &cases {
        let p = with_raw(name, value);
        t.refuses_token(&p, &sign_raw(&p), Some(description)).await;
    }
    assert_eq!(cases.len(), 20);
    // The edges of the range, and fractions inside it, are dates: no arithmetic on them
    // may overflow or panic.
    for (name, value) in [
        ("exp", "253402300799".to_string()),
        ("exp", format!("{}.25", now + 60)),
        ("iat", "0".to_string()),
        ("nbf", "0.5".to_string()),
    ] {
        let p = with_raw(name, &value);
        let r = t.with_token(&sign_raw(&p)).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text());
        assert_eq!(t.up.last().headers["x-identity"], "1");
    }
}

#[tokio::test]
async fn identity_claims_of_the_wrong_type_are_refused() {
    let t = target().await;
    let bad_type = "Identity claim must be a string or an integer";
    let unknown = "User does not exist";
    let cases: [(Value, &str); 16] = [
        (json!({"id": 1}), bad_type),
        (json!([1]), bad_type),
        (json!([]), bad_type),
        (json!(""), bad_type),
        (json!(true), bad_type),
        (json!(1.0), bad_type),
        (json!(1.5), bad_type),
        (json!(9_223_372_036_854_775_808u64), bad_type),
        (json!(u64::MAX), bad_type),
        // Type confusion: the user's id is the integer 1, not the string "1".
        (json!("1"), unknown),
        (json!(-1), unknown),
        (json!("alice\r\nX-Identity: 1"), unknown),
        (json!("alice "), unknown),
        (json!("ALICE"), unknown),
        (json!("\u{e5}lice"), unknown),
        (json!("alice\u{0}"), unknown),
    ];
    for (identity, description) in &cases {
        let token = mint(claims(identity.clone()));
        t.refuses_token(&identity.to_string(), &token, Some(description))
            .await;
    }
    let p = with_raw("identity", "null");
    t.refuses_token(
        "identity null",
        &sign_raw(&p),
        Some("Token is missing the \"identity\" claim"),
    )
    .await;
    // A standard `sub` is not our identity claim.
    let now = now();
    let sub = json!({"exp": now + 300, "iat": now, "nbf": now, "sub": 1});
    t.refuses_token(
        "sub instead of identity",
        &mint(sub),
        Some("Token is missing the \"identity\" claim"),
    )
    .await;
    // Flask-JWT: a token with an audience we were not told about is not for us.
    for aud in [
        json!("other-service"),
        json!([]),
        json!(["a", "b"]),
        json!(null),
    ] {
        let mut c = claims(json!(1));
        c["aud"] = aud.clone();
        let r = t.with_token(&mint(c)).await;
        assert_refused(&r, 401, &format!("aud {aud}"));
        t.assert_nothing_forwarded(&format!("aud {aud}"));
    }
    t.still_serves("after identity types").await;
}

#[tokio::test]
async fn identities_that_cannot_be_headers_are_refused_without_a_user_list() {
    let t = target_with(gateway().without_users()).await;
    let cases = [
        "bob\r\nX-Admin: yes",
        "bob\nX-Admin: yes",
        "bob\r",
        "bob\u{0}",
        "bob\u{7f}",
        "\u{1b}[31mbob",
        "bob\u{b}",
    ];
    for identity in cases {
        let token = mint(claims(json!(identity)));
        t.refuses_token(
            &format!("{identity:?}"),
            &token,
            Some("Identity claim cannot be forwarded as a header"),
        )
        .await;
    }
    // What can be a header value is forwarded byte for byte, never altered or truncated.
    for identity in [
        "J\u{fc}rgen",
        "\u{1F600}",
        "a b",
        "x".repeat(6000).as_str(),
        "0",
    ] {
        let r = t.with_token(&mint(claims(json!(identity)))).await;
        assert_eq!(r.status, 200, "{identity:?}: {}", r.text());
        let seen = t.up.last();
        let all: Vec<_> = seen.headers.get_all("x-identity").iter().collect();
        assert_eq!(all.len(), 1, "{identity:?}");
        assert_eq!(all[0].as_bytes(), identity.as_bytes(), "{identity:?}");
    }
}

/// Regression: an identity with surrounding whitespace was forwarded as is, and HTTP parsers
/// trim field values, so the backend read the token of " alice" as user "alice".
#[tokio::test]
async fn identity_with_surrounding_whitespace_is_not_trimmed_into_another_user() {
    let t = target_with(gateway().without_users()).await;
    for identity in [" alice", "alice ", "\talice", "alice\t", " "] {
        let token = mint(claims(json!(identity)));
        t.refuses_token(
            &format!("{identity:?}"),
            &token,
            Some("Identity claim cannot be forwarded as a header"),
        )
        .await;
    }
    t.still_serves("after padded identities").await;
}
