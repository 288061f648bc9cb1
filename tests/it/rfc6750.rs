//! `errors = "rfc6750"` with `prefix = "Bearer"`: standard Bearer clients.

use serde_json::json;

use crate::support::*;

async fn bearer() -> Gateway {
    gateway()
        .tokens("prefix = \"Bearer\"")
        .tokens("errors = \"rfc6750\"")
        .respond_identity("/protected")
        .start()
        .await
}

#[tokio::test]
async fn bearer_tokens_are_accepted() {
    let gw = bearer().await;
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &format!("Bearer {}", token()))],
    )
    .await;
    assert_eq!(r.json(), json!({"identity": 1}));
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &format!("bearer {}", token()))],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn challenges_follow_rfc6750() {
    let gw = bearer().await;
    let r = get(&gw.url("/protected"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"Login Required\"")
    );

    let expired =
        mint(json!({"exp": now() - 3600, "iat": now() - 4000, "nbf": now() - 4000, "identity": 1}));
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &format!("Bearer {expired}"))],
    )
    .await;
    r.assert_error(401, "Invalid token", "Signature has expired");
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"Login Required\", \
             error=\"invalid_token\", error_description=\"Signature has expired\""
        )
    );

    let r = get(&gw.url("/protected"), &[("authorization", "Bearer a b")]).await;
    r.assert_error(400, "Invalid JWT header", "Token contains spaces");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_request\""));

    // Quotes in a description are not allowed in a quoted-string: replaced, header stays valid.
    let noexp = mint(json!({"iat": now(), "nbf": now(), "identity": 1}));
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &format!("Bearer {noexp}"))],
    )
    .await;
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"Login Required\", \
             error=\"invalid_token\", error_description=\"Token is missing the 'exp' claim\""
        )
    );
}

#[tokio::test]
async fn standard_sub_tokens_with_audience() {
    let gw = gateway()
        .without_users()
        .tokens("prefix = \"Bearer\"")
        .tokens("identity_claim = \"sub\"")
        .tokens("required_claims = [\"exp\"]")
        .tokens("audience = \"my-api\"")
        .tokens("issuer = \"https://idp.test\"")
        .respond_identity("/me")
        .start()
        .await;
    let ok = mint(json!({
        "sub": "user-42", "exp": now() + 60, "aud": ["other", "my-api"],
        "iss": "https://idp.test",
    }));
    let r = get(
        &gw.url("/me"),
        &[("authorization", &format!("Bearer {ok}"))],
    )
    .await;
    assert_eq!(r.json(), json!({"identity": "user-42"}));
    let cases = [
        (
            json!({"sub": "u", "exp": now() + 60, "aud": "other", "iss": "https://idp.test"}),
            "Invalid audience",
        ),
        (
            json!({"sub": "u", "exp": now() + 60, "iss": "https://idp.test"}),
            "Token is missing the \"aud\" claim",
        ),
        (
            json!({"sub": "u", "exp": now() + 60, "aud": "my-api", "iss": "https://evil.test"}),
            "Invalid issuer",
        ),
        (
            json!({"sub": "u", "exp": now() + 60, "aud": "my-api"}),
            "Token is missing the \"iss\" claim",
        ),
    ];
    for (c, description) in cases {
        get(
            &gw.url("/me"),
            &[("authorization", &format!("Bearer {}", mint(c)))],
        )
        .await
        .assert_error(401, "Invalid token", description);
    }
}
