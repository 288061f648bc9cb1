//! OIDC login against a real provider (`oidc-provider` under Node, on a loopback port):
//! the code flow with PKCE, tampered, replayed and foreign callbacks, the provider rules,
//! several providers, RP-initiated logout, and what the gateway writes into URLs.

use gateway::browser::oidc::flow_cookie::{Flow, Purpose, Sealer};

use crate::support::*;

/// The `[oauth2]` key file's contents (the test seals its own flow cookies with it).
const FLOW_KEY: &str = "an-oauth2-cookie-key-of-well-over-32-bytes-for-tests";

/// Which account claims a provider entry checks.
struct Rules {
    identity_claim: &'static str,
    domains: &'static str,
    groups: &'static str,
}

const CORP: Rules = Rules {
    identity_claim: "email",
    domains: r#"["example.com"]"#,
    groups: r#"["staff"]"#,
};

fn provider_table(name: &str, idp: &IdP, client_id: &str, rules: &Rules) -> String {
    format!(
        r#"
[[oidc]]
name = "{name}"
label = "Log in with {name}"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_file = "idp-secret"
scopes = ["openid", "email", "groups"]
identity_claim = "{identity}"
claims = ["groups"]
allowed_email_domains = {domains}
allowed_groups = {groups}
"#,
        issuer = idp.issuer(),
        identity = rules.identity_claim,
        domains = rules.domains,
        groups = rules.groups,
    )
}

/// A gateway with `[oauth2]` and the given `[[oidc]]` tables, a browser route `/app` to
/// `up`, and the provider(s) told its callback.
fn oidc_gateway(up: &Upstream, tables: &str) -> GatewayBuilder {
    gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .file("oauth2-key", FLOW_KEY)
        .file("idp-secret", CLIENT_SECRET)
        .table(&format!(
            "[oauth2]\ncookie_key_file = \"oauth2-key\"\n{tables}"
        ))
}

/// Registers `clients` at `idp` with the redirect URI of the provider entry `name`.
async fn register(idp: &mut IdP, gw: &Gateway, name: &str, clients: &[(&str, &str)]) {
    idp.register(
        clients,
        &gw.url(&format!("/oauth2/{name}/callback")),
        &gw.url("/"),
    )
    .await;
}

fn origin(gw: &Gateway) -> String {
    gw.addr.to_string()
}

/// Opens the browser's flow cookie of provider `corp` with the test key, lets `change`
/// alter it, and plants it back sealed with the same key (as only the gateway could).
fn reseal_flow(b: &mut Browser, o: &str, change: impl FnOnce(&mut Flow)) {
    let sealer = Sealer::new(FLOW_KEY.as_bytes()).unwrap();
    let sealed = b.cookie(o, "gateway-oidc-flow").unwrap().value.clone();
    let mut flow: Flow = sealer.open(Purpose::Flow, &sealed).unwrap();
    change(&mut flow);
    let resealed = sealer.seal(Purpose::Flow, &flow).unwrap();
    b.plant(o, "gateway-oidc-flow", &resealed, "/oauth2/corp/callback");
}

/// The query parameters of `url`.
fn query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Starts a login at `provider` and walks the provider's pages as `account`: the callback
/// URL the provider sends the browser to (not yet visited).
async fn start_and_log_in(
    b: &mut Browser,
    gw: &Gateway,
    idp: &IdP,
    provider: &str,
    account: &str,
) -> String {
    let r = b
        .get(&gw.url(&format!(
            "/oauth2/{provider}/start?return_to=%2Fapp%2Fhome%3Fx%3D1"
        )))
        .await;
    assert_eq!(r.status, 302, "{}", r.text());
    let authorize = r.header("location").unwrap().to_string();
    assert!(authorize.starts_with(&idp.issuer()), "{authorize}");
    log_in_at_provider(b, idp, &authorize, account).await
}

#[tokio::test]
async fn the_login_page_lists_each_provider_with_the_return_url() {
    let up = Upstream::start().await;
    let corp = IdP::start().await;
    let partner = IdP::start().await;
    let tables = format!(
        "{}{}",
        provider_table("corp", &corp, "gateway", &CORP),
        provider_table("partner", &partner, "gateway-partner", &CORP)
    );
    let gw = oidc_gateway(&up, &tables).start().await;
    // A navigation without a session lands on the login page, which offers both.
    let r = get(&gw.url("/app/inbox"), &[("accept", "text/html")]).await;
    assert_eq!(r.status, 302);
    let page = get(
        &gw.url(r.header("location").unwrap()),
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(page.status, 200);
    let html = page.text();
    for (name, label) in [
        ("corp", "Log in with corp"),
        ("partner", "Log in with partner"),
    ] {
        // The template escapes `/` in attributes.
        let href = format!("href=\"&#x2f;oauth2&#x2f;{name}&#x2f;start?return_to=%2Fapp%2Finbox\"");
        assert!(html.contains(&href), "{href} not in {html}");
        assert!(html.contains(label), "{label} not in {html}");
    }
    // The local form is still there.
    assert!(html.contains("name=\"password\""), "{html}");
}

#[tokio::test]
async fn the_start_redirect_carries_pkce_state_and_nonce_and_a_sealed_flow_cookie() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;

    let mut b = Browser::new();
    let r = b.get(&gw.url("/oauth2/corp/start?return_to=%2Fapp")).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}/auth?", idp.issuer())),
        "{location}"
    );
    assert_eq!(param(location, "response_type").as_deref(), Some("code"));
    assert_eq!(param(location, "client_id").as_deref(), Some("gateway"));
    assert_eq!(
        param(location, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        param(location, "redirect_uri"),
        Some(gw.url("/oauth2/corp/callback"))
    );
    assert_eq!(
        param(location, "scope").as_deref(),
        Some("openid email groups")
    );
    for p in ["state", "nonce", "code_challenge"] {
        assert_eq!(param(location, p).map(|v| v.len()), Some(43), "{p}");
    }
    // Nothing secret or internal in the URL: no client secret, no verifier, no return URL.
    let names: Vec<String> = query(location).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method"
        ]
    );
    assert!(!location.contains(CLIENT_SECRET));

    let flow = b.cookie(&origin(&gw), "gateway-oidc-flow").unwrap();
    let raw = flow.raw.clone();
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/oauth2/corp/callback",
        "Max-Age=600",
    ] {
        assert!(raw.contains(attr), "{attr} not in {raw}");
    }
    // A plain-HTTP listener: not Secure (the browser would drop it), and no __Secure- name.
    assert!(
        !raw.contains("Secure;") && !raw.ends_with("Secure"),
        "{raw}"
    );
    // Sealed: neither the state nor the nonce can be read from it.
    let state = param(location, "state").unwrap();
    assert!(!flow.value.contains(&state));
    let opened: Flow = Sealer::new(FLOW_KEY.as_bytes())
        .unwrap()
        .open(Purpose::Flow, &flow.value)
        .unwrap();
    assert_eq!(opened.state, state);
    assert_eq!(opened.return_to, "/app");
    assert_eq!(opened.provider, "corp");
    // Each start gets its own state and nonce.
    let again = b.get(&gw.url("/oauth2/corp/start")).await;
    let other = again.header("location").unwrap();
    assert_ne!(param(other, "state"), Some(state));
    assert_ne!(param(other, "nonce"), param(location, "nonce"));
}

#[tokio::test]
async fn bad_start_requests_are_refused_with_json_or_a_page() {
    let up = Upstream::start().await;
    let idp = IdP::start().await;
    // The provider is never reached: nothing here gets past the checks.
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    for rd in [
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example%2F",
        "%2F%5Cevil.example",
        "app",
    ] {
        let r = get(&gw.url(&format!("/oauth2/corp/start?return_to={rd}")), &[]).await;
        r.assert_error(
            400,
            "Bad Request",
            "The return URL must be a path on this site, such as /app",
        );
        assert!(r.header("location").is_none());
        assert!(r.header("set-cookie").is_none());
    }
    let page = get(
        &gw.url("/oauth2/corp/start?return_to=%2F%2Fevil.example"),
        &[("accept", "text/html,application/xhtml+xml")],
    )
    .await;
    assert_eq!(page.status, 400);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .text()
        .contains("The return URL must be a path on this site"));
    assert!(!page.text().contains("evil.example"));

    get(&gw.url("/oauth2/nobody/start"), &[])
        .await
        .assert_error(404, "Not Found", "No such login provider");
    let r = request("POST", &gw.url("/oauth2/corp/start"), &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    // A callback without a login in progress.
    get(&gw.url("/oauth2/corp/callback?code=x&state=y"), &[])
        .await
        .assert_error(
            400,
            "Bad Request",
            "No login is in progress in this browser, or it took too long; start again",
        );
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn a_tampered_state_leaves_the_login_alone_and_a_tampered_flow_cookie_is_cleared() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);

    // The state in the callback changed.
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    let state = param(&callback, "state").unwrap();
    // Another first character, whatever the first one was.
    let other = if state.starts_with('x') { 'y' } else { 'x' };
    let forged = callback.replace(&state, &format!("{other}{}", &state[1..]));
    let r = b.send("GET", &forged, &[], Default::default()).await;
    r.assert_error(
        400,
        "Bad Request",
        "The login callback does not belong to a login started in this browser",
    );
    // Another site can cause that navigation (the Lax cookie goes along): without the
    // state it leaves the login in progress alone.
    assert!(r.header("set-cookie").is_none(), "{:?}", r.headers);
    // So does a forged provider refusal: the state is checked before `error` is believed.
    let r = b
        .send(
            "GET",
            &gw.url("/oauth2/corp/callback?error=access_denied&state=forged"),
            &[],
            Default::default(),
        )
        .await;
    r.assert_error(
        400,
        "Bad Request",
        "The login callback does not belong to a login started in this browser",
    );
    assert!(r.header("set-cookie").is_none(), "{:?}", r.headers);
    // The real callback still completes, and clears the cookie: a flow is used once.
    let r = b.send("GET", &callback, &[], Default::default()).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let cleared = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("gateway-oidc-flow=;"))
        .unwrap()
        .to_string();
    assert!(cleared.contains("Max-Age=0") && cleared.contains("Path=/oauth2/corp/callback"));
    let r = b.send("GET", &callback, &[], Default::default()).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("No login is in progress"), "{}", r.text());

    // The flow cookie itself changed (one bit of its sealed bytes).
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    let sealed = b.cookie(&o, "gateway-oidc-flow").unwrap().value.clone();
    let flipped = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut raw = e.decode(&sealed).unwrap();
        raw[20] ^= 0x01;
        e.encode(raw)
    };
    b.plant(&o, "gateway-oidc-flow", &flipped, "/oauth2/corp/callback");
    let r = b.send("GET", &callback, &[], Default::default()).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("does not belong to a login started"));
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn a_flow_cookie_from_another_attempt_fails_the_nonce_check() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);

    // A cookie sealed with the right key and the callback's state, but another attempt's
    // nonce: the ID token the code yields names the real nonce.
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    reseal_flow(&mut b, &o, |flow| {
        flow.nonce = "another-attempts-nonce-aaaaaaaaaaaaaaaaaaaaaa".into();
    });
    let r = b.send("GET", &callback, &[], Default::default()).await;
    r.assert_error(
        400,
        "Bad Request",
        "The identity provider's token was issued for another login attempt",
    );
    assert!(b.cookie(&o, "gateway-oidc-flow").is_none());
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn a_replayed_callback_is_refused_even_with_its_flow_cookie_back() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);

    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    let kept = b.cookie(&o, "gateway-oidc-flow").unwrap().value.clone();
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/home?x=1"));
    // The flow cookie is gone after use...
    assert!(b.cookie(&o, "gateway-oidc-flow").is_none());
    // ...and putting it back does not make the callback usable again.
    b.plant(&o, "gateway-oidc-flow", &kept, "/oauth2/corp/callback");
    let r = b.send("GET", &callback, &[], Default::default()).await;
    r.assert_error(
        400,
        "Bad Request",
        "This login callback was already used; start again",
    );
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn accounts_outside_the_allowed_domains_or_groups_are_refused() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;

    // mallory: evil.example; guest: not in staff; unverified: email_verified = false.
    for account in ["mallory", "guest", "unverified"] {
        let mut b = Browser::new();
        let callback = start_and_log_in(&mut b, &gw, &idp, "corp", account).await;
        let r = b.send("GET", &callback, &[], Default::default()).await;
        r.assert_error(
            403,
            "Forbidden",
            "This account is not allowed to log in here",
        );
        assert!(r.header("location").is_none(), "{account}");
        let set: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
        assert_eq!(
            set.len(),
            1,
            "{account}: only the flow cookie is cleared: {set:?}"
        );
        // A browser gets the same refusal as a page.
        let mut b = Browser::new();
        let callback = start_and_log_in(&mut b, &gw, &idp, "corp", account).await;
        let page = b.get(&callback).await;
        assert_eq!(page.status, 403, "{account}");
        assert!(page
            .text()
            .contains("This account is not allowed to log in here"));
    }
    assert_eq!(up.requests().len(), 0);
}

/// The `[oauth2]` and `[[oidc]]` blocks of the shipped gateway.toml, uncommented.
fn shipped_oidc_tables() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "# [oauth2]" || line == "# [[oidc]]" {
            inside = true;
        } else if !line.starts_with("# ") {
            inside = false;
        }
        if inside && (line.contains(" = ") || line.starts_with("# [")) {
            out.push_str(&line[2..]);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_documented_oidc_tables_load_with_their_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let tables = shipped_oidc_tables();
    assert!(
        tables.contains("[oauth2]\n") && tables.contains("[[oidc]]\n"),
        "{tables}"
    );
    let env = |name: &str| match name {
        "GATEWAY_OAUTH2_COOKIE_KEY" => Some(FLOW_KEY.to_string()),
        "GATEWAY_OIDC_CORP_SECRET" => Some(CLIENT_SECRET.to_string()),
        _ => None,
    };
    let browser = gateway().route_with(
        "/app",
        "http://127.0.0.1:1",
        "required",
        &["browser = true"],
    );
    let toml = format!("{}{tables}", browser.toml());
    let c = gateway::load::from_str_with_env(&toml, dir.path(), &env)
        .unwrap_or_else(|e| panic!("{e}\n{tables}"))
        .config;
    let shared = c.oauth2.unwrap();
    assert_eq!(shared.path, "/oauth2");
    assert_eq!(shared.flow_lifetime, std::time::Duration::from_secs(600));
    assert_eq!(shared.public_origin, None);
    let p = &c.oidc[0];
    assert_eq!(p.name, "corp");
    assert_eq!(p.client_secret.bytes, CLIENT_SECRET.as_bytes());
    assert_eq!(p.allowed_email_domains, ["example.com"]);
    assert_eq!(p.allowed_groups, ["staff"]);

    // The documented defaults, with only the required keys written.
    let bare = format!(
        "{}[oauth2]\ncookie_key_env = \"GATEWAY_OAUTH2_COOKIE_KEY\"\n[[oidc]]\nname = \"corp\"\n\
         issuer = \"https://idp.example/realms/main/\"\nclient_id = \"gateway\"\n\
         client_secret_env = \"GATEWAY_OIDC_CORP_SECRET\"\n",
        browser.toml()
    );
    let c = gateway::load::from_str_with_env(&bare, dir.path(), &env)
        .unwrap()
        .config;
    let d = &c.oidc[0];
    assert_eq!(d.label, "corp");
    assert_eq!(d.issuer, "https://idp.example/realms/main");
    assert_eq!(d.scopes, ["openid", "email"]);
    assert_eq!(d.identity_claim, "sub");
    assert!(d.claims.is_empty() && d.allowed_email_domains.is_empty());
    assert!(d.allowed_groups.is_empty() && !d.allow_unverified_email);
    assert_eq!(
        (d.email_claim.as_str(), d.groups_claim.as_str()),
        ("email", "groups")
    );
    assert_eq!(d.fetch_timeout, std::time::Duration::from_secs(5));
    // Without the key the whole table is refused, naming the key, never a secret value.
    let e = gateway::load::from_str_with_env(&bare, dir.path(), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("oauth2.cookie_key_env") && e.contains("oidc[0].client_secret_env"),
        "{e}"
    );
}

#[tokio::test]
async fn a_callback_replayed_on_another_instance_sharing_redis_is_refused() {
    let redis = crate::support::redis::Redis::start();
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let store = format!("[store]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let table = provider_table("corp", &idp, "gateway", &CORP);
    let a = oidc_gateway(&up, &table).table(&store).start().await;
    let b_gw = oidc_gateway(&up, &table).table(&store).start().await;
    register(&mut idp, &a, "corp", &[("gateway", "client_secret_basic")]).await;

    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &a, &idp, "corp", "alice").await;
    let kept = b
        .cookie(&origin(&a), "gateway-oidc-flow")
        .unwrap()
        .value
        .clone();
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text());
    // The same callback and flow cookie, sent to the other instance.
    let elsewhere = callback.replace(&origin(&a), &origin(&b_gw));
    b.plant(
        &origin(&b_gw),
        "gateway-oidc-flow",
        &kept,
        "/oauth2/corp/callback",
    );
    let r = b.send("GET", &elsewhere, &[], Default::default()).await;
    r.assert_error(
        400,
        "Bad Request",
        "This login callback was already used; start again",
    );
    // The marker is stored under the state's hash, never the state itself.
    let state = param(&callback, "state").unwrap();
    let keys = redis.command("KEYS gateway:*");
    assert!(keys.contains("gateway:oidc:state:"), "{keys}");
    assert!(!keys.contains(&state), "{keys}");
}

#[tokio::test]
async fn rp_initiated_logout_goes_to_the_providers_end_session_endpoint() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);

    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert!(b.cookie(&o, "gateway-session").is_some());
    let hint = b.cookie(&o, "gateway-oidc-logout").unwrap().clone();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/auth/signout"] {
        assert!(hint.raw.contains(attr), "{attr} not in {}", hint.raw);
    }
    // Sealed: the ID token is not readable in the cookie.
    assert!(!hint.value.starts_with("eyJ"), "{}", hint.value);

    // The sign-out button: a same-origin form post with the session's CSRF token.
    let csrf = b.cookie(&o, "gateway-csrf").unwrap().value.clone();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("gateway_csrf", &csrf)
        .finish();
    let own_origin = format!("http://{o}");
    let sign_out = |site: &'static str| {
        [
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", own_origin.as_str()),
            ("sec-fetch-site", site),
        ]
    };
    // Posted from another site: refused, the session and the hint stay.
    let r = b
        .send(
            "POST",
            &gw.url("/auth/signout"),
            &sign_out("cross-site"),
            body.clone().into(),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(b.cookie(&o, "gateway-oidc-logout").is_some());

    let r = b
        .send(
            "POST",
            &gw.url("/auth/signout"),
            &sign_out("same-origin"),
            body.into(),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/session/end?", idp.issuer())),
        "{location}"
    );
    let id_token = param(&location, "id_token_hint").unwrap();
    assert_eq!(id_token.split('.').count(), 3, "{id_token}");
    assert_eq!(param(&location, "client_id").as_deref(), Some("gateway"));
    assert_eq!(
        param(&location, "post_logout_redirect_uri"),
        Some(gw.url("/"))
    );
    assert!(b.cookie(&o, "gateway-oidc-logout").is_none());
    // Our own session ended first.
    assert!(b.cookie(&o, "gateway-session").is_none());
    assert!(b.cookie(&o, "gateway-csrf").is_none());
    // The provider accepts it: its logout confirmation page, not an error.
    let page = b.get(&location).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("logout"), "{}", page.text());

    // A local user's sign-out still ends on the login page.
    let mut jar = Jar::default();
    let r = form_login(&gw, &mut jar, "user1", PASSWORD, "/app").await;
    assert_eq!(r.status, 303, "{}", r.text());
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("gateway_csrf", jar.get("gateway-csrf").unwrap())
        .finish();
    let r = request(
        "POST",
        &gw.url("/auth/signout"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &jar.header()),
            ("origin", &own_origin),
            ("sec-fetch-site", "same-origin"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/auth/login"));
}

#[tokio::test]
async fn two_providers_side_by_side_each_with_its_own_client_and_rules() {
    let up = Upstream::start().await;
    let mut corp = IdP::start().await;
    let mut partner = IdP::start().await;
    let partner_rules = Rules {
        identity_claim: "sub",
        domains: "[]",
        groups: r#"["guests"]"#,
    };
    let tables = format!(
        "{}{}",
        provider_table("corp", &corp, "gateway", &CORP),
        provider_table("partner", &partner, "gateway-partner", &partner_rules)
    );
    let gw = oidc_gateway(&up, &tables).start().await;
    register(
        &mut corp,
        &gw,
        "corp",
        &[("gateway", "client_secret_basic")],
    )
    .await;
    // The partner's token endpoint takes client_secret_post only, as its discovery says.
    partner
        .register_with(
            &[("gateway-partner", "client_secret_post")],
            &gw.url("/oauth2/partner/callback"),
            &gw.url("/"),
            Some(&["client_secret_post"]),
        )
        .await;

    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &partner, "partner", "guest").await;
    assert!(
        callback.starts_with(&gw.url("/oauth2/partner/callback?")),
        "{callback}"
    );
    assert_eq!(param(&callback, "iss"), Some(partner.issuer()));
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text());
    // This provider's identity claim is sub: the account name, from the partner.
    let session = &b.cookie(&origin(&gw), "gateway-session").unwrap().value;
    let issued = claims_of(session);
    assert_eq!(
        (issued["identity"].as_str(), issued["idp"].as_str()),
        (Some("guest"), Some("partner"))
    );
    let r = get(&gw.url("/app"), &[("authorization", &jwt_header(session))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers["x-identity"], "guest");
    // The corp provider's session for alice, in the same gateway, is alice@example.com.
    let mut b2 = Browser::new();
    let callback = start_and_log_in(&mut b2, &gw, &corp, "corp", "alice").await;
    assert_eq!(b2.get(&callback).await.status, 302);
    let session = &b2.cookie(&origin(&gw), "gateway-session").unwrap().value;
    let r = get(&gw.url("/app"), &[("authorization", &jwt_header(session))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().headers["x-identity"], "alice@example.com");
    // The same account is refused by the other provider's rules (guests are not staff).
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &corp, "corp", "guest").await;
    assert_eq!(b.get(&callback).await.status, 403);
    // A callback from one provider with the flow of the other is refused: its state is
    // another login's.
    let mut b = Browser::new();
    let from_partner = start_and_log_in(&mut b, &gw, &partner, "partner", "guest").await;
    let r = b.get(&gw.url("/oauth2/corp/start")).await;
    assert_eq!(r.status, 302);
    assert_eq!(b.get(&from_partner).await.status, 400);
}

/// The claims of one of our tokens (read without verifying: the gateway did).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_full_login_gives_a_session_whose_requests_carry_the_configured_identity() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .raw("[identity.claims]\nX-Groups = \"groups\"\nX-Idp = \"idp\"\n")
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);

    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    let code = param(&callback, "code").unwrap();
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text());
    // Back to the return URL exactly: no code, state or token in it.
    assert_eq!(r.header("location"), Some("/app/home?x=1"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let set: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("gateway-oidc-flow=;")),
        "{set:?}"
    );
    assert!(set.iter().all(|c| !c.contains(&code)), "{set:?}");
    let session = b
        .cookie(&o, "gateway-session")
        .expect("a session cookie")
        .clone();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.raw.contains(attr), "{attr} not in {}", session.raw);
    }
    assert!(b.cookie(&o, "gateway-csrf").is_some());

    // The session's token is ours: the identity from the configured claim (email), the
    // configured claims, the provider, the session id.
    let issued = claims_of(&session.value);
    assert_eq!(issued["identity"], "alice@example.com");
    assert_eq!(issued["groups"], serde_json::json!(["staff"]));
    assert_eq!(issued["idp"], "corp");
    assert!(issued["sid"].is_string());
    assert!(issued.get("nonce").is_none() && issued.get("email_verified").is_none());

    // The browser's next page load carries the session cookie: the backend sees alice
    // (no local user), and none of our cookies.
    let r = b.get(&gw.url("/app/home?x=1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-identity"], "alice@example.com");
    assert_eq!(seen.headers["x-groups"], "staff");
    let cookies = seen
        .headers
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(!cookies.unwrap_or_default().contains("gateway-"));

    // The same token as a header, as an API client would send it.
    let r = get(
        &gw.url("/app/home"),
        &[("authorization", &jwt_header(&session.value))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["x-identity"], "alice@example.com");
    assert_eq!(seen.headers["x-groups"], "staff");
    assert_eq!(seen.headers["x-idp"], "corp");
    // Without the provider claim the same identity is an unknown local user: the
    // exemption is the claim's, which only the gateway signs.
    let mut plain = claims(serde_json::json!("alice@example.com"));
    plain["sid"] = issued["sid"].clone();
    let r = get(
        &gw.url("/app"),
        &[("authorization", &jwt_header(&mint(plain)))],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_gets_502_and_no_redirect() {
    let up = Upstream::start().await;
    let down = closed_port().await;
    let table = format!(
        "[[oidc]]\nname = \"down\"\nissuer = \"http://{down}\"\nclient_id = \"gateway\"\n\
         client_secret_file = \"idp-secret\"\nfetch_timeout = \"2s\"\n"
    );
    let gw = oidc_gateway(&up, &table).start().await;
    let r = get(
        &gw.url("/oauth2/down/start"),
        &[("accept", "application/json")],
    )
    .await;
    r.assert_error(
        502,
        "Bad Gateway",
        "The identity provider could not be used to log in right now",
    );
    assert!(r.header("location").is_none() && r.header("set-cookie").is_none());
}

#[tokio::test]
async fn on_a_secure_origin_the_flow_cookie_is_secure_prefixed_and_the_redirect_uri_https() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    // TLS ended in front of the gateway: browsers see https.
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .table("[browser]\nsecure_cookies = \"always\"\n")
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let mut b = Browser::new();
    let r = b.get(&gw.url("/oauth2/corp/start")).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let location = r.header("location").unwrap();
    assert_eq!(
        param(location, "redirect_uri"),
        Some(format!("https://{}/oauth2/corp/callback", gw.addr))
    );
    let raw = &b
        .cookie(&origin(&gw), "__Secure-gateway-oidc-flow")
        .unwrap()
        .raw;
    for attr in [
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/oauth2/corp/callback",
    ] {
        assert!(raw.contains(attr), "{attr} not in {raw}");
    }
    // The plain-origin name is not accepted there: a page on http:// cannot plant it.
    let r = get(
        &gw.url("/oauth2/corp/callback?code=c&state=s"),
        &[("cookie", "gateway-oidc-flow=x")],
    )
    .await;
    assert!(r.text().contains("No login is in progress"), "{}", r.text());
}

#[tokio::test]
async fn a_flow_older_than_its_lifetime_is_refused() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    // Started eleven minutes ago (the lifetime is ten).
    reseal_flow(&mut b, &o, |flow| flow.expires = now() - 60);
    get_refused(
        &mut b,
        &callback,
        400,
        "No login is in progress in this browser, or it took too long; start again",
    )
    .await;
    assert_eq!(up.requests().len(), 0);
}

async fn get_refused(b: &mut Browser, url: &str, status: u16, description: &str) {
    let r = b.send("GET", url, &[], Default::default()).await;
    let error = http::StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap();
    r.assert_error(status, error, description);
}

/// `url` without the query parameter `name`, or with it set to `value`.
fn set_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, _) = url.split_once('?').unwrap();
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query(url) {
        if k != name {
            q.append_pair(&k, &v);
        }
    }
    if let Some(v) = value {
        q.append_pair(name, v);
    }
    format!("{base}?{}", q.finish())
}

const BY_SUB: Rules = Rules {
    identity_claim: "sub",
    domains: "[]",
    groups: "[]",
};

#[tokio::test]
async fn a_provider_identity_named_like_a_local_user_is_refused_unless_prefixed_or_allowed() {
    let up = Upstream::start().await;
    let mut plain = IdP::start().await;
    let mut prefixed = IdP::start().await;
    let mut trusted = IdP::start().await;
    let tables = format!(
        "{}{}identity_prefix = \"p:\"\n{}allow_local_identity = true\n",
        provider_table("plain", &plain, "gateway", &BY_SUB),
        provider_table("prefixed", &prefixed, "gateway", &BY_SUB),
        provider_table("trusted", &trusted, "gateway", &BY_SUB),
    );
    let gw = oidc_gateway(&up, &tables).start().await;
    register(
        &mut plain,
        &gw,
        "plain",
        &[("gateway", "client_secret_basic")],
    )
    .await;
    register(
        &mut prefixed,
        &gw,
        "prefixed",
        &[("gateway", "client_secret_basic")],
    )
    .await;
    register(
        &mut trusted,
        &gw,
        "trusted",
        &[("gateway", "client_secret_basic")],
    )
    .await;

    // The local users are 1 and "alice": the provider's accounts "alice" and "1" (a
    // string, the same in X-Identity) are refused, as JSON and as a page.
    for account in ["alice", "1"] {
        let mut b = Browser::new();
        let callback = start_and_log_in(&mut b, &gw, &plain, "plain", account).await;
        let r = b.send("GET", &callback, &[], Default::default()).await;
        r.assert_error(
            403,
            "Forbidden",
            "This account has the identity of a local user; it cannot log in with this provider",
        );
        assert!(
            b.cookie(&origin(&gw), "gateway-session").is_none(),
            "{account}"
        );
        let mut b = Browser::new();
        let callback = start_and_log_in(&mut b, &gw, &plain, "plain", account).await;
        let page = b.get(&callback).await;
        assert_eq!(page.status, 403, "{account}");
        assert!(
            page.text().contains("identity of a local user"),
            "{}",
            page.text()
        );
    }
    // Another account of the same provider logs in.
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &plain, "plain", "guest").await;
    assert_eq!(b.get(&callback).await.status, 302);

    // With a prefix, the provider's alice is another identity.
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &prefixed, "prefixed", "alice").await;
    assert_eq!(b.get(&callback).await.status, 302);
    let session = b
        .cookie(&origin(&gw), "gateway-session")
        .unwrap()
        .value
        .clone();
    let r = get(&gw.url("/app"), &[("authorization", &jwt_header(&session))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["x-identity"], "p:alice");

    // Only with the explicit opt-in is the provider's alice the local alice.
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &trusted, "trusted", "alice").await;
    assert_eq!(b.get(&callback).await.status, 302);
    let session = b
        .cookie(&origin(&gw), "gateway-session")
        .unwrap()
        .value
        .clone();
    assert_eq!(claims_of(&session)["identity"], "alice");

    // The `idp` exemption from the local-user check holds only for configured providers.
    let mut token = claims(serde_json::json!("nobody-local"));
    token["idp"] = "plain".into();
    let r = get(
        &gw.url("/app"),
        &[("authorization", &jwt_header(&mint(token.clone())))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    token["idp"] = "unconfigured".into();
    let r = get(
        &gw.url("/app"),
        &[("authorization", &jwt_header(&mint(token)))],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());

    // Checked on every request too, not only at login: a session of plain's named like a
    // local user (begun before that user existed, or before the rule) is refused, in
    // any spelling of the id (a number or a string, case aside); trusted's, which may
    // assert local users, passes.
    for (idp, identity, status) in [
        ("plain", serde_json::json!("alice"), 401),
        ("plain", serde_json::json!("1"), 401),
        ("plain", serde_json::json!(1), 401),
        ("plain", serde_json::json!("ALICE"), 401),
        ("prefixed", serde_json::json!("alice"), 401),
        ("trusted", serde_json::json!("alice"), 200),
    ] {
        let mut token = claims(identity.clone());
        token["idp"] = idp.into();
        let r = get(
            &gw.url("/app"),
            &[("authorization", &jwt_header(&mint(token)))],
        )
        .await;
        assert_eq!(r.status, status, "{idp} {identity}: {}", r.text());
    }
}

#[tokio::test]
async fn a_callback_on_another_providers_redirect_uri_is_refused() {
    let up = Upstream::start().await;
    let mut corp = IdP::start().await;
    let mut partner = IdP::start().await;
    let tables = format!(
        "{}{}",
        provider_table("corp", &corp, "gateway", &CORP),
        provider_table("partner", &partner, "gateway", &BY_SUB)
    );
    let gw = oidc_gateway(&up, &tables).start().await;
    register(
        &mut corp,
        &gw,
        "corp",
        &[("gateway", "client_secret_basic")],
    )
    .await;
    register(
        &mut partner,
        &gw,
        "partner",
        &[("gateway", "client_secret_basic")],
    )
    .await;
    let o = origin(&gw);

    // A login started with partner; its answer (state and all) arrives on corp's
    // redirect URI, the flow cookie with it.
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &partner, "partner", "guest").await;
    assert!(
        callback.starts_with(&gw.url("/oauth2/partner/callback?")),
        "{callback}"
    );
    let flow = b.cookie(&o, "gateway-oidc-flow").unwrap().clone();
    assert_eq!(flow.path, "/oauth2/partner/callback");
    b.plant(
        &o,
        "gateway-oidc-flow",
        &flow.value,
        "/oauth2/corp/callback",
    );
    let mixed = callback.replace("/oauth2/partner/callback", "/oauth2/corp/callback");
    let r = b.send("GET", &mixed, &[], Default::default()).await;
    r.assert_error(
        400,
        "Bad Request",
        "The login callback names another identity provider",
    );
    assert!(b.cookie(&o, "gateway-session").is_none());
    // An unknown provider's callback path is not a login.
    get(&gw.url("/oauth2/nobody/callback?code=x&state=y"), &[])
        .await
        .assert_error(404, "Not Found", "No such login provider");
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn a_callback_without_iss_or_with_another_iss_is_refused() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&gw);
    let forged_iss = format!("http://127.0.0.1:{}", idp.port.wrapping_add(1));
    // The provider announces RFC 9207, so `iss` must be there, and be its issuer.
    for iss in [None, Some(forged_iss.as_str())] {
        let mut b = Browser::new();
        let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
        assert_eq!(param(&callback, "iss"), Some(idp.issuer()));
        let r = b
            .send(
                "GET",
                &set_param(&callback, "iss", iss),
                &[],
                Default::default(),
            )
            .await;
        r.assert_error(
            400,
            "Bad Request",
            "The login callback names another identity provider",
        );
        assert!(b.cookie(&o, "gateway-session").is_none(), "{iss:?}");
    }
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    assert_eq!(b.get(&callback).await.status, 302);
}

#[tokio::test]
async fn an_unverified_email_as_the_identity_is_refused_without_domain_rules() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let rules = Rules {
        identity_claim: "email",
        domains: "[]",
        groups: "[]",
    };
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &rules))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "unverified").await;
    let r = b.send("GET", &callback, &[], Default::default()).await;
    r.assert_error(
        403,
        "Forbidden",
        "This account is not allowed to log in here",
    );
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    assert_eq!(b.get(&callback).await.status, 302);
    let session = b
        .cookie(&origin(&gw), "gateway-session")
        .unwrap()
        .value
        .clone();
    assert_eq!(claims_of(&session)["identity"], "alice@example.com");
}

#[tokio::test]
async fn the_oidc_cookies_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let gw = oidc_gateway(&up, &provider_table("corp", &idp, "gateway", &CORP))
        .start()
        .await;
    register(&mut idp, &gw, "corp", &[("gateway", "client_secret_basic")]).await;
    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &gw, &idp, "corp", "alice").await;
    assert_eq!(b.get(&callback).await.status, 302);
    let session = b
        .cookie(&origin(&gw), "gateway-session")
        .unwrap()
        .value
        .clone();
    let sent = format!(
        "gateway-session={session}; gateway-oidc-flow=f; __Secure-gateway-oidc-flow=g; \
         gateway-oidc-logout=h; __Secure-gateway-oidc-logout=i; theirs=1"
    );
    let r = get(&gw.url("/app"), &[("cookie", &sent)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().headers["cookie"], "theirs=1");
}

/// The sign-out button's post with the cookies `cookie` (session, CSRF, hint).
async fn sign_out(gw: &Gateway, cookie: &str, csrf: &str) -> Resp {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("gateway_csrf", csrf)
        .finish();
    request(
        "POST",
        &gw.url("/auth/signout"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", cookie),
            ("origin", &format!("http://{}", gw.addr)),
            ("sec-fetch-site", "same-origin"),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn rp_initiated_logout_works_on_a_fresh_instance_and_only_for_the_hints_own_session() {
    let up = Upstream::start().await;
    let mut idp = IdP::start().await;
    let table = provider_table("corp", &idp, "gateway", &CORP);
    let a = oidc_gateway(&up, &table).start().await;
    // Another instance, same config: it has never talked to the provider.
    let fresh = oidc_gateway(&up, &table).start().await;
    register(&mut idp, &a, "corp", &[("gateway", "client_secret_basic")]).await;
    let o = origin(&a);

    let mut b = Browser::new();
    let callback = start_and_log_in(&mut b, &a, &idp, "corp", "alice").await;
    assert_eq!(b.get(&callback).await.status, 302);
    let value = |name: &str| b.cookie(&o, name).unwrap().value.clone();
    let (session, csrf, hint) = (
        value("gateway-session"),
        value("gateway-csrf"),
        value("gateway-oidc-logout"),
    );
    let cookie =
        format!("gateway-session={session}; gateway-csrf={csrf}; gateway-oidc-logout={hint}");

    // A local user's session with alice's hint planted: its sign-out ignores the hint.
    let mut jar = Jar::default();
    let r = form_login(&a, &mut jar, "user1", PASSWORD, "/app").await;
    assert_eq!(r.status, 303, "{}", r.text());
    let theirs = format!("{}; gateway-oidc-logout={hint}", jar.header());
    let r = sign_out(&a, &theirs, jar.get("gateway-csrf").unwrap()).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/auth/login"));

    // Her access cookie gone (past its Max-Age, the browser no longer sends it): the
    // sign-out still proves her session by its CSRF token, and continues at the provider.
    let r = sign_out(
        &fresh,
        &format!("gateway-csrf={csrf}; gateway-oidc-logout={hint}"),
        &csrf,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}/session/end?", idp.issuer())),
        "{location}"
    );

    // Alice's own sign-out, on the instance that never ran discovery, continues at the
    // provider.
    let r = sign_out(&fresh, &cookie, &csrf).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}/session/end?", idp.issuer())),
        "{location}"
    );
    assert_eq!(param(location, "client_id").as_deref(), Some("gateway"));
    assert_eq!(
        param(location, "id_token_hint").map(|t| t.split('.').count()),
        Some(3)
    );
}
