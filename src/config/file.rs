//! The serde mirror of `gateway.toml`: exactly what the user wrote.
//!
//! Every struct denies unknown keys, so a misspelled key (`auht = "required"`) is an error at
//! start instead of a silently open route. Values stay as the user wrote them (strings for
//! durations and addresses); `validate.rs` turns them into typed values.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// The root of `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub tokens: TokensFile,
    pub login: Option<LoginFile>,
    #[serde(default)]
    pub users: Vec<UserFile>,
    pub users_file: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// The keyring; when present it replaces the `[tokens]` secret.
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    #[serde(default)]
    pub issuers: Vec<IssuerFile>,
    #[serde(default)]
    pub jwks: JwksFile,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamFile>,
    #[serde(default)]
    pub identity: IdentityFile,
    pub admin: Option<AdminFile>,
    /// Several listeners, plain or TLS (instead of `[server] listen`).
    #[serde(default)]
    pub listeners: Vec<ListenerFile>,
    #[serde(default)]
    pub logging: LoggingFile,
    /// Where state shared across requests lives (login limits).
    #[serde(default)]
    pub store: StoreFile,
    /// Decision endpoints for a proxy in front (nginx, Traefik, Caddy, Envoy).
    pub forward_auth: Option<ForwardAuthFile>,
    /// Refresh tokens (off without the table).
    pub refresh: Option<RefreshFile>,
    /// Logout and revocation (off without the table).
    pub revocation: Option<RevocationFile>,
    /// Browser mode: the login page, cookie sessions, CSRF (for routes with `browser`).
    pub browser: Option<BrowserFile>,
    /// OpenID Connect providers a browser may log in with.
    #[serde(default)]
    pub oidc: Vec<OidcFile>,
    /// What every `[[oidc]]` provider shares: paths, the flow cookie's key.
    pub oauth2: Option<OAuth2File>,
}

/// `[browser]`: settings of browser mode, which routes turn on with `browser = true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserFile {
    pub login_page: Option<String>,
    pub logout_path: Option<String>,
    pub template: Option<String>,
    pub secure_cookies: Option<String>,
    pub renew_before: Option<String>,
    pub csrf_secret_env: Option<String>,
    pub csrf_secret_file: Option<String>,
    pub csrf_header: Option<String>,
}

/// One `[[oidc]]` entry: an OpenID Connect provider (the gateway is its relying party).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub name: Option<String>,
    pub label: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub identity_claim: Option<String>,
    pub claims: Option<Vec<String>>,
    pub email_claim: Option<String>,
    pub allowed_email_domains: Option<Vec<String>>,
    pub allow_unverified_email: Option<bool>,
    pub groups_claim: Option<String>,
    pub allowed_groups: Option<Vec<String>>,
    pub fetch_timeout: Option<String>,
    pub ca_file: Option<String>,
    pub identity_prefix: Option<String>,
    pub allow_local_identity: Option<bool>,
    pub insecure_http: Option<bool>,
}

/// `[oauth2]`: the paths and the flow cookie shared by every `[[oidc]]` provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2File {
    pub path: Option<String>,
    pub public_origin: Option<String>,
    pub post_logout_url: Option<String>,
    pub flow_lifetime: Option<String>,
    pub cookie_key_env: Option<String>,
    pub cookie_key_file: Option<String>,
}

/// `[forward_auth]`: answering another proxy's "may this request pass?".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthFile {
    pub listen: Option<String>,
    pub path: Option<String>,
    pub contracts: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_age: Option<String>,
}

/// `[refresh]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshFile {
    pub lifetime: Option<String>,
    pub idle: Option<String>,
    pub grace: Option<String>,
    pub path: Option<String>,
}

/// `[revocation]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationFile {
    pub on_store_error: Option<String>,
    pub max_staleness: Option<String>,
    pub resync: Option<String>,
    pub logout_path: Option<String>,
}

/// `[store]`: the embedded store or Redis.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub key_prefix: Option<String>,
    pub timeout: Option<String>,
    pub ca_file: Option<String>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub addr: Option<String>,
    pub tls: Option<ListenerTlsFile>,
    /// On a plain listener: answer every request with a 301 to https on this port.
    pub redirect_https_port: Option<u16>,
}

/// `[listeners.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    pub cert: Option<String>,
    pub key: Option<String>,
    #[serde(default)]
    pub certificates: Vec<SniCertFile>,
    pub unknown_names: Option<String>,
    pub min_version: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    pub client_subject_header: Option<String>,
    pub hsts: Option<String>,
    pub handshake_timeout: Option<String>,
    pub expiry_warning_days: Option<u32>,
}

/// A certificate chosen by SNI.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertFile {
    #[serde(default)]
    pub names: Vec<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `[admin]`: the operator listener (metrics, health, readiness, config fingerprint).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<String>,
}

/// `[logging]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    pub format: Option<String>,
    pub query: Option<bool>,
    pub access: Option<bool>,
}

/// `[server]`: the listener and connection limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub listen: Option<String>,
    pub workers: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub keep_alive_timeout: Option<String>,
    pub park_idle_after: Option<String>,
    pub shutdown_grace: Option<String>,
    pub trust_forwarded: Option<bool>,
    #[serde(default, deserialize_with = "size")]
    pub max_header_bytes: Option<String>,
    pub max_connections: Option<usize>,
    pub request_id: Option<String>,
    pub reload_poll: Option<String>,
    /// CIDRs of the proxies whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[tokens]`: how tokens are read, verified and issued.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub algorithm: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub missing_secret: Option<String>,
    pub allow_short_secret: Option<bool>,
    pub allow_weak_secret: Option<bool>,
    pub lifetime: Option<String>,
    pub not_before: Option<String>,
    pub leeway: Option<String>,
    pub identity_claim: Option<String>,
    pub required_claims: Option<Vec<String>>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub max_token_bytes: Option<usize>,
    pub errors: Option<String>,
    pub realm: Option<String>,
    pub max_lifetime: Option<String>,
    pub issue_sub: Option<bool>,
    pub issue_jti: Option<bool>,
    pub user_claims: Option<Vec<String>>,
    pub cache_size: Option<usize>,
}

/// `[login]`: the token-issuing endpoint (Flask-JWT's `/auth`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    pub path: Option<String>,
    pub username_field: Option<String>,
    pub password_field: Option<String>,
    #[serde(default, deserialize_with = "size")]
    pub max_body: Option<String>,
    pub max_concurrent_hashes: Option<usize>,
    pub max_attempts: Option<u32>,
    pub attempts_window: Option<String>,
    /// Failed-login limits per account, address and (address, account).
    pub limits: Option<LoginLimitsFile>,
    /// A user service that checks credentials the local users do not know.
    pub remote: Option<RemoteLoginFile>,
}

/// `[login.limits]`: brute-force limits that count failed logins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimitsFile {
    pub account_failures: Option<u32>,
    pub account_window: Option<String>,
    pub lockout: Option<String>,
    pub max_lockout: Option<String>,
    pub address_failures: Option<u32>,
    pub address_window: Option<String>,
    pub pair_failures: Option<u32>,
    pub pair_window: Option<String>,
    pub on_store_error: Option<String>,
}

/// `[login.remote]`: the delegated credential check.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteLoginFile {
    pub url: Option<String>,
    pub timeout: Option<String>,
    pub identity: Option<String>,
    pub claims: Option<Vec<String>>,
    pub ca_file: Option<String>,
}

/// One `[[users]]` entry (or one entry of `users_file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub id: Option<toml::Value>,
    pub username: Option<String>,
    pub password_hash: Option<String>,
    /// Claims copied into this user's tokens when `[tokens] user_claims` names them.
    pub claims: Option<toml::Table>,
}

/// The shape of a separate `users_file`: `[[users]]` entries and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<UserFile>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// A name for metrics, logs and `check` messages; default: the key path (`routes[0]`).
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    #[serde(rename = "match")]
    pub match_kind: Option<String>,
    pub methods: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub respond: Option<String>,
    pub auth: Option<String>,
    pub require: Option<BTreeMap<String, RequireFile>>,
    pub claim_headers: Option<BTreeMap<String, String>>,
    pub strip_prefix: Option<bool>,
    pub rewrite_prefix: Option<String>,
    pub forward_authorization: Option<bool>,
    /// Steering headers (see `steering.rs`) this route lets through to its backend.
    pub pass_headers: Option<Vec<String>>,
    /// Send the client's `Host` upstream instead of the upstream's own authority.
    pub preserve_host: Option<bool>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    #[serde(default, deserialize_with = "size")]
    pub max_body: Option<String>,
    /// External issuers (`[[issuers]] issuer`) whose tokens this route accepts besides ours.
    pub issuers: Option<Vec<String>>,
    /// Browser mode: our token from the session cookie too, CSRF checks, the login page.
    pub browser: Option<bool>,
}

/// One `[[keys]]` entry: a key of the keyring.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub id: Option<String>,
    pub algorithm: Option<String>,
    pub private_key_file: Option<String>,
    pub public_key_file: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub allow_short_secret: Option<bool>,
    pub allow_weak_secret: Option<bool>,
    pub sign: Option<bool>,
}

/// One `[[issuers]]` entry: an external identity provider whose tokens routes may accept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_ca_file: Option<String>,
    pub identity_claim: Option<String>,
    pub required_claims: Option<Vec<String>>,
    pub max_lifetime: Option<String>,
    pub cache_ttl: Option<String>,
    pub min_refetch_interval: Option<String>,
    pub fetch_timeout: Option<String>,
}

/// `[jwks]`: publishing our public keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksFile {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub max_age: Option<String>,
}

/// A claim requirement: a list (any of) or an explicit `{ any_of = [...] }` / `{ all_of = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RequireFile {
    AnyOf(Vec<String>),
    Explicit(RequireTableFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireTableFile {
    pub any_of: Option<Vec<String>>,
    pub all_of: Option<Vec<String>>,
}

/// `[identity]`: the headers the gateway sets from verified claims.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// How array claims are written: "comma" (default) or "json".
    pub arrays: Option<String>,
    /// Header name → claim name, set on every authenticated route.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// `[upstreams.NAME]`: a pool of servers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    #[serde(default)]
    pub servers: Vec<String>,
    pub balance: Option<String>,
    pub protocol: Option<String>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub retries: Option<u32>,
    /// The default of `preserve_host` for the routes to this upstream.
    pub preserve_host: Option<bool>,
    pub eject_for: Option<String>,
    pub health: Option<HealthFile>,
    pub tls: Option<UpstreamTlsFile>,
}

/// `[upstreams.NAME.health]`: active health checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

/// `[upstreams.NAME.tls]`: how https servers are verified, and our client certificate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    pub server_name: Option<String>,
}

/// A byte size as written: `"16KiB"`, or a bare integer number of bytes (`8192`), which is
/// kept as its decimal text so that one parser (`size::parse`) judges both.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct SizeVisitor;
    impl serde::de::Visitor<'_> for SizeVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a size: a number of bytes or a string such as \"16KiB\"")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(|n| Some(n.to_string()))
                .map_err(|_| E::custom("a size cannot be negative"))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }
    d.deserialize_any(SizeVisitor)
}
