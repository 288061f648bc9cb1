//! Revocation and refresh families across three instances sharing one real `redis-server`
//! (started per test on a free loopback port): logout, log out everywhere, reuse
//! detection and grace across instances, operator revocations (admin listener and
//! `gateway revoke`), Redis killed and restarted under fail_open and fail_closed, and the
//! store's atomic write (the later cut-off kept, every write numbered).
//! Every cross-instance check polls with a deadline of one second.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::refresh::{
    admin_revoke, assert_invalid_refresh, login_pair, logout, metric, pair_of, payload, refresh,
    who,
};
use crate::support::redis::Redis;
use crate::support::*;

/// Revocations reach the other instances within this.
const PROPAGATION: Duration = Duration::from_secs(1);

fn on_redis(redis: &Redis, revocation: &str) -> GatewayBuilder {
    gateway()
        .respond_identity("/who")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .table(&format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout = \"200ms\"\n\
             [refresh]\ngrace = \"1m\"\n[revocation]\n{revocation}\n",
            redis.url()
        ))
}

/// Three instances whose periodic resync is an hour away: within a second, only pub/sub
/// can carry a revocation.
async fn three(redis: &Redis) -> [Gateway; 3] {
    let only_pubsub = "resync = \"1h\"";
    [
        on_redis(redis, only_pubsub).start().await,
        on_redis(redis, only_pubsub).start().await,
        on_redis(redis, only_pubsub).start().await,
    ]
}

/// The subscription stayed up: no store error was counted.
async fn assert_no_store_errors(gws: &[&Gateway]) {
    for gw in gws {
        assert_eq!(
            metric(gw, "gateway_revocation_store_errors_total").await,
            0.0
        );
    }
}

async fn refused_everywhere(what: &str, gws: &[&Gateway], access: &str) {
    for (i, gw) in gws.iter().enumerate() {
        eventually_within(
            PROPAGATION,
            &format!("{what} on instance {i}"),
            async || who(gw, access).await == 401,
        )
        .await;
    }
}

#[tokio::test]
async fn log_in_on_a_refresh_on_b_log_out_on_c() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let (_, r1) = login_pair(&a, "user1").await;
    let (a2, r2) = pair_of(&refresh(&b, &r1).await);
    for gw in [&a, &b, &c] {
        assert_eq!(who(gw, &a2).await, 200);
    }
    let r = logout(&c, &a2, json!({"refresh_token": r2})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    refused_everywhere("the logged-out access token", &[&a, &b], &a2).await;
    // Each subscription answered its keep-alive ping and is still the first one (a lost
    // subscription counts a store error).
    eventually("a ping on all three subscriptions", async || {
        let pubsub = redis.command("CLIENT LIST TYPE pubsub");
        pubsub.matches("cmd=ping").count() == 3
    })
    .await;
    assert_no_store_errors(&[&a, &b, &c]).await;
    for gw in [&a, &b, &c] {
        assert_invalid_refresh(&refresh(gw, &r2).await);
    }
    // Entries are in Redis under the prefix, keyed by jti; refresh tokens only as hashes.
    let keys = redis.command("KEYS gateway:*");
    let jti = payload(&a2)["jti"].as_str().unwrap().to_string();
    assert!(
        keys.contains(&format!("gateway:revoked:jti:{jti}")),
        "{keys}"
    );
    assert!(keys.contains("gateway:refresh:token:"), "{keys}");
    assert!(!keys.contains(&r2) && !keys.contains(&r1), "{keys}");
}

#[tokio::test]
async fn reuse_on_b_revokes_the_family_on_every_instance_and_grace_answers_the_same_pair() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let (_, r1) = login_pair(&a, "user1").await;
    let first = refresh(&a, &r1).await;
    assert_eq!(first.status, 200);
    // Within grace, on another instance: the same pair.
    let again = refresh(&c, &r1).await;
    assert_eq!(again.body, first.body);
    let (_, r2) = pair_of(&first);
    let (_, r3) = pair_of(&refresh(&c, &r2).await);
    // r1 again on B: no longer the immediately previous token, so a reuse.
    assert_invalid_refresh(&refresh(&b, &r1).await);
    for gw in [&a, &b, &c] {
        assert_invalid_refresh(&refresh(gw, &r3).await);
    }
    assert_eq!(
        metric(&b, "gateway_refresh_reuse_detections_total").await,
        1.0
    );
}

#[tokio::test]
async fn refresh_rechecks_that_the_user_still_exists() {
    let redis = Redis::start();
    let a = on_redis(&redis, "").start().await;
    // The same store, a config where alice was deleted.
    let b = on_redis(&redis, "").without_alice().start().await;
    let (_, alice) = login_pair(&a, "user2").await;
    let (_, user1) = login_pair(&a, "user1").await;
    assert_invalid_refresh(&refresh(&b, &alice).await);
    assert_eq!(refresh(&b, &user1).await.status, 200);
    // The failed attempt did not use the token up.
    assert_eq!(refresh(&a, &alice).await.status, 200);
}

#[tokio::test]
async fn log_out_everywhere_reaches_every_instance_and_a_new_login_works() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let (t1, r1) = login_pair(&a, "user1").await;
    let (t2, _) = login_pair(&b, "user1").await;
    let (alice, _) = login_pair(&c, "user2").await;
    let r = logout(&b, &t2, json!({"everywhere": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    refused_everywhere("user1's first token", &[&a, &b, &c], &t1).await;
    refused_everywhere("user1's second token", &[&a, &b, &c], &t2).await;
    for gw in [&a, &b, &c] {
        assert_invalid_refresh(&refresh(gw, &r1).await);
        assert_eq!(who(gw, &alice).await, 200);
    }
    let (fresh, _) = login_pair(&c, "user1").await;
    for gw in [&a, &b, &c] {
        assert_eq!(who(gw, &fresh).await, 200);
    }
}

fn cli_config(redis: &Redis) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("gateway.toml"), on_redis(redis, "").toml()).unwrap();
    dir
}

fn revoke_cli(dir: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("revoke")
        .args(args)
        .arg("--config")
        .arg(dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn operator_revocations_reach_all_three() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let all = [&a, &b, &c];
    // By jti on A's admin listener.
    let (t1, _) = login_pair(&a, "user1").await;
    let jti = payload(&t1)["jti"].as_str().unwrap().to_string();
    assert_eq!(admin_revoke(&a, json!({"jti": jti})).await.status, 200);
    refused_everywhere("the admin jti revocation", &all, &t1).await;
    // By user on B's.
    let (alice, _) = login_pair(&c, "user2").await;
    assert_eq!(admin_revoke(&b, json!({"user": "alice"})).await.status, 200);
    refused_everywhere("the admin user revocation", &all, &alice).await;
    // `gateway revoke`, talking to the store.
    let dir = cli_config(&redis);
    let (t2, _) = login_pair(&b, "user1").await;
    let (t3, _) = login_pair(&b, "user1").await;
    let jti2 = payload(&t2)["jti"].as_str().unwrap().to_string();
    let (code, out, err) = revoke_cli(&dir, &["--jti", &jti2]);
    assert_eq!(code, 0, "{out}{err}");
    refused_everywhere("gateway revoke --jti", &all, &t2).await;
    assert_eq!(who(&a, &t3).await, 200);
    let (code, out, err) = revoke_cli(&dir, &["--user", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("user 1"), "{out}");
    refused_everywhere("gateway revoke --user", &all, &t3).await;
    // Usage problems exit 2 and name the fix.
    let (code, _, err) = revoke_cli(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(plain.path().join("secret"), SECRET).unwrap();
    std::fs::write(
        plain.path().join("gateway.toml"),
        crate::refresh::lifecycle("", "").toml(),
    )
    .unwrap();
    let (code, _, err) = revoke_cli(&plain, &["--user", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("POST /revocations"), "{err}");
}

#[tokio::test]
async fn redis_killed_fail_open_and_fail_closed_then_resync_everywhere() {
    let mut redis = Redis::start();
    let timing = "max_staleness = \"500ms\"\nresync = \"200ms\"\n";
    let open = on_redis(&redis, &format!("{timing}on_store_error = \"fail_open\"\n"))
        .start()
        .await;
    let closed = on_redis(
        &redis,
        &format!("{timing}on_store_error = \"fail_closed\"\n"),
    )
    .start()
    .await;
    let (before, _) = login_pair(&open, "user1").await;
    let (cut_off, _) = login_pair(&open, "user1").await;
    let (good, _) = login_pair(&open, "user2").await;
    assert_eq!(logout(&open, &before, json!({})).await.status, 200);
    refused_everywhere(
        "the revocation before the outage",
        &[&open, &closed],
        &before,
    )
    .await;

    redis.kill();
    // fail_closed: past max_staleness required routes answer 503, and readiness is red.
    eventually_within(Duration::from_secs(5), "fail_closed refusing", async || {
        who(&closed, &good).await == 503
    })
    .await;
    get(
        &closed.url("/who"),
        &[("authorization", &jwt_header(&good))],
    )
    .await
    .assert_error(
        503,
        "Service Unavailable",
        "Token revocations cannot be confirmed right now; retry later",
    );
    assert_eq!(get(&closed.admin_url("/readyz"), &[]).await.status, 503);
    // fail_open: still serving with what it knows, the old revocation included.
    assert_eq!(who(&open, &good).await, 200);
    assert_eq!(who(&open, &before).await, 401);
    assert_eq!(get(&open.admin_url("/readyz"), &[]).await.status, 200);
    assert!(metric(&open, "gateway_revocation_staleness_seconds").await > 0.0);
    assert!(metric(&open, "gateway_revocation_store_errors_total").await >= 1.0);
    // Revoked while cut off: in force here at once; the store did not take it.
    let jti = payload(&cut_off)["jti"].as_str().unwrap().to_string();
    assert_eq!(admin_revoke(&open, json!({"jti": jti})).await.status, 503);
    assert_eq!(who(&open, &cut_off).await, 401);

    // Redis back (empty: it kept nothing): the resyncs refill it and every instance
    // refuses both revoked tokens.
    redis.restart();
    eventually_within(
        Duration::from_secs(10),
        "fail_closed recovering",
        async || who(&closed, &good).await == 200,
    )
    .await;
    assert_eq!(get(&closed.admin_url("/readyz"), &[]).await.status, 200);
    eventually_within(
        Duration::from_secs(10),
        "the revocation made during the outage",
        async || who(&closed, &cut_off).await == 401,
    )
    .await;
    assert_eq!(who(&closed, &before).await, 401);
    // A gateway started now learns both from the store alone.
    let late = on_redis(&redis, "").start().await;
    assert_eq!(who(&late, &before).await, 401);
    assert_eq!(who(&late, &cut_off).await, 401);
    assert_eq!(who(&late, &good).await, 200);
}

#[tokio::test]
async fn two_instances_racing_on_one_refresh_token_rotate_it_once() {
    let redis = Redis::start();
    let [a, b, _c] = three(&redis).await;
    for _ in 0..5 {
        let (_, r1) = login_pair(&a, "user1").await;
        let (x, y) = tokio::join!(refresh(&a, &r1), refresh(&b, &r1));
        assert_eq!((x.status.as_u16(), y.status.as_u16()), (200, 200));
        // One rotation: the other request got the same pair (grace), not a second one.
        assert_eq!(x.body, y.body);
        let (_, r2) = pair_of(&x);
        assert_eq!(refresh(&b, &r2).await.status, 200);
    }
    // Without grace the loser is a reuse, and the family is revoked.
    let strict = |r: &Redis| {
        gateway().respond_identity("/who").table(&format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\n[refresh]\ngrace = \"0s\"\n",
            r.url()
        ))
    };
    let (a, b) = (strict(&redis).start().await, strict(&redis).start().await);
    let (_, r1) = login_pair(&a, "user1").await;
    let (x, y) = tokio::join!(refresh(&a, &r1), refresh(&b, &r1));
    let mut statuses = [x.status.as_u16(), y.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401]);
    let winner = if x.status == 200 { &x } else { &y };
    let (_, r2) = pair_of(winner);
    assert_invalid_refresh(&refresh(&a, &r2).await);
}

/// The remaining time to live of `key` in ms (negative: absent or no expiry).
fn pttl(redis: &Redis, key: &str) -> i64 {
    let reply = redis.command(&format!("PTTL {key}"));
    reply.trim().trim_start_matches(':').parse().unwrap()
}

#[tokio::test]
async fn refresh_records_expire_with_idle_and_families_with_lifetime() {
    let redis = Redis::start();
    let gw = gateway()
        .table(&format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\n\
             [refresh]\nlifetime = \"1h\"\nidle = \"2m\"\n",
            redis.url()
        ))
        .start()
        .await;
    let (_, r1) = login_pair(&gw, "user1").await;
    let key = |t: &str| {
        format!(
            "gateway:refresh:token:{}",
            gateway::config::sha256_hex(t.as_bytes())
        )
    };
    let live = pttl(&redis, &key(&r1));
    assert!((110_000..=120_000).contains(&live), "{live}");
    let families = redis.command("KEYS gateway:refresh:family:*");
    let family = families
        .lines()
        .find(|l| l.starts_with("gateway:"))
        .unwrap()
        .to_string();
    let f = pttl(&redis, &family);
    assert!((3_590_000..=3_600_000).contains(&f), "{f}");
    // Rotated: the used record is kept as long as the family (to recognize a reuse), and
    // the new token gets a fresh idle timeout.
    let (_, r2) = pair_of(&refresh(&gw, &r1).await);
    let used = pttl(&redis, &key(&r1));
    assert!((3_590_000..=3_600_000).contains(&used), "{used}");
    let next = pttl(&redis, &key(&r2));
    assert!((110_000..=120_000).contains(&next), "{next}");
}

#[tokio::test]
async fn the_store_keeps_the_later_cut_off_and_numbers_every_write() {
    let redis = Redis::start();
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/0")
        .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A cut-off an hour ahead, already in the store (another instance's, say).
    let ahead_ms = (now + 3600) * 1000;
    let set = Command::new("redis-cli")
        .args(["-p", &port, "SET", "gateway:revoked:user:1"])
        .arg(format!("{ahead_ms} {}", now + 7200))
        .output()
        .expect("redis-cli is needed");
    assert!(set.status.success());
    let a = on_redis(&redis, "").start().await;
    let (token, _) = login_pair(&a, "user1").await;
    assert_eq!(who(&a, &token).await, 401, "loaded from the store at start");
    // An operator's cut-off for now is lower: the store keeps the later one.
    assert_eq!(admin_revoke(&a, json!({"user": 1})).await.status, 200);
    let held = redis.command("GET gateway:revoked:user:1");
    assert!(held.contains(&format!("{ahead_ms} ")), "{held}");
    // The write was numbered in the same step.
    assert_eq!(
        redis.command("GET gateway:revoked#generation"),
        "$1\r\n1\r\n"
    );
}
