//! The request pipeline: the one place that knows the order of the steps.
//!
//! [`Pipeline::build`] turns a [`Config`] into every runtime piece once (route table, keys,
//! verifier, upstream pools, header names), so the per-request path only reads; a reload
//! builds a new pipeline and swaps it in whole. `Pipeline::try_handle` runs
//! ① routing → ② policy → ③ verify → ④ identity → ⑤ forward.

mod conn;

pub use conn::Conn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, TE};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::authority::Authority;
use crate::auth::jwks::PublishedJwks;
use crate::auth::login::{Issuer, Login};
use crate::auth::users::Users;
use crate::auth::{bearer, Claims, TokenError};
use crate::body::{full, Body};
use crate::config::{AuthMode, Config, PathMatch, RequestIdMode, Responder, Target};
use crate::identity::{ClaimHeaders, IdentityHeaders};
use crate::load::Built;
use crate::metrics::{method_label, Metrics, OutcomeLabels, ReasonLabels, RouteCounters};
use crate::policy::Policy;
use crate::proxy::{forward, upgrade, Cluster, Outbound};
use crate::rejection::{ErrorContext, Rejection};
use crate::routing::{self, Matcher, Miss, RouteTable};

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
    timeout: Option<Duration>,
    max_body: Option<u64>,
    /// Indices into the authority's external issuers this route accepts.
    issuers: Vec<usize>,
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
    max_header_bytes: usize,
    request_id: RequestIdMode,
    log_query: bool,
    access_log: bool,
    metrics: Arc<Metrics>,
    /// Request counters of the login path, the JWKS path and of requests with no route.
    login_counters: RouteCounters,
    jwks_counters: RouteCounters,
    unrouted: RouteCounters,
    config_sha256: Option<String>,
    keys_sha256: String,
}

/// What the metrics and the access log record about one request. The identity and
/// server are only filled in when the access log is on.
#[derive(Default)]
struct Outcome<'p> {
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
    /// Builds the runtime form of `config` over what the load stage built from its files
    /// (the keyring). Fails only on what neither stage could judge (e.g. an upstream's TLS
    /// material).
    pub fn build(config: &Config, built: &Built) -> Result<Pipeline, String> {
        Self::build_with(config, built, Arc::new(Metrics::new()))
    }

    /// Like [`Pipeline::build`], recording into `metrics` (shared across reloads).
    pub fn build_with(
        config: &Config,
        built: &Built,
        metrics: Arc<Metrics>,
    ) -> Result<Pipeline, String> {
        let t = &config.tokens;
        let users = Arc::new(Users::new(
            &config.users,
            config.login.as_ref().map_or(1, |l| l.max_concurrent_hashes),
        ));
        let mut pools = HashMap::new();
        let workers = crate::worker::count(config.server.workers);
        for u in &config.upstreams {
            pools.insert(
                u.name.clone(),
                Arc::new(Cluster::new(u, metrics.clone(), workers)?),
            );
        }
        let global: ClaimHeaders = config
            .identity
            .claims
            .iter()
            .map(|(h, c)| (h.clone(), Arc::from(c.as_str())))
            .collect();
        // The claims any route reads (requirements, claim headers): the verifier keeps these.
        let mut wanted: Vec<Arc<str>> = Vec::new();
        for r in &config.routes {
            let headers = route_claim_headers(&global, r);
            for name in r
                .require
                .iter()
                .map(|q| q.claim.as_str())
                .chain(headers.iter().map(|(_, c)| &**c))
            {
                if !wanted.iter().any(|w| &**w == name) {
                    wanted.push(Arc::from(name));
                }
            }
        }
        let authority = Authority::build(config, built.keyring.clone(), wanted)
            .map_err(|e| format!("tokens: cannot build the keyring: {e}"))?;
        // Background JWKS refreshers for external issuers; they end when the pipeline drops.
        if tokio::runtime::Handle::try_current().is_ok() {
            authority.spawn_refreshers();
        }
        let issuer = Issuer::new(t, authority.keys())
            .map_err(|e| format!("tokens: cannot build the signer: {e}"))?;
        let login = config
            .login
            .clone()
            .map(|l| Login::new(l, issuer, users.clone()));

        let mut routes = Vec::new();
        for r in &config.routes {
            let target = match &r.target {
                Target::Upstream(name) => RouteTarget::Upstream(
                    pools
                        .get(name)
                        .cloned()
                        .ok_or_else(|| format!("{}: no upstream `{name}`", r.name))?,
                ),
                Target::Respond(what) => RouteTarget::Respond(*what),
            };
            let claim_headers = route_claim_headers(&global, r);
            let policy = Policy {
                auth: r.auth,
                require: r.require.clone(),
            };
            let matcher = Matcher {
                host: r.host.clone(),
                path: r.path.clone(),
                path_match: r.path_match,
                methods: r.methods.clone(),
            };
            routes.push((
                matcher,
                Route {
                    name: r.name.clone(),
                    counters: RouteCounters::new(r.name.as_str()),
                    policy,
                    claim_headers: if r.auth == AuthMode::Required {
                        claim_headers
                    } else {
                        Vec::new()
                    },
                    target,
                    prefix: r.path.clone(),
                    path_match: r.path_match,
                    rewrite_prefix: r.rewrite_prefix.clone(),
                    forward_authorization: r.forward_authorization,
                    timeout: r.timeout,
                    max_body: r.max_body,
                    issuers: r
                        .issuers
                        .iter()
                        .filter_map(|name| authority.issuer_index(name))
                        .collect(),
                },
            ));
        }
        let owned: Vec<HeaderName> = config
            .identity
            .claims
            .iter()
            .chain(config.routes.iter().flat_map(|r| r.claim_headers.iter()))
            .map(|(h, _)| h.clone())
            // Client-certificate subject headers are ours too: never taken from a client.
            .chain(
                config
                    .server
                    .listeners
                    .iter()
                    .filter_map(|l| l.tls.as_ref()?.client_subject_header.clone()),
            )
            .collect();
        Ok(Pipeline {
            routes: RouteTable::new(routes),
            clusters: pools.into_values().collect(),
            login,
            jwks: PublishedJwks::new(&config.jwks, authority.keys()),
            authority,
            users,
            identity: IdentityHeaders::new(owned.iter(), config.identity.arrays),
            token_header: t.header.clone(),
            prefix: t.prefix.clone(),
            errors: ErrorContext::new(t.errors, t.realm.clone(), t.prefix.clone()),
            trust_forwarded: config.server.trust_forwarded,
            max_header_bytes: config.server.max_header_bytes,
            request_id: config.server.request_id,
            log_query: config.logging.query,
            access_log: config.logging.access,
            metrics,
            login_counters: RouteCounters::new(
                config.login.as_ref().map_or("-", |l| l.path.as_str()),
            ),
            jwks_counters: RouteCounters::new(config.jwks.path.as_str()),
            unrouted: RouteCounters::new("-"),
            config_sha256: config.source_sha256.clone(),
            keys_sha256: keys_fingerprint(config),
        })
    }

    /// The upstream clusters (for readiness: every cluster should have a server available).
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }

    /// SHA-256 of the config file this pipeline was built from.
    pub fn config_sha256(&self) -> Option<&str> {
        self.config_sha256.as_deref()
    }

    /// A fingerprint of the verification keys (hashes only), to spot skewed instances.
    pub fn keys_sha256(&self) -> &str {
        &self.keys_sha256
    }

    /// Answers one request: the upstream's response, or our JSON error. Never panics on input.
    pub async fn handle(&self, mut req: Request<Incoming>, conn: &Conn) -> Response<Body> {
        let client = conn.peer;
        let started = Instant::now();
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
        let (mut response, reason) = match self.try_handle(req, conn, &mut outcome).await {
            Ok(res) => (res, None),
            Err(rejection) => {
                if sent_body {
                    // Refused with the body perhaps unread: if hyper must close the
                    // connection for it, the client still gets to read this answer.
                    conn.linger_on_close
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let reason = rejection.reason();
                outcome.token_refused =
                    matches!(rejection, Rejection::Token(_) | Rejection::Forbidden(_));
                if let Rejection::UpstreamUnavailable(why) | Rejection::Internal(why) = &rejection {
                    tracing::warn!(path = %path(), error = %why, "request failed");
                }
                (rejection.into_response(&self.errors), Some(reason))
            }
        };
        response.headers_mut().insert(X_REQUEST_ID, id.clone());
        let status = response.status().as_u16();
        let counters = outcome.route.unwrap_or(&self.unrouted);
        let route = counters.name();
        let elapsed = started.elapsed();
        counters.inc(&self.metrics.requests, method_label(&method), status);
        self.metrics.duration.observe(elapsed.as_secs_f64());
        if let Some(outcome) = outcome.login {
            self.metrics
                .logins
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_string(),
                })
                .inc();
        } else if let Some(reason) = reason.filter(|_| outcome.token_refused) {
            self.metrics
                .token_rejections
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
        if !self.access_log {
            return response;
        }
        let bytes = http_body::Body::size_hint(response.body()).exact();
        // `path()` leaves out the query unless `[logging] query`: queries often carry secrets.
        tracing::info!(
            target: "access",
            request_id = id.to_str().unwrap_or("-"),
            client = %client,
            method = %method,
            path = %path(),
            route,
            upstream = outcome.server.as_deref().unwrap_or("-"),
            status,
            bytes,
            identity = outcome.identity.as_deref().unwrap_or("-"),
            reason = reason.unwrap_or("-"),
            micros = elapsed.as_micros() as u64,
        );
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

    /// ①..⑤ in order. Each `?` ends the request with the step's rejection.
    async fn try_handle<'p>(
        &'p self,
        mut req: Request<Incoming>,
        conn: &Conn,
        outcome: &mut Outcome<'p>,
    ) -> Result<Response<Body>, Rejection> {
        let client = conn.peer;
        // A request whose site is ambiguous is refused before anything reads it.
        routing::check_host(&req).map_err(Rejection::BadHost)?;
        // Header size first: nothing below should parse an oversized head.
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.max_header_bytes {
            return Err(Rejection::HeadersTooLarge);
        }

        // The login path is answered before routing: it issues tokens, so it can never be
        // shadowed by (or forwarded to) a route.
        if let Some(login) = &self.login {
            if req.uri().path() == login.path {
                outcome.route = Some(&self.login_counters);
                let attempt = req.method() == Method::POST;
                let result = login.handle(req, client.ip(), unix_now).await;
                outcome.login = match &result {
                    Ok(_) if attempt => Some("success"),
                    Ok(_) => None,
                    Err(e) => Some(e.reason()),
                };
                return Ok(result?);
            }
        }

        // Our public keys, answered before routing like the login path: relying parties
        // fetch them without a token, and no route may shadow them.
        if let Some(jwks) = &self.jwks {
            if req.uri().path() == jwks.path {
                if let Some(res) = jwks.response(req.method()) {
                    outcome.route = Some(&self.jwks_counters);
                    return Ok(res);
                }
            }
        }

        // ① Routing. The path is normalized, and refused if its raw form would route
        // elsewhere, so the path we match is the path the backend sees.
        let host = routing::request_host(
            req.headers().get(HOST).and_then(|v| v.to_str().ok()),
            req.uri().authority().map(|a| a.as_str()),
        );
        let path = self
            .routes
            .normalize(host.as_deref(), req.uri().path())
            .map_err(Rejection::BadPath)?
            .into_owned();
        // A lenient backend spelling of a required route's path takes that route.
        let strict = |r: &Route| r.policy.auth == AuthMode::Required;
        let route = match self
            .routes
            .find_strict(host.as_deref(), &path, req.method(), strict)
        {
            Ok(r) => r,
            Err(Miss::NotFound) => return Err(Rejection::NoRoute),
            Err(Miss::Method(allowed)) => return Err(Rejection::MethodNotAllowed(allowed)),
        };
        outcome.route = Some(&route.counters);

        // Hop-by-hop headers go before anything else reads or sets headers: a name listed
        // in `Connection` must only ever remove what the client itself sent. An upgrade
        // request and `TE: trailers` are noted first and restored for the upstream.
        let upgrade = upgrade::requested(req.headers());
        let trailers = req.headers().get_all(TE).iter().any(|v| {
            v.to_str().is_ok_and(|t| {
                t.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("trailers"))
            })
        });
        forward::strip_hop_by_hop(req.headers_mut());
        // We answer `Expect: 100-continue` ourselves as the body is read.
        req.headers_mut().remove(EXPECT);

        // ② Policy and ③ verification. A required route never gets past here without
        // verified claims that satisfy its requirements.
        let claims = match route.policy.auth {
            AuthMode::Public => None,
            AuthMode::Required => {
                let claims = self.authenticate(&req, &route.issuers).await?;
                if self.access_log {
                    outcome.identity = Some(claims.identity.header_text().into_owned());
                }
                route.policy.authorize(&claims)?;
                Some(claims)
            }
        };

        // ④ Identity: strip on every route (public too), then set ours from the claims.
        self.identity.strip(req.headers_mut());
        if let Some(c) = &claims {
            self.identity
                .set(req.headers_mut(), c, &route.claim_headers)?;
        }
        // The TLS client certificate's subject was verified by the handshake.
        if let Some((name, subject)) = &conn.client_subject {
            req.headers_mut().insert(name.clone(), subject.clone());
        }
        if !route.forward_authorization {
            req.headers_mut().remove(&self.token_header);
        }

        // ⑤ Forward (or answer with a built-in responder).
        let pool = match &route.target {
            RouteTarget::Respond(Responder::Identity) => {
                return Ok(identity_response(claims.as_ref()))
            }
            RouteTarget::Upstream(pool) => pool,
        };
        if let Some(max) = route.max_body {
            // A declared oversize body is refused before anything is sent upstream.
            let declared = req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max) {
                return Err(Rejection::BodyTooLarge);
            }
        }
        let proto = if conn.tls { "https" } else { "http" };
        forward::set_forwarded(
            req.headers_mut(),
            &conn.peer_ip,
            proto,
            self.trust_forwarded,
        );
        if !req.headers().contains_key(HOST) {
            // HTTP/2 carries the host in the :authority pseudo-header.
            if let Some(v) = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(HOST, v);
            }
        }
        if trailers {
            req.headers_mut()
                .insert(TE, HeaderValue::from_static("trailers"));
        }
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{}?{q}", route.rewrite(&path)),
            None => route.rewrite(&path),
        };
        let retryable = is_idempotent(req.method()) && http_body::Body::is_end_stream(req.body());
        let timeout = route.timeout;

        // An upgrade keeps the client's connection for the tunnel; it is never retried.
        let on_client = upgrade.map(|protocol| {
            upgrade::restore(req.headers_mut(), protocol);
            hyper::upgrade::on(&mut req)
        });
        let (parts, body) = req.into_parts();
        let out = Outbound {
            method: parts.method,
            path_and_query,
            headers: parts.headers,
            body: limit_body(body, route.max_body),
            retryable: retryable && on_client.is_none(),
            timeout,
        };
        if let Some(on_client) = on_client {
            let res = pool.send_upgrade(out).await?;
            return Ok(upgrade::splice(on_client, res).map(|b| b.map_err(Into::into).boxed()));
        }
        let asked = Instant::now();
        let sent = pool.send(out).await;
        self.metrics
            .upstream_duration
            .observe(asked.elapsed().as_secs_f64());
        let (mut res, server) = sent?;
        if self.access_log {
            outcome.server = Some(server.to_string());
        }
        forward::strip_hop_by_hop(res.headers_mut());
        Ok(res)
    }

    /// ③ Reads and verifies the token (ours, or from an issuer in `issuers`), and checks
    /// that the identity of one of our tokens is a known user.
    async fn authenticate<B>(
        &self,
        req: &Request<B>,
        issuers: &[usize],
    ) -> Result<Claims, TokenError> {
        let token = bearer::extract(req.headers(), &self.token_header, &self.prefix)?;
        let verified = self.authority.verify(token, unix_now(), issuers).await?;
        // With local users, deleting a user cuts off their unexpired tokens at once. An
        // external issuer's subjects are its own users, not ours.
        let ours = verified.issuer.is_none();
        if ours && !self.users.is_empty() && !self.users.contains(&verified.claims.identity) {
            return Err(TokenError::UnknownUser);
        }
        Ok(verified.claims)
    }
}

impl Route {
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

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Boxes the inbound body for the client, counting it against the route's limit while it
/// streams (no buffering).
fn limit_body(body: Incoming, max: Option<u64>) -> Body {
    match max {
        None => body.map_err(Into::into).boxed(),
        Some(max) => Limited::new(body, max as usize).boxed(),
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

/// SHA-256 over each verification key's algorithm and the SHA-256 of its material: equal
/// across instances with the same keys, and useless for recovering a key.
fn keys_fingerprint(config: &Config) -> String {
    use crate::config::{KeyMaterial, Pem};
    let mut text = String::new();
    for k in &config.tokens.keys {
        let bytes: &[u8] = match &k.material {
            KeyMaterial::Secret(s) => &s.bytes,
            KeyMaterial::Pem(Pem::Private(b) | Pem::Public(b)) => b,
        };
        let id = k.id.as_deref().unwrap_or("-");
        let alg = crate::auth::keys::alg_name(k.algorithm);
        text.push_str(&format!(
            "{id}:{alg}:{}:{};",
            k.sign,
            crate::config::sha256_hex(bytes)
        ));
    }
    crate::config::sha256_hex(text.as_bytes())
}

/// The route's claim headers: `[identity] claims`, overridden and extended by the route's.
fn route_claim_headers(global: &ClaimHeaders, r: &crate::config::RouteConfig) -> ClaimHeaders {
    let mut headers: ClaimHeaders = global
        .iter()
        .filter(|(h, _)| !r.claim_headers.iter().any(|(rh, _)| rh == h))
        .cloned()
        .collect();
    headers.extend(
        r.claim_headers
            .iter()
            .map(|(h, c)| (h.clone(), Arc::from(c.as_str()))),
    );
    headers
}
