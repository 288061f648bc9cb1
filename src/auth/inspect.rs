//! `gateway token inspect`: a token's header and payload, decoded WITHOUT verification.
//!
//! Only for operators looking at a token; nothing here is ever used to make a decision.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Why a token could not be decoded at all.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("a compact JWS has three dot-separated segments; this has {0}")]
    Segments(usize),
    #[error("the {0} is not base64url")]
    Base64(&'static str),
    #[error("the {0} is not JSON: {1}")]
    Json(&'static str, String),
}

/// The decoded, unverified parts of a token.
#[derive(Debug)]
pub struct Unverified {
    pub header: Value,
    pub payload: Value,
    pub signature_bytes: usize,
}

/// Decodes the header and payload of `token`; the signature is NOT checked.
pub fn decode_unverified(token: &str) -> Result<Unverified, InspectError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(InspectError::Segments(parts.len()));
    };
    let json = |what: &'static str, seg: &str| -> Result<Value, InspectError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(seg)
            .map_err(|_| InspectError::Base64(what))?;
        serde_json::from_slice(&bytes).map_err(|e| InspectError::Json(what, e.to_string()))
    };
    Ok(Unverified {
        header: json("header", header)?,
        payload: json("payload", payload)?,
        signature_bytes: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| InspectError::Base64("signature"))?
            .len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_without_verifying() {
        let t = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.\
            eyJleHAiOjE3OTU4NjcyMjUsImlhdCI6MTc5NTg2NjkyNSwi\
            bmJmIjoxNzk1ODY2OTI1LCJpZGVudGl0eSI6MX0.\
            YPa3yKBeiFA8WxpRgnXvJdee8ci8KrfQTH1EjZ2NJAE";
        let u = decode_unverified(t).unwrap();
        assert_eq!(u.header["alg"], "HS256");
        assert_eq!(u.payload["identity"], 1);
        assert_eq!(u.signature_bytes, 32);
        assert!(matches!(
            decode_unverified("a.b"),
            Err(InspectError::Segments(2))
        ));
        assert!(matches!(
            decode_unverified("!.b.c"),
            Err(InspectError::Base64("header"))
        ));
    }
}
