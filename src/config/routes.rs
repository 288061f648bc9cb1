//! `[[routes]]` and `[identity]`: what matches a request and what the upstream is told.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use http::{HeaderName, Method};

use super::file::{IdentityFile, RequireFile, RouteFile};
use super::report::Report;
use super::upstreams::inline;
use super::{
    ArrayEncoding, AuthMode, HostMatch, IdentityConfig, IssuerConfig, LoginConfig, PathMatch,
    Requirement, Responder, RouteConfig, Target, UpstreamConfig,
};
use crate::steering;

/// Headers an identity mapping may never take: the framing and routing ones, and ours.
const RESERVED: &[&str] = &[
    "x-identity",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "authorization",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "expect",
];

pub(super) fn identity(r: &mut Report, f: &IdentityFile) -> IdentityConfig {
    let arrays = match f.arrays.as_deref().unwrap_or("comma") {
        "comma" => ArrayEncoding::Comma,
        "json" => ArrayEncoding::Json,
        other => {
            r.problem(
                "identity.arrays",
                format!("unknown value `{other}`"),
                "use \"comma\" or \"json\"",
            );
            ArrayEncoding::Comma
        }
    };
    IdentityConfig {
        arrays,
        claims: claim_headers(r, "identity.claims", &f.claims),
    }
}

fn claim_headers(
    r: &mut Report,
    at: &str,
    map: &BTreeMap<String, String>,
) -> Vec<(HeaderName, String)> {
    let mut out = Vec::new();
    for (header, claim) in map {
        let key = format!("{at}.\"{header}\"");
        let Ok(name) = HeaderName::from_bytes(header.as_bytes()) else {
            r.problem(
                &key,
                format!("`{header}` is not a header name"),
                "write e.g. \"X-Identity-Roles\" = \"roles\"",
            );
            continue;
        };
        if RESERVED.contains(&name.as_str()) || name.as_str().contains('_') {
            r.problem(
                &key,
                format!("`{header}` cannot carry a claim"),
                "pick a name of your own, e.g. X-Identity-Roles",
            );
            continue;
        }
        if claim.is_empty() {
            r.problem(&key, "empty claim name", "name the claim, e.g. \"roles\"");
            continue;
        }
        out.push((name, claim.clone()));
    }
    out
}

fn host(r: &mut Report, key: &str, text: &str) -> Option<HostMatch> {
    let lower = text.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if name.is_empty() || !name.split('.').all(label_ok) {
        r.problem(
            key,
            format!("`{text}` is not a host name"),
            "write e.g. \"api.example.com\" or \"*.example.com\" (no port)",
        );
        return None;
    }
    Some(if wild {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_string())
    })
}

/// A route path: absolute, no query, no dot segments, no escapes.
fn route_path(r: &mut Report, key: &str, path: &Option<String>, kind: PathMatch) -> String {
    let Some(p) = path else {
        r.problem(key, "missing", "add path = \"/api/\"");
        return "/".into();
    };
    if !p.starts_with('/')
        || p.contains(['?', '#', '\\', '%'])
        || p.split('/').any(|s| s == "." || s == "..")
        || p.contains("//")
    {
        r.problem(
            key,
            format!("`{p}` is not a plain absolute path"),
            "write e.g. \"/api/\": no query, no dot segments, no escapes",
        );
        return "/".into();
    }
    if kind == PathMatch::Exact {
        return p.clone();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

fn requirements(r: &mut Report, at: &str, map: &BTreeMap<String, RequireFile>) -> Vec<Requirement> {
    let mut out = Vec::new();
    for (claim, req) in map {
        let key = format!("{at}.{claim}");
        let (values, all) = match req {
            RequireFile::AnyOf(v) => (v.clone(), false),
            RequireFile::Explicit(t) => match (&t.any_of, &t.all_of) {
                (Some(v), None) => (v.clone(), false),
                (None, Some(v)) => (v.clone(), true),
                _ => {
                    r.problem(
                        &key,
                        "needs exactly one of any_of / all_of",
                        "write { any_of = [\"a\"] } or { all_of = [\"a\", \"b\"] }",
                    );
                    continue;
                }
            },
        };
        if values.is_empty() {
            r.problem(
                &key,
                "an empty requirement",
                "list the accepted values, or remove the claim",
            );
            continue;
        }
        out.push(Requirement {
            claim: claim.clone(),
            values,
            all,
        });
    }
    out
}

fn methods(r: &mut Report, key: &str, list: &[String]) -> Option<Vec<Method>> {
    if list.is_empty() {
        r.problem(
            key,
            "an empty method list",
            "leave methods out to allow every method",
        );
        return None;
    }
    let mut out = Vec::new();
    for m in list {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(method) if method != Method::CONNECT => out.push(method),
            _ => r.problem(
                key,
                format!("`{m}` is not an allowed method"),
                "use e.g. [\"GET\", \"POST\"]",
            ),
        }
    }
    Some(out)
}

pub(super) fn routes(
    r: &mut Report,
    list: &[RouteFile],
    login: Option<&LoginConfig>,
    upstreams: &mut Vec<UpstreamConfig>,
    issuers: &[IssuerConfig],
) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let at = format!("routes[{i}]");
        let path_match = match f.match_kind.as_deref().unwrap_or("prefix") {
            "prefix" => PathMatch::Prefix,
            "exact" => PathMatch::Exact,
            other => {
                r.problem(
                    format!("{at}.match"),
                    format!("unknown value `{other}`"),
                    "use \"prefix\" or \"exact\"",
                );
                PathMatch::Prefix
            }
        };
        let path = route_path(r, &format!("{at}.path"), &f.path, path_match);
        let host = f
            .host
            .as_ref()
            .and_then(|h| host(r, &format!("{at}.host"), h));
        let methods = f
            .methods
            .as_ref()
            .and_then(|m| methods(r, &format!("{at}.methods"), m));
        if let Some(l) = login {
            let login_path = l.path.trim_end_matches('/');
            if path == login_path || (path_match == PathMatch::Exact && path == l.path) {
                r.problem(
                    format!("{at}.path"),
                    format!("`{path}` is the login path"),
                    "the login endpoint answers there; pick another path",
                );
            }
        }
        let auth = match f.auth.as_deref() {
            Some("required") => AuthMode::Required,
            Some("public") => AuthMode::Public,
            Some(other) => {
                r.problem(
                    format!("{at}.auth"),
                    format!("unknown value `{other}`"),
                    "use \"required\" or \"public\"",
                );
                AuthMode::Required
            }
            None => {
                r.problem(
                    format!("{at}.auth"),
                    "missing",
                    "say auth = \"required\" or auth = \"public\" explicitly",
                );
                AuthMode::Required
            }
        };
        let require = f
            .require
            .as_ref()
            .map(|m| requirements(r, &format!("{at}.require"), m))
            .unwrap_or_default();
        let claim_headers = f
            .claim_headers
            .as_ref()
            .map(|m| claim_headers(r, &format!("{at}.claim_headers"), m))
            .unwrap_or_default();
        if auth == AuthMode::Public && (!require.is_empty() || !claim_headers.is_empty()) {
            r.problem(
                &at,
                "require and claim_headers need auth = \"required\"",
                "a public route has no claims to check or forward",
            );
        }
        let connect_timeout = f.connect_timeout.as_ref().map(|t| {
            r.duration(
                &format!("{at}.connect_timeout"),
                Some(t),
                Duration::from_secs(5),
            )
        });
        let target = match (&f.upstream, &f.respond) {
            (Some(u), None) if u.contains("://") => inline(
                r,
                &at,
                &format!("{at}.upstream"),
                u,
                connect_timeout.unwrap_or(Duration::from_secs(5)),
            )
            .map(|pool| {
                upstreams.push(pool);
                Target::Upstream(at.clone())
            }),
            (Some(name), None) => {
                if connect_timeout.is_some() {
                    r.problem(
                        format!("{at}.connect_timeout"),
                        "set on a named upstream",
                        format!("set connect_timeout in [upstreams.{name}]"),
                    );
                }
                if upstreams.iter().any(|u| &u.name == name) {
                    Some(Target::Upstream(name.clone()))
                } else {
                    r.problem(
                        format!("{at}.upstream"),
                        format!("no upstream named `{name}`"),
                        "define [upstreams.NAME] or write a URL like \"http://127.0.0.1:9000\"",
                    );
                    None
                }
            }
            (None, Some(name)) => match name.as_str() {
                "identity" => {
                    if auth == AuthMode::Public {
                        r.problem(
                            format!("{at}.respond"),
                            "the identity responder needs auth = \"required\"",
                            "set auth = \"required\"",
                        );
                    }
                    Some(Target::Respond(Responder::Identity))
                }
                other => {
                    r.problem(
                        format!("{at}.respond"),
                        format!("unknown responder `{other}`"),
                        "the built-in responder is \"identity\"",
                    );
                    None
                }
            },
            (Some(_), Some(_)) => {
                r.problem(
                    &at,
                    "both upstream and respond are set",
                    "a route has one target: keep one",
                );
                None
            }
            (None, None) => {
                r.problem(
                    &at,
                    "no target",
                    "add upstream = \"http://127.0.0.1:9000\" (or respond = \"identity\")",
                );
                None
            }
        };
        let rewrite_prefix = match (f.strip_prefix.unwrap_or(false), &f.rewrite_prefix) {
            (false, None) => None,
            (true, None) => Some(String::new()),
            (false, Some(p)) if p.starts_with('/') && !p.contains(['?', '#', '%', '\\']) => {
                Some(p.trim_end_matches('/').to_string())
            }
            (false, Some(p)) => {
                r.problem(
                    format!("{at}.rewrite_prefix"),
                    format!("`{p}` is not an absolute path"),
                    "write e.g. \"/v2\"",
                );
                None
            }
            (true, Some(_)) => {
                r.problem(
                    &at,
                    "strip_prefix and rewrite_prefix both set",
                    "strip_prefix is rewrite_prefix = \"\": keep one",
                );
                None
            }
        };
        if rewrite_prefix.is_some() && path_match == PathMatch::Exact {
            r.problem(
                &at,
                "prefix rewriting on an exact-match route",
                "use match = \"prefix\"",
            );
        }
        let preserve_host = f.preserve_host.unwrap_or_else(|| match &target {
            Some(Target::Upstream(name)) => {
                upstreams.iter().any(|u| &u.name == name && u.preserve_host)
            }
            _ => false,
        });
        let pass_headers = f
            .pass_headers
            .as_ref()
            .map(|names| pass_headers(r, &format!("{at}.pass_headers"), names))
            .unwrap_or_default();
        let route = RouteConfig {
            name: route_name(r, &at, f.name.as_deref(), &out),
            at: at.clone(),
            host,
            path,
            path_match,
            methods,
            target: target.unwrap_or(Target::Respond(Responder::Identity)),
            auth,
            require,
            claim_headers,
            rewrite_prefix,
            forward_authorization: f.forward_authorization.unwrap_or(false),
            pass_headers,
            preserve_host,
            timeout: f
                .timeout
                .as_ref()
                .map(|t| r.duration(&format!("{at}.timeout"), Some(t), Duration::from_secs(30))),
            issuers: super::issuers::route_issuers(r, &at, f, issuers),
            browser: f.browser.unwrap_or(false),
            max_body: f
                .max_body
                .as_ref()
                .map(|s| r.size(&format!("{at}.max_body"), Some(s), 0)),
        };
        if let Some(earlier) = out.iter().find(|o| shadows(o, &route)) {
            r.problem(
                format!("{at}.path"),
                format!(
                    "`{}` overlaps {} (same host, path and methods)",
                    route.path,
                    label(earlier)
                ),
                "two routes that match the same requests would shadow each other: merge them or \
                    split their methods",
            );
        }
        out.push(route);
    }
    out
}

/// A route's `name`: letters, digits, `.`, `_` and `-`, unique among the routes. Without
/// one, the key path names the route.
fn route_name(r: &mut Report, at: &str, name: Option<&str>, earlier: &[RouteConfig]) -> String {
    let Some(name) = name else {
        return at.to_string();
    };
    let valid = !name.is_empty()
        && name != "-"
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        r.problem(
            format!("{at}.name"),
            format!("`{name}` is not a route name"),
            "use up to 64 letters, digits, '.', '_' or '-', e.g. name = \"orders-api\"",
        );
        return at.to_string();
    }
    if let Some(other) = earlier.iter().find(|o| o.name == name) {
        r.problem(
            format!("{at}.name"),
            format!("`{name}` is already the name of {}", other.at),
            "route names label metrics and logs: give each route its own",
        );
    }
    name.to_string()
}

/// How a message names a route: its key path, and its name when it has one.
fn label(route: &RouteConfig) -> String {
    if route.name == route.at {
        route.at.clone()
    } else {
        format!("{} (`{}`)", route.at, route.name)
    }
}

/// A route's `pass_headers`: only steering headers of a passable kind. Each one passed is
/// a warning, since the backend behind it then believes what the client says.
fn pass_headers(r: &mut Report, at: &str, names: &[String]) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = format!("{at}[{i}]");
        match steering::lookup(name) {
            Some(kind) if kind.passable() => {
                r.warning(
                    &key,
                    format!("`{name}` from clients reaches this route's backend unchanged"),
                    "pass it only to a backend that must read it and checks what it says",
                );
                if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
                    out.push(h);
                }
            }
            Some(_) => r.problem(
                &key,
                format!("`{name}` can never be passed"),
                "client addresses come from X-Forwarded-For and X-Real-IP, which the gateway \
                 sets (see trust_forwarded); proxy credentials are never forwarded",
            ),
            None => r.problem(
                &key,
                format!("`{name}` is not a header the gateway strips"),
                "pass_headers names steering headers listed in SECURITY.md (e.g. \
                 X-HTTP-Method-Override); other headers pass already, identity headers never",
            ),
        }
    }
    out
}

/// Two routes tie when they match the same host, path and kind, and either both list
/// methods that overlap or neither lists any (a method list is more specific than none).
fn shadows(a: &RouteConfig, b: &RouteConfig) -> bool {
    if a.host != b.host || a.path != b.path || a.path_match != b.path_match {
        return false;
    }
    match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => {
            let xs: HashSet<&Method> = x.iter().collect();
            y.iter().any(|m| xs.contains(m))
        }
        (None, None) => true,
        _ => false,
    }
}
