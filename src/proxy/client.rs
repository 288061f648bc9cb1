//! The HTTP client behind one upstream pool: connector (TCP, optional rustls), protocol,
//! keep-alive pool. One client per pool; its connections are reused across requests.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;

use crate::body::Body;
use crate::config::{UpstreamConfig, UpstreamProtocol, UpstreamTls};

/// The client type every pool uses: plain or TLS by the URL's scheme.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// A connector for http:// and https:// origins: TCP with `connect_timeout`, rustls verified
/// against `tls` (system roots unless a CA file is given). `https` says whether any origin
/// it serves is https: the system roots are loaded only then (parsing them costs start-up
/// time and resident memory). Fails on unreadable TLS material.
pub fn connector(
    tls: &UpstreamTls,
    connect_timeout: Duration,
    protocol: UpstreamProtocol,
    https: bool,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    // The https connector checks the scheme itself; allow plain TCP for http:// origins.
    tcp.enforce_http(false);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(tls, https)?)
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) => builder.with_server_name_resolver(FixedName(name.clone())),
        None => builder,
    };
    Ok(match protocol {
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(tcp),
        UpstreamProtocol::H2 => builder.enable_http2().wrap_connector(tcp),
    })
}

/// The connector of an upstream pool: TLS material read once, system roots only when a
/// server is https. Fails on unreadable TLS material.
pub fn pool_connector(cfg: &UpstreamConfig) -> Result<HttpsConnector<HttpConnector>, String> {
    let https = cfg
        .servers
        .iter()
        .any(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS));
    connector(&cfg.tls, cfg.connect_timeout, cfg.protocol, https)
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

/// Resolves every upstream to one configured server name (SNI + verification).
#[derive(Clone)]
struct FixedName(String);

impl hyper_rustls::ResolveServerName for FixedName {
    fn resolve(
        &self,
        _uri: &http::Uri,
    ) -> Result<ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(ServerName::try_from(self.0.clone())?)
    }
}

fn tls_config(t: &UpstreamTls, https: bool) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        // Plain-http origins only: an empty trust store (an https URL could not be verified
        // and fails, but none is configured).
        None if !https => {}
        None => {
            // Unreadable system certificates are skipped; the rest still verify.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    // ALPN is set by the connector builder from the enabled protocol.
    match &t.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| e.to_string()),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Reads a PEM certificate chain.
pub fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(file)).collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key found", path.display()))
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
