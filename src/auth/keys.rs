//! The key material, built once per configuration.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::config::TokensConfig;

/// One key with its pinned algorithm: the token's `alg` never chooses how it is interpreted.
pub struct Key {
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl Key {
    /// The HMAC key of `[tokens]`.
    pub fn from_config(t: &TokensConfig) -> Result<Key, jsonwebtoken::errors::Error> {
        Ok(Key {
            algorithm: t.algorithm,
            encoding: EncodingKey::from_secret(&t.secret.bytes)?,
            decoding: DecodingKey::from_secret(&t.secret.bytes)?,
        })
    }
}

/// The `alg` header value of an algorithm, as written in tokens.
pub fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // jsonwebtoken's enum is non-exhaustive; a new variant is not configurable here.
        _ => "unsupported",
    }
}
