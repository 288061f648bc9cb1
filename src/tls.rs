//! rustls configurations from files. Server side: certificates chosen by SNI, client
//! certificate verification, protocol versions, ALPN. Client side: the outbound connector
//! (upstreams, JWKS fetches) with its trust anchors and client certificate. The PEM readers
//! both use. One crypto provider (aws-lc-rs) for TLS and tokens.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};

use crate::config::{CertPaths, ClientAuth, TlsListenerConfig, UpstreamProtocol, UpstreamTls};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certified(paths: &CertPaths, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let certs = read_certs(&paths.cert)?;
    let key = read_key(&paths.key)?;
    CertifiedKey::from_der(certs, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("{} with {}: {e}", paths.cert.display(), paths.key.display()))
}

/// Picks a certificate by SNI: exact name, then `*.suffix` for one more label, then the
/// default (unless unknown names are refused).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `.example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    reject_unknown: bool,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(c) = self.exact.get(&name) {
            return Some(c.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(&format!(".{parent}")) {
                return Some(c.clone());
            }
        }
        if self.reject_unknown {
            tracing::debug!(server_name = %name, "no certificate for this name; refusing the \
                handshake");
            return None;
        }
        self.default.clone()
    }
}

/// Builds the rustls server config of a TLS listener. Errors name the file at fault.
pub fn server_config(t: &TlsListenerConfig) -> Result<ServerConfig, String> {
    let provider = provider();
    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default: t
            .default
            .as_ref()
            .map(|p| certified(p, &provider))
            .transpose()?,
        reject_unknown: t.reject_unknown,
    };
    for (names, paths) in &t.sni {
        let key = certified(paths, &provider)?;
        for n in names {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix('*') {
                Some(suffix) => resolver.wildcard.insert(suffix.to_string(), key.clone()),
                None => resolver.exact.insert(n, key.clone()),
            };
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if t.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match (&t.client_ca, t.client_auth) {
        (Some(ca), auth) if auth != ClientAuth::None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Request {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The first certificate's expiry (Unix seconds) in a PEM file.
pub fn not_after(path: &Path) -> Result<i64, String> {
    let certs = read_certs(path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The subject of a DER certificate, as RFC 4514 text (`CN=client-1,O=Example`).
pub fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}

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
    let builder = ClientConfig::builder_with_provider(provider())
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
