//! Attacks on an asymmetric keyring: algorithm confusion with the real public keys in every
//! form an attacker can get them (PEM, DER, the published JWK), forged and degenerate
//! ECDSA/RSA signatures, and `kid` / `jku` / `x5u` / `jwk` header games. Every case: 401 JSON,
//! nothing forwarded.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::harness::*;
use crate::support::*;
use gateway::auth::keygen;

struct Keys {
    t: Target,
    rsa_pub: String,
    ec_pub: String,
    rsa_private: String,
    ec_private: String,
}

/// A gateway that verifies RS256 (`kid` "rsa") and ES256 (`kid` "ec") tokens and signs with
/// its own ES256 key ("signer"), publishing all three in its JWKS.
async fn keyring() -> Keys {
    let rsa = keygen::generate(Algorithm::RS256).unwrap();
    let ec = keygen::generate(Algorithm::ES256).unwrap();
    let signer = keygen::generate(Algorithm::ES256).unwrap();
    let table = |id: &str, alg: &str, material: &str, sign: bool| {
        format!("[[keys]]\nid = \"{id}\"\nalgorithm = \"{alg}\"\n{material}\nsign = {sign}\n")
    };
    let builder = gateway()
        .file("rsa.pub", rsa.public.clone().unwrap())
        .file("ec.pub", ec.public.clone().unwrap())
        .file("signer.pem", signer.private.clone())
        .table(&table(
            "rsa",
            "RS256",
            "public_key_file = \"rsa.pub\"",
            false,
        ))
        .table(&table("ec", "ES256", "public_key_file = \"ec.pub\"", false))
        .table(&table(
            "signer",
            "ES256",
            "private_key_file = \"signer.pem\"",
            true,
        ));
    Keys {
        t: target_with(builder).await,
        rsa_pub: rsa.public.unwrap(),
        ec_pub: ec.public.unwrap(),
        rsa_private: rsa.private,
        ec_private: ec.private,
    }
}

fn payload() -> String {
    claims(json!(1)).to_string()
}

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

fn sign_pem(alg: Algorithm, kid: &str, private_pem: &str) -> String {
    let key = match alg {
        Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes()),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()),
    }
    .unwrap();
    let header = json!({"typ": "JWT", "alg": format!("{alg:?}"), "kid": kid}).to_string();
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload().as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{sig}")
}

#[tokio::test]
async fn genuine_tokens_pass_so_the_refusals_below_mean_something() {
    let k = keyring().await;
    for (alg, kid, pem) in [
        (Algorithm::RS256, "rsa", &k.rsa_private),
        (Algorithm::ES256, "ec", &k.ec_private),
    ] {
        let r = k.t.with_token(&sign_pem(alg, kid, pem)).await;
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
    }
    assert_eq!(k.t.forwarded(), 2);
}

#[tokio::test]
async fn hmac_with_the_public_key_in_every_form_is_refused() {
    let k = keyring().await;
    let jwks = get(&k.t.gw.url("/.well-known/jwks.json"), &[]).await;
    assert_eq!(jwks.status, 200);
    let published = jwks.json();
    let jwk_of = |kid: &str| {
        published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kid"] == kid)
            .unwrap()
            .to_string()
    };
    let secrets: Vec<(String, Vec<u8>)> = vec![
        ("RSA PEM".into(), k.rsa_pub.clone().into_bytes()),
        (
            "RSA PEM without newline".into(),
            k.rsa_pub.trim_end().as_bytes().to_vec(),
        ),
        ("RSA DER".into(), der(&k.rsa_pub)),
        ("RSA JWK".into(), jwk_of("rsa").into_bytes()),
        ("EC PEM".into(), k.ec_pub.clone().into_bytes()),
        ("EC DER".into(), der(&k.ec_pub)),
        ("EC JWK".into(), jwk_of("ec").into_bytes()),
    ];
    for (form, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for kid in ["rsa", "ec", "signer", ""] {
                let alg_name = format!("{alg:?}");
                let header = if kid.is_empty() {
                    json!({"typ": "JWT", "alg": alg_name})
                } else {
                    json!({"typ": "JWT", "alg": alg_name, "kid": kid})
                };
                let forged = sign_with(alg, &header.to_string(), &payload(), secret);
                k.t.refuses_token(
                    &format!("{form} as {alg_name} secret, kid {kid:?}"),
                    &forged,
                    None,
                )
                .await;
            }
        }
    }
    k.t.assert_nothing_forwarded("alg confusion");
}

#[tokio::test]
async fn degenerate_and_forged_signatures_are_refused() {
    let k = keyring().await;
    let header = |alg: &str, kid: &str| {
        b64(json!({"typ": "JWT", "alg": alg, "kid": kid})
            .to_string()
            .as_bytes())
    };
    let body = b64(payload().as_bytes());
    let es_input = format!("{}.{body}", header("ES256", "ec"));
    // P-256 group order n: r or s equal to n (or 0) is out of range.
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let one = {
        let mut v = vec![0u8; 32];
        v[31] = 1;
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0", vec![0u8; 64]),
        ("r = n", [n.clone(), one.clone()].concat()),
        ("s = n", [one.clone(), n.clone()].concat()),
        ("r = s = n", [n.clone(), n].concat()),
        ("all ones", vec![0xffu8; 64]),
        ("too short", vec![1u8; 63]),
        (
            "DER encoded",
            vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        ),
        ("empty", Vec::new()),
    ];
    for (what, sig) in cases {
        let token = format!("{es_input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        k.t.refuses_token(&format!("ES256 signature {what}"), &token, None)
            .await;
    }
    // A genuine ES256 signature moved onto other claims, and one from another key.
    let genuine = sign_pem(Algorithm::ES256, "ec", &k.ec_private);
    let sig = genuine.rsplit('.').next().unwrap();
    let other_claims = b64(claims(json!(2)).to_string().as_bytes());
    k.t.refuses_token(
        "ES256 signature over other claims",
        &format!("{}.{other_claims}.{sig}", header("ES256", "ec")),
        None,
    )
    .await;
    let stranger = keygen::generate(Algorithm::ES256).unwrap();
    k.t.refuses_token(
        "ES256 from a key we do not hold, with our kid",
        &sign_pem(Algorithm::ES256, "ec", &stranger.private),
        None,
    )
    .await;
    // RS256: zero, truncated, PS256 relabelled.
    let rs_input = format!("{}.{body}", header("RS256", "rsa"));
    for (what, sig) in [
        ("zero", vec![0u8; 256]),
        ("one byte", vec![1u8]),
        ("all ones", vec![0xffu8; 256]),
    ] {
        k.t.refuses_token(
            &format!("RS256 signature {what}"),
            &format!("{rs_input}.{}", URL_SAFE_NO_PAD.encode(&sig)),
            None,
        )
        .await;
    }
    let rs = sign_pem(Algorithm::RS256, "rsa", &k.rsa_private);
    let rs_sig = rs.rsplit('.').next().unwrap();
    k.t.refuses_token(
        "RS256 signature under alg PS256",
        &format!("{}.{body}.{rs_sig}", header("PS256", "rsa")),
        None,
    )
    .await;
    k.t.refuses_token(
        "RS256 token signed with the EC kid",
        &format!("{}.{body}.{rs_sig}", header("RS256", "ec")),
        None,
    )
    .await;
    k.t.assert_nothing_forwarded("signatures");
}

#[tokio::test]
async fn key_hints_in_the_header_are_never_followed() {
    let k = keyring().await;
    // A server the hints point at: it must never be contacted.
    let lure = Upstream::start().await;
    let attacker = keygen::generate(Algorithm::ES256).unwrap();
    let attacker_key = jsonwebtoken::EncodingKey::from_ec_pem(attacker.private.as_bytes()).unwrap();
    let attacker_jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&attacker_key, Algorithm::ES256).unwrap();
    let headers = [
        json!({"alg": "ES256", "jku": format!("{}/jwks.json", lure.url())}),
        json!({"alg": "ES256", "x5u": format!("{}/cert.pem", lure.url())}),
        json!({"alg": "ES256", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "kid": "../../../../etc/passwd"}),
        json!({"alg": "ES256", "kid": "' OR '1'='1"}),
        json!({"alg": "ES256", "kid": format!("{}/key", lure.url())}),
        json!({"alg": "ES256", "kid": "signer\u{0}"}),
        json!({"alg": "ES256", "kid": ["signer"]}),
    ];
    for h in headers {
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(payload().as_bytes())
        );
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &attacker_key, Algorithm::ES256).unwrap();
        k.t.refuses_token(&format!("header {h}"), &format!("{input}.{sig}"), None)
            .await;
    }
    assert!(lure.requests().is_empty(), "a key hint was followed");
    k.t.assert_nothing_forwarded("key hints");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
