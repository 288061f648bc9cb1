//! `gateway keygen`: a fresh key for the keyring, as PEM files (or a secret for HMAC).
//!
//! Keys come from aws-lc-rs, the provider jsonwebtoken verifies with, so there is one crypto
//! stack. Private keys are PKCS#8, public keys SubjectPublicKeyInfo: the PEM forms
//! `[[keys]] private_key_file` / `public_key_file` read, and what `openssl` writes.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::Algorithm;

use super::keys::KeyError;

/// A generated key: PEM text (or, for HMAC, a base64 secret in `private` and no `public`).
pub struct Generated {
    pub private: String,
    pub public: Option<String>,
    /// A key id derived from the public key (RFC 7638 thumbprint prefix) or random for HMAC.
    pub suggested_id: String,
}

fn pem(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

fn failed<E>(_: E) -> KeyError {
    KeyError("key generation failed".into())
}

/// Generates a key for `alg` (RSA keys are 2048 bits for RS*/PS*256, 3072 above).
pub fn generate(alg: Algorithm) -> Result<Generated, KeyError> {
    let (private_der, public_der): (Vec<u8>, Vec<u8>) = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let mut secret = [0u8; 48];
            rand::fill(&mut secret);
            let mut id = [0u8; 6];
            rand::fill(&mut id);
            return Ok(Generated {
                private: STANDARD.encode(secret),
                public: None,
                suggested_id: format!("hs-{}", URL_SAFE_NO_PAD.encode(id)),
            });
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let curve = if alg == Algorithm::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let kp = EcdsaKeyPair::generate(curve).map_err(failed)?;
            let private = kp.to_pkcs8v1().map_err(failed)?;
            let public: PublicKeyX509Der = kp.public_key().as_der().map_err(failed)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        Algorithm::EdDSA => {
            let kp = Ed25519KeyPair::generate().map_err(failed)?;
            // v1 (no embedded public key): the form jsonwebtoken derives the JWK from.
            let private: Pkcs8V1Der = kp.as_der().map_err(failed)?;
            let public: PublicKeyX509Der = kp.public_key().as_der().map_err(failed)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        _ => {
            let size = match alg {
                Algorithm::RS256 | Algorithm::PS256 => KeySize::Rsa2048,
                _ => KeySize::Rsa3072,
            };
            let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(failed)?;
            let private: Pkcs8V1Der = kp.as_der().map_err(failed)?;
            let public: PublicKeyX509Der = kp.public_key().as_der().map_err(failed)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
    };
    let private = pem("PRIVATE KEY", &private_der);
    let public = pem("PUBLIC KEY", &public_der);
    let encoding = match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            jsonwebtoken::EncodingKey::from_ec_pem(private.as_bytes())
        }
        Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(private.as_bytes()),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()),
    }
    .map_err(|e| KeyError(e.to_string()))?;
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg)
        .map_err(|e| KeyError(e.to_string()))?;
    let thumb = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .unwrap_or_default();
    Ok(Generated {
        private,
        public: Some(public),
        suggested_id: thumb.chars().take(16).collect(),
    })
}
