//! What `check`, `run` and a reload refuse, and how they say it: every unknown key with its
//! full key path and a "did you mean" hint, sizes written as plain byte counts, and weak
//! HMAC secrets (well-known or low-entropy) unless `allow_weak_secret = true`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// A config around the suite's secret file, with `extra` appended.
fn config(extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nreload_poll = \"20ms\"\n\
         [tokens]\nsecret_file = \"secret\"\n\
         [[routes]]\npath = \"/p\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"public\"\n{extra}"
    )
}

/// Runs the binary with `args` (`{}` replaced by the config path) on `text`.
fn cli(args: &[&str], text: &str, secret: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), secret).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{}", path.to_str().unwrap()))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(&args)
        .env_remove("GATEWAY_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

/// The problems `gateway::load` reports for `text`, as displayed.
fn problems(text: &str, secret: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), secret).unwrap();
    match gateway::load::from_str(text, dir.path()) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

/// Regression: an unknown key gave `line 7: unknown field bogus_key_xyz` and stopped
/// there, so three typos took three runs.
#[test]
fn check_names_every_unknown_key_with_its_path_and_a_hint() {
    let text = config(
        "auht = \"public\"\n\
         [[routes]]\npath = \"/q\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"public\"\n\
         max_bodyy = \"1KiB\"\n\
         [login]\npaht = \"/auth\"\n",
    )
    .replace("[server]\n", "[server]\nbogus_key_xyz = 1\n")
    .replace(
        "upstream = \"http://127.0.0.1:9\"\nauth = \"public\"\nauht",
        "upstream = \"nowhere\"\nauth = \"public\"\nauht",
    );
    let want = [
        "login.paht: unknown key `paht` (hint: did you mean `path`?)",
        "routes[0].auht: unknown key `auht` (hint: did you mean `auth`?)",
        "routes[1].max_bodyy: unknown key `max_bodyy` (hint: did you mean `max_body`?)",
    ];
    let (code, out) = cli(&["check", "--config", "{}"], &text, SECRET);
    assert_eq!(code, 2, "{out}");
    for line in want {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
    assert!(
        out.contains(
            "server.bogus_key_xyz: unknown key `bogus_key_xyz` (hint: known keys here: listen, "
        ),
        "{out}"
    );
    // In the same list as every other problem: the unknown upstream name too.
    assert!(
        out.contains("routes[0].upstream: no upstream named `nowhere`"),
        "{out}"
    );
    assert!(out.contains("6 problem(s) in the configuration"), "{out}");
    // `run` refuses the same way, with the same exit code, before binding anything.
    let (code, run) = cli(&["run", "--config", "{}"], &text, SECRET);
    assert_eq!(code, 2, "{run}");
    for line in want {
        assert!(run.contains(line), "{line} missing from:\n{run}");
    }
}

/// A reload refuses a file with unknown keys the same way, and the old config serves on.
#[tokio::test]
async fn a_reload_names_every_unknown_key_and_keeps_serving() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let path = dir.path().join("gateway.toml");
    let good = config("").replace("http://127.0.0.1:9", &up.url());
    std::fs::write(&path, &good).unwrap();
    let loaded = gateway::load::load(&path).unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = gateway::start_file(&path, &loaded, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let addr = started.addr;
    let reloader = started.reloader.unwrap();
    tokio::spawn(started.serving);
    let mut outcomes = reloader.outcomes();
    std::fs::write(&path, format!("{good}auht = \"x\"\nmethod = [\"GET\"]\n")).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        outcomes.wait_for(|c| c.refused >= 1),
    )
    .await
    .expect("the broken file was not noticed")
    .unwrap();
    let err = reloader.reload().unwrap_err().to_string();
    assert!(
        err.contains("routes[0].auht: unknown key `auht` (hint: did you mean `auth`?)"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].method: unknown key `method` (hint: did you mean `methods`?)"),
        "{err}"
    );
    let r = get(&format!("http://{addr}/p"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/p");
}

/// Regression: `max_header_bytes = 8192` was refused ("expected a string") although sizes
/// may be given in bytes. Every size key takes an integer, and it takes effect.
#[tokio::test]
async fn every_size_key_accepts_a_number_of_bytes() {
    let up = Upstream::start().await;
    let gw = gateway()
        .server("max_header_bytes = 300")
        .login("max_body = 64")
        .route_with("/small", &up.url(), "public", &["max_body = 8"])
        .start()
        .await;
    // server.max_header_bytes
    let big = "x".repeat(400);
    let r = get(&gw.url("/small/x"), &[("x-big", &big)]).await;
    r.assert_error(
        431,
        "Request Header Fields Too Large",
        "The request headers are larger than the gateway accepts",
    );
    // routes[].max_body
    let r = request(
        "POST",
        &gw.url("/small/x"),
        &[("content-type", "text/plain")],
        "123456789",
    )
    .await;
    r.assert_error(
        413,
        "Payload Too Large",
        "The request body is larger than this route accepts",
    );
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    let r = request("POST", &gw.url("/small/x"), &[], "12345678").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body_len, 8);
    // login.max_body
    let long = json!({"username": "user1", "password": "abcxyz", "pad": "p".repeat(64)});
    let r = post_json(&gw.url("/auth"), &long.to_string()).await;
    r.assert_error(
        413,
        "Payload Too Large",
        "The login request body is too large",
    );
    assert!(!gw.login("user1", "abcxyz").await.is_empty());
    // Negative sizes and other types are named by key path.
    let p = problems(&config("max_body = -1\n"), SECRET);
    assert!(
        p.iter()
            .any(|p| p.starts_with("routes[0].max_body: a size cannot be negative")),
        "{p:?}"
    );
    let p = problems(
        &config("").replace("[server]\n", "[server]\nmax_header_bytes = true\n"),
        SECRET,
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("server.max_header_bytes: invalid type: boolean `true`")),
        "{p:?}"
    );
}

/// Regression: a 32+ byte secret from public JWT-secret wordlists passed the length check.
/// Well-known and low-entropy secrets are refused at `check`, `run` and reload, unless
/// `allow_weak_secret = true`; the message names the key and says how to make a good one.
#[test]
fn weak_secrets_are_refused_unless_allowed() {
    let hint = "hint: generate one with `openssl rand -base64 48`";
    for (secret, why) in [
        (
            &b"my_very_long_and_safe_secret_key"[..],
            "the secret is on a public list of well-known secrets",
        ),
        (
            b"your-256-bit-secret",
            "the secret is on a public list of well-known secrets",
        ),
        (
            b"abcdabcdabcdabcdabcdabcdabcdabcdabcd",
            "the secret is a 4-byte pattern repeated",
        ),
        (
            b"aaaaaaaabbbbbbbbaaaaaaaabbbbbbbbaaaabbbb",
            "the secret has an estimated 40 bits of entropy; at least 80 are required",
        ),
    ] {
        let case = String::from_utf8_lossy(secret).into_owned();
        let text = config("").replace(
            "secret_file = \"secret\"\n",
            "secret_file = \"secret\"\nallow_short_secret = true\n",
        );
        let (code, out) = cli(&["check", "--config", "{}"], &text, secret);
        assert_eq!(code, 2, "{case}: {out}");
        assert!(
            out.contains(&format!("tokens.secret_file: {why}")),
            "{case}: {out}"
        );
        assert!(
            out.contains(hint) && out.contains("tokens.allow_weak_secret = true"),
            "{case}: {out}"
        );
        assert!(!out.contains(&case), "{case}: the secret was echoed: {out}");
        let (code, run) = cli(&["run", "--config", "{}"], &text, secret);
        assert_eq!(code, 2, "{case}: {run}");
        assert!(run.contains(why), "{case}: {run}");
        // Accepted when the operator says so.
        let allowed = text.replace("[tokens]\n", "[tokens]\nallow_weak_secret = true\n");
        assert_eq!(problems(&allowed, secret), Vec::<String>::new(), "{case}");
    }
    // The same rule for a [[keys]] entry.
    let keys = "[server]\nlisten = \"127.0.0.1:0\"\n[tokens]\n\
                [[keys]]\nid = \"k1\"\nalgorithm = \"HS256\"\n\
                secret_file = \"secret\"\nsign = true\n";
    let p = problems(keys, b"my_very_long_and_safe_secret_key");
    assert!(
        p.iter()
            .any(|p| p.starts_with("keys[0].secret_file: the secret is on a public list")),
        "{p:?}"
    );
    let allowed = keys.replace("sign = true", "sign = true\nallow_weak_secret = true");
    assert_eq!(
        problems(&allowed, b"my_very_long_and_safe_secret_key"),
        Vec::<String>::new()
    );
    // A strong secret passes, and the shipped gateway.toml keeps working as it is.
    assert_eq!(
        problems(&config(""), b"q3Zr8+Kp1Lw0Xv7nM2bYt5Hs9Ud4Gf6Je1Ai0Oc3Rk8="),
        Vec::<String>::new()
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config", shipped.to_str().unwrap()])
        .env_remove("GATEWAY_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
