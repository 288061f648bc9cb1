//! The request pipeline: the one place that knows the order of the steps.
//!
//! [`Pipeline::build`] (in `build.rs`) turns a [`Config`](crate::config::Config) into every
//! runtime piece once (route table, verifier, upstream clusters, header names), so the
//! per-request path only reads; a reload builds a new pipeline and swaps it in whole.
//! `Pipeline::try_handle` is the list of steps: host check, 431, the browser endpoints,
//! login, JWKS, then the decision `Pipeline::decide` (① routing → hop-by-hop strip →
//! ② policy → ③ verify (on a browser route: the session cookie, sign-in redirects, the
//! CSRF check) → authorize → ④ identity), then ⑤ forward (`forward::prepare`, a form's
//! CSRF field, send, `forward::finish`). `browser.rs` holds browser mode's ③;
//! `Pipeline::try_handle` is the list of steps: host check, 431, the OIDC login paths,
//! login, JWKS, then the decision `Pipeline::decide` (① routing → hop-by-hop strip →
//! ② policy → ③ verify → authorize → ④ identity), then ⑤ forward (`forward::prepare`,
//! send, `forward::finish`).
//! `Pipeline::handle` wraps it with the request id and one `telemetry::record` call.

mod browser;
mod build;
mod conn;

pub use conn::Conn;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::authority::Authority;
use crate::auth::jwks::PublishedJwks;
use crate::auth::login::Login;
use crate::auth::revocation::Revocation;
use crate::auth::users::Users;
use crate::auth::{bearer, Claims, TokenError};
use crate::body::{full, Body};
use crate::browser::oidc::{Endpoint, Oidc};
use crate::browser::session::Sessions;
use crate::browser::{guard, Browser};
use crate::config::{AuthMode, ForwardAuthConfig, PathMatch, RequestIdMode, Responder};
use crate::identity::{ClaimHeaders, IdentityHeaders};
use crate::metrics::{Metrics, RouteCounters};
use crate::policy::Policy;
use crate::proxy::{forward, upgrade, Cluster, UpstreamError};
use crate::rejection::{ErrorContext, Rejection};
use crate::routing::{self, Miss, RouteTable};
use crate::steering;
use crate::telemetry;

/// The request id header, set on every upstream request and every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A route with its runtime pieces.
pub struct Route {
    pub name: String,
    /// Its request counters (and its name for the access log).
    counters: RouteCounters,
    policy: Policy,
    claim_headers: ClaimHeaders,
    target: RouteTarget,
    prefix: String,
    path_match: PathMatch,
    rewrite_prefix: Option<String>,
    forward_authorization: bool,
    /// Steering headers this route lets through (exact names).
    pass_headers: Vec<HeaderName>,
    preserve_host: bool,
    timeout: Option<Duration>,
    max_body: Option<u64>,
    /// Indices into the authority's external issuers this route accepts.
    issuers: Vec<usize>,
    /// Browser mode: the session cookie, CSRF checks, sign-in redirects.
    browser: bool,
}

enum RouteTarget {
    Upstream(Arc<Cluster>),
    Respond(Responder),
}

/// Everything a request needs, built once per configuration.
pub struct Pipeline {
    routes: RouteTable<Route>,
    clusters: Vec<Arc<Cluster>>,
    login: Option<Login>,
    /// The revocation set and the logout path, when `[revocation]` is on.
    revocation: Option<Arc<Revocation>>,
    /// Browser mode (sessions, the login page, CSRF), when a route has `browser = true`.
    browser: Option<Browser>,
    /// Our keyring plus the external issuers.
    authority: Authority,
    /// `GET /.well-known/jwks.json`; `None` when there is nothing to publish.
    jwks: Option<PublishedJwks>,
    users: Arc<Users>,
    identity: IdentityHeaders,
    token_header: HeaderName,
    prefix: String,
    errors: ErrorContext,
    trust_forwarded: bool,
    /// Peers whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<ipnet::IpNet>,
    max_header_bytes: usize,
    request_id: RequestIdMode,
    log_query: bool,
    access_log: bool,
    metrics: Arc<Metrics>,
    /// Request counters of the login path, the JWKS path and of requests with no route.
    login_counters: RouteCounters,
    refresh_counters: RouteCounters,
    logout_counters: RouteCounters,
    /// Request counters of the login page and the browser logout path.
    login_page_counters: RouteCounters,
    browser_logout_counters: RouteCounters,
    jwks_counters: RouteCounters,
    unrouted: RouteCounters,
    config_sha256: Option<String>,
    keys_sha256: String,
    /// `[forward_auth]`, read by the forward-auth front-end.
    forward_auth: Option<ForwardAuthConfig>,
    /// The OIDC login, when `[[oidc]]` providers are configured.
    oidc: Option<Oidc>,
    oidc_counters: RouteCounters,
}

/// What the decision phases concluded about a request allowed to pass.
pub(crate) struct Decision<'p> {
    pub(crate) route: &'p Route,
    /// The verified claims; `None` on a public route.
    pub(crate) claims: Option<Claims>,
    /// The normalized path the route matched (before its rewrite).
    pub(crate) path: String,
    /// What the hop-by-hop strip removed that the upstream leg restores.
    noted: forward::Noted,
    /// A cookie-authenticated form whose `gateway_csrf` field must be a token of this
    /// session id: checked on the body before anything is forwarded.
    pub(crate) csrf_form: Option<String>,
    /// The claims came from the session cookie (not a token header): the decision holds
    /// for this browser only, so no shared cache may keep it.
    pub(crate) via_cookie: bool,
    /// The route is a browser route: its answers depend on cookies.
    pub(crate) browser_route: bool,
}

/// A request answered by another front-end, for [`Pipeline::record_answer`].
pub(crate) struct Answer<'a> {
    /// The original request's method and path (never its query: queries carry secrets).
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    /// The proxy that asked.
    pub(crate) client: std::net::SocketAddr,
    /// Which front-end answered (logged as the upstream: nothing was forwarded).
    pub(crate) front: &'a str,
    pub(crate) status: u16,
    pub(crate) elapsed: Duration,
    /// The refusal's reason, when the request was refused.
    pub(crate) reason: Option<&'static str>,
    /// Whether it was refused for its token or claims.
    pub(crate) token_refused: bool,
}

/// What the metrics and the access log record about one request. The identity and
/// server are only filled in when the access log is on.
#[derive(Default)]
pub(crate) struct Outcome<'p> {
    route: Option<&'p RouteCounters>,
    identity: Option<String>,
    server: Option<String>,
    /// The login outcome, for requests to the login path.
    login: Option<&'static str>,
    /// Whether the request was refused for its token or claims.
    token_refused: bool,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Pipeline {
    /// The revocation set, when `[revocation]` is on.
    pub fn revocation(&self) -> Option<&Arc<Revocation>> {
        self.revocation.as_ref()
    }

    /// Browser sessions, when browser mode is on.
    pub fn sessions(&self) -> Option<&Arc<Sessions>> {
        self.browser.as_ref().map(|b| &b.sessions)
    }

    /// The upstream clusters (for readiness: every cluster should have a server available).
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }

    /// How error answers are shaped (for answers the server makes outside a request's
    /// pipeline run, such as the HTTPS redirect's 400).
    pub fn errors(&self) -> &ErrorContext {
        &self.errors
    }

    /// SHA-256 of the config file this pipeline was built from.
    pub fn config_sha256(&self) -> Option<&str> {
        self.config_sha256.as_deref()
    }

    /// A fingerprint of the verification keys (hashes only), to spot skewed instances.
    pub fn keys_sha256(&self) -> &str {
        &self.keys_sha256
    }

    /// The forward-auth settings, when `[forward_auth]` is configured.
    pub fn forward_auth(&self) -> Option<&ForwardAuthConfig> {
        self.forward_auth.as_ref()
    }

    /// Whether browser mode is on: the gateway then has cookies of its own, which the
    /// decision removes from the request's `Cookie` headers.
    pub fn has_browser_mode(&self) -> bool {
        self.browser.is_some()
    }

    /// The header names the decision owns (stripped from every request, set from claims).
    pub fn identity_headers(&self) -> &IdentityHeaders {
        &self.identity
    }

    /// Logs a refusal another front-end answers (a forward-auth decision) against its
    /// route, at the level its fault deserves, as `handle` does.
    pub(crate) fn log_refusal(&self, outcome: &Outcome<'_>, rejection: &Rejection, path: &str) {
        rejection.log(outcome.route.unwrap_or(&self.unrouted).name(), path);
    }

    /// Finishes a request another front-end answered with [`Pipeline::decide`] alone (a
    /// forward-auth decision): counts it and writes its access-log line, as `handle` does
    /// for a proxied request.
    pub(crate) fn record_answer(&self, outcome: &Outcome<'_>, a: &Answer<'_>) {
        let finished = telemetry::Finished {
            counters: outcome.route.unwrap_or(&self.unrouted),
            method: a.method,
            status: a.status,
            elapsed: a.elapsed,
            login: None,
            reason: a.reason,
            token_refused: a.token_refused,
        };
        let access = self.access_log.then(|| telemetry::AccessLine {
            request_id: "-",
            client: &a.client,
            path: a.path.to_string(),
            upstream: a.front,
            bytes: Some(0),
            identity: outcome.identity.as_deref().unwrap_or("-"),
        });
        telemetry::record(&self.metrics, &finished, access);
    }

    /// Answers one request: the upstream's response, or our JSON error. Never panics on input.
    pub async fn handle(&self, mut req: Request<Incoming>, conn: &Conn) -> Response<Body> {
        let started = Instant::now();
        // One client address for the limits, the access log and the forwarding headers.
        let client = crate::client_addr::client_address(
            conn.peer.ip(),
            req.headers(),
            &self.trusted_proxies,
        );
        let id = self.request_id(req.headers().get(X_REQUEST_ID));
        req.headers_mut().insert(X_REQUEST_ID, id.clone());
        let method = req.method().clone();
        // Cheap: the URI's parts are reference-counted slices of the request head. The
        // logged path is only formatted when something is logged.
        let uri = req.uri().clone();
        let path = || match (self.log_query, uri.query()) {
            (true, Some(q)) => format!("{}?{q}", uri.path()),
            _ => uri.path().to_string(),
        };
        let mut outcome = Outcome::default();
        let sent_body = !http_body::Body::is_end_stream(req.body());
        let (mut response, reason) = match self.try_handle(req, conn, client, &mut outcome).await {
            Ok(res) => (res, None),
            Err(rejection) => {
                if sent_body {
                    // Refused with the body perhaps unread: if hyper must close the
                    // connection for it, the client still gets to read this answer.
                    conn.linger_on_close
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                outcome.token_refused =
                    matches!(rejection, Rejection::Token(_) | Rejection::Forbidden(_));
                let route = outcome.route.unwrap_or(&self.unrouted).name();
                rejection.log(route, &path());
                let reason = rejection.reason();
                (rejection.into_response(&self.errors), Some(reason))
            }
        };
        response.headers_mut().insert(X_REQUEST_ID, id.clone());
        let finished = telemetry::Finished {
            counters: outcome.route.unwrap_or(&self.unrouted),
            method: &method,
            status: response.status().as_u16(),
            elapsed: started.elapsed(),
            login: outcome.login,
            reason,
            token_refused: outcome.token_refused,
        };
        // `path()` leaves out the query unless `[logging] query`: queries often carry secrets.
        let access = self.access_log.then(|| telemetry::AccessLine {
            request_id: id.to_str().unwrap_or("-"),
            // The client behind a trusted proxy; otherwise the peer, with its port.
            client: if client.1 { &client.0 } else { &conn.peer },
            path: path(),
            upstream: outcome.server.as_deref().unwrap_or("-"),
            bytes: http_body::Body::size_hint(response.body()).exact(),
            identity: outcome.identity.as_deref().unwrap_or("-"),
        });
        telemetry::record(&self.metrics, &finished, access);
        response
    }

    fn request_id(&self, inbound: Option<&HeaderValue>) -> HeaderValue {
        if self.request_id == RequestIdMode::Trust {
            if let Some(v) = inbound.filter(|v| {
                (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
            }) {
                return v.clone();
            }
        }
        // 32 lowercase hex digits, written without the formatting machinery.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let id: u128 = rand::random();
        let mut text = [0u8; 32];
        for (i, b) in text.iter_mut().enumerate() {
            *b = HEX[((id >> (124 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"))
    }

    /// Every step in order; each `?` ends the request with the step's rejection.
    async fn try_handle<'p>(
        &'p self,
        req: Request<Incoming>,
        conn: &Conn,
        (client, via_proxy): (std::net::IpAddr, bool),
        outcome: &mut Outcome<'p>,
    ) -> Result<Response<Body>, Rejection> {
        // A request whose site is ambiguous is refused before anything reads it, and so is
        // `get` for `GET`: a backend that upper-cases methods would run another method than
        // the one routed on.
        routing::check_host(&req).map_err(Rejection::BadHost)?;
        routing::check_method(req.method()).map_err(Rejection::BadMethod)?;
        // Header size first: nothing below should parse an oversized head (431).
        self.check_header_size(req.headers())?;

        // Browser mode's endpoints come before routing too, and before the login path:
        // they set session cookies, so no route may shadow them, and a form posted to the
        // login path is a browser's login (JSON posted there stays the API's, unchanged).
        if let Some(browser) = &self.browser {
            let secure = browser.secure(conn.tls);
            let path = req.uri().path();
            if path == browser.login_page() {
                outcome.route = Some(&self.login_page_counters);
                let (parts, _) = req.into_parts();
                let claims = self.session_claims(browser, &parts.headers, secure).await;
                return Ok(browser.page(&parts, claims.as_ref(), secure)?);
            }
            if path == browser.config.logout_path {
                outcome.route = Some(&self.browser_logout_counters);
                // An expired session can still sign out: its cookies go either way.
                let claims = self.session_claims(browser, req.headers(), secure).await;
                // A session an OIDC provider began ends at the provider too (RP-initiated
                // logout), once ours has ended.
                let (head, body) = req.into_parts();
                let end_session = self
                    .oidc
                    .as_ref()
                    .and_then(|o| o.end_session(&head, secure));
                let req = Request::from_parts(head, body);
                // The session that signed out is the one its CSRF token proved, even when
                // its access token had expired: only that session's hint continues.
                let (mut res, sid) = browser.logout(req, claims.as_ref(), secure).await?;
                if let Some(oidc) = &self.oidc {
                    let end_session = end_session.and_then(|e| e.for_session(&sid));
                    oidc.finish_sign_out(&mut res, end_session, secure);
                }
                return Ok(res);
            }
            let login = self.login.as_ref().filter(|l| l.path == path);
            if let Some(login) = login.filter(|_| {
                req.method() == Method::POST && browser.is_form_login(req.headers(), secure)
            }) {
                outcome.route = Some(&self.login_counters);
                let (result, label) = browser.form_login(req, login, client, secure).await;
                outcome.login = Some(label);
                return Ok(result?);
            }
            // A navigation to the refresh path renews the session from its cookie (the
            // API's refresh is a `POST` of JSON, below, which answers API clients' `GET`).
            if browser.sessions.refresh_path() == Some(path)
                && browser.is_renewal(req.method(), req.headers(), secure)
            {
                outcome.route = Some(&self.refresh_counters);
                let (parts, _) = req.into_parts();
                let bound = self.bound_sessions(browser, &parts.headers, secure).await;
                return Ok(browser.renew(&parts, secure, &bound).await?);
            }
        }

        // The OIDC login paths are answered before routing, like the login path: they begin
        // sessions, so no route may shadow them.
        if let Some(oidc) = &self.oidc {
            if let Some(endpoint) = oidc.endpoint(req.uri().path()) {
                outcome.route = Some(&self.oidc_counters);
                let (parts, _) = req.into_parts();
                return self.oidc(oidc, endpoint, &parts, conn.tls).await;
            }
        }
        // The login path is answered before routing: it issues tokens, so it can never be
        // shadowed by (or forwarded to) a route.
        if let Some(login) = self.login.as_ref().filter(|l| req.uri().path() == l.path) {
            outcome.route = Some(&self.login_counters);
            let attempt = req.method() == Method::POST;
            // The rare paths are boxed (here and below): their futures (a password hash
            // on the blocking pool, store round trips, an upgrade's client) are large,
            // and inline they would size every proxied request's future to fit them.
            let result = Box::pin(login.handle(req, client, unix_now)).await;
            outcome.login = match &result {
                Ok(_) if attempt => Some("success"),
                Ok(_) => None,
                Err(e) => Some(e.reason()),
            };
            return Ok(result?);
        }
        // Refresh tokens are answered here too: they mint tokens like the login.
        if let Some(login) = self
            .login
            .as_ref()
            .filter(|l| l.refresh_path() == Some(req.uri().path()))
        {
            outcome.route = Some(&self.refresh_counters);
            return Ok(Box::pin(login.handle_refresh(req)).await?);
        }
        // Logout needs a valid access token of ours; it never reaches a route.
        if let Some(revocation) = self
            .revocation
            .as_ref()
            .filter(|r| req.uri().path() == r.config().logout_path)
        {
            outcome.route = Some(&self.logout_counters);
            return Box::pin(self.logout(req, revocation)).await;
        }
        // Our public keys, answered before routing like the login path: relying parties
        // fetch them without a token, and no route may shadow them.
        if let Some(jwks) = self.jwks.as_ref().filter(|j| req.uri().path() == j.path) {
            if let Some(res) = jwks.response(req.method()) {
                outcome.route = Some(&self.jwks_counters);
                return Ok(res);
            }
        }

        // ①–④ decide on the head alone; the body stays unread until it is forwarded.
        let (mut parts, body) = req.into_parts();
        let decision = self.decide(&mut parts, conn, outcome, true).await?;
        let route = decision.route;

        // ⑤ Forward (or answer with a built-in responder).
        let cluster = match &route.target {
            RouteTarget::Respond(Responder::Identity) => {
                return Ok(identity_response(decision.claims.as_ref()))
            }
            RouteTarget::Upstream(cluster) => cluster,
        };
        let leg = forward::Leg {
            client_ip: &conn.peer_ip,
            tls: conn.tls,
            // A trusted proxy's chain is kept and extended with the peer.
            trust_forwarded: self.trust_forwarded || via_proxy,
            path_and_query: route.path_and_query(&decision.path, parts.uri.query()),
            max_body: route.max_body,
            timeout: route.timeout,
            preserve_host: route.preserve_host,
        };
        // The 413 for a declared oversize body comes only now: a route that answers itself
        // (above) never reads the body.
        let client_version = parts.version;
        let req = Request::from_parts(parts, body);
        let (mut out, on_client) = forward::prepare(req, decision.noted, leg)?;
        // A cookie-authenticated form proves its origin in its body: read (bounded) and
        // checked here, after the route's body limit applies and before anything is sent.
        if let (Some(sid), Some(b)) = (&decision.csrf_form, &self.browser) {
            let body = std::mem::replace(&mut out.body, crate::body::empty());
            out.body = full(b.check_form(body, sid).await?);
        }
        // `X-Real-IP` is always ours: the resolved client (a client's own was stripped).
        // Without a trusted proxy in front that is the peer, rendered once per connection.
        let real_ip = if !via_proxy && client == conn.peer.ip() {
            Some(conn.peer_ip.clone())
        } else {
            HeaderValue::from_str(&client.to_string()).ok()
        };
        if let Some(v) = real_ip {
            out.headers.insert(forward::X_REAL_IP, v);
        }
        if let Some(on_client) = on_client {
            let res = Box::pin(cluster.send_upgrade(out)).await?;
            return Ok(upgrade::splice(on_client, res).map(|b| b.map_err(Into::into).boxed()));
        }
        let asked = Instant::now();
        let sent = cluster.send(out).await;
        // A request whose own body failed says nothing about the upstream's latency.
        if !matches!(sent, Err(UpstreamError::ClientBody(_))) {
            self.metrics
                .upstream_duration
                .observe(asked.elapsed().as_secs_f64());
        }
        let (mut res, server) = sent?;
        if self.access_log {
            outcome.server = Some(server.to_string());
        }
        forward::finish(&mut res, client_version);
        if decision.via_cookie {
            Browser::mark_private(res.headers_mut());
        }
        Ok(res)
    }

    /// The decision, phases ①–④ over a request head: may it pass, on which route, as
    /// whom, with which headers? On success `parts.headers` are ready for the next hop
    /// (hop-by-hop removed, identity headers stripped, then ours set). Proxying calls it
    /// before forwarding; a forward-auth front-end can call it alone and answer with the
    /// decision.
    ///
    /// `redirects`: a browser route may answer a navigation without a session with a
    /// redirect to the login page (proxy mode; a forward-auth proxy cannot pass one on).
    pub(crate) async fn decide<'p>(
        &'p self,
        parts: &mut Parts,
        conn: &Conn,
        outcome: &mut Outcome<'p>,
        redirects: bool,
    ) -> Result<Decision<'p>, Rejection> {
        // ① Routing. The path is normalized, and refused if its raw form would route
        // elsewhere, so the path we match is the path the backend sees.
        let (route, path) = self.route(parts)?;
        outcome.route = Some(&route.counters);

        // Hop-by-hop headers go before anything else reads or sets headers: a name listed
        // in `Connection` must only ever remove what the client itself sent. An upgrade
        // request and `TE: trailers` are noted first and restored for the upstream.
        // A token header listed in `Connection` is about to be removed: the request would
        // then look as if it carried no token at all. Refuse it for what it is.
        if route.policy.auth == AuthMode::Required
            && bearer::listed_in_connection(&parts.headers, &self.token_header)
        {
            return Err(Rejection::TokenHeaderInConnection(
                self.token_header.clone(),
            ));
        }
        let noted = forward::strip_inbound(&mut parts.headers);

        // ② Policy, ③ verification, then authorization against the verified claims. A
        // required route never gets past here without verified claims that satisfy its
        // requirements.
        let mut csrf_form = None;
        let mut via_cookie = false;
        let claims = match route.policy.auth {
            AuthMode::Public => None,
            AuthMode::Required => {
                // fail_closed: without a current revocation set no token is accepted.
                if self.revocation.as_ref().is_some_and(|r| r.refuses()) {
                    return Err(Rejection::RevocationStale);
                }
                let (claims, cookie) = match self.browser.as_ref().filter(|_| route.browser) {
                    Some(b) => {
                        self.authenticate_browser(b, parts, conn, &route.issuers, redirects)
                            .await?
                    }
                    None => (
                        self.authenticate(&parts.headers, &route.issuers).await?,
                        false,
                    ),
                };
                via_cookie = cookie;
                if self.access_log {
                    outcome.identity = Some(claims.identity.header_text().into_owned());
                }
                // A cookie rides along on every request the browser makes, whoever's page
                // made it: an unsafe one must prove it came from our origin's pages before
                // its claims count for anything. A header-borne token proves that itself.
                if let Some(b) = self.browser.as_ref().filter(|_| via_cookie) {
                    if let guard::Csrf::InForm(expected) =
                        b.check_csrf(parts, &claims, b.secure(conn.tls))?
                    {
                        csrf_form = Some(expected);
                    }
                }
                route.policy.authorize(&claims)?;
                Some(claims)
            }
        };

        // ④ Identity: strip on every route (public too), then set ours from the claims.
        // The steering headers (URL, method and client-address overrides) go with them,
        // before ⑤ sets `X-Forwarded-*` and `X-Real-IP`.
        let headers = &mut parts.headers;
        self.identity.strip(headers);
        steering::strip(headers, &route.pass_headers);
        // Our session cookies, on every route once browser mode is on, after ③ read
        // them (a backend never sees our tokens); our CSRF header on browser routes.
        if let Some(b) = &self.browser {
            b.strip(headers, route.browser);
        }
        if let Some(c) = &claims {
            self.identity.set(headers, c, &route.claim_headers)?;
        }
        // The TLS client certificate's subject was verified by the handshake.
        if let Some((name, subject)) = &conn.client_subject {
            headers.insert(name.clone(), subject.clone());
        }
        if !route.forward_authorization {
            headers.remove(&self.token_header);
        }
        Ok(Decision {
            route,
            claims,
            path,
            noted,
            csrf_form,
            via_cookie,
            browser_route: route.browser,
        })
    }

    /// ① The route for a request head, and the normalized path it matched.
    fn route(&self, parts: &Parts) -> Result<(&Route, String), Rejection> {
        let host = routing::request_host(
            parts.headers.get(HOST).and_then(|v| v.to_str().ok()),
            parts.uri.authority().map(|a| a.as_str()),
        );
        let path = self
            .routes
            .normalize(host.as_deref(), parts.uri.path())
            .map_err(Rejection::BadPath)?
            .into_owned();
        // A lenient backend spelling of a required route's path takes that route.
        let strict = |r: &Route| r.policy.auth == AuthMode::Required;
        match self
            .routes
            .find_strict(host.as_deref(), &path, &parts.method, strict)
        {
            Ok(r) => Ok((r, path)),
            Err(Miss::NotFound) => Err(Rejection::NoRoute),
            Err(Miss::Method(allowed)) => Err(Rejection::MethodNotAllowed(allowed)),
        }
    }

    /// 431 when the header names and values together exceed `server.max_header_bytes`.
    pub(crate) fn check_header_size(&self, headers: &http::HeaderMap) -> Result<(), Rejection> {
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if bytes > self.max_header_bytes {
            return Err(Rejection::HeadersTooLarge);
        }
        Ok(())
    }

    /// ③ Reads and verifies the token (ours, or from an issuer in `issuers`), and checks
    /// that the identity of one of our tokens is a known user.
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        issuers: &[usize],
    ) -> Result<Claims, TokenError> {
        let token = bearer::extract(headers, &self.token_header, &self.prefix)?;
        self.verify_token(token, issuers).await
    }

    /// ③ Verifies `token` (ours, or from an issuer in `issuers`), and checks that the
    /// identity of one of our tokens is a known user and that it is not revoked.
    async fn verify_token(&self, token: &str, issuers: &[usize]) -> Result<Claims, TokenError> {
        let verified = self.authority.verify(token, unix_now(), issuers).await?;
        // With local users, deleting a user cuts off their unexpired tokens at once. An
        // external issuer's subjects are its own users, not ours.
        let ours = verified.issuer.is_none();
        if ours {
            // A session a configured OIDC provider began names it in a claim only we can
            // sign: its identity is the provider's user, not one of ours; but one named
            // like a local user passes only where the provider may assert those (a
            // session begun before that user existed, or before the rule, is cut here,
            // renewals included). `UnknownUser`: not a user this token may stand for.
            let identity = &verified.claims.identity;
            let provider = self.oidc.as_ref().and_then(|o| {
                let name = verified.claims.get(crate::browser::oidc::IDP_CLAIM)?;
                o.refuses_identity(name.as_str()?, identity)
            });
            let refused = match provider {
                Some(refused) => refused,
                None => !self.users.is_empty() && !self.users.contains(identity),
            };
            if refused {
                return Err(TokenError::UnknownUser);
            }
        }
        // After the cache and the signature: a cached token is checked like any other.
        if let Some(r) = &self.revocation {
            r.check(&verified.claims, ours)?;
        }
        Ok(verified.claims)
    }

    /// An OIDC endpoint: the start redirect, the callback (which begins our session), or
    /// the logout that continues at the provider.
    async fn oidc(
        &self,
        oidc: &Oidc,
        endpoint: Endpoint<'_>,
        parts: &Parts,
        tls: bool,
    ) -> Result<Response<Body>, Rejection> {
        use crate::browser::oidc::{refusal, OidcError};
        // The config check makes [[oidc]] need browser mode, so sessions exist here.
        let Some(browser) = &self.browser else {
            return Err(refusal(OidcError::Internal("no browser sessions"), parts, None).into());
        };
        let sessions = &browser.sessions;
        let secure = browser.secure(tls);
        match endpoint {
            Endpoint::Start(provider) => Ok(oidc.start(provider, parts, secure).await?),
            Endpoint::Callback(provider) => {
                let done = oidc.callback(provider, parts, secure).await?;
                let now_ms = crate::auth::lifecycle::unix_millis();
                let (cookies, sid) = sessions
                    .begin_with_sid(&Oidc::grant(&done), secure, now_ms)
                    .await
                    .map_err(|e| {
                        let error = match e {
                            crate::browser::session::SessionError::Store(e) => {
                                OidcError::SessionUnavailable(e.to_string())
                            }
                            _ => OidcError::Internal("cannot sign the session's token"),
                        };
                        refusal(error, parts, oidc.clear_flow(&done.provider, secure))
                    })?;
                Ok(oidc.logged_in(&done, cookies, &sid, secure))
            }
        }
    }

    /// The logout path: our access token (not revoked), then the revocations asked for.
    async fn logout(
        &self,
        req: Request<Incoming>,
        revocation: &Revocation,
    ) -> Result<Response<Body>, Rejection> {
        use crate::auth::lifecycle::LifecycleError;
        use crate::auth::logout;
        match *req.method() {
            Method::POST => {}
            Method::OPTIONS => return Ok(logout::options()),
            _ => {
                return Err(LifecycleError::MethodNotAllowed(logout::ALLOW_LOGOUT).into());
            }
        }
        let claims = self.authenticate(req.headers(), &[]).await?;
        let refresh = self.login.as_ref().and_then(|l| l.refresh());
        let (parts, body) = req.into_parts();
        Ok(logout::logout(&parts.headers, body, &claims, revocation, refresh).await?)
    }
}

impl Route {
    /// The path and query sent upstream.
    fn path_and_query(&self, path: &str, query: Option<&str>) -> String {
        match query {
            Some(q) => format!("{}?{q}", self.rewrite(path)),
            None => self.rewrite(path),
        }
    }

    /// The path sent upstream: the matched prefix replaced when the route rewrites it.
    fn rewrite(&self, path: &str) -> String {
        match (&self.rewrite_prefix, self.path_match) {
            (Some(new), PathMatch::Prefix) => {
                let rest = if self.prefix == "/" {
                    path
                } else {
                    &path[self.prefix.len().min(path.len())..]
                };
                let joined = format!("{new}{rest}");
                if joined.is_empty() {
                    "/".to_string()
                } else if joined.starts_with('/') {
                    joined
                } else {
                    format!("/{joined}")
                }
            }
            _ => path.to_string(),
        }
    }
}

fn identity_response(claims: Option<&Claims>) -> Response<Body> {
    let identity = claims.map(|c| c.identity.to_json()).unwrap_or_default();
    let mut body = serde_json::to_vec(&json!({ "identity": identity })).unwrap_or_default();
    body.push(b'\n');
    let mut res = Response::new(full(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
