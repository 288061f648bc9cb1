//! `[upstreams.NAME]` pools, and the one-server pools behind inline route URLs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::Uri;

use super::file::{HealthFile, UpstreamFile, UpstreamTlsFile};
use super::report::{resolve, Report};
use super::{Balance, HealthConfig, UpstreamConfig, UpstreamProtocol, UpstreamTls};

pub(super) fn upstreams(
    r: &mut Report,
    map: &BTreeMap<String, UpstreamFile>,
    base: &Path,
) -> Vec<UpstreamConfig> {
    let mut out = Vec::new();
    for (name, f) in map {
        let at = format!("upstreams.{name}");
        if name.is_empty() || name.contains("://") || name.contains('[') {
            r.problem(
                &at,
                "upstream names are plain words",
                "write e.g. [upstreams.api]",
            );
            continue;
        }
        if f.servers.is_empty() {
            r.problem(
                format!("{at}.servers"),
                "no servers",
                "add servers = [\"http://127.0.0.1:9000\"]",
            );
        }
        let servers: Vec<Uri> = f
            .servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| origin(r, &format!("{at}.servers[{i}]"), s))
            .collect();
        if servers
            .windows(2)
            .any(|w| w[0].scheme_str() != w[1].scheme_str())
        {
            r.problem(
                format!("{at}.servers"),
                "servers mix http:// and https://",
                "one pool speaks one scheme: split it into two upstreams",
            );
        }
        let balance = match f.balance.as_deref().unwrap_or("round_robin") {
            "round_robin" => Balance::RoundRobin,
            "least_outstanding" => Balance::LeastOutstanding,
            other => {
                r.problem(
                    format!("{at}.balance"),
                    format!("unknown value `{other}`"),
                    "use \"round_robin\" or \"least_outstanding\"",
                );
                Balance::RoundRobin
            }
        };
        let protocol = match f.protocol.as_deref().unwrap_or("http1") {
            "http1" => UpstreamProtocol::Http1,
            "h2" => UpstreamProtocol::H2,
            other => {
                r.problem(
                    format!("{at}.protocol"),
                    format!("unknown value `{other}`"),
                    "use \"http1\" or \"h2\"",
                );
                UpstreamProtocol::Http1
            }
        };
        let retries = f.retries.unwrap_or(1);
        if retries > 10 {
            r.problem(
                format!("{at}.retries"),
                "more than 10 retries",
                "1 or 2 is plenty: retries only cover connections that could not be made",
            );
        }
        let health = f
            .health
            .as_ref()
            .map(|h| health(r, &format!("{at}.health"), h));
        let is_https = servers
            .first()
            .is_some_and(|s| s.scheme_str() == Some("https"));
        let tls = match &f.tls {
            Some(t) => {
                if !is_https {
                    r.problem(
                        format!("{at}.tls"),
                        "tls settings on an http:// pool",
                        "use https:// servers, or remove [upstreams.NAME.tls]",
                    );
                }
                tls(r, &format!("{at}.tls"), t, base)
            }
            None => UpstreamTls::default(),
        };
        out.push(UpstreamConfig {
            name: name.clone(),
            servers,
            balance,
            protocol,
            connect_timeout: r.duration(
                &format!("{at}.connect_timeout"),
                f.connect_timeout.as_ref(),
                Duration::from_secs(5),
            ),
            response_timeout: r.duration(
                &format!("{at}.response_timeout"),
                f.response_timeout.as_ref(),
                Duration::from_secs(30),
            ),
            idle_timeout: r.duration(
                &format!("{at}.idle_timeout"),
                f.idle_timeout.as_ref(),
                Duration::from_secs(90),
            ),
            retries,
            preserve_host: f.preserve_host.unwrap_or(false),
            eject_for: r.duration(
                &format!("{at}.eject_for"),
                f.eject_for.as_ref(),
                Duration::from_secs(10),
            ),
            health,
            tls,
        });
    }
    out
}

/// The pool behind `upstream = "http://..."` written directly on a route.
pub(super) fn inline(
    r: &mut Report,
    name: &str,
    key: &str,
    url: &str,
    connect_timeout: Duration,
) -> Option<UpstreamConfig> {
    let server = origin(r, key, url)?;
    Some(UpstreamConfig {
        name: name.to_string(),
        servers: vec![server],
        balance: Balance::RoundRobin,
        protocol: UpstreamProtocol::Http1,
        connect_timeout,
        response_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(90),
        retries: 1,
        preserve_host: false,
        eject_for: Duration::ZERO,
        health: None,
        tls: UpstreamTls::default(),
    })
}

/// `http(s)://host:port[/base]`, nothing else.
fn origin(r: &mut Report, key: &str, text: &str) -> Option<Uri> {
    let uri: Uri = match text.parse() {
        Ok(u) => u,
        Err(e) => {
            r.problem(
                key,
                format!("`{text}` is not a URL: {e}"),
                "write e.g. \"http://127.0.0.1:9000\"",
            );
            return None;
        }
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        r.problem(
            key,
            format!("`{text}` has no http:// or https:// scheme"),
            "write e.g. \"http://127.0.0.1:9000\"",
        );
        return None;
    }
    if uri.authority().is_none()
        || uri.query().is_some()
        || uri.authority().is_some_and(|a| a.as_str().contains('@'))
    {
        r.problem(
            key,
            format!("`{text}` must be scheme://host:port with an optional base path"),
            "write e.g. \"http://127.0.0.1:9000\"",
        );
        return None;
    }
    Some(uri)
}

fn health(r: &mut Report, at: &str, h: &HealthFile) -> HealthConfig {
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        r.problem(
            format!("{at}.path"),
            format!("`{path}` must start with /"),
            "write e.g. \"/healthz\"",
        );
    }
    let interval = r.duration(
        &format!("{at}.interval"),
        h.interval.as_ref(),
        Duration::from_secs(5),
    );
    if interval.is_zero() {
        r.problem(
            format!("{at}.interval"),
            "must be more than 0s",
            "write e.g. \"5s\"",
        );
    }
    let healthy_threshold = h.healthy_threshold.unwrap_or(2);
    let unhealthy_threshold = h.unhealthy_threshold.unwrap_or(3);
    if healthy_threshold == 0 || unhealthy_threshold == 0 {
        r.problem(
            at,
            "thresholds must be at least 1",
            "leave them out (defaults 2 and 3)",
        );
    }
    HealthConfig {
        path,
        interval,
        timeout: r.duration(
            &format!("{at}.timeout"),
            h.timeout.as_ref(),
            Duration::from_secs(2),
        ),
        healthy_threshold,
        unhealthy_threshold,
    }
}

fn tls(r: &mut Report, at: &str, t: &UpstreamTlsFile, base: &Path) -> UpstreamTls {
    let mut file = |key: &str, value: &Option<String>| {
        value.as_ref().and_then(|p| {
            let full = resolve(base, p);
            if full.is_file() {
                Some(full)
            } else {
                r.problem(
                    format!("{at}.{key}"),
                    format!("{} does not exist", full.display()),
                    "fix the path (relative paths start at the config file's folder)",
                );
                None
            }
        })
    };
    let ca_file = file("ca_file", &t.ca_file);
    let cert = file("client_cert_file", &t.client_cert_file);
    let key = file("client_key_file", &t.client_key_file);
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            if t.client_cert_file.is_some() != t.client_key_file.is_some() {
                r.problem(
                    at,
                    "client_cert_file and client_key_file go together",
                    "set both, or neither",
                );
            }
            None
        }
    };
    UpstreamTls {
        ca_file,
        client_cert,
        server_name: t.server_name.clone(),
    }
}
