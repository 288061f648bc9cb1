//! `[store] backend = "redis"`: login limits shared by several instances through one real
//! `redis-server` (started per test on a free loopback port), and what happens when Redis
//! dies, hangs and comes back.

use std::time::{Duration, Instant};

use crate::login_limits::{assert_invalid, assert_limited, login_from, metric, WRONG};
use crate::support::pki::Pki;
use crate::support::redis::Redis;
use crate::support::*;

// Generous: the machine may be busy hashing for other tests, and a slow answer would
// switch an instance to its local counters (what the outage tests look for).
const TIMEOUT_MS: u64 = 1000;

fn on_redis(redis: &Redis, limits: &str, store_extra: &str) -> GatewayBuilder {
    gateway()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .table(&format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout = \"{TIMEOUT_MS}ms\"\n\
                {store_extra}\n[login.limits]\n{limits}\n",
            redis.url()
        ))
}

#[tokio::test]
async fn three_instances_share_the_account_and_address_limits() {
    let redis = Redis::start();
    let limits =
        "account_failures = 3\nlockout = \"10m\"\naddress_failures = 6\npair_failures = 100\n";
    let a = on_redis(&redis, limits, "").start().await;
    let b = on_redis(&redis, limits, "").start().await;
    let c = on_redis(&redis, limits, "").start().await;
    // One wrong password per instance, each from another address: the account's third
    // failure locks it on all three.
    assert_invalid(&login_from(&a, "198.51.100.1", "user1", WRONG).await);
    assert_invalid(&login_from(&b, "198.51.100.2", "user1", WRONG).await);
    assert_invalid(&login_from(&c, "198.51.100.3", "user1", WRONG).await);
    for gw in [&a, &b, &c] {
        assert_limited(&login_from(gw, "203.0.113.1", "user1", PASSWORD).await);
    }
    // A password spray from one address, spread over the three: six failures in all.
    for (i, gw) in [&a, &b, &c, &a, &b, &c].into_iter().enumerate() {
        assert_invalid(&login_from(gw, "198.51.100.50", &format!("spray{i}"), "Winter2026!").await);
    }
    for gw in [&a, &b, &c] {
        assert_limited(&login_from(gw, "198.51.100.50", "user2", PASSWORD).await);
    }
    // Successful logins of another user from another address go on everywhere.
    for gw in [&a, &b, &c] {
        assert_eq!(
            login_from(gw, "198.51.100.60", "user2", PASSWORD)
                .await
                .status,
            200
        );
    }
    // The counters are in Redis under the prefix, without the usernames.
    let keys = redis.command("KEYS gateway:login:*");
    assert!(keys.contains("gateway:login:lock:"), "{keys}");
    assert!(!keys.contains("user1") && !keys.contains("spray"), "{keys}");
    assert!(
        metric(
            &a,
            r#"gateway_login_outcomes_total{outcome="success",store="redis"}"#
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn redis_killed_falls_back_to_local_limits_then_shares_again() {
    let mut redis = Redis::start();
    let limits = "account_failures = 3\nlockout = \"10m\"\npair_failures = 100\n";
    let a = on_redis(&redis, limits, "").start().await;
    let b = on_redis(&redis, limits, "").start().await;
    assert_eq!(
        login_from(&a, "198.51.100.1", "user1", PASSWORD)
            .await
            .status,
        200
    );
    redis.kill();
    // Logins keep working within the timeout, on this instance's own counters.
    let started = Instant::now();
    assert_eq!(
        login_from(&a, "198.51.100.1", "user1", PASSWORD)
            .await
            .status,
        200
    );
    assert!(
        started.elapsed() < Duration::from_millis(TIMEOUT_MS + 2000),
        "{:?}",
        started.elapsed()
    );
    for i in 0..3 {
        assert_invalid(&login_from(&a, &format!("198.51.100.{}", 10 + i), "user2", WRONG).await);
    }
    assert_limited(&login_from(&a, "198.51.100.20", "user2", PASSWORD).await);
    // B never saw those failures (nothing is shared while Redis is down).
    assert_eq!(
        login_from(&b, "198.51.100.20", "user2", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(metric(&a, "gateway_store_up").await, 0.0);
    assert_eq!(metric(&a, "gateway_store_outages_total").await, 1.0);
    assert!(metric(&a, "gateway_store_fallbacks_total").await >= 1.0);
    assert!(
        metric(
            &a,
            r#"gateway_store_errors_total{backend="redis",op="peek"}"#
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            &a,
            r#"gateway_login_outcomes_total{outcome="success",store="local_fallback"}"#
        )
        .await
            >= 1.0
    );

    redis.restart();
    // Back to shared (each instance probes once a second during an outage).
    for gw in [&a, &b] {
        eventually_within(
            Duration::from_secs(20),
            "the store to be used again",
            async || {
                login_from(gw, "198.51.100.30", "user1", PASSWORD).await;
                metric(gw, "gateway_store_up").await == 1.0
            },
        )
        .await;
    }
    for (gw, client) in [
        (&a, "198.51.100.41"),
        (&b, "198.51.100.42"),
        (&a, "198.51.100.43"),
    ] {
        assert_invalid(&login_from(gw, client, "user1", WRONG).await);
    }
    assert_limited(&login_from(&b, "198.51.100.44", "user1", PASSWORD).await);
}

#[tokio::test]
async fn a_hung_redis_never_hangs_a_login() {
    let mut redis = Redis::start();
    let gw = on_redis(&redis, "", "").start().await;
    assert_eq!(
        login_from(&gw, "198.51.100.1", "user1", PASSWORD)
            .await
            .status,
        200
    );
    redis.pause();
    // Each login waits at most about one timeout on the first store call of the outage,
    // then goes local at once until the next probe.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            login_from(&gw, "198.51.100.1", "user1", PASSWORD)
                .await
                .status,
            200
        );
        assert!(
            started.elapsed() < Duration::from_millis(TIMEOUT_MS * 3 + 1000),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(metric(&gw, "gateway_store_outages_total").await, 1.0);
    assert!(
        metric(
            &gw,
            r#"gateway_store_errors_total{backend="redis",op="peek"}"#
        )
        .await
            >= 1.0
    );
    redis.resume();
    eventually_within(
        Duration::from_secs(20),
        "the store to answer again",
        async || {
            login_from(&gw, "198.51.100.1", "user1", PASSWORD).await;
            metric(&gw, "gateway_store_up").await == 1.0
        },
    )
    .await;
}

#[tokio::test]
async fn fail_closed_refuses_logins_while_redis_is_down() {
    let mut redis = Redis::start();
    let gw = on_redis(&redis, "on_store_error = \"fail_closed\"\n", "")
        .respond_identity("/whoami")
        .start()
        .await;
    assert_eq!(
        login_from(&gw, "198.51.100.1", "user1", PASSWORD)
            .await
            .status,
        200
    );
    redis.kill();
    let started = Instant::now();
    let r = login_from(&gw, "198.51.100.1", "user1", PASSWORD).await;
    r.assert_error(
        503,
        "Service Unavailable",
        "Logins are unavailable right now; retry later",
    );
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 2000));
    // Token verification does not depend on the store.
    let t = token();
    assert_eq!(
        get(
            &gw.url("/whoami"),
            &[("authorization", &format!("JWT {t}"))]
        )
        .await
        .status,
        200
    );
    redis.restart();
    eventually_within(
        Duration::from_secs(20),
        "logins to work again",
        async || {
            login_from(&gw, "198.51.100.1", "user1", PASSWORD)
                .await
                .status
                == 200
        },
    )
    .await;
}

#[tokio::test]
async fn a_password_comes_from_password_file_and_never_inline() {
    let redis = Redis::start();
    assert!(redis
        .command("CONFIG SET requirepass s3cret-redis")
        .contains("OK"));
    let gw = on_redis(
        &redis,
        "account_failures = 2\n",
        "password_file = \"redis-password\"\n",
    )
    .file("redis-password", "s3cret-redis\n")
    .start()
    .await;
    for _ in 0..2 {
        assert_invalid(&login_from(&gw, "198.51.100.1", "user1", WRONG).await);
    }
    assert_limited(&login_from(&gw, "198.51.100.1", "user1", PASSWORD).await);
    assert_eq!(metric(&gw, "gateway_store_outages_total").await, 0.0);
    // An inline password is refused at load, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let err = gateway::load::from_str(
        "[tokens]\nsecret_env = \"X\"\nmissing_secret = \"generate\"\n[store]\n\
            backend = \"redis\"\nurl = \"redis://:hunter2@127.0.0.1:1/0\"\n",
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("store.url") && err.contains("password_env"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn rediss_verifies_the_server_against_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("redis test CA");
    let ca = pki.write_ca(dir.path(), "ca.pem");
    let (cert, key) = pki.leaf(&["127.0.0.1"]).write(dir.path(), "redis");
    let redis = Redis::start_tls(&cert, &key, &ca);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let tls_gateway = |ca_line: String| {
        gateway()
            .server("trusted_proxies = [\"127.0.0.1/32\"]")
            .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
            .table(&format!(
                "[store]\nbackend = \"redis\"\nurl = \"{url}\"\ntimeout = \"{TIMEOUT_MS}ms\"\n{ca_line}\n[login.limits]\n\
                    account_failures = 2\npair_failures = 100\n"
            ))
    };
    let ca_line = format!("ca_file = \"{}\"", ca.display());
    let a = tls_gateway(ca_line.clone()).start().await;
    let b = tls_gateway(ca_line).start().await;
    // Failures on A lock the account on B: the counters crossed TLS to one Redis.
    assert_invalid(&login_from(&a, "198.51.100.1", "user1", WRONG).await);
    assert_invalid(&login_from(&a, "198.51.100.2", "user1", WRONG).await);
    assert_limited(&login_from(&b, "198.51.100.3", "user1", PASSWORD).await);
    assert_eq!(metric(&a, "gateway_store_outages_total").await, 0.0);
    // Without our CA the server is not trusted: the limits run locally, and say so.
    let untrusting = tls_gateway(String::new()).start().await;
    assert_eq!(
        login_from(&untrusting, "198.51.100.4", "user2", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(
        metric(&untrusting, "gateway_store_outages_total").await,
        1.0
    );
    assert_eq!(metric(&untrusting, "gateway_store_up").await, 0.0);
}

#[test]
fn password_env_is_read_through_the_environment_lookup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let text = "[tokens]\nsecret_file = \"secret\"\n[store]\nbackend = \"redis\"\n\
                url = \"redis://127.0.0.1:6379/0\"\npassword_env = \"GW_TEST_REDIS_PW\"\n";
    let env = |k: &str| (k == "GW_TEST_REDIS_PW").then(|| "from-env".to_string());
    let loaded = gateway::load::from_str_with_env(text, dir.path(), &env).unwrap();
    match &loaded.config.store.backend {
        gateway::config::StoreBackend::Redis(r) => {
            assert_eq!(r.password.as_deref(), Some("from-env"));
            // Debug output never shows it.
            assert!(!format!("{r:?}").contains("from-env"));
        }
        other => panic!("{other:?}"),
    }
    let err = gateway::load::from_str_with_env(text, dir.path(), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.password_env"), "{err}");
}
