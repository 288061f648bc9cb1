//! `[forward_auth]`: where the decision endpoints live, which proxies' contracts they speak,
//! whom they believe, and how long an allow may be cached.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::file::ForwardAuthFile;
use super::report::Report;
use super::{Contract, ForwardAuthConfig, Front, ListenerConfig, RouteConfig, ServerConfig};

/// Loopback only: a proxy on the same host.
const DEFAULT_TRUSTED: [&str; 2] = ["127.0.0.1/32", "::1/128"];

pub(super) fn forward_auth(
    r: &mut Report,
    f: &ForwardAuthFile,
    server: &mut ServerConfig,
    routes: &[RouteConfig],
    taken_paths: &[&str],
) -> ForwardAuthConfig {
    let listen = f.listen.as_deref().and_then(|text| {
        let Ok(addr) = text.parse::<SocketAddr>() else {
            r.problem(
                "forward_auth.listen",
                format!("`{text}` is not an address:port"),
                "write e.g. \"127.0.0.1:9191\", or leave it out to serve the paths on the \
                 main listeners",
            );
            return None;
        };
        if addr.port() != 0 && server.listeners.iter().any(|l| l.addr == addr) {
            r.problem(
                "forward_auth.listen",
                format!("{addr} is also a [[listeners]] address"),
                "give the decision endpoints their own address, or leave listen out to serve \
                 them on the main listeners",
            );
        }
        Some(addr)
    });
    let path = f.path.clone().unwrap_or_else(|| "/forward-auth".into());
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
        r.problem(
            "forward_auth.path",
            format!("`{path}` is not a path prefix"),
            "write e.g. \"/forward-auth\" (leading slash, no trailing slash)",
        );
    }
    if listen.is_none() {
        // On the main listeners the endpoints are answered before routing: a route under
        // them would never be reached.
        let under = |p: &str| p == path || p.starts_with(&format!("{path}/"));
        for route in routes.iter().filter(|route| under(&route.path)) {
            r.problem(
                format!("{}.path", route.name),
                format!("`{}` is under the forward-auth path `{path}`", route.path),
                "move the route, or set [forward_auth] path (or listen) elsewhere",
            );
        }
        for taken in taken_paths.iter().filter(|t| under(t)) {
            r.problem(
                "forward_auth.path",
                format!("`{path}` covers `{taken}`, which the gateway already answers"),
                "choose another prefix, e.g. \"/forward-auth\"",
            );
        }
    }
    let contracts = match &f.contracts {
        None => Contract::ALL.to_vec(),
        Some(names) => {
            let mut out = Vec::new();
            for name in names {
                match Contract::ALL.iter().find(|c| c.name() == name) {
                    Some(c) if !out.contains(c) => out.push(*c),
                    Some(_) => {}
                    None => r.problem(
                        "forward_auth.contracts",
                        format!("unknown contract `{name}`"),
                        "use \"nginx\", \"traefik\", \"caddy\" and/or \"envoy\"",
                    ),
                }
            }
            if out.is_empty() && names.is_empty() {
                r.problem(
                    "forward_auth.contracts",
                    "no contract is enabled",
                    "list at least one of \"nginx\", \"traefik\", \"caddy\", \"envoy\", or \
                     remove [forward_auth]",
                );
            }
            out
        }
    };
    let trusted_text: Vec<String> = match &f.trusted_proxies {
        Some(list) => list.clone(),
        None => DEFAULT_TRUSTED.iter().map(|s| s.to_string()).collect(),
    };
    let mut trusted_proxies = Vec::new();
    for (i, text) in trusted_text.iter().enumerate() {
        // A bare address is a one-address block.
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => {
                if net.prefix_len() == 0 && listen.is_none() {
                    r.problem(
                        format!("forward_auth.trusted_proxies[{i}]"),
                        format!(
                            "`{text}` trusts every address, but the endpoints share the \
                             public listeners"
                        ),
                        "list the proxy's addresses, or give the endpoints a listener only \
                         the proxy reaches (listen = ...)",
                    );
                }
                trusted_proxies.push(net.trunc());
            }
            Err(_) => r.problem(
                format!("forward_auth.trusted_proxies[{i}]"),
                format!("`{text}` is not an address or CIDR block"),
                "write e.g. \"10.0.0.0/8\", \"192.168.1.7\" or \"::1/128\"",
            ),
        }
    }
    if trusted_proxies.is_empty() && f.trusted_proxies.as_ref().is_some_and(|l| l.is_empty()) {
        r.problem(
            "forward_auth.trusted_proxies",
            "empty: no proxy would be believed",
            "list the proxy's addresses, e.g. [\"127.0.0.1/32\"]",
        );
    }
    let max_age = r.duration(
        "forward_auth.max_age",
        f.max_age.as_ref(),
        Duration::from_secs(60),
    );
    if let Some(addr) = listen {
        server.listeners.push(ListenerConfig {
            addr,
            tls: None,
            redirect_https_port: None,
            front: Front::ForwardAuth,
        });
    }
    ForwardAuthConfig {
        listen,
        path,
        contracts,
        trusted_proxies,
        max_age,
    }
}
