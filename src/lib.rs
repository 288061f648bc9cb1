//! A JWT auth gateway: issues tokens at the login path, verifies a token on every other
//! request, and forwards it to an upstream with `X-Identity` set from the verified claims.
//!
//! ```text
//! client ─▶ server (TCP or TLS listeners, HTTP/1.1 + HTTP/2)    redirect listener → 301
//!             └─▶ Pipeline::handle                               (request id set)
//!                   host check  one unambiguous Host / :authority            bad host     → 400
//!                   head size   header names + values ≤ max_header_bytes     too large    → 431
//!                   browser     login page, form login at the login path, sign-out,
//!                               GET on the refresh path → session cookies (+ redirect)
//!                   oidc        GET /oauth2/NAME/start → the provider; GET /oauth2/NAME/callback
//!                               → code + PKCE → ID token checked → our session cookies
//!                   login       POST /auth → argon2id check → signed token (+ refresh)
//!                   refresh     POST /auth/refresh → a rotated pair
//!                   logout      POST /auth/logout → revoke (jti, family, everywhere)
//!                   jwks        GET /.well-known/jwks.json → our public keys
//!                   Pipeline::decide, over the request head:
//!                   ① routing   host + normalized path + method → Route  no route     → 404/405
//!                     hop-by-hop strip (Connection-listed, TE, Upgrade noted; Expect)
//!                   ② policy    public | required
//!                   ③ verify    token → Claims (keyring or an issuer)     bad token    → 401
//!                     browser route: else the session cookie; a page load
//!                     without a session → 302 sign-in; cookie + unsafe method
//!                     without the CSRF token or cross-site                   → 403
//!                     authorize claims against the route's requirements   unmet        → 403
//!                   ④ identity  strip inbound identity and steering headers (and our
//!                               session cookies, X-Gateway-CSRF), set ours
//!                   ⑤ forward   built-in responder, or:
//!                     forward::prepare  declared body > max_body            too large    → 413
//!                                       X-Forwarded-*, Host, TE, upgrade, body limit
//!                     a cookie-authenticated form's gateway_csrf, read (≤ 1 MiB)  → 403
//!                     cluster → server, bodies stream             down → 502/503, slow → 504
//!                     forward::finish   the upstream's hop-by-hop headers removed
//!                   telemetry::record   metrics + access log
//! client ◀─ upstream response, or Rejection::into_response (JSON body, one mapping)
//!
//! proxy ─▶ forward_auth::handle   (nginx auth_request, Traefik, Caddy, Envoy ext_authz)
//!            the original request it describes → ①–④ as above → 200 + identity headers,
//!            or the same refusal
//! ```
//!
//! Modules, in flow order (each imports only modules listed before it, and the leaves):
//! - [`config`] — `gateway.toml` → typed, cross-checked [`config::Config`]; reads files,
//!   parses no key or certificate.
//! - [`tls`] — rustls configs from files: the listeners' (certificates by SNI, client
//!   certificates) and the outbound connector's.
//! - [`store`] — state shared across requests and instances: memory or Redis, and the
//!   local mirror of a key set kept current by pub/sub and resync.
//! - [`auth`] — ③ token extraction, the keyring and external issuers, verification, the
//!   verified-token cache, the login endpoint, the published JWKS, users, login limits,
//!   the delegated credential check, refresh tokens, logout and the revocation set.
//! - [`browser`] — browser mode: cookie sessions over our tokens, CSRF tokens, the
//!   login page, login with OpenID Connect providers.
//! - [`load`] — config checks, then the keyring and TLS configs built once per load.
//! - [`routing`] — ① route table, host/path/method matching, path normalization.
//! - [`policy`] — ② route requirements over claims.
//! - [`identity`] — ④ strip-then-set of identity headers.
//! - [`proxy`] — ⑤ hop-by-hop rules, `X-Forwarded-*`, upstream clusters and their
//!   connection pools, upgrades.
//! - [`client_addr`] — the real client address behind `trusted_proxies`.
//! - [`rejection`] — every early end of a request, whose fault it is, and its response (the
//!   one mapping); each phase's error folds into it with `?`.
//! - [`pipeline`] — builds the runtime pieces; the only code that knows the step order.
//! - [`forward_auth`] — the same decision answered to nginx `auth_request`, Traefik and
//!   Caddy forward auth and Envoy `ext_authz`, for a proxy that forwards by itself.
//! - [`server`] — worker threads, listeners, TLS handshakes, per-connection HTTP, reload,
//!   graceful drain.
//! - [`admin`] — the operator listener: health, readiness, metrics, fingerprints.
//!
//! Leaves, used from anywhere:
//! - [`body`] — the body type shared by all responses.
//! - [`worker`] — which worker thread runs the current task.
//! - [`telemetry`] — logging, and the per-request metrics + access-log record.
//! - [`metrics`] — the Prometheus registry.
//! - [`exposition`] — `/metrics` content negotiation: OpenMetrics or the classic text format.
//! - [`steering`] — the headers that steer a backend (URL, method, client-address
//!   overrides): one list, stripped from every request at ④ and checked in `pass_headers`.

pub mod admin;
pub mod auth;
pub mod body;
pub mod browser;
pub mod client_addr;
pub mod config;
pub mod exposition;
pub mod forward_auth;
pub mod identity;
pub mod load;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod rejection;
pub mod routing;
pub mod server;
pub mod steering;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// A started gateway: its addresses, its reloader (when it runs from a file), its metrics,
/// and the serving future (which ends after shutdown resolves and the drain finishes).
pub struct Started<F> {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in the configured order.
    pub addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub reloader: Option<Arc<server::reload::Reloader>>,
    pub metrics: Arc<metrics::Metrics>,
    pub serving: F,
}

/// Builds the pipeline for a loaded config (see [`load`]), binds its listeners and returns
/// it ready to serve.
pub async fn start(
    loaded: &load::Loaded,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started<impl Future<Output = server::Drained>>, String> {
    start_inner(None, loaded, shutdown).await
}

/// Like [`start`], from a config file that is watched for changes (every
/// `server.reload_poll`) and reloaded on SIGHUP.
pub async fn start_file(
    path: &Path,
    loaded: &load::Loaded,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started<impl Future<Output = server::Drained>>, String> {
    start_inner(Some(path), loaded, shutdown).await
}

async fn start_inner(
    path: Option<&Path>,
    loaded: &load::Loaded,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started<impl Future<Output = server::Drained>>, String> {
    let config = &loaded.config;
    let metrics = Arc::new(metrics::Metrics::new());
    // One store for the process: reloads reuse it (and its Redis connection).
    let stores = Arc::new(store::Stores::new());
    let pipeline: server::SharedPipeline = Arc::new(ArcSwap::from_pointee(
        pipeline::Pipeline::build_in(config, &loaded.built, metrics.clone(), &stores)?,
    ));
    if let Some(r) = pipeline.load().revocation() {
        // Revoked tokens are refused from the first request: wait (bounded) for the set.
        let within = (config.store.timeout * 10).max(std::time::Duration::from_secs(1));
        if !r.loaded(within).await {
            tracing::warn!(
                "revocation: the set is not loaded from the store yet; serving with what is known"
            );
        }
    }
    let draining = Arc::new(AtomicBool::new(false));
    let server = server::Server::bind(
        &config.server,
        &loaded.built,
        pipeline.clone(),
        metrics.clone(),
        draining.clone(),
    )
    .await?;
    let addrs = server.local_addrs().map_err(|e| e.to_string())?;
    let addr = addrs[0];
    let tls = server.tls_handles(&config.server);
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_addr = match config.admin {
        Some(a) => {
            let listener = admin::bind(a).await?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            let state = admin::AdminState {
                pipeline: pipeline.clone(),
                metrics: metrics.clone(),
                draining,
            };
            tokio::spawn(admin::serve(listener, state, async {
                let _ = admin_stopped.await;
            }));
            Some(bound)
        }
        None => None,
    };
    let reloader = path.map(|p| {
        Arc::new(
            server::reload::Reloader::new(p, pipeline, config.server.clone(), metrics.clone(), tls)
                .with_stores(stores.clone()),
        )
    });
    if let Some(r) = &reloader {
        if let Some(poll) = config.server.reload_poll {
            tokio::spawn(r.clone().watch(poll));
        }
        #[cfg(unix)]
        tokio::spawn(r.clone().on_sighup());
    }
    let serving = async move {
        let drained = server.serve(shutdown).await;
        // The admin listener answers until the drain ends, so probes see "draining".
        let _ = admin_stop.send(());
        drained
    };
    Ok(Started {
        addr,
        addrs,
        admin_addr,
        reloader,
        metrics,
        serving,
    })
}
