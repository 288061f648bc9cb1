//! The token verifier on arbitrary tokens. The first byte picks the mode:
//! - raw: the rest is the token text;
//! - payload: the rest is a payload, correctly signed under a fixed header, so the fuzzer
//!   reaches the claim rules behind the signature;
//! - header: the rest is a JOSE header over a valid payload, correctly signed.
//!
//! Never a panic; a token that verifies has a usable identity and is not expired.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway::auth::keys::Keyring;
use gateway::auth::verify::Verifier;
use gateway::config::UserId;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzzing-secret-0123456789abcdef-0123456789";
const NOW: i64 = 1_800_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secret"), SECRET).expect("secret");
        let loaded = gateway::load::from_str("[tokens]\nsecret_file = \"secret\"\n", dir.path())
            .expect("config");
        let t = &loaded.config.tokens;
        Verifier::new(t, Keyring::from_config(t).expect("key"), Vec::new())
    })
}

fn sign(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = EncodingKey::from_secret(SECRET).expect("key");
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => sign(br#"{"typ":"JWT","alg":"HS256"}"#, rest),
        _ => {
            let payload = format!(
                r#"{{"exp":{},"iat":{NOW},"nbf":{NOW},"identity":1}}"#,
                NOW + 300
            );
            sign(rest, payload.as_bytes())
        }
    };
    if let Ok(claims) = verifier().verify(&token, NOW) {
        match &claims.identity {
            UserId::Int(_) => {}
            UserId::Str(s) => assert!(!s.is_empty()),
        }
        // The default leeway is 10 s.
        assert!(claims.exp >= (NOW - 10) as f64, "{token}");
    }
});
