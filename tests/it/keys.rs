//! The keyring: every algorithm end to end, kid selection, alg confusion, the published
//! JWKS, issued claims, lifetime limits, the verified-token cache, and config problems.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::support::*;
use gateway::auth::keys::alg_name;

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h).unwrap(),
    )
    .unwrap()
}

fn payload_of(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).unwrap(),
    )
    .unwrap()
}

async fn call(gw: &Gateway, token: &str) -> Resp {
    get(
        &gw.url("/protected"),
        &[("authorization", &jwt_header(token))],
    )
    .await
}

#[tokio::test]
async fn every_algorithm_issues_and_verifies_end_to_end() {
    use Algorithm::*;
    for alg in [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS384, HS512,
    ] {
        let key = keypair(alg);
        let name = alg_name(alg);
        let material = if key.public.is_some() {
            "private_key_file = \"k.pem\"".to_string()
        } else {
            "secret_file = \"k.secret\"".to_string()
        };
        let gw = gateway()
            .respond_identity("/protected")
            .file("k.pem", &key.private)
            .file("k.secret", &key.private)
            .table(&key_table("k-1", alg, &material, true))
            .start()
            .await;
        let token = gw.login("user1", PASSWORD).await;
        let header = header_of(&token);
        assert_eq!(header["alg"], name);
        // Asymmetric tokens name their key (JWKS consumers need it); one HMAC key does not.
        let want_kid = key.public.is_some();
        assert_eq!(
            header.get("kid") == Some(&json!("k-1")),
            want_kid,
            "{name}: {header}"
        );
        let r = call(&gw, &token).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.json(), json!({"identity": 1}));
        // The token's own algorithm, and nothing else, is accepted.
        let other = if alg == HS512 { HS384 } else { HS512 };
        let forged = sign_with(
            other,
            &format!(r#"{{"typ":"JWT","alg":"{}","kid":"k-1"}}"#, alg_name(other)),
            &claims(json!(1)).to_string(),
            SECRET,
        );
        call(&gw, &forged).await.assert_error(
            401,
            "Invalid token",
            "The specified alg value is not allowed",
        );
    }
}

#[tokio::test]
async fn a_single_hmac_key_keeps_the_flask_jwt_header() {
    let gw = gateway()
        .respond_identity("/protected")
        .file("k.secret", SECRET)
        .table(&key_table(
            "only",
            Algorithm::HS256,
            "secret_file = \"k.secret\"",
            true,
        ))
        .start()
        .await;
    let token = gw.login("user1", PASSWORD).await;
    let header = token.split('.').next().unwrap();
    assert_eq!(header, b64(br#"{"typ":"JWT","alg":"HS256"}"#));
    // Same secret as the legacy config: the support helpers' tokens verify too.
    assert_eq!(call(&gw, &crate::support::token()).await.status, 200);
}

#[tokio::test]
async fn an_rs256_public_key_never_verifies_an_hs256_token() {
    let rsa = keypair(Algorithm::RS256);
    let public = rsa.public.clone().unwrap();
    let gw = gateway()
        .respond_identity("/protected")
        .file("rsa.pem", &public)
        .file("k.secret", SECRET)
        .table(&key_table(
            "hs",
            Algorithm::HS256,
            "secret_file = \"k.secret\"",
            true,
        ))
        .table(&key_table(
            "rsa",
            Algorithm::RS256,
            "public_key_file = \"rsa.pem\"",
            false,
        ))
        .start()
        .await;
    // The classic confusion: HMAC over the token with the public PEM as the "secret".
    let payload = claims(json!(1)).to_string();
    for header in [
        r#"{"typ":"JWT","alg":"HS256","kid":"rsa"}"#,
        r#"{"typ":"JWT","alg":"RS256","kid":"rsa"}"#,
    ] {
        let forged = sign_with(Algorithm::HS256, header, &payload, public.as_bytes());
        let r = call(&gw, &forged).await;
        assert_eq!(r.status, 401, "{header}: {}", r.text());
    }
    let forged = sign_with(
        Algorithm::HS256,
        r#"{"typ":"JWT","alg":"HS256","kid":"rsa"}"#,
        &payload,
        public.as_bytes(),
    );
    call(&gw, &forged).await.assert_error(
        401,
        "Invalid token",
        "The specified alg value is not allowed",
    );
}

#[tokio::test]
async fn the_kid_selects_and_an_unknown_kid_is_refused() {
    let k1 = keypair(Algorithm::ES256);
    let k2 = keypair(Algorithm::ES256);
    let gw = gateway()
        .respond_identity("/protected")
        .file("k1.pem", &k1.private)
        .file("k2.pub", k2.public.as_ref().unwrap())
        .table(&key_table(
            "k1",
            Algorithm::ES256,
            "private_key_file = \"k1.pem\"",
            true,
        ))
        .table(&key_table(
            "k2",
            Algorithm::ES256,
            "public_key_file = \"k2.pub\"",
            false,
        ))
        .start()
        .await;
    let c = claims(json!(1));
    let es = Algorithm::ES256;
    assert_eq!(
        call(&gw, &sign_claims(es, Some("k1"), &c, &k1.private))
            .await
            .status,
        200
    );
    assert_eq!(
        call(&gw, &sign_claims(es, Some("k2"), &c, &k2.private))
            .await
            .status,
        200
    );
    call(&gw, &sign_claims(es, Some("nope"), &c, &k1.private))
        .await
        .assert_error(401, "Invalid token", "Unknown key id (kid)");
    // Signed by k1 but naming k2: only k2 is tried, so it fails.
    call(&gw, &sign_claims(es, Some("k2"), &c, &k1.private))
        .await
        .assert_error(401, "Invalid token", "Signature verification failed");
    // No kid: the keys of the token's algorithm are tried (a bounded few).
    assert_eq!(
        call(&gw, &sign_claims(es, None, &c, &k2.private))
            .await
            .status,
        200
    );
    // A kid that is not a string is a malformed header.
    let bad = sign_pem(
        es,
        r#"{"typ":"JWT","alg":"ES256","kid":7}"#,
        &c.to_string(),
        &k1.private,
    );
    assert_eq!(call(&gw, &bad).await.status, 401);
}

#[tokio::test]
async fn the_jwks_publishes_public_keys_only() {
    let es = keypair(Algorithm::ES256);
    let rsa = keypair(Algorithm::RS256);
    let ed = keypair(Algorithm::EdDSA);
    let gw = gateway()
        .respond_identity("/protected")
        .file("es.pem", &es.private)
        .file("rsa.pub", rsa.public.as_ref().unwrap())
        .file("ed.pem", &ed.private)
        .file("k.secret", SECRET)
        .table(&key_table(
            "es",
            Algorithm::ES256,
            "private_key_file = \"es.pem\"",
            true,
        ))
        .table(&key_table(
            "rsa",
            Algorithm::RS256,
            "public_key_file = \"rsa.pub\"",
            false,
        ))
        .table(&key_table(
            "ed",
            Algorithm::EdDSA,
            "private_key_file = \"ed.pem\"",
            false,
        ))
        .table(&key_table(
            "hs",
            Algorithm::HS256,
            "secret_file = \"k.secret\"",
            false,
        ))
        .start()
        .await;
    let r = get(&gw.url("/.well-known/jwks.json"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("content-type"), Some("application/jwk-set+json"));
    let keys = r.json()["keys"].as_array().unwrap().clone();
    let by_kid = |kid: &str| keys.iter().find(|k| k["kid"] == kid).cloned();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let es_jwk = by_kid("es").unwrap();
    assert_eq!(
        (
            &es_jwk["kty"],
            &es_jwk["crv"],
            &es_jwk["alg"],
            &es_jwk["use"]
        ),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    let rsa_jwk = by_kid("rsa").unwrap();
    assert_eq!(
        (&rsa_jwk["kty"], &rsa_jwk["alg"]),
        (&json!("RSA"), &json!("RS256"))
    );
    assert_eq!(by_kid("ed").unwrap()["crv"], "Ed25519");
    assert!(by_kid("hs").is_none(), "an HMAC secret was published");
    for k in &keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "private member {private} in {k}");
        }
    }
    // Public, but only for reading.
    assert_eq!(
        request("POST", &gw.url("/.well-known/jwks.json"), &[], "")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_jwks_path_is_configurable_and_absent_for_hmac_only() {
    let es = keypair(Algorithm::ES256);
    let gw = gateway()
        .respond_identity("/protected")
        .file("es.pem", &es.private)
        .table(&key_table(
            "es",
            Algorithm::ES256,
            "private_key_file = \"es.pem\"",
            true,
        ))
        .table("[jwks]\npath = \"/keys\"\nmax_age = \"1m\"")
        .start()
        .await;
    let r = get(&gw.url("/keys"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(r.json()["keys"][0]["kid"], "es");
    assert_eq!(
        get(&gw.url("/.well-known/jwks.json"), &[]).await.status,
        404
    );
    // The compat config (one HMAC secret) publishes nothing.
    let compat = gateway().respond_identity("/protected").start().await;
    assert_eq!(
        get(&compat.url("/.well-known/jwks.json"), &[]).await.status,
        404
    );
}

#[tokio::test]
async fn issued_tokens_carry_configured_claims_and_user_record_claims() {
    let hash = concat!(
        "$argon2id$v=19$m=19456,t=2,p=1$wSaoz+WjVyDsS0mngmCCZw$",
        "lmrh+SyHdtpcel/Vv+nEzSbKyrsRTlKEFpoT+qiXaQw",
    );
    let gw = gateway()
        .without_users()
        .respond_identity("/protected")
        .tokens("issuer = \"https://gw.example\"")
        .tokens("audience = \"api\"")
        .tokens("issue_sub = true")
        .tokens("issue_jti = true")
        .tokens("user_claims = [\"roles\"]")
        .table(&format!(
            "[login]\n[[users]]\nid = 1\nusername = \"user1\"\npassword_hash = \"{hash}\"\n\
             claims = {{ roles = [\"admin\"], team = \"x\" }}"
        ))
        .start()
        .await;
    let token = gw.login("user1", PASSWORD).await;
    let p = payload_of(&token);
    assert_eq!(p["iss"], "https://gw.example");
    assert_eq!(p["aud"], "api");
    assert_eq!(p["sub"], "1");
    assert_eq!(p["roles"], json!(["admin"]));
    assert!(
        p.get("team").is_none(),
        "only listed user claims are copied: {p}"
    );
    assert!(p["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_ne!(
        payload_of(&gw.login("user1", PASSWORD).await)["jti"],
        p["jti"]
    );
    assert_eq!(call(&gw, &token).await.status, 200);
}

#[tokio::test]
async fn max_lifetime_refuses_long_lived_tokens() {
    let gw = gateway()
        .respond_identity("/protected")
        .tokens("max_lifetime = \"1h\"")
        .start()
        .await;
    let t = now();
    let long = mint(json!({"exp": t + 7200, "iat": t, "nbf": t, "identity": 1}));
    call(&gw, &long)
        .await
        .assert_error(401, "Invalid token", "Token lifetime exceeds the maximum");
    assert_eq!(
        call(&gw, &gw.login("user1", PASSWORD).await).await.status,
        200
    );
}
