//! Refresh tokens, logout and revocation on one instance with the memory store: rotation,
//! reuse detection, the grace window, token-kind confusion, logout (one token, its family,
//! everywhere), `POST /revocations`, and the `/auth` body with refresh tokens on.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// A gateway with `/who` (required) and the lifecycle tables.
pub fn lifecycle(refresh: &str, revocation: &str) -> GatewayBuilder {
    gateway()
        .respond_identity("/who")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .table(&format!(
            "[refresh]\n{refresh}\n[revocation]\n{revocation}\n"
        ))
}

/// Logs in and returns (access token, refresh token).
pub async fn login_pair(gw: &Gateway, user: &str) -> (String, String) {
    let r = post_json(
        &gw.url("/auth"),
        &json!({"username": user, "password": PASSWORD}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    pair_of(&r)
}

pub fn pair_of(r: &Resp) -> (String, String) {
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{v}");
    (
        v["access_token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    )
}

pub async fn refresh(gw: &Gateway, token: &str) -> Resp {
    post_json(
        &gw.url("/auth/refresh"),
        &json!({"refresh_token": token}).to_string(),
    )
    .await
}

/// The status `/who` answers with `access`.
pub async fn who(gw: &Gateway, access: &str) -> u16 {
    get(&gw.url("/who"), &[("authorization", &jwt_header(access))])
        .await
        .status
        .as_u16()
}

pub async fn logout(gw: &Gateway, access: &str, body: Value) -> Resp {
    request(
        "POST",
        &gw.url("/auth/logout"),
        &[
            ("authorization", &jwt_header(access)),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
    .await
}

pub async fn admin_revoke(gw: &Gateway, body: Value) -> Resp {
    post_json(&gw.admin_url("/revocations"), &body.to_string()).await
}

pub fn assert_invalid_refresh(r: &Resp) {
    r.assert_error(401, "Unauthorized", "Invalid refresh token");
}

/// The token's payload (not verified: the test only reads what it was given).
pub fn payload(token: &str) -> Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

pub async fn metric(gw: &Gateway, sample: &str) -> f64 {
    let text = get(&gw.admin_url("/metrics"), &[]).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn refresh_rotates_and_the_pair_works() {
    let gw = lifecycle("grace = \"0s\"", "").start().await;
    let (a1, r1) = login_pair(&gw, "user1").await;
    // 256 random bits, base64url, no JWT shape.
    assert_eq!(r1.len(), 43);
    assert!(!r1.contains('.'));
    // With revocation on, our tokens carry a jti.
    assert!(payload(&a1)["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(who(&gw, &a1).await, 200);
    let res = refresh(&gw, &r1).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let (a2, r2) = pair_of(&res);
    assert_ne!(r2, r1);
    assert_ne!(payload(&a2)["jti"], payload(&a1)["jti"]);
    assert_eq!(payload(&a2)["identity"], json!(1));
    assert_eq!(who(&gw, &a2).await, 200);
    let (_, r3) = pair_of(&refresh(&gw, &r2).await);
    assert_eq!(refresh(&gw, &r3).await.status, 200);
    assert_eq!(
        metric(&gw, r#"gateway_refreshes_total{outcome="rotated"}"#).await,
        3.0
    );
}

#[tokio::test]
async fn a_used_token_again_revokes_the_family_newest_included() {
    let gw = lifecycle("grace = \"0s\"", "").start().await;
    let (_, r1) = login_pair(&gw, "user1").await;
    let (_, r2) = pair_of(&refresh(&gw, &r1).await);
    let (_, r3) = pair_of(&refresh(&gw, &r2).await);
    // r1 is used: presenting it is a reuse.
    assert_invalid_refresh(&refresh(&gw, &r1).await);
    // The newest token of the family is dead too.
    assert_invalid_refresh(&refresh(&gw, &r3).await);
    assert_eq!(
        metric(&gw, "gateway_refresh_reuse_detections_total").await,
        1.0
    );
    // Another login's family is untouched.
    let (_, other) = login_pair(&gw, "user1").await;
    assert_eq!(refresh(&gw, &other).await.status, 200);
}

#[tokio::test]
async fn within_grace_only_the_immediately_previous_token_gets_the_same_pair() {
    let gw = lifecycle("grace = \"1m\"", "").start().await;
    let (_, r1) = login_pair(&gw, "user1").await;
    let first = refresh(&gw, &r1).await;
    assert_eq!(first.status, 200);
    // A retry (or a parallel tab) with r1: the very same pair, byte for byte.
    let again = refresh(&gw, &r1).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    let (_, r2) = pair_of(&first);
    let (_, r3) = pair_of(&refresh(&gw, &r2).await);
    // r1 is no longer the immediately previous token: a reuse, and the family dies.
    assert_invalid_refresh(&refresh(&gw, &r1).await);
    assert_invalid_refresh(&refresh(&gw, &r3).await);
    assert_eq!(
        metric(&gw, r#"gateway_refreshes_total{outcome="grace"}"#).await,
        1.0
    );
}

#[tokio::test]
async fn access_and_refresh_tokens_are_never_each_other() {
    let gw = lifecycle("", "").start().await;
    let (access, refresh_token) = login_pair(&gw, "user1").await;
    // A refresh token as an access token.
    let r = get(
        &gw.url("/who"),
        &[("authorization", &jwt_header(&refresh_token))],
    )
    .await;
    r.assert_error(401, "Invalid token", "Not enough segments");
    // An access token at the refresh path.
    assert_invalid_refresh(&refresh(&gw, &access).await);
    // Bad bodies get precise 4xx answers.
    let r = post_json(&gw.url("/auth/refresh"), r#"{"refresh_token":1}"#).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post_json(
        &gw.url("/auth/refresh"),
        r#"{"refresh_token":"x","more":1}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request("POST", &gw.url("/auth/refresh"), &[], "x").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = get(&gw.url("/auth/refresh"), &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let big = json!({"refresh_token": "a".repeat(5000)}).to_string();
    assert_eq!(post_json(&gw.url("/auth/refresh"), &big).await.status, 413);
    // The refresh token still works after all that.
    assert_eq!(refresh(&gw, &refresh_token).await.status, 200);
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_family() {
    let gw = lifecycle("", "").start().await;
    let (a1, r1) = login_pair(&gw, "user1").await;
    let (a2, r2) = pair_of(&refresh(&gw, &r1).await);
    let (other, _) = login_pair(&gw, "user1").await;
    let r = logout(&gw, &a2, json!({"refresh_token": r2})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["refresh_family_revoked"], json!(true));
    assert_eq!(who(&gw, &a2).await, 401);
    get(&gw.url("/who"), &[("authorization", &jwt_header(&a2))])
        .await
        .assert_error(401, "Invalid token", "Token has been revoked");
    assert_invalid_refresh(&refresh(&gw, &r2).await);
    // Logged out once: the same token cannot log out again.
    assert_eq!(logout(&gw, &a2, json!({})).await.status, 401);
    // Tokens that were not named keep working: the earlier access token of the
    // family (it expires on its own), and another login's.
    assert_eq!(who(&gw, &a1).await, 200);
    assert_eq!(who(&gw, &other).await, 200);
    // An empty body is fine; an unknown member is not.
    let r = request(
        "POST",
        &gw.url("/auth/logout"),
        &[("authorization", &jwt_header(&other))],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (a3, _) = login_pair(&gw, "user1").await;
    assert_eq!(logout(&gw, &a3, json!({"all": true})).await.status, 400);
    assert_eq!(logout(&gw, "nonsense", json!({})).await.status, 401);
    assert_eq!(
        metric(&gw, r#"gateway_revocations_total{kind="jti",by="logout"}"#).await,
        2.0
    );
}

#[tokio::test]
async fn logout_everywhere_cuts_every_token_of_the_user_and_a_new_login_works() {
    let gw = lifecycle("", "").start().await;
    let (a1, r1) = login_pair(&gw, "user1").await;
    let (a2, _) = login_pair(&gw, "user1").await;
    let (alice, _) = login_pair(&gw, "user2").await;
    // A token minted by an operator tool (no jti), issued a minute ago.
    let mut c = claims(json!(1));
    c["iat"] = json!(now() - 60);
    let minted = mint(c);
    assert_eq!(who(&gw, &minted).await, 200);
    let r = logout(&gw, &a2, json!({"everywhere": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for t in [&a1, &a2, &minted] {
        assert_eq!(who(&gw, t).await, 401);
    }
    assert_invalid_refresh(&refresh(&gw, &r1).await);
    // Other users are not affected; a new login (even within the same second) works.
    assert_eq!(who(&gw, &alice).await, 200);
    let (fresh, fresh_refresh) = login_pair(&gw, "user1").await;
    assert_eq!(who(&gw, &fresh).await, 200);
    assert_eq!(refresh(&gw, &fresh_refresh).await.status, 200);
}

#[tokio::test]
async fn operator_revocations_on_the_admin_listener() {
    let gw = lifecycle("", "").start().await;
    let (a1, _) = login_pair(&gw, "user1").await;
    let (alice, _) = login_pair(&gw, "user2").await;
    let jti = payload(&a1)["jti"].as_str().unwrap().to_string();
    let r = admin_revoke(&gw, json!({"jti": jti})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(who(&gw, &a1).await, 401);
    let r = admin_revoke(&gw, json!({"user": "alice"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(who(&gw, &alice).await, 401);
    // The identity keeps its JSON type: revoking "1" is not revoking 1.
    let (a2, _) = login_pair(&gw, "user1").await;
    assert_eq!(admin_revoke(&gw, json!({"user": "1"})).await.status, 200);
    assert_eq!(who(&gw, &a2).await, 200);
    for bad in [
        json!({}),
        json!({"jti": "a", "user": 1}),
        json!({"user": [1]}),
        json!({"jti": ""}),
        json!({"who": 1}),
    ] {
        let r = admin_revoke(&gw, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    assert_eq!(get(&gw.admin_url("/revocations"), &[]).await.status, 405);
    assert_eq!(
        metric(
            &gw,
            r#"gateway_revocations_total{kind="user",by="operator"}"#
        )
        .await,
        2.0
    );
    assert!(metric(&gw, "gateway_revocation_set_size").await >= 3.0);
}

#[tokio::test]
async fn the_login_body_gains_the_refresh_token_only_with_refresh_on() {
    let on = lifecycle("", "").start().await;
    let r = post_json(
        &on.url("/auth"),
        &json!({"username": "user1", "password": PASSWORD}).to_string(),
    )
    .await;
    let text = r.text();
    assert!(
        text.starts_with(r#"{"access_token":""#) && text.contains(r#"","refresh_token":""#),
        "{text}"
    );
    // Off: Flask-JWT's body, one member, no jti in the token.
    let off = gateway().start().await;
    let r = post_json(
        &off.url("/auth"),
        &json!({"username": "user1", "password": PASSWORD}).to_string(),
    )
    .await;
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 1);
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(
        payload(access)
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["exp", "iat", "identity", "nbf"]
    );
    assert_eq!(r.text(), format!("{{\"access_token\":\"{access}\"}}\n"));
    assert_eq!(get(&off.url("/auth/refresh"), &[]).await.status, 404);
    assert_eq!(get(&off.url("/auth/logout"), &[]).await.status, 404);
}

/// The `[refresh]` and `[revocation]` blocks of the shipped gateway.toml, uncommented.
fn shipped_lifecycle_tables() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "# [refresh]" || line == "# [revocation]" {
            inside = true;
        } else if !line.starts_with("# ") {
            inside = false;
        }
        // Keys and table headers only (the prose lines have no ` = ` or are a header).
        if inside && (line.contains(" = ") || line.starts_with("# [")) {
            out.push_str(&line[2..]);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_documented_lifecycle_tables_load_with_their_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let tables = shipped_lifecycle_tables();
    assert!(
        tables.contains("[refresh]\n") && tables.contains("[revocation]\n"),
        "{tables}"
    );
    let toml = format!("{}{tables}", gateway().toml());
    let loaded = gateway::load::from_str(&toml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let documented = loaded.config;
    let bare = format!("{}[refresh]\n[revocation]\n", gateway().toml());
    let defaults = gateway::load::from_str(&bare, dir.path()).unwrap().config;
    assert_eq!(documented.refresh, defaults.refresh);
    assert_eq!(documented.revocation, defaults.revocation);
    let r = defaults.refresh.unwrap();
    assert_eq!(r.lifetime, Duration::from_secs(30 * 86_400));
    assert_eq!(r.grace, Duration::from_secs(10));
    assert_eq!(r.path, "/auth/refresh");
    let v = defaults.revocation.unwrap();
    assert_eq!(v.max_staleness, Duration::from_secs(5));
    assert_eq!(v.logout_path, "/auth/logout");
}

#[test]
fn lifecycle_config_problems_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let bad = format!(
        "{}[refresh]\nidle = \"60d\"\ngrace = \"1h\"\npath = \"/auth\"\nlifetim = \"1d\"\n",
        gateway().toml()
    );
    let e = gateway::load::from_str(&bad, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("lifetim"), "{e}");
    let bad = format!(
        "{}[refresh]\nidle = \"60d\"\ngrace = \"1h\"\npath = \"/auth\"\n\
         [revocation]\non_store_error = \"maybe\"\nresync = \"0s\"\nlogout_path = \"x\"\n",
        gateway().toml()
    );
    let e = gateway::load::from_str(&bad, dir.path())
        .unwrap_err()
        .to_string();
    for key in [
        "refresh.idle",
        "refresh.grace",
        "refresh.path",
        "revocation.on_store_error",
        "revocation.resync",
        "revocation.logout_path",
    ] {
        assert!(e.contains(key), "{key} missing from: {e}");
    }
    let no_login = format!("{}[refresh]\n", gateway().without_users().toml());
    let e = gateway::load::from_str(&no_login, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("refresh") && e.contains("[login]"), "{e}");
}
