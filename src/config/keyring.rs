//! `[[keys]]`, `[[issuers]]` and `[jwks]` → typed config, every problem with its key path.
//!
//! Key material is read and parsed here (through `auth::keys`), so a bad PEM file, a key
//! that does not fit its algorithm or a missing secret is reported by `gateway check`,
//! never discovered on the first request.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use http::Uri;

use super::file::{IssuerFile, JwksFile, KeyFile, RouteFile, TokensFile};
use super::validate::{resolve, Report, MIN_SECRET_BYTES};
use super::{
    IssuerConfig, JwksConfig, JwksSource, KeyConfig, KeyMaterial, Pem, RequiredClaims, Secret,
    SecretOrigin, UpstreamTls,
};
use crate::auth::keys::{is_hmac, parse_algorithm, Key};

const ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA";

/// Validates `[[keys]]`. Empty input gives an empty list (the legacy `[tokens]` secret is
/// used then). With keys, the `[tokens]` secret settings must be absent.
pub(super) fn keys(
    r: &mut Report,
    list: &[KeyFile],
    t: &TokensFile,
    base: &Path,
) -> Vec<KeyConfig> {
    if list.is_empty() {
        return Vec::new();
    }
    for (name, set) in [
        ("algorithm", t.algorithm.is_some()),
        ("secret_env", t.secret_env.is_some()),
        ("secret_file", t.secret_file.is_some()),
        ("missing_secret", t.missing_secret.is_some()),
        ("allow_short_secret", t.allow_short_secret.is_some()),
    ] {
        if set {
            r.problem(
                format!("tokens.{name}"),
                "the [[keys]] keyring replaces the [tokens] secret settings",
                "move the secret into a [[keys]] entry (id, algorithm, secret_env) and remove this line",
            );
        }
    }
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for (i, k) in list.iter().enumerate() {
        let at = format!("keys[{i}]");
        let id = match &k.id {
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()) => id.clone(),
            _ => {
                r.problem(
                    format!("{at}.id"),
                    "missing, empty or not printable ASCII",
                    "give every key a unique id, e.g. id = \"2026-11-a\"; it becomes the token's kid",
                );
                continue;
            }
        };
        if !ids.insert(id.clone()) {
            r.problem(
                format!("{at}.id"),
                format!("`{id}` is used by an earlier key"),
                "key ids are kids and must be unique",
            );
        }
        let Some(algorithm) = k.algorithm.as_deref().and_then(parse_algorithm) else {
            r.problem(
                format!("{at}.algorithm"),
                match &k.algorithm {
                    Some(a) => format!("unsupported algorithm `{a}`"),
                    None => "missing".into(),
                },
                format!("use one of {ALGORITHMS}"),
            );
            continue;
        };
        let Some((material, field)) = material(r, &at, k, base, is_hmac(algorithm)) else {
            continue;
        };
        let key = KeyConfig {
            id: Some(id),
            algorithm,
            material,
            sign: k.sign.unwrap_or(list.len() == 1),
        };
        match Key::build(&key) {
            Ok(built) => {
                if key.sign && built.encoding.is_none() {
                    r.problem(
                        format!("{at}.sign"),
                        "a public key cannot sign",
                        "give the signing key a private_key_file, or set sign = false",
                    );
                }
                out.push(key);
            }
            Err(e) => r.problem(
                format!("{at}.{field}"),
                e.to_string(),
                "use a PKCS#8 private key (convert with `openssl pkcs8 -topk8 -nocrypt -in OLD`) or an SPKI public key; `gateway keygen` writes both",
            ),
        }
    }
    let signers = list.iter().filter(|k| k.sign == Some(true)).count();
    if list.len() > 1 && signers != 1 {
        r.problem(
            "keys",
            format!("{signers} keys have sign = true; exactly one must"),
            "mark the key new tokens are signed with `sign = true`; the others only verify",
        );
    }
    out
}

/// Reads the one material source of a key; returns it with the field name it came from.
fn material(
    r: &mut Report,
    at: &str,
    k: &KeyFile,
    base: &Path,
    hmac: bool,
) -> Option<(KeyMaterial, &'static str)> {
    let sources = [
        k.private_key_file.is_some(),
        k.public_key_file.is_some(),
        k.secret_env.is_some(),
        k.secret_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        r.problem(
            at,
            "a key needs exactly one of private_key_file, public_key_file, secret_env, secret_file",
            if hmac {
                "HMAC keys use secret_env or secret_file"
            } else {
                "signing keys use private_key_file; verify-only keys public_key_file"
            },
        );
        return None;
    }
    let read = |r: &mut Report, field: &str, path: &str| {
        let full = resolve(base, path);
        std::fs::read(&full)
            .map_err(|e| {
                r.problem(
                    format!("{at}.{field}"),
                    format!("cannot read {}: {e}", full.display()),
                    "fix the path (relative paths start at the config file's folder)",
                )
            })
            .ok()
            .map(|bytes| (bytes, full))
    };
    if let Some(p) = &k.private_key_file {
        let (bytes, _) = read(r, "private_key_file", p)?;
        return Some((KeyMaterial::Pem(Pem::Private(bytes)), "private_key_file"));
    }
    if let Some(p) = &k.public_key_file {
        let (bytes, _) = read(r, "public_key_file", p)?;
        return Some((KeyMaterial::Pem(Pem::Public(bytes)), "public_key_file"));
    }
    let (secret, field) = if let Some(var) = &k.secret_env {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => (
                Secret {
                    bytes: v.into_bytes(),
                    origin: SecretOrigin::Env(var.clone()),
                },
                "secret_env",
            ),
            _ => {
                r.problem(
                    format!("{at}.secret_env"),
                    format!("environment variable {var} is not set or empty"),
                    format!("export {var}=<a random secret of at least {MIN_SECRET_BYTES} bytes>"),
                );
                return None;
            }
        }
    } else {
        let (mut bytes, full) = read(r, "secret_file", k.secret_file.as_deref()?)?;
        // Files written by `echo` end with a newline that is not part of the key.
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        (
            Secret {
                bytes,
                origin: SecretOrigin::File(full.display().to_string()),
            },
            "secret_file",
        )
    };
    if secret.bytes.len() < MIN_SECRET_BYTES && !k.allow_short_secret.unwrap_or(false) {
        r.problem(
            format!("{at}.{field}"),
            format!(
                "the secret is {} bytes; at least {MIN_SECRET_BYTES} are required",
                secret.bytes.len()
            ),
            "generate one with `openssl rand -base64 48`, or set allow_short_secret = true",
        );
    }
    Some((KeyMaterial::Secret(secret), field))
}

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
                    "write the exact `iss` of the IdP's tokens, e.g. \"https://idp.example/realms/main\"",
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
                "list the `aud` values meant for this gateway: a token for another API must not pass",
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

/// `[tokens] user_claims` and `max_lifetime`, checked against what the gateway sets itself.
pub(super) fn issued_claims(
    r: &mut Report,
    t: &TokensFile,
    identity_claim: &str,
    lifetime: Duration,
) -> (Vec<String>, Option<Duration>) {
    let user_claims = t.user_claims.clone().unwrap_or_default();
    for (i, c) in user_claims.iter().enumerate() {
        if ["exp", "iat", "nbf", "aud", "iss", "sub", "jti", ""].contains(&c.as_str())
            || c == identity_claim
        {
            r.problem(
                format!("tokens.user_claims[{i}]"),
                format!("`{c}` is set by the gateway itself"),
                "list only claims from [[users]] claims, e.g. \"roles\"",
            );
        }
    }
    let max_lifetime = t
        .max_lifetime
        .as_ref()
        .map(|v| r.duration("tokens.max_lifetime", Some(v), Duration::ZERO));
    if max_lifetime.is_some_and(|m| m < lifetime) {
        r.problem(
            "tokens.max_lifetime",
            "shorter than tokens.lifetime: the gateway's own tokens would be refused",
            "raise max_lifetime or lower lifetime",
        );
    }
    (user_claims, max_lifetime)
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
