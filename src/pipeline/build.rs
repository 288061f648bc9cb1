//! Building a [`Pipeline`] from a checked config and what the load stage built: every
//! runtime piece once (route table, verifier, upstream clusters, header names), so the
//! per-request path only reads.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Pipeline, Route, RouteTarget};
use crate::auth::authority::Authority;
use crate::auth::jwks::PublishedJwks;
use crate::auth::login::{Issuer, Login};
use crate::auth::refresh::Refresh;
use crate::auth::remote::Remote;
use crate::auth::revocation::{self, Revocation};
use crate::auth::throttle::Throttle;
use crate::auth::users::Users;
use crate::browser::csrf::CsrfKey;
use crate::browser::oidc::Oidc;
use crate::browser::session::Sessions;
use crate::browser::Browser;
use crate::config::{AuthMode, Config, RouteConfig, Target};
use crate::identity::{ClaimHeaders, IdentityHeaders};
use crate::load::Built;
use crate::metrics::{Metrics, RouteCounters};
use crate::policy::Policy;
use crate::proxy::Cluster;
use crate::rejection::ErrorContext;
use crate::routing::{Matcher, RouteTable};
use crate::store::Stores;
use http::HeaderName;

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
        Self::build_in(config, built, metrics, &Stores::new())
    }

    /// Like [`Pipeline::build_with`], with the process's stores (kept across reloads, so
    /// login counters survive them).
    pub fn build_in(
        config: &Config,
        built: &Built,
        metrics: Arc<Metrics>,
        stores: &Stores,
    ) -> Result<Pipeline, String> {
        let t = &config.tokens;
        let users = Arc::new(
            Users::new(
                &config.users,
                config.login.as_ref().map_or(1, |l| l.max_concurrent_hashes),
            )
            .counting_into(
                metrics.password_hashes.clone(),
                metrics.password_hashes_by_cost.clone(),
            ),
        );
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
        if config.revocation.is_some() {
            // Revocation by `jti` reads it from every token.
            wanted.push(Arc::from("jti"));
        }
        if !config.oidc.is_empty() {
            // The provider a session came from: its identity is not a local user.
            wanted.push(Arc::from(crate::browser::oidc::IDP_CLAIM));
        }
        if config.browser.is_some() {
            // The session id binds a browser session's CSRF token.
            wanted.push(Arc::from(crate::browser::session::SID_CLAIM));
        }
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
        let mut issuer = Issuer::new(t, authority.keys())
            .map_err(|e| format!("tokens: cannot build the signer: {e}"))?;
        // One revocation set per process (the mirror lives in `stores`, across reloads).
        let revocation = config.revocation.clone().map(|rc| {
            let mirror = stores.mirror(
                &config.store,
                revocation::PREFIX,
                rc.resync,
                metrics.revocation_store_errors.clone(),
            );
            Arc::new(Revocation::new(
                rc,
                mirror,
                revocation::keep_cutoffs(config),
                config.tokens.leeway,
                metrics.clone(),
            ))
        });
        if revocation.is_some() {
            issuer = issuer.with_jti();
        }
        let issuer = Arc::new(issuer);
        let refresh = config
            .refresh
            .clone()
            .map(|rc| Arc::new(Refresh::new(rc, stores.get(&config.store), metrics.clone())));
        let sessions = config.browser.as_ref().map(|_| {
            Arc::new(Sessions::new(
                issuer.clone(),
                refresh.clone(),
                users.clone(),
                revocation.clone(),
                csrf_key(config),
                t.lifetime,
            ))
        });
        let login = match config.login.clone() {
            Some(l) => {
                let shared = match &config.store.backend {
                    crate::config::StoreBackend::Memory => None,
                    crate::config::StoreBackend::Redis(_) => Some(stores.get(&config.store)),
                };
                let throttle = Throttle::new(&l, shared, stores.local(), metrics.clone());
                let remote = l.remote.as_ref().map(Remote::new).transpose()?;
                Some(
                    Login::new(l, issuer.clone(), users.clone(), throttle, remote)
                        .with_lifecycle(refresh, revocation.clone()),
                )
            }
            None => None,
        };
        // Identities from the user service are not local users: with one configured, a
        // token's identity is not checked against the local list.
        let check_users = config.login.as_ref().is_none_or(|l| l.remote.is_none());

        let mut routes = Vec::new();
        for r in &config.routes {
            let target = match &r.target {
                Target::Upstream(name) => RouteTarget::Upstream(
                    pools
                        .get(name)
                        .cloned()
                        .ok_or_else(|| format!("{}: no upstream `{name}`", r.at))?,
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
                    pass_headers: r.pass_headers.clone(),
                    preserve_host: r.preserve_host,
                    timeout: r.timeout,
                    max_body: r.max_body,
                    browser: r.browser,
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
        let oidc = Oidc::new(config, stores.get(&config.store))?;
        let providers = oidc.as_ref().map_or_else(Vec::new, Oidc::links);
        Ok(Pipeline {
            oidc,
            oidc_counters: RouteCounters::new(
                config.oauth2.as_ref().map_or("-", |o| o.path.as_str()),
            ),
            routes: RouteTable::new(routes),
            clusters: pools.into_values().collect(),
            login,
            revocation,
            browser: match (config.browser.clone(), sessions) {
                (Some(bc), Some(sessions)) => Some(
                    Browser::new(
                        bc,
                        sessions,
                        config
                            .login
                            .as_ref()
                            .map_or_else(String::new, |l| l.path.clone()),
                        t.lifetime,
                    )
                    .with_providers(providers),
                ),
                _ => None,
            },
            jwks: PublishedJwks::new(&config.jwks, authority.keys()),
            authority,
            users: if check_users {
                users
            } else {
                Arc::new(Users::new(&[], 1))
            },
            identity: IdentityHeaders::new(owned.iter(), config.identity.arrays),
            token_header: t.header.clone(),
            prefix: t.prefix.clone(),
            errors: ErrorContext::new(t.errors, t.realm.clone(), t.prefix.clone()),
            trust_forwarded: config.server.trust_forwarded,
            trusted_proxies: config.server.trusted_proxies.clone(),
            max_header_bytes: config.server.max_header_bytes,
            request_id: config.server.request_id,
            log_query: config.logging.query,
            access_log: config.logging.access,
            metrics,
            login_counters: RouteCounters::new(
                config.login.as_ref().map_or("-", |l| l.path.as_str()),
            ),
            refresh_counters: RouteCounters::new(
                config.refresh.as_ref().map_or("-", |r| r.path.as_str()),
            ),
            logout_counters: RouteCounters::new(
                config
                    .revocation
                    .as_ref()
                    .map_or("-", |r| r.logout_path.as_str()),
            ),
            login_page_counters: RouteCounters::new(
                config
                    .browser
                    .as_ref()
                    .map_or("-", |b| b.login_page.as_str()),
            ),
            browser_logout_counters: RouteCounters::new(
                config
                    .browser
                    .as_ref()
                    .map_or("-", |b| b.logout_path.as_str()),
            ),
            jwks_counters: RouteCounters::new(config.jwks.path.as_str()),
            unrouted: RouteCounters::new("-"),
            config_sha256: config.source_sha256.clone(),
            keys_sha256: keys_fingerprint(config),
            forward_auth: config.forward_auth.clone(),
        })
    }
}

/// The browser CSRF key: `[browser] csrf_secret_*`, else derived from the signing key's
/// material (so every instance with the same keyring derives the same key), accepting
/// tokens of the keys derived from the keyring's other secret material too (a rotation
/// keeps open sessions' tokens valid). Public keys are never material: they are published.
fn csrf_key(config: &Config) -> CsrfKey {
    use crate::config::{KeyMaterial, Pem};
    fn secret(k: &crate::config::KeyConfig) -> Option<&[u8]> {
        match &k.material {
            KeyMaterial::Secret(s) => Some(s.bytes.as_slice()),
            KeyMaterial::Pem(Pem::Private(b)) => Some(b.as_slice()),
            KeyMaterial::Pem(Pem::Public(_)) => None,
        }
    }
    let keys = &config.tokens.keys;
    let others = keys.iter().filter(|k| !k.sign).filter_map(secret);
    match config.browser.as_ref().and_then(|b| b.csrf_secret.as_ref()) {
        Some(s) => CsrfKey::derive(&s.bytes),
        None => match keys.iter().find(|k| k.sign).and_then(secret) {
            Some(material) => CsrfKey::derive(material).accepting(others),
            None => CsrfKey::random(),
        },
    }
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
fn route_claim_headers(global: &ClaimHeaders, r: &RouteConfig) -> ClaimHeaders {
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
