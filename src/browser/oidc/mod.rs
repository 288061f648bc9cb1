//! OpenID Connect login: the gateway as relying party of one or more `[[oidc]]` providers.
//!
//! ```text
//! GET {path}/{name}/start?return_to=/app   → 302 to the provider's authorization endpoint
//!       (code flow, PKCE S256, fresh state and nonce) + the sealed flow cookie
//! GET {path}/{name}/callback?code&state&iss → flow cookie opened, state compared, the
//!       provider compared with the flow's (and with `iss`), one-time marker in the
//!       store, code exchanged (client_secret_basic or _post, as discovery says),
//!       ID token verified (JWKS, iss, aud, exp, iat, azp, nonce), email domain and groups
//!       checked, the identity prefixed and kept apart from local users → a session of ours (`Vouched` → the session cookies) → 302 to /app
//! POST [browser] logout_path        → browser mode's sign-out, then 303 to the provider's
//!       end_session_endpoint (id_token_hint from the sealed logout cookie) instead of
//!       the login page
//! ```
//!
//! Nothing here keeps state in memory between the start and the callback: the flow cookie
//! carries it, sealed, so the callback may land on any instance with the same `[oauth2]`
//! key. The cookie is cleared by every callback that opened it, and the state's one-time
//! marker in the store ([`crate::store`], shared with Redis) refuses a replayed callback on
//! any instance. Discovery runs on first use and is kept for the life of the
//! configuration (a failure is kept for a few seconds, so a provider that is down costs
//! one timeout, not one per request); the JWKS is refreshed as for `[[issuers]]`.
//!
//! Each provider has its own redirect URI, so a callback names the provider it comes from
//! and is refused when that is not the provider the login started with (the mix-up attack,
//! RFC 9700 §4.4.1). Every provider can assert any identity and any claim value: routes
//! that trust one provider only say so with `require idp = "NAME"`.

pub mod callback;
pub mod discovery;
mod error;
pub mod flow_cookie;
pub mod start;

pub use error::{refusal, OidcError, OidcRefusal};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use self::callback::Vouched;
use self::discovery::Discovered;
use self::flow_cookie::{Flow, LogoutHint, Purpose, Sealer};
use crate::body::{empty, Body};
use crate::browser::session::Grant;
use crate::browser::ProviderLink;
use crate::config::{Config, OAuth2Config, OidcConfig, UpstreamProtocol, UserId};
use crate::store::Store;

/// The pooled client of one provider's back channel (discovery, token endpoint).
pub type Backchannel = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One configured provider and what discovery found about it.
pub struct Provider {
    pub cfg: OidcConfig,
    client: Backchannel,
    discovered: OnceCell<Arc<Discovered>>,
    /// The last failed discovery and when: answered again until [`FAILURE_KEPT`] passed.
    failed: Mutex<Option<(Instant, discovery::DiscoveryError)>>,
    tokens: crate::config::TokensConfig,
    /// `{path}/{name}/callback`: the redirect URI's path and the flow cookie's `Path`.
    callback_path: String,
}

/// How long a failed discovery is answered from memory before it is tried again.
const FAILURE_KEPT: Duration = Duration::from_secs(5);

impl Provider {
    /// Discovery on first use; a failure is kept for [`FAILURE_KEPT`], then retried.
    async fn discovered(&self) -> Result<&Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.get() {
            return Ok(d);
        }
        if let Some((at, e)) = self.failed.lock().ok().and_then(|f| f.clone()) {
            if at.elapsed() < FAILURE_KEPT {
                return Err(OidcError::ProviderUnavailable(e));
            }
        }
        let result = self
            .discovered
            .get_or_try_init(|| async {
                let d = discovery::discover(
                    &self.client,
                    &self.cfg,
                    &self.tokens,
                    callback::wanted(&self.cfg),
                )
                .await
                .map_err(|e| {
                    tracing::warn!(provider = %self.cfg.name, error = %e, "OIDC discovery failed");
                    e
                })?;
                let d = Arc::new(d);
                d.id_tokens.spawn_refresher();
                Ok(d)
            })
            .await;
        result.map_err(|e: discovery::DiscoveryError| {
            if let Ok(mut f) = self.failed.lock() {
                *f = Some((Instant::now(), e.clone()));
            }
            OidcError::ProviderUnavailable(e)
        })
    }
}

/// Which OIDC endpoint a path is, and of which provider (`None`: no such provider).
pub enum Endpoint<'a> {
    Start(Option<&'a Provider>),
    Callback(Option<&'a Provider>),
}

/// A finished login: who, and where the browser goes.
pub struct LoggedIn {
    pub provider: String,
    pub vouched: Vouched,
    pub return_to: String,
}

/// The OIDC login, built once per configuration.
pub struct Oidc {
    pub cfg: OAuth2Config,
    providers: Vec<Provider>,
    sealer: Sealer,
    store: Arc<dyn Store>,
    /// How long the logout hint is kept: as long as a session lasts.
    session_lifetime: std::time::Duration,
    /// `[browser] logout_path`: the logout hint's cookie path.
    sign_out_path: String,
    /// The local `[[users]]` ids in header form (`1` and `"1"` alike), lowercase: no
    /// provider's identity may be one of them unless its entry allows it.
    local_ids: HashSet<String>,
}

/// The claim naming the provider in the tokens of a session it began. Only we sign our
/// tokens, so it cannot be forged (no configured source may carry a claim of this name);
/// it tells the per-request check that the identity is the provider's, not a local user,
/// when it names a configured provider (see [`Oidc::refuses_identity`]).
pub const IDP_CLAIM: &str = "idp";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Oidc {
    /// `None` without `[[oidc]]` providers. Fails when a provider's TLS settings cannot be
    /// loaded.
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Result<Option<Oidc>, String> {
        let Some(cfg) = config.oauth2.clone().filter(|_| !config.oidc.is_empty()) else {
            return Ok(None);
        };
        let mut providers = Vec::new();
        for p in &config.oidc {
            let https = p.issuer.starts_with("https://");
            let connector =
                crate::tls::connector(&p.tls, p.fetch_timeout, UpstreamProtocol::Http1, https)
                    .map_err(|e| format!("{}: {e}", p.at))?;
            let mut client = Client::builder(TokioExecutor::new());
            client.pool_timer(TokioTimer::new());
            providers.push(Provider {
                callback_path: format!("{}/{}/callback", cfg.path, p.name),
                cfg: p.clone(),
                client: client.build(connector),
                discovered: OnceCell::new(),
                failed: Mutex::new(None),
                tokens: config.tokens.clone(),
            });
        }
        Ok(Some(Oidc {
            sealer: Sealer::new(&cfg.cookie_key.bytes)?,
            cfg,
            providers,
            store,
            local_ids: config
                .users
                .iter()
                .map(|u| u.id.header_text().to_lowercase())
                .collect(),
            sign_out_path: config
                .browser
                .as_ref()
                .map_or_else(|| "/".to_string(), |b| b.logout_path.clone()),
            session_lifetime: config
                .refresh
                .as_ref()
                .map_or(config.tokens.lifetime, |r| r.lifetime),
        }))
    }

    /// The providers, in configured order (the login page lists them so).
    pub fn providers(&self) -> impl Iterator<Item = &OidcConfig> {
        self.providers.iter().map(|p| &p.cfg)
    }

    /// For a session the configured provider `name` began, whether its `identity` is
    /// refused: named like a local user (as headers write it: `1` and "1" alike) where
    /// the provider may not assert those (`allow_local_identity`). `None` for any other
    /// name: an [`IDP_CLAIM`] naming it exempts nobody from the local-user check.
    pub fn refuses_identity(&self, name: &str, identity: &UserId) -> Option<bool> {
        let p = self.provider(name)?;
        Some(!p.cfg.allow_local_identity && self.is_local(identity))
    }

    /// Whether `identity` is named like a local user: as headers write it (`1` and "1"
    /// alike) and case aside (`Alice@corp.example` is `alice@corp.example` to most apps).
    fn is_local(&self, identity: &UserId) -> bool {
        // Asked on every request of a provider's session: no lowercase copy without users.
        !self.local_ids.is_empty()
            && self
                .local_ids
                .contains(&identity.header_text().to_lowercase())
    }

    fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.cfg.name == name)
    }

    /// The login page's buttons: each provider's label and start path (the page adds the
    /// return URL, see `Browser::provider_links`).
    pub fn links(&self) -> Vec<ProviderLink> {
        self.providers
            .iter()
            .map(|p| ProviderLink {
                label: p.cfg.label.clone(),
                href: format!("{}/{}/start", self.cfg.path, p.cfg.name),
            })
            .collect()
    }

    /// The grant a finished login hands to the session: the provider's identity, the
    /// configured claims, and [`IDP_CLAIM`].
    pub fn grant(done: &LoggedIn) -> Grant {
        let mut claims: Vec<(String, serde_json::Value)> = done
            .vouched
            .claims
            .iter()
            .filter(|(k, _)| k != IDP_CLAIM)
            .cloned()
            .collect();
        claims.push((IDP_CLAIM.into(), done.provider.clone().into()));
        Grant {
            user: done.vouched.user.clone(),
            claims,
            remote: true,
        }
    }

    /// The endpoint `path` names, if it is under `[oauth2] path`.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint<'_>> {
        let rest = path
            .strip_prefix(self.cfg.path.as_str())?
            .strip_prefix('/')?;
        if let Some(name) = rest.strip_suffix("/start") {
            return Some(Endpoint::Start(self.provider(name)));
        }
        let name = rest.strip_suffix("/callback")?;
        Some(Endpoint::Callback(self.provider(name)))
    }

    /// `{path}/{name}/start`: 302 to the provider, with the sealed flow cookie.
    pub async fn start(
        &self,
        provider: Option<&Provider>,
        parts: &Parts,
        secure: bool,
    ) -> Result<Response<Body>, OidcRefusal> {
        let refuse = |error| refusal(error, parts, None);
        if parts.method != Method::GET {
            return Err(refuse(OidcError::MethodNotAllowed("GET")));
        }
        let provider = provider.ok_or_else(|| refuse(OidcError::UnknownProvider))?;
        let return_to = start::return_to(parts.uri.query()).map_err(refuse)?;
        let redirect_uri = start::redirect_uri(&self.cfg, &provider.callback_path, parts, secure)
            .map_err(refuse)?;
        let d = provider.discovered().await.map_err(refuse)?;
        let now = unix_now();
        let flow = Flow {
            provider: provider.cfg.name.clone(),
            state: start::random(),
            nonce: start::random(),
            verifier: start::random(),
            return_to,
            redirect_uri,
            expires: now + self.cfg.flow_lifetime.as_secs() as i64,
        };
        let location = start::authorization_url(&provider.cfg, d, &flow);
        let sealed = self
            .sealer
            .seal(Purpose::Flow, &flow)
            .ok_or_else(|| refuse(OidcError::Internal("cannot seal the flow cookie")))?;
        let cookie = flow_cookie::spec(Purpose::Flow, secure, &provider.callback_path)
            .set(&sealed, self.cfg.flow_lifetime)
            .ok_or_else(|| refuse(OidcError::Internal("cannot write the flow cookie")))?;
        let location = HeaderValue::from_str(&location).map_err(|_| {
            refuse(OidcError::Internal(
                "the authorization URL is not header-safe",
            ))
        })?;
        Ok(redirect(StatusCode::FOUND, location, vec![cookie]))
    }

    /// `{path}/{name}/callback`: every check up to a user the provider vouched for. The
    /// caller begins the session and answers with [`Oidc::logged_in`].
    pub async fn callback(
        &self,
        provider: Option<&Provider>,
        parts: &Parts,
        secure: bool,
    ) -> Result<LoggedIn, OidcRefusal> {
        if parts.method != Method::GET {
            return Err(refusal(OidcError::MethodNotAllowed("GET"), parts, None));
        }
        let Some(provider) = provider else {
            return Err(refusal(OidcError::UnknownProvider, parts, None));
        };
        let Some(sealed) = flow_cookie::read(&parts.headers, Purpose::Flow, secure) else {
            return Err(refusal(OidcError::NoFlow, parts, None));
        };
        let clear = Some(flow_cookie::spec(Purpose::Flow, secure, &provider.callback_path).clear());
        let refuse = |error| refusal(error, parts, clear.clone());
        let flow: Flow = self
            .sealer
            .open(Purpose::Flow, sealed)
            .ok_or_else(|| refuse(OidcError::BadFlow))?;
        let now = unix_now();
        if now > flow.expires {
            return Err(refuse(OidcError::FlowExpired));
        }
        // The state first, before anything in the query is believed (an `error`
        // included): a navigation another site caused carries this browser's flow cookie
        // but not its state, and must neither end the login in progress nor be logged as
        // the provider's refusal. So this refusal leaves the cookie in place; from here on
        // every answer clears it (a flow is tried once).
        let q = start::Callback::parse(parts.uri.query());
        let state_ok = q
            .state
            .as_deref()
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(flow.state.as_bytes())));
        if !state_ok {
            return Err(refusal(OidcError::StateMismatch, parts, None));
        }
        // The mix-up attack (RFC 9700 §4.4.1): the answer must come back on the redirect
        // URI of the provider the login was sent to.
        if flow.provider != provider.cfg.name {
            return Err(refuse(OidcError::IssuerMismatch));
        }
        if let Some(error) = q.error {
            return Err(refuse(OidcError::ProviderRefused(error)));
        }
        let Some(code) = q.code else {
            return Err(refuse(OidcError::MissingParameters));
        };
        let d = provider.discovered().await.map_err(refuse)?;
        // RFC 9207 §2.4: a provider that says it names itself in the callback must, and
        // with its own issuer.
        match q.iss {
            Some(iss) if iss != d.issuer => return Err(refuse(OidcError::IssuerMismatch)),
            None if d.iss_parameter_supported => return Err(refuse(OidcError::IssuerMismatch)),
            _ => {}
        }
        self.mark_used(&flow, now).await.map_err(refuse)?;
        let mut vouched = callback::complete(&provider.client, &provider.cfg, d, &flow, &code, now)
            .await
            .map_err(refuse)?;
        if !provider.cfg.identity_prefix.is_empty() {
            vouched.user = UserId::Str(format!(
                "{}{}",
                provider.cfg.identity_prefix,
                vouched.user.header_text()
            ));
        }
        // A provider's account named like a local user would become that user
        // everywhere the identity is read.
        if !provider.cfg.allow_local_identity && self.is_local(&vouched.user) {
            return Err(refuse(OidcError::LocalIdentity));
        }
        Ok(LoggedIn {
            provider: flow.provider,
            vouched,
            return_to: flow.return_to,
        })
    }

    /// The one-time marker of a flow's state: the second callback with it, on any instance
    /// sharing the store, is refused. When the store cannot answer, the callback goes on:
    /// its cookie is cleared on use and the provider accepts each code once.
    async fn mark_used(&self, flow: &Flow, now: i64) -> Result<(), OidcError> {
        let key = format!(
            "oidc:state:{}",
            crate::config::sha256_hex(flow.state.as_bytes())
        );
        let ttl = std::time::Duration::from_secs((flow.expires - now).max(1) as u64 + 60);
        match self.store.incr(&[(key.as_str(), ttl)]).await {
            Ok(counts) if counts.first().is_some_and(|c| c.value > 1) => Err(OidcError::Replayed),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "OIDC: the store did not record the callback's \
                    one-time marker; relying on the flow cookie and the provider");
                Ok(())
            }
        }
    }

    /// The answer to a successful callback: `session` (the session's Set-Cookie values),
    /// the flow cookie cleared, the logout hint (bound to the session `sid`, with the
    /// provider's `end_session_endpoint`) when the provider offers RP-initiated logout,
    /// and a 302 to the return URL.
    pub fn logged_in(
        &self,
        done: &LoggedIn,
        session: Vec<HeaderValue>,
        sid: &str,
        secure: bool,
    ) -> Response<Body> {
        let mut cookies = session;
        let provider = self.provider(&done.provider);
        cookies.extend(
            provider.map(|p| flow_cookie::spec(Purpose::Flow, secure, &p.callback_path).clear()),
        );
        let end_session = provider
            .and_then(|p| p.discovered.get())
            .and_then(|d| d.end_session_endpoint.clone());
        if let Some(end_session_endpoint) = end_session {
            let hint = LogoutHint {
                provider: done.provider.clone(),
                id_token: done.vouched.id_token.clone(),
                sid: sid.to_string(),
                end_session_endpoint,
            };
            match self.sealer.seal(Purpose::Logout, &hint) {
                Some(sealed) if sealed.len() <= flow_cookie::MAX_COOKIE_VALUE => {
                    cookies.extend(
                        flow_cookie::spec(Purpose::Logout, secure, self.logout_path())
                            .set(&sealed, self.session_lifetime),
                    );
                }
                // Logout then goes to the provider without the hint (client_id only).
                _ => tracing::debug!(provider = %done.provider, "OIDC: the ID token is too \
                    large for the logout cookie"),
            }
        }
        let location = HeaderValue::from_str(&done.return_to)
            .unwrap_or_else(|_| HeaderValue::from_static("/"));
        redirect(StatusCode::FOUND, location, cookies)
    }

    /// The Set-Cookie value that removes the flow cookie of the provider `name`.
    pub fn clear_flow(&self, name: &str, secure: bool) -> Option<HeaderValue> {
        let p = self.provider(name)?;
        Some(flow_cookie::spec(Purpose::Flow, secure, &p.callback_path).clear())
    }

    /// The path the logout hint is sent to: browser mode's sign-out path, which continues
    /// to the provider (see [`Oidc::end_session`]).
    pub fn logout_path(&self) -> &str {
        &self.sign_out_path
    }

    /// RP-initiated logout, read before browser mode's sign-out: when the request
    /// carries a logout hint, the provider's `end_session_endpoint` sealed in it, with
    /// `id_token_hint`, `client_id` and `post_logout_redirect_uri`, for the session the
    /// hint names ([`EndSession::for_session`]). `None`: the sign-out ends here. Needs no
    /// discovery, so any instance continues the logout.
    pub fn end_session(&self, parts: &Parts, secure: bool) -> Option<EndSession> {
        let sealed = flow_cookie::read(&parts.headers, Purpose::Logout, secure)?;
        let hint: LogoutHint = self.sealer.open(Purpose::Logout, sealed)?;
        let p = self.provider(&hint.provider)?;
        let end = hint.end_session_endpoint;
        let after = start::post_logout_url(&self.cfg, parts, secure).ok()?;
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("id_token_hint", &hint.id_token)
            .append_pair("client_id", &p.cfg.client_id)
            .append_pair("post_logout_redirect_uri", &after);
        let sep = if end.contains('?') { '&' } else { '?' };
        Some(EndSession {
            sid: hint.sid,
            url: format!("{end}{sep}{}", q.finish()),
        })
    }

    /// Finishes browser mode's sign-out answer `res` (a 303 with the session's cookies
    /// cleared): the logout hint is cleared too, and with `end_session` the browser goes on
    /// to the provider's logout instead of the login page.
    pub fn finish_sign_out(
        &self,
        res: &mut Response<Body>,
        end_session: Option<String>,
        secure: bool,
    ) {
        let h = res.headers_mut();
        h.append(
            SET_COOKIE,
            flow_cookie::spec(Purpose::Logout, secure, self.logout_path()).clear(),
        );
        if let Some(location) = end_session.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(LOCATION, location);
        }
    }
}

/// Where an OIDC session's sign-out continues, and the session it belongs to.
pub struct EndSession {
    sid: String,
    url: String,
}

impl EndSession {
    /// The provider's logout URL when the sign-out that just succeeded ended the session
    /// `sid` (the one the sign-out form's CSRF token proved, whether or not its access
    /// token had expired); the hint of any other session is ignored.
    pub fn for_session(self, sid: &str) -> Option<String> {
        bool::from(sid.as_bytes().ct_eq(self.sid.as_bytes())).then_some(self.url)
    }
}

fn redirect(
    status: StatusCode,
    location: HeaderValue,
    cookies: Vec<HeaderValue>,
) -> Response<Body> {
    let mut res = Response::new(empty());
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(LOCATION, location);
    // Every answer here carries per-browser secrets: no cache may keep it.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(SET_COOKIE, c);
    }
    res
}
