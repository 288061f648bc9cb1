//! Loading a configuration: the config checks ([`crate::config`]), then the pieces built
//! from key and certificate files, each exactly once per load: the keyring (every key
//! parsed, every private key self-tested) and every TLS listener's rustls config.
//!
//! Problems of both stages come back together, each with its key path and hint, so
//! `gateway check`, `gateway run` and a reload refuse a config the same way. The config
//! stage never calls into the runtime; this module sits above it, and the pipeline and the
//! server take what it built instead of parsing the files again.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::keys::{Key, Keyring};
use crate::config::{self, Config, ConfigError, KeyConfig, Problem, Refused, TlsListenerConfig};

/// A configuration that passed every check, with what was built from its files.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub built: Built,
    pub warnings: Vec<Problem>,
}

/// The runtime pieces built from files, handed on so nothing is parsed twice.
#[derive(Clone)]
pub struct Built {
    /// Our keyring (verification keys, and the signing key).
    pub keyring: Arc<Keyring>,
    /// One entry per listener, in the configured order: its rustls config when it is TLS.
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: key material never reaches debug output.
        f.debug_struct("Built")
            .field("keys", &self.keyring.len())
            .field("tls_listeners", &self.tls.iter().flatten().count())
            .finish()
    }
}

/// Reads, checks and builds a config file (see [`config::check_file`]).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    finish(config::check_file(path))
}

/// Checks and builds config text; `base` resolves relative file paths.
pub fn from_str(text: &str, base: &Path) -> Result<Loaded, ConfigError> {
    finish(config::check_str(text, base))
}

/// Like [`from_str`], with `secret_env` names looked up through `env` (see
/// [`config::check_str_with_env`]).
pub fn from_str_with_env(
    text: &str,
    base: &Path,
    env: config::Env<'_>,
) -> Result<Loaded, ConfigError> {
    finish(config::check_str_with_env(text, base, env))
}

fn finish(checked: Result<config::Loaded, Refused>) -> Result<Loaded, ConfigError> {
    match checked {
        Ok(loaded) => {
            let mut problems = Vec::new();
            let mut warnings = loaded.warnings;
            match build_parts(&loaded.config, &mut problems, &mut warnings) {
                Some(built) if problems.is_empty() => Ok(Loaded {
                    config: loaded.config,
                    built,
                    warnings,
                }),
                _ => Err(ConfigError { problems }),
            }
        }
        // The config was refused, but its keys and certificates are still built: their
        // problems belong in the same report.
        Err(refused) => {
            let mut problems = refused.problems;
            let mut warnings = refused.warnings;
            keys(&refused.keys, &mut problems);
            for t in &refused.tls {
                tls(t, &mut problems, &mut warnings);
            }
            Err(ConfigError { problems })
        }
    }
}

fn build_parts(
    config: &Config,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<Built> {
    let keyring = keys(&config.tokens.keys, problems);
    let tls: Vec<_> = config
        .server
        .listeners
        .iter()
        .map(|l| l.tls.as_ref().and_then(|t| tls(t, problems, warnings)))
        .collect();
    Some(Built {
        keyring: Arc::new(keyring?),
        tls,
    })
}

/// Parses every key once; a key that does not fit its algorithm is a problem at
/// `keys[i].<field>`.
fn keys(list: &[KeyConfig], problems: &mut Vec<Problem>) -> Option<Keyring> {
    let mut keys = Vec::with_capacity(list.len());
    for k in list {
        match Key::build(k) {
            Ok(key) => keys.push(key),
            Err(e) => problems.push(Problem {
                key: format!("{}.{}", k.at, k.field),
                message: e.to_string(),
                hint: "use a PKCS#8 private key (convert with `openssl pkcs8 -topk8 -nocrypt \
                    -in OLD`) or an SPKI public key; `gateway keygen` writes both"
                    .into(),
            }),
        }
    }
    if keys.len() != list.len() {
        return None;
    }
    let signing = list.iter().position(|k| k.sign);
    Some(Keyring::new(keys, signing))
}

/// Builds a TLS listener's rustls config (a broken certificate is a config problem, not a
/// runtime surprise) and warns about certificates close to expiry.
fn tls(
    t: &TlsListenerConfig,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<Arc<rustls::ServerConfig>> {
    let config = match crate::tls::server_config(t) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            problems.push(Problem {
                key: t.at.clone(),
                message: e,
                hint: "check that each cert file holds a PEM chain and its key file the \
                    matching PEM private key"
                    .into(),
            });
            return None;
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for paths in t.default.iter().chain(t.sni.iter().map(|(_, p)| p)) {
        let Ok(end) = crate::tls::not_after(&paths.cert) else {
            continue;
        };
        let left = (end - now) / 86_400;
        let (message, hint) = if end <= now {
            (
                format!("{} has expired", paths.cert.display()),
                "renew the certificate",
            )
        } else if left < i64::from(t.expiry_warning_days) {
            (
                format!("{} expires in {left} day(s)", paths.cert.display()),
                "renew it; reload picks up the new files",
            )
        } else {
            continue;
        };
        warnings.push(Problem {
            key: t.at.clone(),
            message,
            hint: hint.into(),
        });
    }
    Some(config)
}
