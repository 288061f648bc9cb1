//! Secrets hygiene: no secret in config errors, no key file others can read. The log half
//! (no token, password or secret in the logs at TRACE) is its own test binary,
//! `tests/log_hygiene.rs`, because it installs a global subscriber.

use crate::support::*;

/// Loads `toml` with `env` as the whole environment and returns the refusal's text.
fn config_error(toml: &str, dir: &std::path::Path, env: gateway::config::Env<'_>) -> String {
    match gateway::load::from_str_with_env(toml, dir, env) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_never_echo_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let short = "SHORT-SENTINEL-1";
    std::fs::write(dir.path().join("short"), short).unwrap();
    let inline = "INLINE-SENTINEL-0123456789abcdef0123456789";
    let env_var = "GATEWAY_ATTACKS_SHORT_SECRET";
    let env_value = "ENV-SENTINEL-2";
    // The loader's environment is this one variable; the process environment is untouched.
    let env = |name: &str| (name == env_var).then(|| env_value.to_string());
    let cases = [
        ("[tokens]\nsecret_file = \"short\"\n".to_string(), short),
        (format!("[tokens]\nsecret_env = \"{env_var}\"\n"), env_value),
        (
            format!("[tokens]\nsecret = \"{inline}\"\nsecret_file = \"short\"\n"),
            inline,
        ),
        (
            format!("[tokens]\nsecret_file = \"short\" \"{inline}\"\n"),
            inline,
        ),
        (
            format!("[tokens]\nsecret_file = \"short\"\nsecret_file = \"{inline}\"\n"),
            inline,
        ),
        // Regression: an incomplete hash was accepted (see the login test below).
        (
            "[tokens]\nsecret_file = \"short\"\nallow_short_secret = true\n[[users]]\nid = 1\n\
             username = \"u\"\npassword_hash = \"$argon2id$HASH-SENTINEL\"\n"
                .to_string(),
            "HASH-SENTINEL",
        ),
    ];
    for (toml, needle) in &cases {
        let e = config_error(toml, dir.path(), &env);
        assert!(!e.is_empty());
        assert!(!e.contains(needle), "{needle} echoed:\n{e}");
    }
    // The lookup was read: the variable's value is refused as too short, not as unset.
    let e = config_error(&cases[1].0, dir.path(), &env);
    assert!(e.contains("the secret is 14 bytes"), "{e}");
}

#[test]
fn check_warns_about_key_files_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[tokens]\nsecret_file = \"secret\"\n").unwrap();
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, stderr) = check();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains("warning: tokens.secret_file"),
            "{mode:o}: {stderr}"
        );
        assert!(stderr.contains("chmod 600"), "{stderr}");
        // The warning names the file, never its content.
        assert!(
            !stderr.contains(std::str::from_utf8(SECRET).unwrap()),
            "{stderr}"
        );
    }
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stderr) = check();
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("tokens.secret_file"), "{stderr}");
}

/// Regression: `$argon2id$...` without salt or hash output passed the config check. Such a
/// user can never log in, and as the first user its hash is the dummy verified for unknown
/// usernames: they were answered without any argon2 work, a timing oracle for user names.
#[test]
fn incomplete_password_hashes_are_refused_by_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    for hash in [
        "$argon2id$v=19$m=19456,t=2,p=1",
        "$argon2id$v=19$m=19456,t=2,p=1$wSaoz+WjVyDsS0mngmCCZw",
        "$argon2id$HASH-SENTINEL",
    ] {
        let toml = format!(
            "[tokens]\nsecret_file = \"secret\"\n[[users]]\nid = 1\nusername = \"u\"\n\
             password_hash = \"{hash}\"\n"
        );
        let e = config_error(&toml, dir.path(), &|_| None);
        assert!(e.contains("users[0].password_hash"), "{hash}: {e}");
        assert!(!e.contains(hash), "{e}");
    }
}
