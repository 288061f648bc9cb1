//! The HTTP client behind one upstream cluster: connector (TCP, optional rustls, built by
//! [`crate::tls::connector`]), protocol, keep-alive pool. One client per worker thread;
//! its connections are reused across requests.

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::config::{UpstreamConfig, UpstreamProtocol};

/// The client type every cluster uses: plain or TLS by the URL's scheme.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The connector of an upstream cluster: TLS material read once, system roots only when a
/// server is https. Fails on unreadable TLS material.
pub fn cluster_connector(cfg: &UpstreamConfig) -> Result<HttpsConnector<HttpConnector>, String> {
    let https = cfg
        .servers
        .iter()
        .any(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS));
    crate::tls::connector(&cfg.tls, cfg.connect_timeout, cfg.protocol, https)
        .map_err(|e| format!("upstreams.{}.tls: {e}", cfg.name))
}

/// `n` clients over `connector`, each with its own keep-alive pool: one per worker thread,
/// so a worker reuses only the upstream connections it drives itself.
pub fn build(
    cfg: &UpstreamConfig,
    connector: &HttpsConnector<HttpConnector>,
    n: usize,
) -> Vec<HttpClient> {
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(cfg.idle_timeout)
        .timer(TokioTimer::new());
    if cfg.protocol == UpstreamProtocol::H2 {
        client.http2_only(true);
    }
    (0..n.max(1))
        .map(|_| client.build(connector.clone()))
        .collect()
}

/// Walks an error's source chain for a `T`.
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Whether the error was caused by a `T` anywhere in its chain.
pub fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    find::<T>(e).is_some()
}

/// Whether the error is an I/O timeout (e.g. the connect timeout).
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    find::<std::io::Error>(e).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// The error and its first cause, for logs.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}
