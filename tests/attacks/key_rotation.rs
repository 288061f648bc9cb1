//! A token signed with a key that is gone is refused as signed by an unknown key.
//!
//! Regression: when an issuer rotated to a key of another algorithm (or published none),
//! its old tokens were refused with "The specified alg value is not allowed", which sent
//! operators hunting for an algorithm setting. The key is judged before the algorithm.

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::harness::*;
use crate::support::*;
use gateway::auth::keygen;

const ISS: &str = "https://idp.test";

fn jwk(private_pem: &str, alg: Algorithm, kid: &str) -> Jwk {
    let enc = match alg {
        Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()),
    }
    .unwrap();
    let mut jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

fn idp_token(private_pem: &str, kid: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    let t = now();
    let claims = json!({"iss": ISS, "aud": "api", "sub": "u7", "exp": t + 300, "iat": t});
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": kid}).to_string();
    let input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{input}.{sig}")
}

async fn idp_target(jwks: &JwkSet) -> Target {
    let up = Upstream::start().await;
    let gw = gateway()
        .file("idp.json", serde_json::to_string(jwks).unwrap())
        .table(&format!(
            "[[issuers]]\nissuer = \"{ISS}\"\naudiences = [\"api\"]\njwks_file = \"idp.json\"\n\
             identity_claim = \"sub\"\n\
             [[routes]]\npath = \"/idp\"\nupstream = \"{}\"\nauth = \"required\"\n\
             issuers = [\"{ISS}\"]",
            up.url()
        ))
        .start()
        .await;
    Target { gw, up }
}

async fn refused(t: &Target, token: &str, description: &str) {
    let r = get(
        &t.gw.url("/idp/x"),
        &[("authorization", &format!("JWT {token}"))],
    )
    .await;
    r.assert_error(401, "Invalid token", description);
    t.assert_nothing_forwarded(description);
}

#[tokio::test]
async fn a_token_whose_key_the_issuer_no_longer_publishes_names_the_key_as_unknown() {
    let old = keygen::generate(Algorithm::RS256).unwrap();
    let new = keygen::generate(Algorithm::ES256).unwrap();
    // The issuer rotated from RS256 "old" to ES256 "new".
    let rotated = JwkSet {
        keys: vec![jwk(&new.private, Algorithm::ES256, "new")],
    };
    let t = idp_target(&rotated).await;
    refused(&t, &idp_token(&old.private, "old"), "Unknown key id (kid)").await;
    // An issuer that publishes no key at all: every token's key is unknown.
    let t = idp_target(&JwkSet { keys: vec![] }).await;
    refused(&t, &idp_token(&old.private, "old"), "Unknown key id (kid)").await;
    // Still published: the same token passes, so the refusals above mean something.
    let t = idp_target(&JwkSet {
        keys: vec![jwk(&old.private, Algorithm::RS256, "old")],
    })
    .await;
    let r = get(
        &t.gw.url("/idp/x"),
        &[(
            "authorization",
            &format!("JWT {}", idp_token(&old.private, "old")),
        )],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(t.up.last().headers["x-identity"], "u7");
}

/// Our own keys are pinned by configuration: a known key used with another algorithm is
/// still "not allowed".
#[tokio::test]
async fn our_pinned_algorithm_is_still_not_allowed() {
    let t = target().await;
    let forged = sign_with(
        Algorithm::HS512,
        r#"{"typ":"JWT","alg":"HS512"}"#,
        &claims(json!(1)).to_string(),
        SECRET,
    );
    t.refuses_token(
        "HS512 against an HS256 key",
        &forged,
        Some("The specified alg value is not allowed"),
    )
    .await;
}
