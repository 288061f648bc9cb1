//! `[login.limits]`: failed logins are counted per account, per address and per (address,
//! account); successful logins never count. `[server] trusted_proxies`: whose
//! `X-Forwarded-For` names the client. The embedded store (`backend = "memory"`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

pub const WRONG: &str = "not-the-password";

/// A login from `client` (sent as `X-Forwarded-For`; honoured only from a trusted proxy).
pub async fn login_from(gw: &Gateway, client: &str, user: &str, password: &str) -> Resp {
    let body = serde_json::json!({"username": user, "password": password}).to_string();
    request(
        "POST",
        &gw.url("/auth"),
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ],
        body,
    )
    .await
}

pub fn assert_limited(r: &Resp) -> u64 {
    r.assert_error(
        429,
        "Too Many Requests",
        "Too many login attempts; retry later",
    );
    r.header("retry-after")
        .expect("429 without Retry-After")
        .parse()
        .unwrap()
}

pub fn assert_invalid(r: &Resp) {
    r.assert_error(401, "Bad Request", "Invalid credentials");
}

/// The value of one sample line of the Prometheus text (`name{labels}`), 0 when absent.
pub async fn metric(gw: &Gateway, sample: &str) -> f64 {
    let text = get(&gw.admin_url("/metrics"), &[]).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A gateway behind a (pretend) trusted proxy on loopback, with `limits` lines.
fn behind_proxy(limits: &str) -> GatewayBuilder {
    gateway()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .table(&format!("[login.limits]\n{limits}\n"))
}

#[tokio::test]
async fn thirty_correct_logins_from_one_address_all_succeed() {
    // The bug this replaces: every login counted, the 21st in a minute from one address
    // (a whole office behind NAT) got 429 with the right password.
    let gw = gateway().start().await;
    for i in 0..30 {
        let r = post_json(
            &gw.url("/auth"),
            r#"{"username":"user1","password":"abcxyz"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "login {i}: {}", r.text());
    }
}

#[tokio::test]
async fn two_hundred_users_log_in_from_one_address_within_a_minute() {
    // bcrypt at cost 4 keeps 200 distinct users cheap to hash here.
    let mut file = String::new();
    for i in 0..200 {
        let hash = bcrypt::hash(format!("pw{i}"), 4).unwrap();
        file.push_str(&format!(
            "[[users]]\nid = {}\nusername = \"u{i}\"\npassword_hash = \"{hash}\"\n",
            1000 + i
        ));
    }
    let gw = gateway().raw(&file).start().await;
    let started = Instant::now();
    for i in 0..200 {
        let r = login_from(&gw, "127.0.0.1", &format!("u{i}"), &format!("pw{i}")).await;
        assert_eq!(r.status, 200, "u{i}: {}", r.text());
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_whatever_the_address() {
    let gw = behind_proxy("account_failures = 3\nlockout = \"10m\"\npair_failures = 100\n")
        .start()
        .await;
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_invalid(&login_from(&gw, client, "user1", WRONG).await);
    }
    // Locked for everyone, the right password included, from a fresh address too.
    for client in ["198.51.100.1", "203.0.113.50"] {
        let wait = assert_limited(&login_from(&gw, client, "user1", PASSWORD).await);
        assert!((590..=600).contains(&wait), "retry-after {wait}");
    }
    // Other accounts are not affected.
    assert_eq!(
        login_from(&gw, "198.51.100.1", "user2", PASSWORD)
            .await
            .status,
        200
    );
    // An account that does not exist locks the same way: a 429 reveals nothing.
    for client in ["198.51.100.4", "198.51.100.5", "198.51.100.6"] {
        assert_invalid(&login_from(&gw, client, "nobody", WRONG).await);
    }
    let locked = login_from(&gw, "198.51.100.7", "nobody", WRONG).await;
    let real = login_from(&gw, "198.51.100.7", "user1", WRONG).await;
    assert_eq!(locked.body, real.body);
    assert_limited(&locked);
    assert_eq!(
        metric(&gw, r#"gateway_login_throttled_total{key="account"}"#).await,
        4.0
    );
}

#[tokio::test]
async fn lockouts_double_up_to_the_cap() {
    let gw = behind_proxy(
        "account_failures = 2\nlockout = \"1s\"\nmax_lockout = \"2s\"\npair_failures = 100\n",
    )
    .start()
    .await;
    let mut waits = Vec::new();
    for round in 0..3 {
        for _ in 0..2 {
            assert_invalid(&login_from(&gw, "198.51.100.1", "user1", WRONG).await);
        }
        waits.push(assert_limited(
            &login_from(&gw, "198.51.100.1", "user1", PASSWORD).await,
        ));
        // Polled (no fixed sleep): refused until the lockout ends, then a login works.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = login_from(&gw, "198.51.100.1", "user1", PASSWORD).await;
            if r.status == 200 {
                break;
            }
            assert_limited(&r);
            assert!(Instant::now() < deadline, "round {round}: still locked");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(waits, [1, 2, 2]);
}

#[tokio::test]
async fn a_spray_over_usernames_from_one_address_hits_the_address_limit() {
    let gw = behind_proxy("address_failures = 5\n").start().await;
    for i in 0..5 {
        assert_invalid(&login_from(&gw, "198.51.100.9", &format!("user{i}x"), "Spring2026!").await);
    }
    let wait = assert_limited(&login_from(&gw, "198.51.100.9", "someone-new", "Spring2026!").await);
    assert!(wait > 800, "retry-after {wait}");
    // Even a user's right password from that address waits: the address is the attacker.
    assert_limited(&login_from(&gw, "198.51.100.9", "user1", PASSWORD).await);
    // Other addresses are not affected.
    assert_eq!(
        login_from(&gw, "198.51.100.10", "user1", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(
        metric(&gw, r#"gateway_login_throttled_total{key="address"}"#).await,
        2.0
    );
}

#[tokio::test]
async fn the_address_account_pair_is_limited_and_a_success_clears_it() {
    let gw = behind_proxy("pair_failures = 3\naccount_failures = 50\n")
        .start()
        .await;
    // Two typos and the right password: the pair counter starts over.
    for _ in 0..2 {
        assert_invalid(&login_from(&gw, "198.51.100.20", "user1", WRONG).await);
    }
    assert_eq!(
        login_from(&gw, "198.51.100.20", "user1", PASSWORD)
            .await
            .status,
        200
    );
    for _ in 0..2 {
        assert_invalid(&login_from(&gw, "198.51.100.20", "user1", WRONG).await);
    }
    assert_eq!(
        login_from(&gw, "198.51.100.20", "user1", PASSWORD)
            .await
            .status,
        200
    );
    // Three in a row: that address may not try that account, others may.
    for _ in 0..3 {
        assert_invalid(&login_from(&gw, "198.51.100.20", "user1", WRONG).await);
    }
    assert_limited(&login_from(&gw, "198.51.100.20", "user1", PASSWORD).await);
    assert_eq!(
        login_from(&gw, "198.51.100.21", "user1", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(
        login_from(&gw, "198.51.100.20", "user2", PASSWORD)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_only_from_trusted_proxies() {
    let up = Upstream::start().await;
    for trusted in [None, Some("10.0.0.0/8")] {
        // The peer (127.0.0.1) is not trusted: every forged address is the same client.
        let mut b = gateway()
            .table("[login.limits]\naddress_failures = 3\n")
            .route("/api", &up.url(), "public");
        if let Some(net) = trusted {
            b = b.server(&format!("trusted_proxies = [\"{net}\"]"));
        }
        let gw = b.start().await;
        for i in 0..3 {
            let client = format!("192.0.2.{i}");
            assert_invalid(&login_from(&gw, &client, &format!("n{i}"), WRONG).await);
        }
        assert_limited(&login_from(&gw, "192.0.2.99", "n99", WRONG).await);
        // Upstream: the chain starts at the peer, and X-Real-IP is the peer.
        get(
            &gw.url("/api"),
            &[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")],
        )
        .await;
        let seen = up.last();
        assert_eq!(
            seen.headers
                .get("x-forwarded-for")
                .map(|v| v.to_str().unwrap()),
            Some("127.0.0.1")
        );
        assert_eq!(
            seen.headers.get("x-real-ip").map(|v| v.to_str().unwrap()),
            Some("127.0.0.1")
        );
    }
    // Trusted: each forwarded address has its own budget, and the upstream sees the client.
    let gw = behind_proxy("address_failures = 3\n")
        .route("/api", &up.url(), "public")
        .start()
        .await;
    for i in 0..4 {
        let client = format!("192.0.2.{i}");
        assert_invalid(&login_from(&gw, &client, &format!("n{i}"), WRONG).await);
    }
    get(
        &gw.url("/api"),
        &[("x-forwarded-for", "6.6.6.6, 192.0.2.7")],
    )
    .await;
    let seen = up.last();
    assert_eq!(
        seen.headers
            .get("x-forwarded-for")
            .map(|v| v.to_str().unwrap()),
        Some("6.6.6.6, 192.0.2.7, 127.0.0.1")
    );
    assert_eq!(
        seen.headers.get("x-real-ip").map(|v| v.to_str().unwrap()),
        Some("192.0.2.7")
    );
}

#[tokio::test]
async fn the_flood_cap_counts_every_attempt_before_the_body_is_read() {
    let gw = gateway()
        .login("max_attempts = 3")
        .login("attempts_window = \"1h\"")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(
            post_json(
                &gw.url("/auth"),
                r#"{"username":"user1","password":"abcxyz"}"#
            )
            .await
            .status,
            200
        );
    }
    // Not even JSON: refused before it is parsed, let alone hashed.
    let hashes = metric(&gw, "gateway_password_hashes_total").await;
    assert_limited(&post_json(&gw.url("/auth"), "{{{{").await);
    assert_eq!(metric(&gw, "gateway_password_hashes_total").await, hashes);
    assert_eq!(
        metric(&gw, r#"gateway_login_throttled_total{key="flood"}"#).await,
        1.0
    );
    let v: Value = serde_json::from_slice(&post_json(&gw.url("/auth"), "{}").await.body).unwrap();
    assert_eq!(v["status_code"], 429);
}

#[test]
fn bad_limit_store_and_proxy_settings_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let text = "[server]\ntrusted_proxies = [\"10.0.0.0/33\", \"not-an-ip\", \"127.0.0.1\"]\n\
        [tokens]\nsecret_file = \"secret\"\n[login]\n[login.limits]\naccount_failures = 0\n\
        lockout = \"10m\"\nmax_lockout = \"1m\"\non_store_error = \"maybe\"\n[login.remote]\n\
        url = \"ftp://x/\"\n[store]\nbackend = \"redis\"\nurl = \"http://127.0.0.1:6379\"\n\
        timeout = \"0s\"\n";
    let err = gateway::load::from_str(text, dir.path())
        .unwrap_err()
        .to_string();
    for key in [
        "server.trusted_proxies[0]",
        "server.trusted_proxies[1]",
        "login.limits.account_failures",
        "login.limits.max_lockout",
        "login.limits.on_store_error",
        "login.remote.url",
        "store.url",
        "store.timeout",
    ] {
        assert!(err.contains(key), "{key} not in {err}");
    }
    assert!(!err.contains("trusted_proxies[2]"), "{err}");
    // Redis keys with the memory backend are a mistake, not ignored.
    let text = "[tokens]\nsecret_file = \"secret\"\n[store]\nurl = \"redis://127.0.0.1/0\"\n";
    let err = gateway::load::from_str(text, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("store.url") && err.contains("only used with backend"),
        "{err}"
    );
}
