//! The verified-token cache seen through the verifier: a hit returns what verification
//! produced, and never outlives the token's `exp` nor the keyring that verified it.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::*;

#[test]
fn the_verified_token_cache_never_outlives_exp_nor_the_keyring() {
    let key = keypair(Algorithm::ES256);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.pem"), &key.private).unwrap();
    let toml = format!(
        "{}[tokens]\nleeway = \"10s\"\n",
        key_table("k", Algorithm::ES256, "private_key_file = \"k.pem\"", true)
    );
    // `[[keys]]` first, then `[tokens]`: TOML tables can come in any order.
    let cfg = gateway::load::from_str(&toml, dir.path()).unwrap().config;
    let wanted: Vec<Arc<str>> = vec![Arc::from("roles")];
    let keys = Arc::new(gateway::auth::keys::Keyring::from_config(&cfg.tokens).unwrap());
    let v = gateway::auth::verify::Verifier::new(&cfg.tokens, keys, wanted.clone());
    let t = now();
    let c = json!({"exp": t + 60, "iat": t, "nbf": t, "identity": 1, "roles": ["admin"]});
    let token = sign_claims(Algorithm::ES256, Some("k"), &c, &key.private);
    let first = v.verify(&token, t).unwrap();
    // A hit returns everything verification produced, extra claims included.
    let second = v.verify(&token, t + 1).unwrap();
    assert_eq!(first, second);
    assert_eq!(second.get("roles"), Some(&json!(["admin"])));
    // Within the leeway after exp it still passes; beyond it the cache does not save it.
    assert!(v.verify(&token, t + 65).is_ok());
    assert_eq!(
        v.verify(&token, t + 71),
        Err(gateway::auth::TokenError::Expired)
    );
    // A new keyring (reload) without this key: the cached verdict is not reused.
    let other = keypair(Algorithm::ES256);
    std::fs::write(dir.path().join("k.pem"), &other.private).unwrap();
    let cfg2 = gateway::load::from_str(&toml, dir.path()).unwrap().config;
    let keys2 = Arc::new(gateway::auth::keys::Keyring::from_config(&cfg2.tokens).unwrap());
    assert!(v.verify_with(&keys2, &token, t).is_err());
}
