//! `[[issuers]]` (external identity providers), `[jwks]` (our published keys) and the
//! `issuers` list of a route → typed config, every problem with its key path.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use http::Uri;

use super::file::{IssuerFile, JwksFile, RouteFile};
use super::report::{resolve, Report};
use super::{IssuerConfig, JwksConfig, JwksSource, RequiredClaims, UpstreamTls};

/// Validates `[[issuers]]`.
/// `ours` is `[tokens] issuer`: an external issuer may not claim it, or our own tokens
/// would be sent to its keys.
pub(super) fn issuers(
    r: &mut Report,
    list: &[IssuerFile],
    base: &Path,
    ours: Option<&str>,
) -> Vec<IssuerConfig> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, f) in list.iter().enumerate() {
        let at = format!("issuers[{i}]");
        let issuer = match &f.issuer {
            Some(s) if !s.is_empty() => s.clone(),
            _ => {
                r.problem(
                    format!("{at}.issuer"),
                    "missing or empty",
                    "write the exact `iss` of the IdP's tokens, e.g. \
                        \"https://idp.example/realms/main\"",
                );
                continue;
            }
        };
        if ours == Some(issuer.as_str()) {
            r.problem(
                format!("{at}.issuer"),
                format!("`{issuer}` is this gateway's own [tokens] issuer"),
                "external issuers need their own iss; our tokens are always accepted",
            );
        }
        if !seen.insert(issuer.clone()) {
            r.problem(
                format!("{at}.issuer"),
                format!("`{issuer}` is listed twice"),
                "merge the two entries",
            );
        }
        let audiences = f.audiences.clone().unwrap_or_default();
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            r.problem(
                format!("{at}.audiences"),
                "at least one non-empty audience is required",
                "list the `aud` values meant for this gateway: a token for another API must not \
                    pass",
            );
        }
        let jwks = match (&f.jwks_url, &f.jwks_file) {
            (Some(url), None) => match jwks_url(url) {
                Ok(u) => JwksSource::Url(u),
                Err(why) => {
                    r.problem(
                        format!("{at}.jwks_url"),
                        why,
                        "write e.g. \"http://idp.internal:8080/certs\"",
                    );
                    continue;
                }
            },
            (None, Some(file)) => JwksSource::File(resolve(base, file)),
            _ => {
                r.problem(
                    &at,
                    "needs exactly one of jwks_url and jwks_file",
                    "jwks_url is fetched and refreshed; jwks_file is read at start",
                );
                continue;
            }
        };
        let identity_claim = f.identity_claim.clone().unwrap_or_else(|| "sub".into());
        if ["exp", "iat", "nbf", "aud", "iss", ""].contains(&identity_claim.as_str()) {
            r.problem(
                format!("{at}.identity_claim"),
                format!("`{identity_claim}` cannot hold the identity"),
                "leave it out (default \"sub\")",
            );
        }
        let mut required = RequiredClaims {
            iat: false,
            nbf: false,
        };
        let mut required_custom = Vec::new();
        for name in f
            .required_claims
            .clone()
            .unwrap_or_else(|| vec!["exp".into()])
        {
            match name.as_str() {
                "exp" => {}
                "iat" => required.iat = true,
                "nbf" => required.nbf = true,
                _ => required_custom.push(name),
            }
        }
        let d = |r: &mut Report, name: &str, v: &Option<String>, default: u64| {
            r.duration(
                &format!("{at}.{name}"),
                v.as_ref(),
                Duration::from_secs(default),
            )
        };
        let max_lifetime = f
            .max_lifetime
            .as_ref()
            .map(|v| r.duration(&format!("{at}.max_lifetime"), Some(v), Duration::ZERO));
        let cache_ttl = d(r, "cache_ttl", &f.cache_ttl, 300);
        let min_refetch_interval = d(r, "min_refetch_interval", &f.min_refetch_interval, 30);
        let fetch_timeout = d(r, "fetch_timeout", &f.fetch_timeout, 5);
        if cache_ttl.is_zero() || fetch_timeout.is_zero() {
            r.problem(
                format!("{at}.cache_ttl"),
                "cache_ttl and fetch_timeout must be more than 0s",
                "leave them out (defaults \"5m\" and \"5s\")",
            );
        }
        out.push(IssuerConfig {
            issuer,
            audiences,
            jwks,
            identity_claim,
            required,
            required_custom,
            max_lifetime,
            cache_ttl,
            min_refetch_interval,
            fetch_timeout,
            jwks_tls: UpstreamTls {
                ca_file: f.jwks_ca_file.as_ref().and_then(|p| {
                    let full = resolve(base, p);
                    if full.is_file() {
                        Some(full)
                    } else {
                        r.problem(
                            format!("{at}.jwks_ca_file"),
                            format!("{} does not exist", full.display()),
                            "fix the path (relative paths start at the config file's folder)",
                        );
                        None
                    }
                }),
                ..UpstreamTls::default()
            },
        });
    }
    out
}

fn jwks_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(uri),
        Some("https") if uri.authority().is_some() => Ok(uri),
        _ => Err(format!("`{text}` is not an http:// or https:// URL")),
    }
}

/// Validates `[jwks]`.
pub(super) fn jwks(r: &mut Report, f: &JwksFile) -> JwksConfig {
    let path = f
        .path
        .clone()
        .unwrap_or_else(|| "/.well-known/jwks.json".into());
    if !path.starts_with('/') || path.contains(['?', '#']) {
        r.problem(
            "jwks.path",
            format!("`{path}` is not an absolute path"),
            "leave it out (default \"/.well-known/jwks.json\")",
        );
    }
    JwksConfig {
        enabled: f.enabled.unwrap_or(true),
        path,
        max_age: r.duration("jwks.max_age", f.max_age.as_ref(), Duration::from_secs(300)),
    }
}

/// `routes[i].issuers`: each must name an `[[issuers]]` entry.
pub(super) fn route_issuers(
    r: &mut Report,
    at: &str,
    f: &RouteFile,
    issuers: &[IssuerConfig],
) -> Vec<String> {
    let list = f.issuers.clone().unwrap_or_default();
    for (j, name) in list.iter().enumerate() {
        if !issuers.iter().any(|i| &i.issuer == name) {
            r.problem(
                format!("{at}.issuers[{j}]"),
                format!("`{name}` is not an [[issuers]] entry"),
                "add an [[issuers]] entry with this exact issuer, or fix the spelling",
            );
        }
    }
    list
}
