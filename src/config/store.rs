//! `[store]`: where state shared across requests lives.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::file::StoreFile;
use super::report::{resolve, Report};
use super::Env;

/// The validated `[store]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Bounds every store operation; past it the caller falls back (login limits).
    pub timeout: Duration,
    /// Prepended to every key, so several deployments can share one Redis database.
    pub key_prefix: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Memory,
            timeout: Duration::from_millis(200),
            key_prefix: "gateway:".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreBackend {
    /// Per-instance, in this process.
    Memory,
    Redis(RedisConfig),
}

/// A Redis server and its credentials.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// The URL as configured (it carries no password: inline ones are refused).
    pub url: String,
    /// From `password_env` or `password_file`.
    pub password: Option<String>,
    /// PEM trust anchors for a `rediss://` server (instead of the system roots).
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisConfig {
    /// Address, database, TLS and password, for the client.
    pub fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())?;
        Ok(match &self.password {
            Some(p) => {
                let settings = info.redis_settings().clone().set_password(p);
                info.set_redis_settings(settings)
            }
            None => info,
        })
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

pub(super) fn store(r: &mut Report, s: &StoreFile, base: &Path, env: Env<'_>) -> StoreConfig {
    let defaults = StoreConfig::default();
    let timeout = r.duration("store.timeout", s.timeout.as_ref(), defaults.timeout);
    if timeout.is_zero() || timeout > Duration::from_secs(10) {
        r.problem(
            "store.timeout",
            "must be between 1ms and 10s",
            "a login waits at most this long for the store; leave it out (200ms)",
        );
    }
    let key_prefix = s.key_prefix.clone().unwrap_or(defaults.key_prefix);
    let backend = match s.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            for (set, key) in [
                (s.url.is_some(), "store.url"),
                (s.url_file.is_some(), "store.url_file"),
                (s.password_env.is_some(), "store.password_env"),
                (s.password_file.is_some(), "store.password_file"),
                (s.ca_file.is_some(), "store.ca_file"),
            ] {
                if set {
                    r.problem(
                        key,
                        "only used with backend = \"redis\"",
                        "set store.backend = \"redis\", or remove the key",
                    );
                }
            }
            StoreBackend::Memory
        }
        "redis" => match redis_config(r, s, base, env) {
            Some(c) => StoreBackend::Redis(c),
            None => StoreBackend::Memory,
        },
        other => {
            r.problem(
                "store.backend",
                format!("unknown backend `{other}`"),
                "use \"memory\" (one instance) or \"redis\" (several instances)",
            );
            StoreBackend::Memory
        }
    };
    StoreConfig {
        backend,
        timeout,
        key_prefix,
    }
}

fn redis_config(r: &mut Report, s: &StoreFile, base: &Path, env: Env<'_>) -> Option<RedisConfig> {
    let url = match (&s.url, &s.url_file) {
        (Some(_), Some(_)) => {
            r.problem("store.url", "both url and url_file are set", "keep one");
            return None;
        }
        (Some(u), None) => u.clone(),
        // From a mounted secret (Kubernetes): the address is deployment data, not config.
        (None, Some(file)) => {
            let full = resolve(base, file);
            match std::fs::read_to_string(&full) {
                Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
                Ok(_) => {
                    r.problem(
                        "store.url_file",
                        format!("{} is empty", full.display()),
                        "write the Redis URL into it, e.g. redis://redis:6379/0",
                    );
                    return None;
                }
                Err(e) => {
                    r.problem(
                        "store.url_file",
                        format!("cannot read {}: {e}", full.display()),
                        "fix the path (relative paths start at the config file's folder)",
                    );
                    return None;
                }
            }
        }
        (None, None) => {
            r.problem(
                "store.url",
                "missing",
                "write e.g. url = \"redis://127.0.0.1:6379/0\" (rediss:// for TLS), or url_file",
            );
            return None;
        }
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        r.problem(
            "store.url",
            "must start with redis:// or rediss://",
            "write e.g. url = \"redis://127.0.0.1:6379/0\"",
        );
        return None;
    }
    let info = match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        Ok(i) => i,
        Err(_) => {
            // The parser's message may quote the URL, which could hold a password.
            r.problem(
                "store.url",
                "not a Redis URL",
                "write e.g. url = \"redis://127.0.0.1:6379/0\"",
            );
            return None;
        }
    };
    if info.redis_settings().password().is_some() {
        r.problem(
            "store.url",
            "carries a password",
            "never inline: put it in password_env or password_file",
        );
        return None;
    }
    let password = match (&s.password_env, &s.password_file) {
        (Some(_), Some(_)) => {
            r.problem(
                "store.password_env",
                "both password_env and password_file are set",
                "keep one",
            );
            return None;
        }
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                r.problem(
                    "store.password_env",
                    format!("environment variable `{var}` is not set or empty"),
                    "export it before starting, or remove password_env for a Redis without AUTH",
                );
                return None;
            }
        },
        (None, Some(file)) => {
            let full = resolve(base, file);
            match std::fs::read_to_string(&full) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim_end_matches(['\r', '\n']).to_string()),
                Ok(_) => {
                    r.problem(
                        "store.password_file",
                        format!("{} is empty", full.display()),
                        "write the Redis password into it",
                    );
                    return None;
                }
                Err(e) => {
                    r.problem(
                        "store.password_file",
                        format!("cannot read {}: {e}", full.display()),
                        "fix the path (relative paths start at the config file's folder)",
                    );
                    return None;
                }
            }
        }
        (None, None) => None,
    };
    let ca_pem = match &s.ca_file {
        None => None,
        Some(_) if !url.starts_with("rediss://") => {
            r.problem(
                "store.ca_file",
                "only used with a rediss:// URL",
                "use rediss:// for TLS, or remove ca_file",
            );
            return None;
        }
        Some(file) => {
            let full = resolve(base, file);
            match std::fs::read(&full) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    r.problem(
                        "store.ca_file",
                        format!("cannot read {}: {e}", full.display()),
                        "fix the path (relative paths start at the config file's folder)",
                    );
                    return None;
                }
            }
        }
    };
    Some(RedisConfig {
        url,
        password,
        ca_pem,
    })
}
