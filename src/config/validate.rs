//! [`GatewayFile`] → [`Config`]: every check, every default, every problem collected.
//!
//! No serde here: this module only reads the already-parsed file structs. Each problem names
//! the key path the user must edit (`routes[2].auth`) and a hint for the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use super::file::{
    AdminFile, GatewayFile, ListenerFile, LoggingFile, LoginFile, ServerFile, TokensFile,
};
use super::keyring;
use super::routes::{identity, routes};
use super::upstreams::upstreams;
use super::users::{check_unique_users, collect_users, load_users_file};
use super::{
    size, Config, ConfigError, ErrorStyle, KeyConfig, KeyMaterial, Loaded, LogFormat,
    LoggingConfig, LoginConfig, Problem, RequestIdMode, RequiredClaims, Secret, SecretOrigin,
    ServerConfig, TokensConfig,
};

/// HMAC keys shorter than the hash output weaken the MAC (RFC 7518 §3.2 asks for at least
/// the hash size); 32 bytes covers HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// Collects problems and warnings while the config is checked.
#[derive(Default)]
pub(super) struct Report {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
}

impl Report {
    pub(super) fn problem(
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

    pub(super) fn warning(
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
    pub(super) fn duration(
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

    pub(super) fn size(&mut self, key: &str, value: Option<&String>, default: u64) -> u64 {
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

/// Validates a parsed file. `base` is the directory relative paths are resolved against.
pub fn from_file(file: GatewayFile, base: &Path) -> Result<Loaded, ConfigError> {
    let mut r = Report::default();
    let server = server(&mut r, &file.server, &file.listeners, base);
    let keys = keyring::keys(&mut r, &file.keys, &file.tokens, base);
    let tokens = tokens(&mut r, &file.tokens, base, keys, !file.keys.is_empty());
    let issuers = keyring::issuers(&mut r, &file.issuers, base, file.tokens.issuer.as_deref());
    let jwks = keyring::jwks(&mut r, &file.jwks);
    let mut users = Vec::new();
    collect_users(&mut r, "users", &file.users, &mut users);
    if let Some(users_file) = &file.users_file {
        load_users_file(&mut r, users_file, base, &mut users);
    }
    check_unique_users(&mut r, &users);
    let login = file.login.as_ref().map(|l| login(&mut r, l));
    if login.is_some() && users.is_empty() {
        r.problem(
            "login",
            "a login endpoint is configured but there are no users",
            "add [[users]] entries or a users_file, or remove [login]",
        );
    }
    let mut upstreams = upstreams(&mut r, &file.upstreams, base);
    let identity = identity(&mut r, &file.identity);
    let routes = routes(
        &mut r,
        &file.routes,
        login.as_ref(),
        &mut upstreams,
        &issuers,
    );
    let admin = file.admin.as_ref().and_then(|a| admin(&mut r, a, &server));
    let logging = logging(&mut r, &file.logging);
    if routes.is_empty() && login.is_none() {
        r.warning(
            "routes",
            "no routes and no login: every request will get 404",
            "add a [[routes]] entry",
        );
    }

    match tokens {
        Some(tokens) if r.problems.is_empty() => Ok(Loaded {
            config: Config {
                server,
                tokens,
                login,
                users,
                routes,
                upstreams,
                identity,
                issuers,
                jwks,
                admin,
                logging,
                source_sha256: None,
            },
            warnings: r.warnings,
        }),
        _ => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

fn server(r: &mut Report, s: &ServerFile, listeners: &[ListenerFile], base: &Path) -> ServerConfig {
    let listen = s.listen.as_deref().map(|text| {
        text.parse::<SocketAddr>().unwrap_or_else(|_| {
            r.problem(
                "server.listen",
                format!("`{text}` is not an address:port"),
                "write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        })
    });
    let listeners = super::listeners::listeners(r, listeners, listen, base);
    let listen = listeners
        .first()
        .map_or(SocketAddr::from(([127, 0, 0, 1], 8080)), |l| l.addr);
    if s.workers == Some(0) {
        r.problem(
            "server.workers",
            "must be at least 1",
            "leave it out to use one worker per core",
        );
    }
    let max_connections = s.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        r.problem(
            "server.max_connections",
            "must be at least 1",
            "leave it out (default 10000)",
        );
    }
    let request_id = match s.request_id.as_deref().unwrap_or("generate") {
        "generate" => RequestIdMode::Generate,
        "trust" => RequestIdMode::Trust,
        other => {
            r.problem(
                "server.request_id",
                format!("unknown value `{other}`"),
                "use \"generate\" or \"trust\" (keep a sane client-sent X-Request-Id)",
            );
            RequestIdMode::Generate
        }
    };
    ServerConfig {
        listen,
        listeners,
        workers: s.workers,
        header_read_timeout: r.duration(
            "server.header_read_timeout",
            s.header_read_timeout.as_ref(),
            Duration::from_secs(10),
        ),
        keep_alive_timeout: r.duration(
            "server.keep_alive_timeout",
            s.keep_alive_timeout.as_ref(),
            Duration::from_secs(60),
        ),
        shutdown_grace: r.duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_ref(),
            Duration::from_secs(30),
        ),
        trust_forwarded: s.trust_forwarded.unwrap_or(false),
        max_header_bytes: r.size(
            "server.max_header_bytes",
            s.max_header_bytes.as_ref(),
            32 * 1024,
        ) as usize,
        max_connections,
        request_id,
        reload_poll: match r.duration(
            "server.reload_poll",
            s.reload_poll.as_ref(),
            Duration::from_secs(2),
        ) {
            d if d.is_zero() => None,
            d => Some(d),
        },
    }
}

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

fn tokens(
    r: &mut Report,
    t: &TokensFile,
    base: &Path,
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
        secret(r, t, base).map(|secret| {
            vec![KeyConfig {
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
    let (user_claims, max_lifetime) = keyring::issued_claims(r, t, &identity_claim, lifetime);
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

pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads the HMAC secret from env or file; never echoes its value in a message.
fn secret(r: &mut Report, t: &TokensFile, base: &Path) -> Option<Secret> {
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
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret {
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
                format!("no signing secret ({what} unset): a random secret is generated per process; tokens will not survive a restart nor validate on other instances"),
                "set the secret (e.g. GATEWAY_SECRET=$(openssl rand -base64 48)) before production use",
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
    if secret.bytes.len() < MIN_SECRET_BYTES && !t.allow_short_secret.unwrap_or(false) {
        let key = match secret.origin {
            SecretOrigin::Env(_) => "tokens.secret_env",
            _ => "tokens.secret_file",
        };
        r.problem(
            key,
            format!("the secret is {} bytes; at least {MIN_SECRET_BYTES} are required", secret.bytes.len()),
            "generate one with `openssl rand -base64 48`, or set tokens.allow_short_secret = true to accept a weak legacy secret",
        );
    }
    Some(secret)
}

fn login(r: &mut Report, l: &LoginFile) -> LoginConfig {
    let max_attempts = l.max_attempts.unwrap_or(20);
    let attempts_window = r.duration(
        "login.attempts_window",
        l.attempts_window.as_ref(),
        Duration::from_secs(60),
    );
    if max_attempts == 0 || attempts_window.is_zero() {
        r.problem(
            "login.max_attempts",
            "the login rate limit must allow at least one attempt per window",
            "leave both out (20 per \"1m\")",
        );
    }
    let path = l.path.clone().unwrap_or_else(|| "/auth".into());
    if !path.starts_with('/') {
        r.problem(
            "login.path",
            format!("`{path}` must start with /"),
            "use \"/auth\"",
        );
    }
    let username_field = l
        .username_field
        .clone()
        .unwrap_or_else(|| "username".into());
    let password_field = l
        .password_field
        .clone()
        .unwrap_or_else(|| "password".into());
    if username_field == password_field {
        r.problem(
            "login.password_field",
            "must differ from username_field",
            "use \"username\" and \"password\"",
        );
    }
    // Half the cores: a login storm keeps the other half for proxied requests. At most 8:
    // each check holds its hash's memory cost (19 MiB with the default parameters), and a
    // container may see the host's cores without its memory.
    let max_concurrent_hashes = l.max_concurrent_hashes.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8))
    });
    if max_concurrent_hashes == 0 {
        r.problem(
            "login.max_concurrent_hashes",
            "must be at least 1",
            "leave it out (default 8)",
        );
    }
    LoginConfig {
        path,
        username_field,
        password_field,
        max_body: r.size("login.max_body", l.max_body.as_ref(), 16 * 1024) as usize,
        max_concurrent_hashes,
        max_attempts,
        attempts_window,
    }
}

fn admin(r: &mut Report, a: &AdminFile, server: &ServerConfig) -> Option<SocketAddr> {
    let text = a.listen.as_deref().unwrap_or("127.0.0.1:9901");
    let Ok(addr) = text.parse::<SocketAddr>() else {
        r.problem(
            "admin.listen",
            format!("`{text}` is not an address:port"),
            "write e.g. \"127.0.0.1:9901\"",
        );
        return None;
    };
    if addr == server.listen && addr.port() != 0 {
        r.problem(
            "admin.listen",
            "the admin listener shares the public address",
            "metrics and config fingerprints stay off the public port: use e.g. 127.0.0.1:9901",
        );
    }
    Some(addr)
}

fn logging(r: &mut Report, l: &LoggingFile) -> LoggingConfig {
    let format = match l.format.as_deref().unwrap_or("human") {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => {
            r.problem(
                "logging.format",
                format!("unknown value `{other}`"),
                "use \"human\" or \"json\"",
            );
            LogFormat::Human
        }
    };
    LoggingConfig {
        format,
        query: l.query.unwrap_or(false),
        access: l.access.unwrap_or(true),
    }
}
