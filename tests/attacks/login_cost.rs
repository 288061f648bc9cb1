//! Unknown users cost what known users cost, proven by counting the hash computations and
//! their parameters (`gateway_password_hashes_by_cost_total`).
//!
//! Regression: the dummy hash for unknown usernames was the first user's; with users hashed
//! under different argon2 parameters, an unknown name cost what only that user cost, and
//! timing told the other users' names apart.

use serde_json::json;

use crate::support::*;

/// An argon2id hash of `abcxyz` under `m` KiB and `t` passes.
fn hash(m: u32, t: u32) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(m, t, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"saltsaltsaltsalt").unwrap();
    argon.hash_password(b"abcxyz", &salt).unwrap().to_string()
}

fn count(metrics: &str, params: &str) -> u64 {
    let line = format!("gateway_password_hashes_by_cost_total{{params=\"{params}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn unknown_users_pay_for_the_most_common_parameters() {
    let up = Upstream::start().await;
    let (cheap_hash, costly_hash) = (hash(64, 1), hash(4096, 3));
    // The first user has the cheap parameters; the two others the costly ones.
    let gw = gateway()
        .without_users()
        .raw(&format!(
            "[login]\n\
             [[users]]\nid = 1\nusername = \"first\"\npassword_hash = \"{cheap_hash}\"\n\
             [[users]]\nid = 2\nusername = \"second\"\npassword_hash = \"{costly_hash}\"\n\
             [[users]]\nid = 3\nusername = \"third\"\npassword_hash = \"{costly_hash}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\""
        ))
        .route("/api", &up.url(), "required")
        .start()
        .await;
    for name in ["nobody", "somebody-else"] {
        let r = post_json(
            &gw.url("/auth"),
            &json!({"username": name, "password": "abcxyz"}).to_string(),
        )
        .await;
        r.assert_error(401, "Bad Request", "Invalid credentials");
    }
    // A malformed attempt pays the same.
    let r = post_json(&gw.url("/auth"), r#"{"username": "nobody"}"#).await;
    r.assert_error(401, "Bad Request", "Invalid credentials");
    assert!(up.requests().is_empty());

    let metrics = get(&gw.admin_url("/metrics"), &[]).await.text();
    let costly = "argon2id v=19 m=4096,t=3,p=1 len=32";
    let cheap = "argon2id v=19 m=64,t=1,p=1 len=32";
    assert_eq!(count(&metrics, costly), 3, "{metrics}");
    assert_eq!(count(&metrics, cheap), 0, "{metrics}");
    // The known users each pay their own.
    let token = gw.login("second", "abcxyz").await;
    assert!(!token.is_empty());
    let _ = gw.login("first", "abcxyz").await;
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.text();
    assert_eq!(count(&metrics, costly), 4, "{metrics}");
    assert_eq!(count(&metrics, cheap), 1, "{metrics}");
}
