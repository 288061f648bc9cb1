//! `[login.remote]`: the delegated credential check against a real local user service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use gateway::body::full;

use crate::login_limits::metric;
use crate::support::*;

/// A user service: `carol`/`pw` → 200 with `answer`; `slow` → answers after 5 s;
/// anything else → 401. Counts the requests it got and checks each is our JSON.
async fn service(answer: &'static str, status: u16) -> (Upstream, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let up = Upstream::with(Arc::new(move |req: Request<Incoming>| {
        let count = count.clone();
        Box::pin(async move {
            count.fetch_add(1, Ordering::SeqCst);
            assert_eq!(req.headers()["content-type"], "application/json");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let ask: Value = serde_json::from_slice(&body).unwrap();
            let mut res = match (ask["username"].as_str(), ask["password"].as_str()) {
                (Some("carol"), Some("pw")) => Response::new(full(answer)),
                (Some("slow"), _) => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Response::new(full(answer))
                }
                _ => Response::new(full("{}")),
            };
            if ask["username"] != "carol" && ask["username"] != "slow" {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            } else {
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
            }
            res
        })
    }))
    .await;
    (up, asked)
}

fn with_remote(url: &str) -> GatewayBuilder {
    gateway()
        .tokens("user_claims = [\"roles\"]")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .table(&format!(
            "[login.remote]\nurl = \"{url}/check\"\ntimeout = \"500ms\"\nidentity = \"id\"\n\
                claims = [\"roles\"]\n"
        ))
        .respond_identity("/whoami")
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    use base64::Engine;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

async fn login(gw: &Gateway, user: &str, password: &str) -> Resp {
    post_json(
        &gw.url("/auth"),
        &json!({"username": user, "password": password}).to_string(),
    )
    .await
}

#[tokio::test]
async fn the_user_service_vouches_and_its_identity_keeps_its_type() {
    for (answer, identity) in [
        (
            r#"{"id": 42, "roles": ["admin"], "email": "c@example.com"}"#,
            json!(42),
        ),
        (r#"{"id": "carol-7", "roles": "ops"}"#, json!("carol-7")),
    ] {
        let (svc, asked) = service(answer, 200).await;
        let gw = with_remote(&svc.url()).start().await;
        let r = login(&gw, "carol", "pw").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let token = r.json()["access_token"].as_str().unwrap().to_string();
        let claims = payload(&token);
        assert_eq!(claims["identity"], identity);
        // Only the configured claims are copied.
        assert!(
            claims.get("roles").is_some() && claims.get("email").is_none(),
            "{claims}"
        );
        let me = get(
            &gw.url("/whoami"),
            &[("authorization", &format!("JWT {token}"))],
        )
        .await;
        assert_eq!(me.json(), json!({ "identity": identity }));
        // Local users are checked first and never sent to the service.
        assert_eq!(login(&gw, "user1", PASSWORD).await.status, 200);
        assert_invalid_401(&login(&gw, "user1", "wrong").await);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}

fn assert_invalid_401(r: &Resp) {
    r.assert_error(401, "Bad Request", "Invalid credentials");
}

#[tokio::test]
async fn a_refusal_is_the_same_401_and_the_same_hashing_work() {
    let (svc, asked) = service(r#"{"id": 1}"#, 200).await;
    let gw = with_remote(&svc.url()).start().await;
    let mut bodies = Vec::new();
    for (user, pw) in [("user1", "wrong"), ("nobody-local", "x"), ("dave", "nope")] {
        let before = metric(&gw, "gateway_password_hashes_total").await;
        let r = login(&gw, user, pw).await;
        assert_invalid_401(&r);
        // One hash each: wrong password, unknown user (dummy hash), remote refusal.
        assert_eq!(
            metric(&gw, "gateway_password_hashes_total").await,
            before + 1.0,
            "{user}"
        );
        bodies.push(r.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(
        metric(
            &gw,
            r#"gateway_remote_login_checks_total{outcome="refused"}"#
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_slow_down_or_malformed_service_gets_503() {
    let unavailable = |r: &Resp| {
        r.assert_error(
            503,
            "Service Unavailable",
            "Logins are unavailable right now; retry later",
        )
    };
    // Slow: bounded by the timeout.
    let (svc, _) = service(r#"{"id": 1}"#, 200).await;
    let gw = with_remote(&svc.url()).start().await;
    let started = Instant::now();
    unavailable(&login(&gw, "slow", "pw").await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &gw,
            r#"gateway_remote_login_checks_total{outcome="timeout"}"#
        )
        .await,
        1.0
    );
    // Down.
    let gw = with_remote(&format!("http://{}", closed_port().await))
        .start()
        .await;
    unavailable(&login(&gw, "carol", "pw").await);
    // Malformed answers, a non-object, an identity of the wrong type, an error status.
    for (answer, status) in [
        ("not json", 200),
        ("[1, 2]", 200),
        (r#"{"roles": []}"#, 200),
        (r#"{"id": 1.5}"#, 200),
        (r#"{"id": true}"#, 200),
        (r#"{"id": 1}"#, 500),
        (r#"{"id": 1}"#, 302),
    ] {
        let (svc, _) = service(answer, status).await;
        let gw = with_remote(&svc.url()).start().await;
        let r = login(&gw, "carol", "pw").await;
        assert_eq!(r.status, 503, "{answer} {status}: {}", r.text());
        unavailable(&r);
    }
}

#[tokio::test]
async fn remote_only_needs_no_local_users() {
    let (svc, _) = service(r#"{"id": 9}"#, 200).await;
    let gw = gateway()
        .without_users()
        .raw(&format!(
            "[login]\n[login.remote]\nurl = \"{}/check\"\n",
            svc.url()
        ))
        .start()
        .await;
    assert_eq!(login(&gw, "carol", "pw").await.status, 200);
    assert_invalid_401(&login(&gw, "mallory", "pw").await);
}
