#![allow(clippy::unwrap_used)]

//! Log hygiene: during logins, good and bad tokens, a failing upstream, an HTTP/2
//! request, a browser session (form login, cookie-authenticated requests, a refused
//! CSRF check, renewal, logout) and an OIDC login against a real provider (callback
//! replayed, logout), every event at every level (TRACE, human and JSON formats) is
//! captured, and no token, signature, password, signing secret, query string, cookie or
//! CSRF token, nor any OIDC code, state, ID token or client secret, may appear in it.
//! Part of the hostile-input suite (see SECURITY.md); its own binary for the global
//! subscriber.

#[path = "it/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "attacks/harness.rs"]
mod harness;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use harness::*;
use support::capture::Capture;
use support::*;

// The only test in this binary, so a global subscriber sees every thread: scoped
// subscribers (`set_default`) miss events whose callsite interest another thread cached.
#[tokio::test]
async fn no_token_password_or_secret_reaches_the_logs_at_trace() {
    let human = Capture::default();
    let json_logs = Capture::default();
    let (h, j) = (human.clone(), json_logs.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || h.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || j.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let down = closed_port().await;
    let t = target_with(
        gateway()
            .route("/down", &format!("http://{down}"), "required")
            .route_with(
                "/web",
                &format!("http://{down}"),
                "required",
                &["browser = true"],
            )
            .table("[refresh]\n[revocation]\n"),
    )
    .await;
    let wrong_password = "wrong-password-SENTINEL-7f3a";
    let query_secret = "QUERY-SENTINEL-91bc";
    let cookie_secret = "COOKIE-SENTINEL-55de";

    let good = t.gw.login("user1", PASSWORD).await;
    let r = post_json(
        &t.gw.url("/auth"),
        &json!({"username": "user1", "password": wrong_password}).to_string(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post_json(
        &t.gw.url("/auth"),
        &json!({"username": "nobody", "password": wrong_password}).to_string(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(t.with_token(&good).await.status, 200);
    let (input, sig) = good.rsplit_once('.').unwrap();
    let tampered = format!("{input}.{}", sig.chars().rev().collect::<String>());
    assert_eq!(t.with_token(&tampered).await.status, 401);
    let expired =
        mint(json!({"exp": now() - 999, "iat": now() - 9999, "nbf": now() - 9999, "identity": 1}));
    assert_eq!(t.with_token(&expired).await.status, 401);
    let foreign = sign_with(
        jsonwebtoken::Algorithm::HS256,
        r#"{"alg":"HS256"}"#,
        &claims(json!(1)).to_string(),
        b"someone-elses-secret-000000000000000",
    );
    assert_eq!(t.with_token(&foreign).await.status, 401);
    let r = get(
        &t.gw.url(&format!("/api/x?access_token={query_secret}")),
        &[
            ("authorization", &jwt_header(&good)),
            ("cookie", &format!("session={cookie_secret}")),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    // 502: the upstream error is logged at warn, with the token in the request.
    let r = get(
        &t.gw.url("/down/x"),
        &[("authorization", &jwt_header(&good))],
    )
    .await;
    assert_eq!(r.status, 502);
    // The same over HTTP/2 (h2c prior knowledge), whose codec logs at TRACE.
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::get(t.gw.url("/api/h2"))
        .header("authorization", jwt_header(&good))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = h2.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.into_body().collect().await;
    drop(h2);
    // A browser session: a failed and a good form login, the cookie as the token, a
    // refused CSRF check, a renewal and the logout.
    let form_password = "FORM-PASSWORD-SENTINEL-2c81";
    let mut jar = Jar::default();
    let r = form_login(&t.gw, &mut jar, "user1", form_password, "/web").await;
    assert_eq!(r.status, 401);
    let r = form_login(&t.gw, &mut jar, "user1", PASSWORD, "/web").await;
    assert_eq!(r.status, 303);
    let session: Vec<String> = ["gateway-session", "gateway-refresh", "gateway-csrf"]
        .iter()
        .map(|n| jar.get(n).unwrap().to_string())
        .collect();
    let cookie = jar.header();
    let r = request("POST", &t.gw.url("/web/x"), &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 403);
    let r = get(
        &t.gw.url("/web/x"),
        &[("cookie", &cookie), ("accept", "text/html")],
    )
    .await;
    assert_eq!(
        r.status, 502,
        "the cookie's token got to the (closed) upstream"
    );
    let r = get(
        &t.gw.url("/auth/refresh?return_to=%2Fweb"),
        &[("cookie", &jar.without("gateway-session").header())],
    )
    .await;
    assert_eq!(r.status, 302);
    jar.take(&r);
    let renewed: Vec<String> = ["gateway-session", "gateway-refresh"]
        .iter()
        .map(|n| jar.get(n).unwrap().to_string())
        .collect();
    let r = request(
        "POST",
        &t.gw.url("/auth/refresh/logout"),
        &[
            ("cookie", &jar.header()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form(&[("gateway_csrf", jar.get("gateway-csrf").unwrap())]),
    )
    .await;
    assert_eq!(r.status, 303);

    let Target { gw, up } = t;
    assert_eq!(gw.stop().await, gateway::server::Drained::Clean);
    drop(up);

    // An OIDC login against a real provider, a replayed callback and the logout.
    let oidc = oidc_round_trip().await;

    let logs = format!("{}\n{}", human.text(), json_logs.text());
    // The capture works: the access log and the 502 warning are there.
    assert!(logs.contains("access"), "no access log captured:\n{logs}");
    assert!(logs.contains("status=401"), "{logs}");
    assert!(logs.contains("upstream"), "{logs}");
    // TRACE events (the h2 codec's) were captured too, not just the access log.
    assert!(logs.contains("TRACE"), "{logs}");
    let secret = String::from_utf8_lossy(SECRET).into_owned();
    let forbidden = [
        ("a token", good.as_str()),
        ("a signature", sig),
        ("a tampered token", tampered.as_str()),
        ("an expired token", expired.as_str()),
        ("a foreign token", foreign.as_str()),
        ("the password", PASSWORD),
        ("a wrong password", wrong_password),
        ("the signing secret", secret.as_str()),
        ("a query secret", query_secret),
        ("a cookie", cookie_secret),
        ("a form password", form_password),
        ("the session cookie", &session[0]),
        ("the refresh cookie", &session[1]),
        ("the CSRF token", &session[2]),
        ("the renewed session cookie", &renewed[0]),
        ("the renewed refresh cookie", &renewed[1]),
    ];
    let oidc_forbidden = [
        ("an authorization code", oidc.code.as_str()),
        ("an OIDC state", oidc.state.as_str()),
        ("an OIDC nonce", oidc.nonce.as_str()),
        ("the flow cookie", oidc.flow.as_str()),
        ("the session cookie", oidc.session.as_str()),
        ("the logout hint cookie", oidc.hint.as_str()),
        ("an ID token", oidc.id_token.as_str()),
        (
            "an ID token's signature",
            oidc.id_token.rsplit('.').next().unwrap(),
        ),
        ("the client secret", CLIENT_SECRET),
        ("the flow cookie key", OIDC_KEY),
    ];
    assert!(
        logs.contains("oidc_replayed") || logs.contains("oidc_no_flow"),
        "{logs}"
    );
    for (what, needle) in forbidden.into_iter().chain(oidc_forbidden) {
        assert!(!logs.contains(needle), "{what} is in the logs:\n{logs}");
    }
}

const OIDC_KEY: &str = "an-oauth2-cookie-key-of-well-over-32-bytes-for-logs";

/// What an OIDC login handled that must stay out of the logs.
struct OidcSecrets {
    code: String,
    state: String,
    nonce: String,
    flow: String,
    session: String,
    hint: String,
    id_token: String,
}

fn param(url: &str, name: &str) -> String {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

async fn oidc_round_trip() -> OidcSecrets {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let table = format!(
        "[oauth2]\ncookie_key_file = \"oauth2-key\"\n[[oidc]]\nname = \"corp\"\n\
         issuer = \"{}\"\nclient_id = \"gateway\"\nclient_secret_file = \"idp-secret\"\n\
         identity_prefix = \"corp:\"\n",
        idp.issuer()
    );
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .file("oauth2-key", OIDC_KEY)
        .file("idp-secret", CLIENT_SECRET)
        .table(&table)
        .start()
        .await;
    idp.register(
        &[("gateway", "client_secret_basic")],
        &gw.url("/oauth2/corp/callback"),
        &gw.url("/"),
    )
    .await;
    let origin = gw.addr.to_string();
    let mut b = Browser::new();
    let r = b.get(&gw.url("/oauth2/corp/start?return_to=%2Fapp")).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let authorize = r.header("location").unwrap().to_string();
    let flow = b
        .cookie(&origin, "gateway-oidc-flow")
        .unwrap()
        .value
        .clone();
    let callback = log_in_at_provider(&mut b, &idp, &authorize, "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let session = b.cookie(&origin, "gateway-session").unwrap().value.clone();
    let hint = b
        .cookie(&origin, "gateway-oidc-logout")
        .unwrap()
        .value
        .clone();
    // Replayed with its flow cookie: refused, and logged with its reason.
    b.plant(&origin, "gateway-oidc-flow", &flow, "/oauth2/corp/callback");
    assert_eq!(b.get(&callback).await.status, 400);
    // The sign-out button, which continues to the provider's logout.
    let csrf = b.cookie(&origin, "gateway-csrf").unwrap().value.clone();
    let own_origin = format!("http://{origin}");
    let r = b
        .send(
            "POST",
            &gw.url("/auth/signout"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", &own_origin),
                ("sec-fetch-site", "same-origin"),
            ],
            Bytes::from(format!("gateway_csrf={csrf}")),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let id_token = param(r.header("location").unwrap(), "id_token_hint");
    assert_eq!(gw.stop().await, gateway::server::Drained::Clean);
    OidcSecrets {
        code: param(&callback, "code"),
        state: param(&callback, "state"),
        nonce: param(&authorize, "nonce"),
        flow,
        session,
        hint,
        id_token,
    }
}
