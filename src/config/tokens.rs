//! `[tokens]` → [`TokensConfig`]: header, prefix, the legacy one-secret keyring, time
//! claims, limits and the claims issued tokens carry.

use std::path::Path;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use super::file::TokensFile;
use super::report::{resolve, Report, MIN_SECRET_BYTES};
use super::weak_secret;
use super::{
    Env, ErrorStyle, KeyConfig, KeyMaterial, RequiredClaims, Secret, SecretOrigin, TokensConfig,
};

fn algorithm(r: &mut Report, text: &str) -> Algorithm {
    match text {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        other => {
            let hint = if other.eq_ignore_ascii_case("none") {
                "unsigned tokens are never accepted; use HS256"
            } else {
                "use HS256, HS384 or HS512 (asymmetric keys come with the [[keys]] keyring)"
            };
            r.problem(
                "tokens.algorithm",
                format!("unsupported algorithm `{other}`"),
                hint,
            );
            Algorithm::HS256
        }
    }
}

pub(super) fn tokens(
    r: &mut Report,
    t: &TokensFile,
    base: &Path,
    env: Env<'_>,
    keys: Vec<KeyConfig>,
    keyring: bool,
) -> Option<TokensConfig> {
    let header_text = t.header.as_deref().unwrap_or("Authorization");
    let header = HeaderName::from_bytes(header_text.as_bytes()).unwrap_or_else(|_| {
        r.problem(
            "tokens.header",
            format!("`{header_text}` is not a header name"),
            "use \"Authorization\"",
        );
        http::header::AUTHORIZATION
    });
    let prefix = t.prefix.clone().unwrap_or_else(|| "JWT".into());
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        r.problem(
            "tokens.prefix",
            "must be one word",
            "use \"JWT\" (Flask-JWT) or \"Bearer\" (RFC 6750)",
        );
    }
    // The legacy form: one HMAC key from `algorithm` + `secret_*`, with no id (compat path).
    let keys = if keyring {
        Some(keys).filter(|k| !k.is_empty())
    } else {
        let algorithm = algorithm(r, t.algorithm.as_deref().unwrap_or("HS256"));
        secret(r, t, base, env).map(|secret| {
            let field = match secret.origin {
                SecretOrigin::Env(_) => "secret_env",
                SecretOrigin::File(_) => "secret_file",
                SecretOrigin::Generated => "missing_secret",
            };
            vec![KeyConfig {
                at: "tokens".into(),
                field,
                id: None,
                algorithm,
                material: KeyMaterial::Secret(secret),
                sign: true,
            }]
        })
    };

    let errors = match t.errors.as_deref().unwrap_or("flask-jwt") {
        "flask-jwt" => ErrorStyle::FlaskJwt,
        "rfc6750" => ErrorStyle::Rfc6750,
        other => {
            r.problem(
                "tokens.errors",
                format!("unknown error style `{other}`"),
                "use \"flask-jwt\" or \"rfc6750\"",
            );
            ErrorStyle::FlaskJwt
        }
    };

    let mut required = RequiredClaims {
        iat: false,
        nbf: false,
    };
    let mut has_exp = false;
    for (i, claim) in t
        .required_claims
        .clone()
        .unwrap_or_else(|| vec!["exp".into(), "iat".into(), "nbf".into()])
        .iter()
        .enumerate()
    {
        match claim.as_str() {
            "exp" => has_exp = true,
            "iat" => required.iat = true,
            "nbf" => required.nbf = true,
            other => r.problem(
                format!("tokens.required_claims[{i}]"),
                format!("`{other}` cannot be required here"),
                "list only \"exp\", \"iat\" and \"nbf\"",
            ),
        }
    }
    if !has_exp {
        r.problem(
            "tokens.required_claims",
            "\"exp\" must be required: a token without expiry would be valid forever",
            "add \"exp\" to the list",
        );
    }

    let identity_claim = t
        .identity_claim
        .clone()
        .unwrap_or_else(|| "identity".into());
    if ["exp", "iat", "nbf", "aud", "iss"].contains(&identity_claim.as_str())
        || identity_claim.is_empty()
    {
        r.problem(
            "tokens.identity_claim",
            format!("`{identity_claim}` cannot hold the identity"),
            "use \"identity\" (Flask-JWT) or \"sub\"",
        );
    }
    let lifetime = r.duration(
        "tokens.lifetime",
        t.lifetime.as_ref(),
        Duration::from_secs(300),
    );
    if lifetime.is_zero() {
        r.problem(
            "tokens.lifetime",
            "must be more than 0s",
            "Flask-JWT's default is \"300s\"",
        );
    }
    let max_token_bytes = t.max_token_bytes.unwrap_or(8192);
    if max_token_bytes < 64 {
        r.problem(
            "tokens.max_token_bytes",
            "too small to hold any token",
            "leave it out (default 8192)",
        );
    }
    let (user_claims, max_lifetime) = issued_claims(r, t, &identity_claim, lifetime);
    Some(TokensConfig {
        header,
        prefix,
        keys: keys?,
        lifetime,
        not_before: r.duration("tokens.not_before", t.not_before.as_ref(), Duration::ZERO),
        leeway: r.duration("tokens.leeway", t.leeway.as_ref(), Duration::from_secs(10)),
        identity_claim,
        required,
        audience: t.audience.clone(),
        issuer: t.issuer.clone(),
        max_token_bytes,
        errors,
        realm: t.realm.clone().unwrap_or_else(|| "Login Required".into()),
        max_lifetime,
        issue_sub: t.issue_sub.unwrap_or(false),
        issue_jti: t.issue_jti.unwrap_or(false),
        user_claims,
        cache_size: t.cache_size.unwrap_or(10_000),
    })
}

/// Loads the HMAC secret from env or file; never echoes its value in a message.
fn secret(r: &mut Report, t: &TokensFile, base: &Path, env: Env<'_>) -> Option<Secret> {
    let generate = match t.missing_secret.as_deref().unwrap_or("refuse") {
        "refuse" => false,
        "generate" => true,
        other => {
            r.problem(
                "tokens.missing_secret",
                format!("unknown value `{other}`"),
                "use \"refuse\" (production) or \"generate\" (try-out only)",
            );
            false
        }
    };
    let loaded = match (&t.secret_env, &t.secret_file) {
        (Some(_), Some(_)) => {
            r.problem(
                "tokens.secret_env",
                "both secret_env and secret_file are set",
                "keep one of them",
            );
            return None;
        }
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => Some(Secret {
                bytes: v.into_bytes(),
                origin: SecretOrigin::Env(var.clone()),
            }),
            _ => None,
        },
        (None, Some(path)) => {
            let full = resolve(base, path);
            match std::fs::read(&full) {
                Ok(mut bytes) => {
                    if let Some(w) =
                        super::key_files::readable_by_others("tokens.secret_file", &full)
                    {
                        r.warnings.push(w);
                    }
                    // Files written by `echo` end with a newline that is not part of the key.
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    Some(Secret {
                        bytes,
                        origin: SecretOrigin::File(full.display().to_string()),
                    })
                }
                Err(e) => {
                    if !generate {
                        r.problem(
                            "tokens.secret_file",
                            format!("cannot read {}: {e}", full.display()),
                            "create the file with a random secret of at least 32 bytes",
                        );
                        return None;
                    }
                    None
                }
            }
        }
        (None, None) => None,
    };
    let secret = match loaded {
        Some(s) => s,
        None if generate => {
            let what = t
                .secret_env
                .as_ref()
                .map(|v| format!("environment variable {v}"))
                .or_else(|| t.secret_file.as_ref().map(|f| format!("file {f}")))
                .unwrap_or_else(|| "no secret_env or secret_file".into());
            r.warning(
                "tokens.missing_secret",
                format!(
                    "no signing secret ({what} unset): a random secret is generated per \
                    process; tokens will not survive a restart nor validate on other instances"
                ),
                "set the secret (e.g. GATEWAY_SECRET=$(openssl rand -base64 48)) before \
                    production use",
            );
            let mut bytes = vec![0u8; 48];
            rand::fill(&mut bytes[..]);
            return Some(Secret {
                bytes,
                origin: SecretOrigin::Generated,
            });
        }
        None => {
            match &t.secret_env {
                Some(var) => r.problem(
                    "tokens.secret_env",
                    format!("environment variable {var} is not set or empty"),
                    format!("export {var}=<a random secret of at least {MIN_SECRET_BYTES} bytes>"),
                ),
                None => r.problem(
                    "tokens",
                    "no signing secret configured",
                    "set secret_env = \"GATEWAY_SECRET\" or secret_file = \"path\"",
                ),
            }
            return None;
        }
    };
    let key = match secret.origin {
        SecretOrigin::Env(_) => "tokens.secret_env",
        _ => "tokens.secret_file",
    };
    if secret.origin != SecretOrigin::Generated && !t.allow_weak_secret.unwrap_or(false) {
        if let Some(why) = weak_secret::weakness(&secret.bytes) {
            r.problem(
                key,
                why,
                weak_secret::HINT.replace("allow_weak_secret", "tokens.allow_weak_secret"),
            );
        }
    }
    if secret.bytes.len() < MIN_SECRET_BYTES && !t.allow_short_secret.unwrap_or(false) {
        r.problem(
            key,
            format!(
                "the secret is {} bytes; at least {MIN_SECRET_BYTES} are required",
                secret.bytes.len()
            ),
            "generate one with `openssl rand -base64 48`, or set tokens.allow_short_secret = \
                true to accept a weak legacy secret",
        );
    }
    Some(secret)
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
        if super::report::is_gateway_claim(c, identity_claim) {
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
