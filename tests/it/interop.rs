//! PyJWT decodes the tokens we issue, and we accept the tokens PyJWT signs.
//! Needs `python3` with PyJWT (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

fn pyjwt(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyjwt_interop.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .env("INTEROP_SECRET", std::str::from_utf8(SECRET).unwrap())
        .output()
        .expect("python3 is needed for the interop tests (.ci/run installs it with PyJWT)");
    assert!(
        out.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens() {
    let gw = gateway().respond_identity("/protected").start().await;
    let token = gw.login("user1", PASSWORD).await;
    let decoded: Value = serde_json::from_str(&pyjwt(&["decode", &token])).unwrap();
    assert_eq!(decoded["header"], json!({"typ": "JWT", "alg": "HS256"}));
    assert_eq!(decoded["claims"]["identity"], json!(1));
    let c = &decoded["claims"];
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
}

#[tokio::test]
async fn we_accept_pyjwt_tokens() {
    let gw = gateway().respond_identity("/protected").start().await;
    for (identity, expected) in [("1", json!(1)), ("\"alice\"", json!("alice"))] {
        let token = pyjwt(&["sign", identity]);
        let r = get(
            &gw.url("/protected"),
            &[("authorization", &format!("JWT {token}"))],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"identity": expected}));
    }
}
