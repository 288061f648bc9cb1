//! [`GatewayFile`] → [`Config`]: the orchestrator. It calls each section's checks in turn
//! (one file per section; the small `[server]`, `[login]`, `[admin]` and `[logging]` tables
//! are checked here) and collects every problem.
//!
//! No serde here: this module only reads the already-parsed file structs. Each problem names
//! the key path the user must edit (`routes[2].auth`) and a hint for the fix.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::file::{AdminFile, GatewayFile, ListenerFile, LoggingFile, LoginFile, ServerFile};
use super::issuers::{issuers, jwks};
use super::keyring;
use super::report::Report;
use super::routes::{identity, routes};
use super::tokens::tokens;
use super::upstreams::upstreams;
use super::users::{check_unique_users, collect_users, load_users_file};
use super::{
    Config, Env, Loaded, LogFormat, LoggingConfig, LoginConfig, Refused, RequestIdMode,
    ServerConfig,
};

/// Validates a parsed file. `base` is the directory relative paths are resolved against;
/// `env` supplies the values of `secret_env` and `password_env` names.
pub fn from_file(file: GatewayFile, base: &Path, env: Env<'_>) -> Result<Loaded, Refused> {
    let mut r = Report::default();
    let mut server = server(&mut r, &file.server, &file.listeners, base);
    let keys = keyring::keys(&mut r, &file.keys, &file.tokens, base, env);
    let tokens = tokens(&mut r, &file.tokens, base, env, keys, !file.keys.is_empty());
    let issuers = issuers(&mut r, &file.issuers, base, file.tokens.issuer.as_deref());
    let jwks = jwks(&mut r, &file.jwks);
    let mut users = Vec::new();
    collect_users(&mut r, "users", &file.users, &mut users);
    if let Some(users_file) = &file.users_file {
        load_users_file(&mut r, users_file, base, &mut users);
    }
    check_unique_users(&mut r, &users);
    let identity_claim = file.tokens.identity_claim.as_deref().unwrap_or("identity");
    let login = file
        .login
        .as_ref()
        .map(|l| login(&mut r, l, base, identity_claim));
    let store = super::store::store(&mut r, &file.store, base, env);
    let refresh = file
        .refresh
        .as_ref()
        .map(|f| super::lifecycle::refresh(&mut r, f));
    let revocation = file
        .revocation
        .as_ref()
        .map(|f| super::lifecycle::revocation(&mut r, f));
    if refresh.is_some() && login.is_none() {
        r.problem(
            "refresh",
            "refresh tokens need a login endpoint",
            "add a [login] table, or remove [refresh]",
        );
    }
    if let Some(l) = &login {
        let mut paths = vec![("login.path", l.path.as_str())];
        if let Some(f) = &refresh {
            paths.push(("refresh.path", f.path.as_str()));
        }
        if let Some(v) = &revocation {
            paths.push(("revocation.logout_path", v.logout_path.as_str()));
        }
        for (i, (key, p)) in paths.iter().enumerate() {
            if paths[..i].iter().any(|(_, q)| q == p) {
                r.problem(
                    *key,
                    format!("`{p}` is already the path of another endpoint"),
                    "give the login, refresh and logout endpoints their own paths",
                );
            }
        }
    }
    if login.as_ref().is_some_and(|l| l.remote.is_none()) && users.is_empty() {
        r.problem(
            "login",
            "a login endpoint is configured but there are no users",
            "add [[users]] entries, a users_file or [login.remote], or remove [login]",
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
    let browser = super::browser::browser(
        &mut r,
        file.browser.as_ref(),
        base,
        env,
        &routes,
        super::browser::Endpoints {
            login: login.as_ref(),
            refresh: refresh.as_ref(),
            revocation: revocation.as_ref(),
        },
    );
    if let (Some(b), Some(t)) = (&browser, &tokens) {
        if b.renew_before > t.lifetime / 2 {
            r.warning(
                "browser.renew_before",
                format!(
                    "over half of tokens.lifetime: page loads renew when under {} is left",
                    humantime::format_duration(t.lifetime / 2)
                ),
                "a fresh token must not be due for renewal at once; lower it, or raise tokens.lifetime",
            );
        }
    }
    let admin = file.admin.as_ref().and_then(|a| admin(&mut r, a, &server));
    let logging = logging(&mut r, &file.logging);
    let taken: Vec<&str> = login
        .iter()
        .map(|l| l.path.as_str())
        .chain(jwks.enabled.then_some(jwks.path.as_str()))
        .collect();
    let forward_auth = file
        .forward_auth
        .as_ref()
        .map(|f| super::forward_auth::forward_auth(&mut r, f, &mut server, &routes, &taken));
    let mut endpoints: Vec<&str> = taken.clone();
    endpoints.extend(refresh.iter().map(|f| f.path.as_str()));
    endpoints.extend(revocation.iter().map(|v| v.logout_path.as_str()));
    let (oauth2, oidc) = super::oidc::oidc(
        &mut r,
        file.oauth2.as_ref(),
        &file.oidc,
        base,
        env,
        &endpoints,
        browser.as_ref(),
        identity_claim,
    );
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
                store,
                forward_auth,
                refresh,
                revocation,
                browser,
                oauth2,
                oidc,
                source_sha256: None,
            },
            warnings: r.warnings,
        }),
        tokens => Err(Refused {
            problems: r.problems,
            warnings: r.warnings,
            keys: tokens.map(|t| t.keys).unwrap_or_default(),
            tls: server.listeners.into_iter().filter_map(|l| l.tls).collect(),
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
        park_idle_after: match r.duration(
            "server.park_idle_after",
            s.park_idle_after.as_ref(),
            Duration::from_secs(1),
        ) {
            d if d.is_zero() => None,
            d => Some(d),
        },
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
        trusted_proxies: super::proxies::trusted_proxies(
            r,
            "server.trusted_proxies",
            s.trusted_proxies.as_ref(),
        ),
    }
}

fn login(r: &mut Report, l: &LoginFile, base: &Path, identity_claim: &str) -> LoginConfig {
    let max_attempts = l.max_attempts.unwrap_or(600);
    let attempts_window = r.duration(
        "login.attempts_window",
        l.attempts_window.as_ref(),
        Duration::from_secs(60),
    );
    if max_attempts == 0 || attempts_window.is_zero() {
        r.problem(
            "login.max_attempts",
            "the login rate limit must allow at least one attempt per window",
            "leave both out (600 per \"1m\")",
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
        limits: super::login_limits::login_limits(r, l.limits.as_ref()),
        remote: l
            .remote
            .as_ref()
            .and_then(|f| super::login_limits::remote(r, f, base, identity_claim)),
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
