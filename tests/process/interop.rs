//! PyJWT decodes the tokens we issue, and we accept the tokens PyJWT signs; PyJWKClient
//! verifies our asymmetric tokens through our published JWKS.
//! Needs `python3` with `PyJWT[crypto]` (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

fn pyjwt(args: &[&str]) -> String {
    let out = pyjwt_run(args);
    assert!(
        out.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn pyjwt_run(args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyjwt_interop.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .env("INTEROP_SECRET", std::str::from_utf8(SECRET).unwrap())
        .output()
        .expect("python3 is needed for the interop tests (.ci/run installs it with PyJWT)")
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens() {
    let gw = gateway().respond_identity("/protected").start().await;
    let token = gw.login("user1", PASSWORD).await;
    let decoded: Value = serde_json::from_str(&pyjwt(&["decode", &token])).unwrap();
    assert_eq!(decoded["header"], json!({"typ": "JWT", "alg": "HS256"}));
    assert_eq!(decoded["claims"]["identity"], json!(1));
    let c = &decoded["claims"];
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
}

#[tokio::test]
async fn we_accept_pyjwt_tokens() {
    let gw = gateway().respond_identity("/protected").start().await;
    for (identity, expected) in [("1", json!(1)), ("\"alice\"", json!("alice"))] {
        let token = pyjwt(&["sign", identity]);
        let r = get(
            &gw.url("/protected"),
            &[("authorization", &jwt_header(&token))],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"identity": expected}));
    }
}

/// Runs the script off the runtime thread: it calls back into the in-process gateway.
async fn pyjwt_jwks(url: &str, token: &str) -> std::process::Output {
    let (url, token) = (url.to_string(), token.to_string());
    tokio::task::spawn_blocking(move || pyjwt_run(&["jwks", &url, &token]))
        .await
        .unwrap()
}

#[tokio::test]
async fn pyjwkclient_verifies_our_tokens_through_our_jwks() {
    use jsonwebtoken::Algorithm;
    for (alg, name) in [
        (Algorithm::RS256, "RS256"),
        (Algorithm::ES256, "ES256"),
        (Algorithm::EdDSA, "EdDSA"),
    ] {
        let key = keypair(alg);
        let gw = gateway()
            .respond_identity("/protected")
            .file("k.pem", &key.private)
            .table(&key_table(
                &format!("{name}-key"),
                alg,
                "private_key_file = \"k.pem\"",
                true,
            ))
            .start()
            .await;
        let token = gw.login("user1", PASSWORD).await;
        let url = gw.url("/.well-known/jwks.json");
        let out = pyjwt_jwks(&url, &token).await;
        assert!(
            out.status.success(),
            "{name}: PyJWT failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out["kid"], format!("{name}-key"));
        assert_eq!(out["alg"], name);
        assert_eq!(out["claims"]["identity"], json!(1));
        // PyJWT really checks the signature against our JWKS: a tampered token fails.
        let (input, _) = token.rsplit_once('.').unwrap();
        let other = gw.login("user2", PASSWORD).await;
        let tampered = format!("{input}.{}", other.rsplit_once('.').unwrap().1);
        assert_ne!(tampered, token);
        let refused = pyjwt_jwks(&url, &tampered).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains("Signature verification failed"),
            "{name}: PyJWT did not refuse a tampered token for its signature: {stderr}"
        );
    }
}
