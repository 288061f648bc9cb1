//! External issuers against a real JWKS server on loopback that rotates its keys, goes
//! down and comes back. Time-dependent steps poll with a deadline; nothing sleeps blindly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::support::*;
use gateway::auth::keygen::Generated;
use gateway::body::full;

const ISS: &str = "https://idp.test";

/// An IdP key: its pair, its kid and its algorithm.
struct IdpKey {
    pair: Generated,
    kid: String,
    alg: Algorithm,
}

impl IdpKey {
    fn new(kid: &str, alg: Algorithm) -> IdpKey {
        IdpKey {
            pair: keypair(alg),
            kid: kid.into(),
            alg,
        }
    }

    fn jwk(&self) -> Jwk {
        let enc = match self.alg {
            Algorithm::ES256 => {
                jsonwebtoken::EncodingKey::from_ec_pem(self.pair.private.as_bytes())
            }
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(self.pair.private.as_bytes()),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&enc, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }

    /// A token as the IdP would issue it, valid now.
    fn token(&self, extra: Value) -> String {
        self.token_kid(&self.kid, extra)
    }

    fn token_kid(&self, kid: &str, extra: Value) -> String {
        let t = now();
        let mut c =
            json!({"iss": ISS, "aud": "api", "sub": "idp-user-7", "exp": t + 300, "iat": t});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign_claims(self.alg, Some(kid), &c, &self.pair.private)
    }
}

fn jwks(keys: &[&IdpKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    })
    .unwrap()
}

/// A JWKS server: serves `body` (or 503 while it is `None`) and counts requests.
struct Idp {
    up: Upstream,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(initial: String) -> Idp {
        let body = Arc::new(Mutex::new(Some(initial)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let up = Upstream::with(Arc::new(move |_req| {
            h.fetch_add(1, Ordering::SeqCst);
            let current = b.lock().unwrap().clone();
            Box::pin(async move {
                let mut res = http::Response::new(full(current.clone().unwrap_or_default()));
                if current.is_none() {
                    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                res
            })
        }))
        .await;
        Idp { up, body, hits }
    }

    fn serve(&self, body: Option<String>) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("{}/certs", self.up.url())
    }
}

fn issuer_table(jwks: &str, cache_ttl: &str, min_refetch: &str) -> String {
    format!(
        "[[issuers]]\nissuer = \"{ISS}\"\naudiences = [\"api\", \"other\"]\n{jwks}\n\
         cache_ttl = \"{cache_ttl}\"\nmin_refetch_interval = \"{min_refetch}\"\n\
         fetch_timeout = \"2s\"\n"
    )
}

async fn start_gateway(idp: &Idp, cache_ttl: &str, min_refetch: &str) -> Gateway {
    gateway()
        .table(&issuer_table(
            &format!("jwks_url = \"{}\"", idp.url()),
            cache_ttl,
            min_refetch,
        ))
        .table(&format!(
            "[[routes]]\npath = \"/idp\"\nrespond = \"identity\"\nauth = \"required\"\n\
             issuers = [\"{ISS}\"]"
        ))
        .respond_identity("/local")
        .start()
        .await
}

async fn call(gw: &Gateway, path: &str, token: &str) -> Resp {
    get(&gw.url(path), &[("authorization", &jwt_header(token))]).await
}

#[tokio::test]
async fn a_new_kid_is_fetched_at_once_and_a_kid_flood_does_not_hammer_the_idp() {
    let k1 = IdpKey::new("k1", Algorithm::RS256);
    let k2 = IdpKey::new("k2", Algorithm::ES256);
    let idp = Idp::start(jwks(&[&k1])).await;
    let gw = start_gateway(&idp, "1h", "1h").await;
    eventually("the first background fetch", async || idp.hits() >= 1).await;

    let r = call(&gw, "/idp", &k1.token(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"identity": "idp-user-7"}));
    // (The IdP's subjects are not our users: no "User does not exist" for them.)
    // A route that does not allow the issuer checks only our own keys.
    assert_eq!(call(&gw, "/local", &k1.token(json!({}))).await.status, 401);
    assert_eq!(idp.hits(), 1);

    // The IdP rotates in k2 (another algorithm too): fetched at once on its first token.
    idp.serve(Some(jwks(&[&k1, &k2])));
    let r = call(&gw, "/idp", &k2.token(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.hits(), 2);

    // A flood of random kids: refused, and the refetch budget is spent, so no fetch.
    for i in 0..20 {
        call(
            &gw,
            "/idp",
            &k2.token_kid(&format!("random-{i}"), json!({})),
        )
        .await
        .assert_error(401, "Invalid token", "Unknown key id (kid)");
    }
    assert_eq!(idp.hits(), 2, "random kids made the gateway refetch");
    assert_eq!(call(&gw, "/idp", &k1.token(json!({}))).await.status, 200);
}

#[tokio::test]
async fn concurrent_requests_for_a_new_kid_share_one_fetch() {
    let k1 = IdpKey::new("k1", Algorithm::ES256);
    let k3 = IdpKey::new("k3", Algorithm::ES256);
    let idp = Idp::start(jwks(&[&k1])).await;
    let gw = start_gateway(&idp, "1h", "1h").await;
    eventually("the first background fetch", async || idp.hits() >= 1).await;
    assert_eq!(call(&gw, "/idp", &k1.token(json!({}))).await.status, 200);

    idp.serve(Some(jwks(&[&k1, &k3])));
    let token = k3.token(json!({}));
    let url = gw.url("/idp");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move {
                get(&url, &[("authorization", &jwt_header(&token))])
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        idp.hits(),
        2,
        "concurrent unknown-kid requests fetched more than once"
    );
}

#[tokio::test]
async fn the_last_good_keys_serve_while_the_idp_is_down_and_refresh_runs_in_the_background() {
    let k1 = IdpKey::new("k1", Algorithm::ES256);
    let k2 = IdpKey::new("k2", Algorithm::ES256);
    let idp = Idp::start(jwks(&[&k1])).await;
    // Refreshed every 3/4 of 400 ms; unknown-kid refetches at most once an hour.
    let gw = start_gateway(&idp, "400ms", "1h").await;
    eventually("the first background fetch", async || idp.hits() >= 1).await;
    let old = k1.token(json!({}));
    assert_eq!(call(&gw, "/idp", &old).await.status, 200);

    // The IdP goes down: background refreshes fail, the cached k1 keeps working.
    idp.serve(None);
    let h = idp.hits();
    eventually("two failed background refreshes", async || {
        idp.hits() >= h + 2
    })
    .await;
    assert_eq!(call(&gw, "/idp", &old).await.status, 200);
    assert_eq!(call(&gw, "/idp", &k1.token(json!({}))).await.status, 200);
    // Spend the unknown-kid refetch while the IdP is down (it fails; k1 stays).
    assert_eq!(call(&gw, "/idp", &k2.token(json!({}))).await.status, 401);
    assert_eq!(call(&gw, "/idp", &old).await.status, 200);

    // It comes back having rotated k1 out: only the background refresh can pick k2 up now.
    idp.serve(Some(jwks(&[&k2])));
    let fresh = k2.token(json!({}));
    eventually("k2 through the background refresh", async || {
        call(&gw, "/idp", &fresh).await.status == 200
    })
    .await;
    // k1 is gone from the set, and the verified-token cache did not keep its token alive.
    call(&gw, "/idp", &old)
        .await
        .assert_error(401, "Invalid token", "Unknown key id (kid)");
}

#[tokio::test]
async fn issuer_claim_rules_apply_to_its_tokens() {
    let k = IdpKey::new("f1", Algorithm::RS256);
    let table = issuer_table("jwks_file = \"idp.json\"", "1h", "1h")
        + "identity_claim = \"email\"\nrequired_claims = [\"exp\", \"iat\", \"tenant\"]\n\
           max_lifetime = \"1h\"\n";
    let gw = gateway()
        .file("idp.json", jwks(&[&k]))
        .table(&table)
        .table(&format!(
            "[[routes]]\npath = \"/idp\"\nrespond = \"identity\"\nauth = \"required\"\n\
             issuers = [\"{ISS}\"]"
        ))
        .start()
        .await;
    let ok = json!({"email": "a@x", "tenant": "t1"});
    let r = call(&gw, "/idp", &k.token(ok.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"identity": "a@x"}));
    // Any one of the configured audiences, also inside an array.
    let aud_list = json!({"email": "a@x", "tenant": "t1", "aud": ["x", "other"]});
    assert_eq!(call(&gw, "/idp", &k.token(aud_list)).await.status, 200);
    let t = now();
    for (extra, description) in [
        (
            json!({"email": "a@x", "tenant": "t1", "aud": "someone-else"}),
            "Invalid audience",
        ),
        (
            json!({"email": "a@x"}),
            "Token is missing the \"tenant\" claim",
        ),
        (
            json!({"tenant": "t1"}),
            "Token is missing the \"email\" claim",
        ),
        (
            json!({"email": "a@x", "tenant": "t1", "exp": t + 7200}),
            "Token lifetime exceeds the maximum",
        ),
        (
            json!({"email": "a@x", "tenant": "t1", "exp": t - 60}),
            "Signature has expired",
        ),
    ] {
        call(&gw, "/idp", &k.token(extra.clone()))
            .await
            .assert_error(401, "Invalid token", description);
    }
    // Another issuer's `iss` on the same key goes to our keyring, which refuses it.
    let foreign = sign_claims(
        Algorithm::RS256,
        Some("f1"),
        &json!({
            "iss": "https://evil", "aud": "api", "email": "a@x", "tenant": "t1",
            "exp": t + 60, "iat": t,
        }),
        &k.pair.private,
    );
    assert_eq!(call(&gw, "/idp", &foreign).await.status, 401);
}

#[tokio::test]
async fn an_https_jwks_url_is_verified_against_its_ca() {
    let key = IdpKey::new("tls-k1", Algorithm::ES256);
    let body = jwks(&[&key]);
    let ca = crate::support::pki::Pki::new("IdP CA");
    let handler: crate::support::Handler = Arc::new(move |_req| {
        let body = body.clone();
        Box::pin(async move { http::Response::new(full(body)) })
    });
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(ca.leaf(&["127.0.0.1"]).server_config(None)));
    let idp = Upstream::serve(handler, Some(acceptor)).await;
    let dir = tempfile::tempdir().unwrap();
    let good_ca = ca.write_ca(dir.path(), "idp-ca.pem");
    let other_ca =
        crate::support::pki::Pki::new("unrelated CA").write_ca(dir.path(), "other-ca.pem");
    let start = |ca_file: std::path::PathBuf| {
        let jwks = format!(
            "jwks_url = \"https://{}/certs\"\njwks_ca_file = \"{}\"",
            idp.addr,
            ca_file.display()
        );
        gateway()
            .table(&issuer_table(&jwks, "5m", "1s"))
            .table(&format!(
                "[[routes]]\npath = \"/idp\"\nrespond = \"identity\"\n\
                 auth = \"required\"\nissuers = [\"{ISS}\"]"
            ))
            .start()
    };
    let gw = start(good_ca).await;
    let r = call(&gw, "/idp", &key.token(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["identity"], "idp-user-7");
    // The same IdP behind a certificate our CA file does not vouch for: no keys, no entry.
    let gw = start(other_ca).await;
    assert_eq!(call(&gw, "/idp", &key.token(json!({}))).await.status, 401);
}

#[tokio::test]
async fn tokens_of_an_issuer_are_revocable_by_jti_and_by_subject() {
    let k1 = IdpKey::new("k1", Algorithm::ES256);
    let idp = Idp::start(jwks(&[&k1])).await;
    let gw = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .table(&issuer_table(
            &format!("jwks_url = \"{}\"", idp.url()),
            "1h",
            "1h",
        ))
        .table(&format!(
            "[[routes]]\npath = \"/idp\"\nrespond = \"identity\"\nauth = \"required\"\n\
             issuers = [\"{ISS}\"]\n[revocation]\n"
        ))
        .start()
        .await;
    eventually("the first background fetch", async || idp.hits() >= 1).await;
    let a = k1.token(json!({"jti": "idp-a"}));
    let b = k1.token(json!({"jti": "idp-b"}));
    let other = k1.token(json!({"sub": "idp-user-8"}));
    for t in [&a, &b, &other] {
        assert_eq!(call(&gw, "/idp", t).await.status, 200);
    }
    let revoke = |body: Value| {
        let url = gw.admin_url("/revocations");
        async move { post_json(&url, &body.to_string()).await.status }
    };
    assert_eq!(revoke(json!({"jti": "idp-a"})).await, 200);
    call(&gw, "/idp", &a)
        .await
        .assert_error(401, "Invalid token", "Token has been revoked");
    assert_eq!(call(&gw, "/idp", &b).await.status, 200);
    // By subject: every token of that subject issued until now.
    assert_eq!(revoke(json!({"user": "idp-user-7"})).await, 200);
    assert_eq!(call(&gw, "/idp", &b).await.status, 401);
    assert_eq!(call(&gw, "/idp", &other).await.status, 200);
}
