//! The toolbox every config section uses: the [`Report`] that collects problems and
//! warnings with their key paths, path resolution, shared limits. A leaf: it imports no
//! section, so the sections and the orchestrator ([`super::validate`]) import it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{size, Problem};

/// HMAC keys shorter than the hash output weaken the MAC (RFC 7518 §3.2 asks for at least
/// the hash size); 32 bytes covers HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// Claims the gateway writes into its own tokens, so no configured source (a user record,
/// the user service, an OIDC provider, `gateway mint --claim`) may carry them: `idp` marks
/// a session an OIDC provider began and `sid` binds a browser session's CSRF token, and a
/// copied one would make a token pass for what it is not. The `[tokens] identity_claim` is
/// reserved as well (see [`is_gateway_claim`]).
pub const GATEWAY_CLAIMS: [&str; 10] = [
    "exp", "iat", "nbf", "aud", "iss", "sub", "jti", "idp", "sid", "",
];

/// Whether `name` is a claim the gateway sets itself: [`GATEWAY_CLAIMS`] or the
/// configured identity claim.
pub fn is_gateway_claim(name: &str, identity_claim: &str) -> bool {
    GATEWAY_CLAIMS.contains(&name) || name == identity_claim
}

/// Collects problems and warnings while the config is checked.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) problems: Vec<Problem>,
    pub(crate) warnings: Vec<Problem>,
}

impl Report {
    pub(crate) fn problem(
        &mut self,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    pub(crate) fn warning(
        &mut self,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.warnings.push(Problem {
            key: key.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// Parses a duration like `300s`, `5m`, `250ms`; `None` (and a problem) when invalid.
    pub(crate) fn duration(
        &mut self,
        key: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(
                        key,
                        format!("`{text}` is not a duration: {e}"),
                        "write e.g. \"300s\", \"5m\" or \"250ms\"",
                    );
                    default
                }
            },
        }
    }

    pub(crate) fn size(&mut self, key: &str, value: Option<&String>, default: u64) -> u64 {
        match value {
            None => default,
            Some(text) => match size::parse(text) {
                Ok(n) => n,
                Err(e) => {
                    self.problem(
                        key,
                        e,
                        "write e.g. \"16KiB\", \"10MiB\" or a number of bytes",
                    );
                    default
                }
            },
        }
    }
}

/// `path` as written in the config: absolute, or relative to the config file's folder.
pub(crate) fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
