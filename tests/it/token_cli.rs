//! The operator CLI: `gateway keygen`, `gateway token mint | verify | inspect`.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::*;

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keygen_mint_verify_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (code, out, err) = cli(&[
        "keygen",
        "--algorithm",
        "ES256",
        "--out",
        path(&keys),
        "--id",
        "k1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("id = \"k1\"") && out.contains("algorithm = \"ES256\""),
        "{out}"
    );
    let private = std::fs::read_to_string(keys.join("k1.private.pem")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(keys.join("k1.public.pem"))
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("k1.private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by others");
    }
    // Never overwrites a key.
    let (code, _, err) = cli(&[
        "keygen",
        "--algorithm",
        "ES256",
        "--out",
        path(&keys),
        "--id",
        "k1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("never overwritten"), "{err}");
    let (code, _, err) = cli(&["keygen", "--algorithm", "none", "--out", path(&keys)]);
    assert_eq!(code, 2);
    assert!(err.contains("unsupported algorithm"), "{err}");

    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "[tokens]\nissue_jti = true\n[[keys]]\nid = \"k1\"\nalgorithm = \"ES256\"\n\
         private_key_file = \"keys/k1.private.pem\"\n",
    )
    .unwrap();
    let cfg = path(&config);
    let (code, token, err) = cli(&[
        "token",
        "mint",
        "--config",
        cfg,
        "--identity",
        "7",
        "--claim",
        "roles=[\"admin\"]",
        "--claim",
        "team=blue",
    ]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim();

    let (code, out, _) = cli(&["token", "inspect", token]);
    assert_eq!(code, 0);
    assert!(out.starts_with("UNVERIFIED"), "{out}");
    for part in [
        "\"kid\": \"k1\"",
        "\"identity\": 7",
        "\"admin\"",
        "\"team\": \"blue\"",
        "\"jti\"",
    ] {
        assert!(out.contains(part), "{part} missing in {out}");
    }

    let (code, out, _) = cli(&["token", "verify", "--config", cfg, token]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("valid:") && out.contains("identity: 7"),
        "{out}"
    );

    // The verdict names the precise reason.
    let t = now();
    let foreign = sign_claims(
        jsonwebtoken::Algorithm::ES256,
        Some("k9"),
        &json!({"exp": t + 60, "iat": t, "nbf": t, "identity": 7}),
        &private,
    );
    let (code, out, _) = cli(&["token", "verify", "--config", cfg, &foreign]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("invalid:") && out.contains("unknown_kid"),
        "{out}"
    );
    let expired = sign_claims(
        jsonwebtoken::Algorithm::ES256,
        Some("k1"),
        &json!({"exp": t - 60, "iat": t - 360, "nbf": t - 360, "identity": 7}),
        &private,
    );
    let (code, out, _) = cli(&["token", "verify", "--config", cfg, &expired]);
    assert_eq!(code, 1);
    assert!(out.contains("expired"), "{out}");
    let (code, _, err) = cli(&["token", "inspect", "not-a-token"]);
    assert_eq!(code, 2);
    assert!(err.contains("three dot-separated segments"), "{err}");
    // Registered claims cannot be overridden from the command line.
    let (code, _, err) = cli(&[
        "token",
        "mint",
        "--config",
        cfg,
        "--identity",
        "7",
        "--claim",
        "exp=1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("set by the gateway itself"), "{err}");
    // Nor the session claims: `idp` would exempt the identity from the local-user check.
    for claim in ["idp=corp", "sid=x"] {
        let (code, out, err) = cli(&[
            "token",
            "mint",
            "--config",
            cfg,
            "--identity",
            "7",
            "--claim",
            claim,
        ]);
        assert_eq!(code, 2, "{claim}: {out}");
        assert!(err.contains("set by the gateway itself"), "{claim}: {err}");
    }
}
