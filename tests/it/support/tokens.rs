//! HS256 tokens under the shared test secret, and the `Authorization` value that carries one.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// The HMAC secret every test gateway uses (written to a secret_file).
pub const SECRET: &[u8] = b"integration-test-secret-0123456789abcdef";

/// Seconds since the Unix epoch, the unit of `exp`/`iat`/`nbf`.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// base64url without padding, the JWS segment encoding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header.payload` (both raw JSON text) with `secret` using `alg` (an HMAC alg).
pub fn sign_with(
    alg: jsonwebtoken::Algorithm,
    header: &str,
    payload: &str,
    secret: &[u8],
) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{sig}")
}

/// An HS256 token with the Flask-JWT header over `payload` (raw JSON text).
pub fn sign_raw(payload: &str) -> String {
    sign_with(
        jsonwebtoken::Algorithm::HS256,
        r#"{"typ":"JWT","alg":"HS256"}"#,
        payload,
        SECRET,
    )
}

/// An HS256 token over `claims`.
pub fn mint(claims: Value) -> String {
    sign_raw(&claims.to_string())
}

/// Flask-JWT claims for `identity`, valid now for 300 s.
pub fn claims(identity: Value) -> Value {
    let t = now();
    json!({"exp": t + 300, "iat": t, "nbf": t, "identity": identity})
}

/// A valid token for user 1.
pub fn token() -> String {
    mint(claims(json!(1)))
}

/// The `Authorization` header value that presents `token` with Flask-JWT's prefix:
/// `JWT <token>`. Tests of malformed header shapes (no token, extra spaces, other schemes)
/// spell their value out instead.
pub fn jwt_header(token: &str) -> String {
    format!("JWT {token}")
}
