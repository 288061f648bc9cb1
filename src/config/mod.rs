//! Configuration: `gateway.toml` → [`file::GatewayFile`] (what the user wrote) → [`Config`]
//! (what the program uses: parsed addresses, durations, header names, loaded secrets).
//!
//! Checking never stops at the first problem: [`check_file`] reports every problem at once,
//! each with the key path it concerns and a hint for the fix. Key and certificate files
//! are read or named here but parsed by the load stage (`crate::load`), which adds its
//! problems to the same report: this module never calls into the runtime.

mod browser;
pub mod file;
mod forward_auth;
mod issuers;
pub mod key_files;
mod keyring;
mod lifecycle;
mod listeners;
mod login_limits;
mod oidc;
mod proxies;
mod report;
mod routes;
mod shape;
mod size;
mod store;
mod tokens;
mod upstreams;
mod users;
pub mod validate;
pub mod weak_secret;

pub use keyring::{alg_name, is_hmac, parse_algorithm};
pub use oidc::is_loopback;
pub use report::{is_gateway_claim, GATEWAY_CLAIMS, MIN_SECRET_BYTES};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, Uri};

pub use browser::{BrowserConfig, SecureCookies};
pub use lifecycle::{RefreshConfig, RevocationConfig, RevocationFailure};
pub use login_limits::{FailureLimit, LoginLimits, OnStoreError, RemoteLogin};
pub use store::{RedisConfig, StoreBackend, StoreConfig};
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
    /// External identity providers; routes opt in with `issuers = [...]`.
    pub issuers: Vec<IssuerConfig>,
    pub jwks: JwksConfig,
    /// Named upstream pools; routes with an inline URL get a pool named after the route.
    pub upstreams: Vec<UpstreamConfig>,
    pub identity: IdentityConfig,
    /// The admin listener's address, when enabled.
    pub admin: Option<SocketAddr>,
    pub logging: LoggingConfig,
    /// `[store]`: the embedded store or Redis.
    pub store: StoreConfig,
    /// The forward-auth decision endpoints, when `[forward_auth]` is present.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `[refresh]`: refresh tokens at the login path; `None` when off.
    pub refresh: Option<RefreshConfig>,
    /// `[revocation]`: logout and revocation by `jti` or user; `None` when off.
    pub revocation: Option<RevocationConfig>,
    /// Browser mode, on when a route has `browser = true`; `None` when off.
    pub browser: Option<BrowserConfig>,
    /// `[oauth2]`: present whenever `oidc` is not empty.
    pub oauth2: Option<OAuth2Config>,
    /// `[[oidc]]`: providers a browser logs in with.
    pub oidc: Vec<OidcConfig>,
    /// SHA-256 (hex) of the file this came from, to spot instances running different files.
    pub source_sha256: Option<String>,
}

/// The log line format (`--log-format` or `[logging] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// Log query strings in the access log (off by default: they often carry secrets).
    pub query: bool,
    /// One access-log event per request (off: metrics still count every request).
    pub access: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Every listener; `listen` is the first one's address.
    pub listeners: Vec<ListenerConfig>,
    /// Runtime worker threads; `None` means one per core.
    pub workers: Option<usize>,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    /// How long an idle HTTP/1.1 keep-alive connection keeps hyper's buffers before it is
    /// parked without them; `None` never parks.
    pub park_idle_after: Option<Duration>,
    pub shutdown_grace: Duration,
    /// Keep client-sent `X-Forwarded-*` and append to them, instead of replacing them.
    pub trust_forwarded: bool,
    /// Total size of request header names and values; more gets 431.
    pub max_header_bytes: usize,
    /// Open client connections at once, per listener; more are answered 503 and closed.
    pub max_connections: usize,
    pub request_id: RequestIdMode,
    /// How often the config file is checked for changes; `None` disables watching.
    pub reload_poll: Option<Duration>,
    /// Peers whose `X-Forwarded-For` names the client (for limits, logs, forwarding).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// One listener: plain, TLS, or a plain one that redirects to HTTPS.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub tls: Option<TlsListenerConfig>,
    pub redirect_https_port: Option<u16>,
    /// What the listener answers: proxied requests, or only forward-auth decisions.
    pub front: Front,
}

/// Which front-end a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The gateway as the proxy (and the forward-auth paths, when mounted there).
    Proxy,
    /// `[forward_auth] listen`: decision endpoints only.
    ForwardAuth,
}

/// `[forward_auth]`: decision endpoints answering a proxy that asks before it forwards.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// Its own listener; `None`: the endpoints are paths on the main listeners.
    pub listen: Option<SocketAddr>,
    /// The endpoints' common prefix: `{path}/nginx`, `{path}/traefik`, `{path}/caddy`,
    /// `{path}/envoy` (Envoy appends the original path to the last).
    pub path: String,
    pub contracts: Vec<Contract>,
    /// Peers whose description of the original request is believed; anyone else gets 400.
    /// `[server] trusted_proxies` unless `[forward_auth]` lists its own; never empty.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Longest `Cache-Control: max-age` an allow carries (never past the token's `exp`).
    pub max_age: Duration,
}

/// A proxy's forward-auth wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// nginx `auth_request`.
    Nginx,
    /// Traefik `ForwardAuth`.
    Traefik,
    /// Caddy `forward_auth`.
    Caddy,
    /// Envoy `ext_authz` with an HTTP service.
    Envoy,
}

impl Contract {
    pub const ALL: [Contract; 4] = [
        Contract::Nginx,
        Contract::Traefik,
        Contract::Caddy,
        Contract::Envoy,
    ];

    /// The name in `contracts = [...]` and in the endpoint path.
    pub fn name(self) -> &'static str {
        match self {
            Contract::Nginx => "nginx",
            Contract::Traefik => "traefik",
            Contract::Caddy => "caddy",
            Contract::Envoy => "envoy",
        }
    }
}

/// A PEM certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Ask for a certificate; verify it when sent.
    Request,
    /// Refuse the handshake without a valid certificate.
    Require,
}

/// TLS settings of a listener. The certificate files are only named here; the load
/// stage (`crate::load`) reads them into a rustls config once per load.
#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    /// Where it was written (`listeners[0].tls`), for problems found while building it.
    pub at: String,
    /// Served when SNI names no other certificate (and without SNI).
    pub default: Option<CertPaths>,
    /// Certificates by server name: exact names and `*.suffix` (one label).
    pub sni: Vec<(Vec<String>, CertPaths)>,
    /// Fail the handshake for a name no certificate covers, instead of the default.
    pub reject_unknown: bool,
    pub tls13_only: bool,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Carries the verified client certificate's subject upstream (stripped from clients).
    pub client_subject_header: Option<HeaderName>,
    pub hsts: Option<http::HeaderValue>,
    pub handshake_timeout: Duration,
    /// Certificates expiring within this many days are warned about at each load.
    pub expiry_warning_days: u32,
}

/// Where `X-Request-Id` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestIdMode {
    /// Always a fresh random id.
    Generate,
    /// The client's id when it is sane (1..=128 visible ASCII characters), else a fresh one.
    Trust,
}

/// How array claims are written into headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayEncoding {
    /// `a,b,c`
    Comma,
    /// `["a","b","c"]`
    Json,
}

/// `[identity]`: headers set from claims on authenticated routes.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub arrays: ArrayEncoding,
    /// Header → claim, for every authenticated route.
    pub claims: Vec<(HeaderName, String)>,
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
    /// The keyring, never empty, exactly one key with `sign`. The legacy `[tokens]`
    /// `algorithm` + `secret_*` form is a one-key keyring whose key has no id.
    pub keys: Vec<KeyConfig>,
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
    /// Longest accepted `exp - iat`; `None`: not limited.
    pub max_lifetime: Option<Duration>,
    /// Write `sub` (the identity as a string) into issued tokens.
    pub issue_sub: bool,
    /// Write a random `jti` into issued tokens.
    pub issue_jti: bool,
    /// Claims copied from the user record (`[[users]] claims`) into issued tokens.
    pub user_claims: Vec<String>,
    /// Verified-token cache entries (asymmetric keys only); 0 disables the cache.
    pub cache_size: usize,
}

/// One key of the keyring. Its algorithm is fixed here: a token's `alg` only selects among
/// keys that allow it, never how a key is read.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Where it was written and the field its material came from (`keys[2]`,
    /// `private_key_file`), for problems found when the key is built.
    pub at: String,
    pub field: &'static str,
    /// The `kid`; `None` only for the legacy `[tokens]` secret.
    pub id: Option<String>,
    pub algorithm: jsonwebtoken::Algorithm,
    pub material: KeyMaterial,
    /// The one key new tokens are signed with.
    pub sign: bool,
}

/// Where a key's bytes came from, already read.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// An HMAC secret.
    Secret(Secret),
    /// A PEM private key (public half derived), or a PEM public key (verify only).
    Pem(Pem),
}

/// PEM text of a key. Debug prints only which half it is, never the bytes.
#[derive(Clone)]
pub enum Pem {
    Private(Vec<u8>),
    Public(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pem::Private(_) => "Pem::Private(..)",
            Pem::Public(_) => "Pem::Public(..)",
        })
    }
}

/// One external issuer (`[[issuers]]`).
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The `iss` its tokens carry, matched exactly.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one. Never empty.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// How an https `jwks_url` is verified (system roots unless `jwks_ca_file`).
    pub jwks_tls: UpstreamTls,
    pub identity_claim: String,
    pub required: RequiredClaims,
    /// Further claims that must be present (any value).
    pub required_custom: Vec<String>,
    pub max_lifetime: Option<Duration>,
    /// How long a fetched key set is used before it is refreshed (in the background).
    pub cache_ttl: Duration,
    /// Unknown-`kid` refetches happen at most once per this interval.
    pub min_refetch_interval: Duration,
    pub fetch_timeout: Duration,
}

/// `[oauth2]`: what the OIDC login flow of every provider shares.
#[derive(Debug, Clone)]
pub struct OAuth2Config {
    /// The prefix: `{path}/{name}/start`, `{path}/{name}/callback`.
    pub path: String,
    /// The origin (`https://app.example`) each provider's redirect URI
    /// `{origin}{path}/{name}/callback` is built on; `None`: each request's scheme and host.
    pub public_origin: Option<String>,
    /// Where a provider sends the browser after its logout; `None`: the request's origin + `/`.
    pub post_logout_url: Option<String>,
    /// How long a started login may take before its callback is refused.
    pub flow_lifetime: Duration,
    /// Seals the flow cookie (and the logout hint); every instance needs the same.
    pub cookie_key: Secret,
}

/// One `[[oidc]]` provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Where it was written (`oidc[1]`).
    pub at: String,
    /// In the start path: `/oauth2/{name}/start`.
    pub name: String,
    /// The login page's button text.
    pub label: String,
    /// Its issuer, without a trailing slash; discovery reads
    /// `{issuer}/.well-known/openid-configuration` and must answer exactly this issuer.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Always holds `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim that becomes the identity (`X-Identity`).
    pub identity_claim: String,
    /// ID token claims carried into the session's tokens.
    pub claims: Vec<String>,
    pub email_claim: String,
    /// Lowercase; empty: any email (or none).
    pub allowed_email_domains: Vec<String>,
    /// Accept an email whose `email_verified` is not `true` (otherwise required whenever
    /// the email is the identity or `allowed_email_domains` are listed).
    pub allow_unverified_email: bool,
    /// Put before every identity this provider asserts (`corp:` → `corp:alice`); empty:
    /// none.
    pub identity_prefix: String,
    /// Let this provider's identity (after the prefix) equal a local `[[users]]` id: the
    /// provider's user then *is* that local user.
    pub allow_local_identity: bool,
    /// A plain-HTTP issuer on a host that is not loopback was accepted (warned).
    pub insecure_http: bool,
    pub groups_claim: String,
    /// Empty: any groups (or none).
    pub allowed_groups: Vec<String>,
    /// Discovery, token and JWKS requests: connect + answer.
    pub fetch_timeout: Duration,
    /// How an https issuer is verified (system roots unless `ca_file`).
    pub tls: UpstreamTls,
}

/// Where an issuer's key set comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(Uri),
    File(std::path::PathBuf),
}

/// Publishing our public keys as a JWKS.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// Served only when true and the keyring holds an asymmetric key.
    pub enabled: bool,
    pub path: String,
    /// `Cache-Control: public, max-age=...`.
    pub max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub path: String,
    pub username_field: String,
    pub password_field: String,
    pub max_body: usize,
    pub max_concurrent_hashes: usize,
    /// Login attempts of any outcome allowed per client address within `attempts_window`
    /// (burst), refilled evenly over the window, per instance; more get 429 before the body
    /// is read. A flood cap that bounds hashing work, set well above honest use.
    pub max_attempts: u32,
    pub attempts_window: Duration,
    /// Failed-login limits (shared through the store).
    pub limits: LoginLimits,
    /// The delegated credential check, asked for usernames the local users do not know.
    pub remote: Option<RemoteLogin>,
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
    /// Extra claims for this user's tokens (see `TokensConfig::user_claims`).
    pub claims: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Public,
}

/// What answers a route.
#[derive(Debug, Clone)]
pub enum Target {
    /// Forward to the named upstream pool.
    Upstream(String),
    /// A built-in responder (like Envoy's direct response).
    Respond(Responder),
}

/// How a route's host pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com` (lowercase, no port).
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches any name ending with it.
    Suffix(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    /// Whole-segment prefix: `/api` matches `/api`, `/api/`, `/api/x`.
    Prefix,
    /// The path exactly.
    Exact,
}

/// One claim requirement of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub claim: String,
    pub values: Vec<String>,
    /// All values must be present (else any one).
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastOutstanding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2: prior knowledge (h2c) on http://, ALPN on https://.
    H2,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    /// Extra trust anchors (PEM); the system roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Our client certificate chain and key (PEM), for backends that require mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// SNI and verified name, when it differs from the URL's host.
    pub server_name: Option<String>,
}

/// A named pool of servers.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// Origins: `http(s)://host:port` with an optional base path; all of one scheme.
    pub servers: Vec<Uri>,
    pub balance: Balance,
    pub protocol: UpstreamProtocol,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    /// Further attempts for idempotent requests whose connection could not be made.
    pub retries: u32,
    /// Default of the routes' `preserve_host`.
    pub preserve_host: bool,
    /// How long a server that refused or timed out is skipped.
    pub eject_for: Duration,
    pub health: Option<HealthConfig>,
    pub tls: UpstreamTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responder {
    /// Answers `{"identity": <the caller's identity>}`.
    Identity,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Where the route was written (`routes[3]`): problem keys name it.
    pub at: String,
    /// Its `name`, or `at` when it has none: metrics labels and logs use it.
    pub name: String,
    pub host: Option<HostMatch>,
    /// `/api` (prefix, no trailing slash), `/`, or an exact path.
    pub path: String,
    pub path_match: PathMatch,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    pub target: Target,
    pub auth: AuthMode,
    pub require: Vec<Requirement>,
    /// Header → claim, on top of `[identity] claims`.
    pub claim_headers: Vec<(HeaderName, String)>,
    /// Replaces the matched prefix before forwarding (`""` strips it).
    pub rewrite_prefix: Option<String>,
    pub forward_authorization: bool,
    /// Steering headers (exact names) this route lets through; see `steering`.
    pub pass_headers: Vec<HeaderName>,
    /// Send the client's `Host` upstream (else the upstream's own authority).
    pub preserve_host: bool,
    /// Overrides the upstream's response timeout.
    pub timeout: Option<Duration>,
    pub max_body: Option<u64>,
    /// External issuers accepted here besides our own keys (by `issuer`); empty: ours only.
    pub issuers: Vec<String>,
    /// Browser mode: our token is read from the session cookie too (the header wins),
    /// cookie-authenticated unsafe methods need a CSRF token, and browser navigations
    /// without a session are sent to the login page.
    pub browser: bool,
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

/// A checked configuration plus the warnings that did not stop it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// A configuration the checks refused: every problem found, plus the keys and TLS
/// listeners that passed their own checks, so the load stage can still report what their
/// files hold in the same run (every problem at once).
#[derive(Debug, Default)]
pub struct Refused {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub keys: Vec<KeyConfig>,
    pub tls: Vec<TlsListenerConfig>,
}

impl From<Refused> for ConfigError {
    fn from(r: Refused) -> ConfigError {
        ConfigError {
            problems: r.problems,
        }
    }
}

/// Reads, parses and checks a config file. Relative paths inside it (`secret_file`,
/// `users_file`) are resolved against the file's directory. Key and certificate files are
/// read but not parsed: `crate::load` builds them.
pub fn check_file(path: &Path) -> Result<Loaded, Refused> {
    let text = std::fs::read_to_string(path).map_err(|e| Refused {
        problems: vec![Problem {
            key: "(file)".into(),
            message: format!("cannot read {}: {e}", path.display()),
            hint: "pass the config with --config PATH".into(),
        }],
        ..Refused::default()
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut loaded = check_str(&text, base)?;
    loaded.config.source_sha256 = Some(sha256_hex(text.as_bytes()));
    Ok(loaded)
}

/// Lowercase hex SHA-256, for fingerprints.
pub fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses and checks config text; `base` resolves relative file paths and `secret_env`
/// names are read from the process environment.
pub fn check_str(text: &str, base: &Path) -> Result<Loaded, Refused> {
    check_str_with_env(text, base, &process_env)
}

/// Like [`check_str`], with `secret_env` names looked up through `env` instead of the
/// process environment.
pub fn check_str_with_env(text: &str, base: &Path, env: Env<'_>) -> Result<Loaded, Refused> {
    let (file, mut problems) = shape::parse::<file::GatewayFile>(text, "");
    let Some(file) = file else {
        return Err(Refused {
            problems,
            ..Refused::default()
        });
    };
    // Shape problems (unknown keys, wrong types) join the rest in one list: the config is
    // refused, and one `check` names every problem.
    match from_file(file, base, env) {
        Ok(loaded) if problems.is_empty() => Ok(loaded),
        Ok(loaded) => Err(Refused {
            problems,
            warnings: loaded.warnings,
            keys: loaded.config.tokens.keys,
            tls: loaded
                .config
                .server
                .listeners
                .into_iter()
                .filter_map(|l| l.tls)
                .collect(),
        }),
        Err(mut refused) => {
            problems.append(&mut refused.problems);
            refused.problems = problems;
            Err(refused)
        }
    }
}

/// Looks an environment variable up by name: `None` when it is unset or not UTF-8. The
/// checks read every `secret_env` through one, so a caller can supply the environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, the [`Env`] of every load from a file.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Turns a TOML syntax error into a problem naming its line.
pub(crate) fn toml_problem(e: &toml::de::Error, text: &str) -> Problem {
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
    Problem {
        key,
        message: e.message().trim().to_string(),
        hint: "this is not valid TOML".into(),
    }
}
