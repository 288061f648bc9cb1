//! Asymmetric key pairs made at test time (nothing private is committed), tokens signed with
//! them, and the `[[keys]]` config table that names one.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use super::tokens::b64;
use gateway::auth::keygen::{self, Generated};
use gateway::auth::keys::alg_name;

/// A fresh key pair for `alg` (made at test time; nothing private is committed).
pub fn keypair(alg: Algorithm) -> Generated {
    keygen::generate(alg).unwrap()
}

/// Signs `header.payload` (raw JSON texts) with a PEM private key.
pub fn sign_pem(alg: Algorithm, header: &str, payload: &str, private_pem: &str) -> String {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            jsonwebtoken::EncodingKey::from_ec_pem(private_pem.as_bytes())
        }
        Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()),
    }
    .unwrap();
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{sig}")
}

/// A token for `claims` signed with `pem`, with `kid` in the header when given.
pub fn sign_claims(alg: Algorithm, kid: Option<&str>, claims: &Value, pem: &str) -> String {
    let mut header = json!({"typ": "JWT", "alg": alg_name(alg)});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    sign_pem(alg, &header.to_string(), &claims.to_string(), pem)
}

/// A `[[keys]]` table.
pub fn key_table(id: &str, alg: Algorithm, material: &str, sign: bool) -> String {
    format!(
        "[[keys]]\nid = \"{id}\"\nalgorithm = \"{}\"\n{material}\nsign = {sign}\n",
        alg_name(alg)
    )
}
