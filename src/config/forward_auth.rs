//! `[forward_auth]`: where the decision endpoints live, which proxies' contracts they speak,
//! whom they believe, and how long an allow may be cached.

use std::net::SocketAddr;
use std::time::Duration;

use super::file::ForwardAuthFile;
use super::report::Report;
use super::{Contract, ForwardAuthConfig, Front, ListenerConfig, RouteConfig, ServerConfig};

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
    // One list of the proxies in front, unless the endpoints need their own (a listener
    // only the proxy reaches may trust every address without widening X-Forwarded-For
    // trust on the public listeners).
    let trusted_proxies = match &f.trusted_proxies {
        None => server.trusted_proxies.clone(),
        Some(list) => {
            super::proxies::trusted_proxies(r, "forward_auth.trusted_proxies", Some(list))
        }
    };
    let key = if f.trusted_proxies.is_some() {
        "forward_auth.trusted_proxies"
    } else {
        "server.trusted_proxies"
    };
    if trusted_proxies.is_empty() {
        r.problem(
            key,
            "empty: no proxy may describe a request to the forward-auth endpoints",
            "list the proxies in front in [server] trusted_proxies (e.g. [\"127.0.0.1/32\"]), \
             or give [forward_auth] a trusted_proxies list of its own",
        );
    }
    if listen.is_none() {
        for (i, net) in trusted_proxies.iter().enumerate() {
            if net.prefix_len() == 0 {
                r.problem(
                    format!("{key}[{i}]"),
                    format!(
                        "`{net}` trusts every address, but the endpoints share the public \
                         listeners"
                    ),
                    "list the proxy's addresses, or give the endpoints a listener only the \
                     proxy reaches ([forward_auth] listen = ...)",
                );
            }
        }
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
