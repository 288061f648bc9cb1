//! [`GatewayFile`] → [`Config`]: every check, every default, every problem collected.
//!
//! No serde here: this module only reads the already-parsed file structs. Each problem names
//! the key path the user must edit (`routes[2].auth`) and a hint for the fix.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};
use jsonwebtoken::Algorithm;

use super::file::{GatewayFile, LoginFile, RouteFile, ServerFile, TokensFile, UserFile, UsersFile};
use super::{
    size, AuthMode, Config, ConfigError, ErrorStyle, Loaded, LoginConfig, Problem, RequiredClaims,
    Responder, RouteConfig, Secret, SecretOrigin, ServerConfig, Target, TokensConfig, User, UserId,
};

/// HMAC keys shorter than the hash output weaken the MAC (RFC 7518 §3.2 asks for at least
/// the hash size); 32 bytes covers HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// Collects problems and warnings while the config is checked.
#[derive(Default)]
struct Report {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Report {
    fn problem(
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

    fn warning(
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
    fn duration(&mut self, key: &str, value: Option<&String>, default: Duration) -> Duration {
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

    fn size(&mut self, key: &str, value: Option<&String>, default: u64) -> u64 {
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
    let server = server(&mut r, &file.server);
    let tokens = tokens(&mut r, &file.tokens, base);
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
    let routes = routes(&mut r, &file.routes, login.as_ref());
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
            },
            warnings: r.warnings,
        }),
        _ => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

fn server(r: &mut Report, s: &ServerFile) -> ServerConfig {
    let listen_text = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        r.problem(
            "server.listen",
            format!("`{listen_text}` is not an address:port"),
            "write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    if s.workers == Some(0) {
        r.problem(
            "server.workers",
            "must be at least 1",
            "leave it out to use one worker per core",
        );
    }
    ServerConfig {
        listen,
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

fn tokens(r: &mut Report, t: &TokensFile, base: &Path) -> Option<TokensConfig> {
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
    let algorithm = algorithm(r, t.algorithm.as_deref().unwrap_or("HS256"));
    let secret = secret(r, t, base);

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
    Some(TokensConfig {
        header,
        prefix,
        algorithm,
        secret: secret?,
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
    })
}

fn resolve(base: &Path, path: &str) -> PathBuf {
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

fn user_id(r: &mut Report, key: &str, v: &Option<toml::Value>) -> Option<UserId> {
    match v {
        Some(toml::Value::Integer(i)) => Some(UserId::Int(*i)),
        Some(toml::Value::String(s)) if !s.is_empty() => Some(UserId::Str(s.clone())),
        Some(_) => {
            r.problem(
                key,
                "must be an integer or a non-empty string",
                "write e.g. id = 1 or id = \"alice\"",
            );
            None
        }
        None => {
            r.problem(
                key,
                "missing",
                "every user needs an id, which becomes the token's identity",
            );
            None
        }
    }
}

fn collect_users(r: &mut Report, prefix: &str, list: &[UserFile], out: &mut Vec<User>) {
    for (i, u) in list.iter().enumerate() {
        let at = format!("{prefix}[{i}]");
        let id = user_id(r, &format!("{at}.id"), &u.id);
        let username = match &u.username {
            Some(n) if !n.is_empty() => Some(n.clone()),
            _ => {
                r.problem(
                    format!("{at}.username"),
                    "missing or empty",
                    "add username = \"...\"",
                );
                None
            }
        };
        let hash = match &u.password_hash {
            Some(h) => match argon2::PasswordHash::new(h) {
                // A hash without salt or output never verifies, and as the first user's it
                // would be the dummy hash: unknown users would be answered without any work.
                Ok(parsed)
                    if parsed.algorithm.as_str() == "argon2id"
                        && parsed.salt.is_some()
                        && parsed.hash.is_some() =>
                {
                    Some(h.clone())
                }
                Ok(parsed) if parsed.algorithm.as_str() == "argon2id" => {
                    r.problem(
                        format!("{at}.password_hash"),
                        "incomplete argon2id hash (no salt or no hash output)",
                        "produce one with `gateway hash-password`",
                    );
                    None
                }
                Ok(parsed) => {
                    r.problem(
                        format!("{at}.password_hash"),
                        format!("algorithm `{}` is not accepted", parsed.algorithm),
                        "hash passwords with `gateway hash-password` (argon2id)",
                    );
                    None
                }
                Err(_) => {
                    r.problem(
                        format!("{at}.password_hash"),
                        "not a PHC hash string",
                        "produce one with `gateway hash-password`",
                    );
                    None
                }
            },
            None => {
                r.problem(
                    format!("{at}.password_hash"),
                    "missing",
                    "produce one with `gateway hash-password`",
                );
                None
            }
        };
        if let (Some(id), Some(username), Some(password_hash)) = (id, username, hash) {
            out.push(User {
                id,
                username,
                password_hash,
            });
        }
    }
}

fn load_users_file(r: &mut Report, path: &str, base: &Path, out: &mut Vec<User>) {
    let full = resolve(base, path);
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            r.problem(
                "users_file",
                format!("cannot read {}: {e}", full.display()),
                "fix the path (relative paths start at the config file's folder)",
            );
            return;
        }
    };
    match toml::from_str::<UsersFile>(&text) {
        Ok(f) => collect_users(r, &format!("users_file({path}).users"), &f.users, out),
        Err(e) => r.problem(
            "users_file",
            format!("{}: {}", full.display(), e.message().trim()),
            "the file holds [[users]] entries with id, username, password_hash",
        ),
    }
}

fn check_unique_users(r: &mut Report, users: &[User]) {
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for u in users {
        if !names.insert(u.username.as_str()) {
            r.problem(
                "users",
                format!("username `{}` appears twice", u.username),
                "usernames must be unique",
            );
        }
        if !ids.insert(&u.id) {
            r.problem(
                "users",
                format!("user id {:?} appears twice", u.id),
                "ids must be unique: they are the token identity",
            );
        }
    }
}

fn login(r: &mut Report, l: &LoginFile) -> LoginConfig {
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
    let max_concurrent_hashes = l.max_concurrent_hashes.unwrap_or(8);
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
    }
}

/// Normalizes a route path to its segment prefix: `/api/` and `/api` both become `/api`.
fn route_path(r: &mut Report, key: &str, path: &Option<String>) -> String {
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
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

fn routes(r: &mut Report, list: &[RouteFile], login: Option<&LoginConfig>) -> Vec<RouteConfig> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, f) in list.iter().enumerate() {
        let at = format!("routes[{i}]");
        let path = route_path(r, &format!("{at}.path"), &f.path);
        if !seen.insert(path.clone()) {
            r.problem(
                format!("{at}.path"),
                format!("`{path}` is already used by an earlier route"),
                "two routes on one path would shadow each other; merge them",
            );
        }
        if let Some(l) = login {
            if l.path.trim_end_matches('/') == path {
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
        let target = match (&f.upstream, &f.respond) {
            (Some(u), None) => upstream(r, &format!("{at}.upstream"), u),
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
        let max_body = f
            .max_body
            .as_ref()
            .map(|s| r.size(&format!("{at}.max_body"), Some(s), 0));
        let route = RouteConfig {
            path,
            target: target.unwrap_or(Target::Respond(Responder::Identity)),
            auth,
            forward_authorization: f.forward_authorization.unwrap_or(false),
            timeout: r.duration(
                &format!("{at}.timeout"),
                f.timeout.as_ref(),
                Duration::from_secs(30),
            ),
            connect_timeout: r.duration(
                &format!("{at}.connect_timeout"),
                f.connect_timeout.as_ref(),
                Duration::from_secs(5),
            ),
            max_body,
        };
        out.push(route);
    }
    out
}

fn upstream(r: &mut Report, key: &str, text: &str) -> Option<Target> {
    let uri: Uri = match text.parse() {
        Ok(u) => u,
        Err(e) => {
            r.problem(
                key,
                format!("`{text}` is not a URL: {e}"),
                "write e.g. \"http://127.0.0.1:9000\"",
            );
            return None;
        }
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            r.problem(
                key,
                "https upstreams are not supported yet",
                "use an http:// upstream on a trusted network",
            );
            return None;
        }
        _ => {
            r.problem(
                key,
                format!("`{text}` has no http:// scheme"),
                "write e.g. \"http://127.0.0.1:9000\"",
            );
            return None;
        }
    }
    if uri.authority().is_none() || uri.query().is_some() {
        r.problem(
            key,
            format!("`{text}` must be scheme://host:port with an optional base path"),
            "write e.g. \"http://127.0.0.1:9000\"",
        );
        return None;
    }
    Some(Target::Upstream(uri))
}
