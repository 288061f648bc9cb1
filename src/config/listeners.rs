//! `[[listeners]]`: several listeners, plain or TLS (certificates by SNI, client
//! certificates, HSTS, redirects to HTTPS). Certificate files are named here and built by
//! the load stage (`crate::load`), so `check` catches a broken or expiring certificate
//! before a start or a reload does.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::file::{ListenerFile, ListenerTlsFile};
use super::report::{resolve, Report};
use super::{CertPaths, ClientAuth, Front, ListenerConfig, TlsListenerConfig};

/// The listeners; `listen` (from `[server]`) is the single plain one when none are listed.
pub(super) fn listeners(
    r: &mut Report,
    list: &[ListenerFile],
    listen: Option<SocketAddr>,
    base: &Path,
) -> Vec<ListenerConfig> {
    if list.is_empty() {
        return vec![ListenerConfig {
            addr: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            tls: None,
            redirect_https_port: None,
            front: Front::Proxy,
        }];
    }
    if listen.is_some() {
        r.problem(
            "server.listen",
            "set together with [[listeners]]",
            "move it into a [[listeners]] entry: addr = \"...\"",
        );
    }
    let mut out = Vec::new();
    for (i, l) in list.iter().enumerate() {
        let at = format!("listeners[{i}]");
        let text = l.addr.as_deref().unwrap_or("");
        let Ok(addr) = text.parse::<SocketAddr>() else {
            r.problem(
                format!("{at}.addr"),
                format!("`{text}` is not an address:port"),
                "write e.g. \"0.0.0.0:8443\"",
            );
            continue;
        };
        if out
            .iter()
            .any(|o: &ListenerConfig| o.addr == addr && addr.port() != 0)
        {
            r.problem(
                format!("{at}.addr"),
                format!("{addr} is listed twice"),
                "each listener needs its own address",
            );
        }
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| tls(r, &format!("{at}.tls"), t, base));
        if l.redirect_https_port.is_some() && l.tls.is_some() {
            r.problem(
                format!("{at}.redirect_https_port"),
                "set on a TLS listener",
                "redirects belong on the plain listener",
            );
        }
        out.push(ListenerConfig {
            addr,
            tls,
            redirect_https_port: l.redirect_https_port,
            front: Front::Proxy,
        });
    }
    out
}

fn cert_paths(
    r: &mut Report,
    at: &str,
    cert: &Option<String>,
    key: &Option<String>,
    base: &Path,
) -> Option<CertPaths> {
    match (cert, key) {
        (Some(c), Some(k)) => Some(CertPaths {
            cert: resolve(base, c),
            key: resolve(base, k),
        }),
        (None, None) => None,
        _ => {
            r.problem(
                at,
                "cert and key go together",
                "set both cert and key (PEM files)",
            );
            None
        }
    }
}

fn tls(r: &mut Report, at: &str, t: &ListenerTlsFile, base: &Path) -> Option<TlsListenerConfig> {
    let default = cert_paths(r, at, &t.cert, &t.key, base);
    let mut sni = Vec::new();
    for (i, c) in t.certificates.iter().enumerate() {
        let key = format!("{at}.certificates[{i}]");
        if c.names.is_empty() {
            r.problem(
                &key,
                "no names",
                "list the server names it serves, e.g. names = \
                [\"api.example.com\", \"*.example.com\"]",
            );
        }
        for n in &c.names {
            let plain = n.strip_prefix("*.").unwrap_or(n);
            if plain.is_empty()
                || plain.contains('*')
                || !plain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                r.problem(
                    format!("{key}.names"),
                    format!("`{n}` is not a server name"),
                    "write \"api.example.com\" or \"*.example.com\"",
                );
            }
        }
        match cert_paths(r, &key, &c.cert, &c.key, base) {
            Some(p) => sni.push((c.names.clone(), p)),
            None => r.problem(&key, "missing cert and key", "set cert and key (PEM files)"),
        }
    }
    if default.is_none() && sni.is_empty() {
        r.problem(
            at,
            "no certificate",
            "set cert and key (and optionally certificates = [...] chosen by SNI)",
        );
        return None;
    }
    let reject_unknown = match t.unknown_names.as_deref().unwrap_or("default") {
        "default" => false,
        "reject" => true,
        other => {
            r.problem(
                format!("{at}.unknown_names"),
                format!("unknown value `{other}`"),
                "use \"default\" or \"reject\"",
            );
            false
        }
    };
    if !reject_unknown && default.is_none() {
        r.problem(
            at,
            "unknown names get the default certificate, but there is none",
            "set cert and key, or unknown_names = \"reject\"",
        );
    }
    let tls13_only = match t.min_version.as_deref().unwrap_or("1.2") {
        "1.2" => false,
        "1.3" => true,
        other => {
            r.problem(
                format!("{at}.min_version"),
                format!("unsupported version `{other}`"),
                "use \"1.2\" or \"1.3\"",
            );
            false
        }
    };
    let client_auth = match t
        .client_auth
        .as_deref()
        .unwrap_or(if t.client_ca.is_some() {
            "require"
        } else {
            "none"
        }) {
        "none" => ClientAuth::None,
        "request" => ClientAuth::Request,
        "require" => ClientAuth::Require,
        other => {
            r.problem(
                format!("{at}.client_auth"),
                format!("unknown value `{other}`"),
                "use \"none\", \"request\" or \"require\"",
            );
            ClientAuth::None
        }
    };
    let client_ca = t.client_ca.as_ref().map(|c| resolve(base, c));
    if client_auth != ClientAuth::None && client_ca.is_none() {
        r.problem(
            format!("{at}.client_ca"),
            "client certificates need a CA to verify them",
            "set client_ca = \"clients-ca.pem\"",
        );
    }
    let client_subject_header =
        t.client_subject_header
            .as_ref()
            .and_then(|h| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    r.problem(
                        format!("{at}.client_subject_header"),
                        format!("`{h}` is not a header name"),
                        "write e.g. \"X-Client-Subject\"",
                    );
                    None
                }
            });
    let hsts = t
        .hsts
        .as_ref()
        .and_then(|h| match HeaderValue::from_str(h) {
            Ok(v) if h.starts_with("max-age=") => Some(v),
            _ => {
                r.problem(
                    format!("{at}.hsts"),
                    format!("`{h}` is not a Strict-Transport-Security value"),
                    "write e.g. \"max-age=63072000; includeSubDomains\"",
                );
                None
            }
        });
    let config = TlsListenerConfig {
        at: at.to_string(),
        default,
        sni,
        reject_unknown,
        tls13_only,
        client_ca,
        client_auth,
        client_subject_header,
        hsts,
        handshake_timeout: r.duration(
            &format!("{at}.handshake_timeout"),
            t.handshake_timeout.as_ref(),
            Duration::from_secs(10),
        ),
        expiry_warning_days: t.expiry_warning_days.unwrap_or(14),
    };
    Some(config)
}
