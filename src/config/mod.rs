//! Configuration: `gateway.toml` → [`file::GatewayFile`] (what the user wrote) → [`Config`]
//! (what the program uses: parsed addresses, durations, header names, loaded secrets).
//!
//! Loading never stops at the first problem: [`load`] reports every problem at once, each
//! with the key path it concerns and a hint for the fix.

pub mod file;
pub mod key_files;
mod size;
pub mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Uri};

pub use validate::from_file;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub tokens: TokensConfig,
    /// `None` when no `[login]` table is present: the gateway then issues no tokens.
    pub login: Option<LoginConfig>,
    /// Local users; empty when tokens come only from elsewhere.
    pub users: Vec<User>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Runtime worker threads; `None` means one per core.
    pub workers: Option<usize>,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Keep client-sent `X-Forwarded-*` and append to them, instead of replacing them.
    pub trust_forwarded: bool,
}

/// Which wire format errors take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// Flask-JWT bodies `{"description","error","status_code"}`, `WWW-Authenticate: JWT realm=...`.
    FlaskJwt,
    /// RFC 6750 §3: `WWW-Authenticate: Bearer error="invalid_token", ...`.
    Rfc6750,
}

/// The signing secret and where it came from (for messages; never the value).
#[derive(Clone)]
pub struct Secret {
    pub bytes: Vec<u8>,
    pub origin: SecretOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    Env(String),
    File(String),
    /// Generated at start because none was configured: valid for this process only.
    Generated,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret bytes, even in debug output.
        f.debug_struct("Secret")
            .field("len", &self.bytes.len())
            .field("origin", &self.origin)
            .finish()
    }
}

/// Which registered time claims a token must carry. `exp` is always required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredClaims {
    pub iat: bool,
    pub nbf: bool,
}

#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub header: HeaderName,
    pub prefix: String,
    pub algorithm: jsonwebtoken::Algorithm,
    pub secret: Secret,
    pub lifetime: Duration,
    pub not_before: Duration,
    pub leeway: Duration,
    pub identity_claim: String,
    pub required: RequiredClaims,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub max_token_bytes: usize,
    pub errors: ErrorStyle,
    pub realm: String,
}

#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub path: String,
    pub username_field: String,
    pub password_field: String,
    pub max_body: usize,
    pub max_concurrent_hashes: usize,
}

/// A user id keeps its JSON type in tokens: `1` and `"1"` are different users.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserId {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Public,
}

/// What answers a route.
#[derive(Debug, Clone)]
pub enum Target {
    /// Forward to this origin (`http://host:port`, optional base path).
    Upstream(Uri),
    /// A built-in responder (like Envoy's direct response).
    Respond(Responder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responder {
    /// Answers `{"identity": <the caller's identity>}`.
    Identity,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Normalized segment prefix: `/api` (matches `/api`, `/api/`, `/api/x`), or `/`.
    pub path: String,
    pub target: Target,
    pub auth: AuthMode,
    pub forward_authorization: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body: Option<u64>,
}

/// One problem with the configuration: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration; the config is refused when this is returned.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} problem(s) in the configuration:",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A loaded configuration plus the warnings that did not stop it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Reads, parses and validates a config file. Relative paths inside it (`secret_file`,
/// `users_file`) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            key: "(file)".into(),
            message: format!("cannot read {}: {e}", path.display()),
            hint: "pass the config with --config PATH".into(),
        }],
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    from_str(&text, base)
}

/// Parses and validates config text; `base` resolves relative file paths.
pub fn from_str(text: &str, base: &Path) -> Result<Loaded, ConfigError> {
    let file: file::GatewayFile = toml::from_str(text).map_err(|e| ConfigError {
        problems: vec![toml_problem(&e, text)],
    })?;
    from_file(file, base)
}

/// Turns a TOML syntax or shape error into a problem naming the key where possible.
pub(crate) fn toml_problem(e: &toml::de::Error, text: &str) -> Problem {
    let message = e.message().trim().to_string();
    let hint = if message.starts_with("unknown field") {
        "check the spelling against the config reference in README.md".to_string()
    } else {
        String::new()
    };
    let key = match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("line {line}")
        }
        None => "(file)".to_string(),
    };
    Problem { key, message, hint }
}
