//! The example backends (`examples/backends/`: Flask, FastAPI, Express, Django), each a real
//! process behind a real `gateway` process running `examples/backends/gateway.toml`, the
//! config the migration guide (`docs/migrating-from-flask-jwt.md`) walks through:
//! - the seed's curl walkthrough gets the seed's answers end to end;
//! - an `X-Identity` (or claim header) a client sends, in any spelling, never reaches the
//!   backend;
//! - a request that reaches a backend around the gateway gets 401;
//! - a token minted the Flask-JWT way with the app's `SECRET_KEY` keeps working.
//! - with the guide's `[login.remote]` block, the app's own `authenticate()` logs users in.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

/// The seed application's `SECRET_KEY`.
const SEED_SECRET: &str = "super-secret";

/// The backend's answer to a request without `X-Identity`.
const NOT_THROUGH_GATEWAY: &str = "Request did not come through the gateway";

/// `examples/backends/gateway.toml` with the listener on a free port, the route pointed at
/// `backend`, and `extra` TOML appended.
fn example_config(backend: &Backend, extra: &str) -> String {
    let toml = std::fs::read_to_string(examples_dir().join("gateway.toml")).unwrap();
    let toml = replace_once(
        &toml,
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    let upstream = format!("upstream = \"{}\"", backend.url(""));
    let toml = replace_once(&toml, "upstream = \"http://127.0.0.1:5000\"", &upstream);
    format!("{toml}\n{extra}\n")
}

fn replace_once(toml: &str, from: &str, to: &str) -> String {
    assert_eq!(
        toml.matches(from).count(),
        1,
        "examples/backends/gateway.toml should contain `{from}` once"
    );
    toml.replace(from, to)
}

/// The example setup: `framework`'s backend behind the gateway, whose secret is the seed's.
async fn seed_setup(framework: Framework, extra: &str) -> (Backend, GatewayProcess) {
    let backend = Backend::start(framework).await;
    let gw = GatewayProcess::start(
        &example_config(&backend, extra),
        &[("GATEWAY_SECRET", SEED_SECRET)],
    );
    (backend, gw)
}

async fn login(gw: &GatewayProcess, username: &str, password: &str) -> Resp {
    let body = json!({"username": username, "password": password}).to_string();
    post_json(&gw.url("/auth"), &body).await
}

async fn token_for(gw: &GatewayProcess, username: &str) -> String {
    let r = login(gw, username, PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// Asserts the backend's own 401 (JSON; Django's encoder adds spaces, so compared as JSON).
fn assert_backend_refused(r: &Resp, backend: &Backend) {
    assert_eq!(r.status, 401, "{}\n{}", r.text(), backend.log());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.json(),
        json!({
            "description": NOT_THROUGH_GATEWAY,
            "error": "Authorization Required",
            "status_code": 401
        })
    );
}

/// `POST /auth`, then `GET /protected` with the token, as the seed's README does with curl;
/// then the two refusals it shows. Claim headers reach the backend too.
async fn seed_walkthrough(framework: Framework) {
    let (backend, gw) = seed_setup(framework, "").await;

    let r = login(&gw, "user1", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(r.text(), format!("{{\"access_token\":\"{token}\"}}\n"));

    let auth = jwt_header(&token);
    let r = get(&gw.url("/protected"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), backend.log());
    assert_eq!(r.text(), "User(id='1')");

    let r = get(&gw.url("/protected"), &[]).await;
    r.assert_error(
        401,
        "Authorization Required",
        "Request does not contain an access token",
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("JWT realm=\"Login Required\"")
    );

    let r = login(&gw, "user1", "nope").await;
    r.assert_error(401, "Bad Request", "Invalid credentials");

    // The second seed user, and the roles claim header from [identity] claims.
    let user2 = jwt_header(&token_for(&gw, "user2").await);
    let r = get(&gw.url("/protected"), &[("authorization", &user2)]).await;
    assert_eq!(r.text(), "User(id='2')");
    let r = get(&gw.url("/whoami"), &[("authorization", &auth)]).await;
    assert_eq!(
        r.json(),
        json!({"id": 1, "username": "user1", "roles": ["admin"]})
    );
    let r = get(&gw.url("/whoami"), &[("authorization", &user2)]).await;
    assert_eq!(r.json(), json!({"id": 2, "username": "user2", "roles": []}));
}

/// The spellings a client may try: exact, lower case, and the `_` forms that WSGI servers
/// would read as the same header.
const SPOOFS: [(&str, &str); 4] = [
    ("X-Identity", "X-Identity-Roles"),
    ("x-identity", "x-identity-roles"),
    ("X_Identity", "X_Identity_Roles"),
    ("x_IDENTITY", "x_identity-ROLES"),
];

/// user2 (no roles) claims to be user1 with the admin role: the backend still sees user2.
/// Without a token, on a public route, the backend sees no identity at all.
async fn spoofed_identity(framework: Framework) {
    let public = "[[routes]]\npath = \"/open/\"\nupstream = \"UP\"\nauth = \"public\"\nstrip_prefix = true\n";
    let backend = Backend::start(framework).await;
    let extra = public.replace("UP", &backend.url(""));
    let gw = GatewayProcess::start(
        &example_config(&backend, &extra),
        &[("GATEWAY_SECRET", SEED_SECRET)],
    );
    let user2 = jwt_header(&token_for(&gw, "user2").await);
    for (identity, roles) in SPOOFS {
        let headers = [(identity, "1"), (roles, "admin")];
        let mut with_token = headers.to_vec();
        with_token.push(("authorization", &user2));
        let r = get(&gw.url("/whoami"), &with_token).await;
        assert_eq!(r.status, 200, "{identity}: {}\n{}", r.text(), backend.log());
        assert_eq!(
            r.json(),
            json!({"id": 2, "username": "user2", "roles": []}),
            "{identity} / {roles} reached the backend"
        );
        let r = get(&gw.url("/open/whoami"), &headers).await;
        assert_backend_refused(&r, &backend);
        let r = get(&gw.url("/open/protected"), &headers).await;
        assert_backend_refused(&r, &backend);
    }
    // Naming our header in Connection does not make the gateway drop the one it sets.
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &user2), ("connection", "X-Identity")],
    )
    .await;
    assert_eq!(r.text(), "User(id='2')");
}

/// Reached directly, without the gateway, a backend refuses every protected view, and it
/// never reads the `_` spelling of its header.
async fn direct_request(framework: Framework) {
    let backend = Backend::start(framework).await;
    for path in ["/protected", "/whoami"] {
        assert_backend_refused(&get(&backend.url(path), &[]).await, &backend);
        let r = get(&backend.url(path), &[("X_Identity", "1")]).await;
        assert_backend_refused(&r, &backend);
    }
    // The identity the gateway would send is what the backend serves (the reason the
    // README says to keep backends on loopback or a private network).
    let r = get(&backend.url("/protected"), &[("X-Identity", "2")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "User(id='2')");
}

macro_rules! backend_suite {
    ($name:ident, $framework:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn seed_walkthrough_gets_the_seeds_answers() {
                seed_walkthrough($framework).await;
            }

            #[tokio::test]
            async fn spoofed_identity_headers_never_reach_the_backend() {
                spoofed_identity($framework).await;
            }

            #[tokio::test]
            async fn a_request_around_the_gateway_gets_401() {
                direct_request($framework).await;
            }
        }
    };
}

backend_suite!(flask, Framework::Flask);
backend_suite!(fastapi, Framework::FastApi);
backend_suite!(express, Framework::Express);
backend_suite!(django, Framework::Django);

/// Runs `tests/interop/flask_jwt_token.py`: a token minted as Flask-JWT's default handlers
/// mint it, with PyJWT.
fn flask_jwt_token(identity: &str, secret: &str, iat: Option<i64>) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/flask_jwt_token.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([identity, secret]);
    if let Some(iat) = iat {
        cmd.arg(iat.to_string());
    }
    let out = cmd.output().expect("python3 with PyJWT (tests/prepare.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A token's header, decoded.
fn token_header(token: &str) -> Value {
    use base64::Engine;
    let segment = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The guide's promise: switch with the app's `SECRET_KEY` and the tokens clients already
/// hold keep working, because the gateway reads Flask-JWT's tokens as they are.
#[tokio::test]
async fn tokens_minted_by_flask_jwt_stay_valid_through_the_switch() {
    // The script mints Flask-JWT's exact bytes: the recorded test vector of the real
    // library (PyJWT 1.x header order, payload order, integer times).
    assert_eq!(
        flask_jwt_token("1", SEED_SECRET, Some(1_795_866_925)),
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3OTU4NjcyMjUsImlhdCI6MTc5NTg2NjkyNSwibmJmIjoxNzk1ODY2OTI1LCJpZGVudGl0eSI6MX0.YPa3yKBeiFA8WxpRgnXvJdee8ci8KrfQTH1EjZ2NJAE"
    );
    let (backend, gw) = seed_setup(Framework::Flask, "").await;

    let issued_by_the_app = flask_jwt_token("1", SEED_SECRET, None);
    let header = token_header(&issued_by_the_app);
    assert_eq!(header, json!({"typ": "JWT", "alg": "HS256"}));
    let auth = jwt_header(&issued_by_the_app);
    let r = get(&gw.url("/protected"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), backend.log());
    assert_eq!(r.text(), "User(id='1')");

    // Signed with another secret, the same claims are refused: the acceptance above is the
    // shared secret's doing.
    let forged = flask_jwt_token("1", "another-secret", None);
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &jwt_header(&forged))],
    )
    .await;
    r.assert_error(401, "Invalid token", "Signature verification failed");
    // A Flask-JWT token for a user the gateway does not know is refused as Flask-JWT did.
    let stranger = flask_jwt_token("7", SEED_SECRET, None);
    let r = get(
        &gw.url("/protected"),
        &[("authorization", &jwt_header(&stranger))],
    )
    .await;
    r.assert_error(401, "Invalid JWT", "User does not exist");
}

/// The guide's "After the switch": the short Flask secret becomes a verify-only key next
/// to a long signing key. Flask-JWT's tokens (no `kid`) still pass; new tokens carry the
/// new key's `kid` and pass too.
#[tokio::test]
async fn a_long_signing_key_replaces_the_flask_secret_without_logging_anyone_out() {
    let backend = Backend::start(Framework::Flask).await;
    let keys = r#"
[[keys]]
id = "flask-secret-key"
algorithm = "HS256"
secret_env = "OLD_SECRET_KEY"
allow_short_secret = true
allow_weak_secret = true
sign = false

[[keys]]
id = "2026-12"
algorithm = "HS256"
secret_env = "GATEWAY_SECRET"
sign = true
"#;
    // With [[keys]], [tokens] holds no algorithm or secret of its own.
    let mut toml = example_config(&backend, "");
    for line in [
        "secret_env = \"GATEWAY_SECRET\"\n",
        "allow_short_secret = true\n",
        "allow_weak_secret = true\n",
        "algorithm = \"HS256\"\n",
    ] {
        toml = replace_once(&toml, line, "");
    }
    toml.push_str(keys);
    let long = "a-new-signing-key-of-more-than-32-bytes";
    let gw = GatewayProcess::start(
        &toml,
        &[("OLD_SECRET_KEY", SEED_SECRET), ("GATEWAY_SECRET", long)],
    );
    let old = flask_jwt_token("1", SEED_SECRET, None);
    let new = token_for(&gw, "user1").await;
    let header = token_header(&new);
    assert_eq!(header["kid"], "2026-12");
    for token in [&old, &new] {
        let r = get(
            &gw.url("/protected"),
            &[("authorization", &jwt_header(token))],
        )
        .await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), backend.log());
        assert_eq!(r.text(), "User(id='1')");
    }
}

/// The guide's `[login.remote]` block, exactly as the guide shows it (`[login]` and all).
fn guide_login_remote() -> String {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating-from-flask-jwt.md"),
    )
    .unwrap();
    let block = guide
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("[login.remote]"))
        .expect("the guide shows a [login.remote] config");
    block.to_string()
}

/// The guide's "Moving `authenticate()` into `[login.remote]`": the example config without
/// its `[[users]]`, plus the guide's `[login.remote]` pointed at the seed's `authenticate()`
/// (`examples/backends/flask/check.py`). The seed's walkthrough still gets the seed's
/// answers, the identity keeps its integer type, and the roles the app answers reach the
/// backend as a claim header.
#[tokio::test]
async fn authenticate_moved_into_login_remote_keeps_the_seed_flow() {
    let backend = Backend::start(Framework::Flask).await;
    let check = Backend::start(Framework::FlaskCheck).await;
    let mut toml = example_config(&backend, "");
    let users = toml.find("# The seed's users").unwrap();
    let routes = toml.find("# The whole app needs a token").unwrap();
    toml.replace_range(users..routes, "");
    assert!(!toml.contains("[[users]]"));
    // The example already has the guide's [login] path; the guide's [login.remote] is
    // added as written, with its url on the check service's port.
    let remote = guide_login_remote();
    let remote = &remote[remote.find("[login.remote]").unwrap()..];
    let url = "url = \"http://127.0.0.1:7000/check\"";
    assert_eq!(remote.matches(url).count(), 1, "the guide's url changed");
    let remote = remote.replace(url, &format!("url = \"{}\"", check.url("/check")));
    toml.push_str(&remote);
    let gw = GatewayProcess::start(&toml, &[("GATEWAY_SECRET", SEED_SECRET)]);

    let token = token_for(&gw, "user1").await;
    let payload = token.split('.').nth(1).unwrap();
    let payload: Value = {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(payload["identity"], json!(1), "{payload}");
    assert_eq!(payload["roles"], json!(["admin"]), "{payload}");
    let auth = jwt_header(&token);
    let r = get(&gw.url("/protected"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), backend.log());
    assert_eq!(r.text(), "User(id='1')");
    let r = get(&gw.url("/whoami"), &[("authorization", &auth)]).await;
    assert_eq!(
        r.json(),
        json!({"id": 1, "username": "user1", "roles": ["admin"]})
    );

    // The app's 401 is the client's usual bad-credentials answer, for a wrong password and
    // for a name the app does not know.
    for (user, password) in [("user1", "nope"), ("nobody", PASSWORD)] {
        let r = login(&gw, user, password).await;
        r.assert_error(401, "Bad Request", "Invalid credentials");
    }
    // No credential check, no token: the login fails closed with 503.
    drop(check);
    let r = login(&gw, "user2", PASSWORD).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json().is_object(), "{}", r.text());
}
