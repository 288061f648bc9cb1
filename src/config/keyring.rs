//! `[[keys]]` → the keyring's [`KeyConfig`]s, every problem with its key path.
//!
//! Key material is read here, so a missing file or secret is a config problem; the load
//! stage (`crate::load`) then parses each key once, so a bad PEM file or a key that does
//! not fit its algorithm is also reported by `gateway check` with its key path, never
//! discovered on the first request.

use std::collections::HashSet;
use std::path::Path;

use jsonwebtoken::Algorithm;

use super::file::{KeyFile, TokensFile};
use super::report::{resolve, Report, MIN_SECRET_BYTES};
use super::weak_secret;
use super::{Env, KeyConfig, KeyMaterial, Pem, Secret, SecretOrigin};

const ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA";

/// Validates `[[keys]]`. Empty input gives an empty list (the legacy `[tokens]` secret is
/// used then). With keys, the `[tokens]` secret settings must be absent.
pub(super) fn keys(
    r: &mut Report,
    list: &[KeyFile],
    t: &TokensFile,
    base: &Path,
    env: Env<'_>,
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
        ("allow_weak_secret", t.allow_weak_secret.is_some()),
    ] {
        if set {
            r.problem(
                format!("tokens.{name}"),
                "the [[keys]] keyring replaces the [tokens] secret settings",
                "move the secret into a [[keys]] entry (id, algorithm, secret_env) and remove \
                    this line",
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
                    "give every key a unique id, e.g. id = \"2026-11-a\"; it becomes the \
                        token's kid",
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
        let Some((material, field)) = material(r, &at, k, base, env, is_hmac(algorithm)) else {
            continue;
        };
        let sign = k.sign.unwrap_or(list.len() == 1);
        if sign && matches!(material, KeyMaterial::Pem(Pem::Public(_))) {
            r.problem(
                format!("{at}.sign"),
                "a public key cannot sign",
                "give the signing key a private_key_file, or set sign = false",
            );
        }
        // The material is parsed (and a private key self-tested) once, by the load stage,
        // which reports a key that does not fit its algorithm at `{at}.{field}`.
        out.push(KeyConfig {
            at,
            field,
            id: Some(id),
            algorithm,
            material,
            sign,
        });
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
    env: Env<'_>,
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
        match env(var) {
            Some(v) if !v.is_empty() => (
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
    if !k.allow_weak_secret.unwrap_or(false) {
        if let Some(why) = weak_secret::weakness(&secret.bytes) {
            r.problem(format!("{at}.{field}"), why, weak_secret::HINT);
        }
    }
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

/// Whether `a` is an HMAC algorithm (its key is a shared secret, never published).
pub fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The `alg` header value of an algorithm, as written in tokens.
pub fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // jsonwebtoken's enum is non-exhaustive; a new variant is not configurable here.
        _ => "unsupported",
    }
}

/// The algorithms `[[keys]] algorithm` accepts, by name.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ]
    .into_iter()
    .find(|a| alg_name(*a) == name)
}
