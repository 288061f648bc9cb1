//! A JWT auth gateway: issues tokens at the login path, verifies a token on every other
//! request, and forwards it to an upstream with `X-Identity` set from the verified claims.
//!
//! ```text
//! client ─▶ server (TCP, HTTP/1.1 + h2c)
//!             └─▶ Pipeline::handle
//!                   login     POST /auth → argon2id check → signed token
//!                   jwks      GET /.well-known/jwks.json → our public keys
//!                   ① routing   match path segments to a Route           no route     → 404
//!                   ② policy    public | required
//!                   ③ verify    token → Claims                            bad token    → 401
//!                   ④ identity  strip every inbound identity header, set ours
//!                   ⑤ forward   pooled client → upstream, bodies stream   down → 502, slow → 504
//! client ◀─ upstream response, or Rejection::into_response (JSON body, one mapping)
//! ```
//!
//! Modules, in flow order:
//! - [`config`] — `gateway.toml` → typed, cross-checked [`config::Config`].
//! - [`server`] — accept loop, per-connection HTTP, graceful drain.
//! - [`pipeline`] — builds the runtime pieces; the only code that knows the step order.
//! - [`routing`] — ① route table and path safety checks.
//! - [`auth`] — ③ token extraction, the keyring, verification (ours and external issuers'),
//!   the verified-token cache, issuing, the published JWKS, users.
//! - [`identity`] — ④ strip-then-set of identity headers.
//! - [`proxy`] — ⑤ hop-by-hop rules, `X-Forwarded-*`, pooled upstream client.
//! - [`rejection`] — every early end of a request and its response.
//! - [`body`] — the body type shared by all responses.
//! - [`telemetry`] — logging.

pub mod auth;
pub mod body;
pub mod config;
pub mod identity;
pub mod pipeline;
pub mod proxy;
pub mod rejection;
pub mod routing;
pub mod server;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Builds the pipeline for `config`, binds its listener and returns the bound address and
/// the serving future (which ends after `shutdown` resolves and the drain finishes).
pub async fn start(
    config: &config::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = server::Drained>), String> {
    let pipeline = Arc::new(pipeline::Pipeline::build(config)?);
    let server = server::Server::bind(&config.server, pipeline)
        .await
        .map_err(|e| format!("server.listen: cannot bind {}: {e}", config.server.listen))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    Ok((addr, server.serve(shutdown)))
}
