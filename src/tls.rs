//! rustls server configurations from files: certificates chosen by SNI, client certificate
//! verification, protocol versions, ALPN. One crypto provider (aws-lc-rs) for TLS and tokens.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{CertPaths, ClientAuth, TlsListenerConfig};
use crate::proxy::client::{read_certs, read_key};

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
            tracing::debug!(server_name = %name, "no certificate for this name; refusing the handshake");
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
