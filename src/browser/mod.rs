//! Browser mode: web apps behind the gateway, for browsers that send cookies, not
//! `Authorization` headers.
//!
//! - [`session`] — a login ([`session::Grant`]) becomes a session: our access token in
//!   an HttpOnly cookie, a refresh cookie scoped to the refresh path, a CSRF cookie;
//!   renewal through the refresh family; the end of a session everywhere.
//! - [`cookies`] — our cookies' names (`__Host-` on secure origins), `Set-Cookie`
//!   values, reading them, and removing them before a request goes upstream.
//! - [`csrf`] — signed double-submit tokens for the session and the login form.
//! - [`oidc`] — login with OpenID Connect providers: the code flow with PKCE, its sealed
//!   flow cookie, the callback's checks, RP-initiated logout.
//! - [`request`] — navigations, same-origin checks, safe return URLs.
//! - [`page`] — the login page template.
//! - [`endpoints`] — the login page, the form login, the logout button, the renewal.
//! - [`guard`] — what browser routes add to the decision: the cookie's token, the
//!   redirect of a navigation without a session, the CSRF check.

pub mod cookies;
pub mod csrf;
pub mod endpoints;
pub mod guard;
pub mod oidc;
pub mod page;
pub mod request;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::config::{BrowserConfig, SecureCookies};
use session::{SessionError, Sessions};

/// An external identity provider shown on the login page next to the local form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderLink {
    /// What the button says ("Sign in with …" is the page's).
    pub label: String,
    /// Where it leads (a path of ours that starts the provider's flow).
    pub href: String,
}

/// Why browser mode ended a request itself.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// A navigation without a usable session: 302 to the login page (or through the
    /// renewal). The location carries a return path, never a token.
    #[error("sign-in needed; redirected")]
    SignIn(HeaderValue),
    /// A cookie-authenticated unsafe request without proof that our page sent it.
    #[error("CSRF check failed: {0}")]
    Csrf(&'static str),
    /// The value is the `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("form body too large")]
    BodyTooLarge,
    #[error("malformed form: {0}")]
    BadForm(&'static str),
    #[error("{0}")]
    Session(#[from] SessionError),
}

impl BrowserError {
    pub fn reason(&self) -> &'static str {
        match self {
            BrowserError::SignIn(_) => "sign_in",
            BrowserError::Csrf(_) => "csrf",
            BrowserError::MethodNotAllowed(_) => "method_not_allowed",
            BrowserError::BodyTooLarge => "body_too_large",
            BrowserError::BadForm(_) => "malformed_form",
            BrowserError::Session(SessionError::RenewalLoop) => "renewal_loop",
            BrowserError::Session(SessionError::Cookie(_)) => "cookie_too_large",
            BrowserError::Session(SessionError::Store(_)) => "store_unavailable",
            BrowserError::Session(SessionError::Refresh(l)) => l.reason(),
            BrowserError::Session(SessionError::Sign(_)) => "internal",
        }
    }
}

/// Browser mode's runtime pieces. Built once per configuration.
pub struct Browser {
    pub config: BrowserConfig,
    pub sessions: Arc<Sessions>,
    page: page::Page,
    /// Where the local form posts (`[login] path`).
    login_path: String,
    /// Providers listed next to the local form.
    providers: Vec<ProviderLink>,
    /// `renew_before`, kept under half the access token's lifetime: a fresh token is never
    /// already due for renewal (which would loop).
    renew_before: Duration,
}

impl Browser {
    pub fn new(
        config: BrowserConfig,
        sessions: Arc<Sessions>,
        login_path: String,
        token_lifetime: Duration,
    ) -> Browser {
        let renew_before = config.renew_before.min(token_lifetime / 2);
        Browser {
            page: page::Page::new(config.template.as_deref()),
            config,
            sessions,
            login_path,
            providers: Vec::new(),
            renew_before,
        }
    }

    /// With `providers` listed on the login page.
    pub fn with_providers(mut self, providers: Vec<ProviderLink>) -> Browser {
        self.providers = providers;
        self
    }

    /// The login page's provider buttons, each returning to `return_to` after its login
    /// (left out when it is the start page).
    pub fn provider_links(&self, return_to: &str) -> Vec<ProviderLink> {
        self.providers
            .iter()
            .map(|p| ProviderLink {
                label: p.label.clone(),
                href: if return_to == request::HOME {
                    p.href.clone()
                } else {
                    request::with_return(&p.href, return_to)
                },
            })
            .collect()
    }

    /// Whether a request to the login path is a browser's form login: a form, from a
    /// browser or carrying the login form's nonce cookie.
    pub fn is_form_login(&self, headers: &http::HeaderMap, secure: bool) -> bool {
        request::is_form(headers)
            && (request::from_a_browser(headers)
                || cookies::find(headers, cookies::names(secure).login).is_some())
    }

    /// Whether a `GET`/`HEAD` on the refresh path is a browser's renewal: a navigation, or
    /// a request carrying a refresh cookie (API clients keep the JSON `405`).
    pub fn is_renewal(
        &self,
        method: &http::Method,
        headers: &http::HeaderMap,
        secure: bool,
    ) -> bool {
        matches!(*method, http::Method::GET | http::Method::HEAD)
            && (request::is_navigation(method, headers)
                || cookies::find(headers, cookies::names(secure).refresh).is_some())
    }

    /// Whether a connection's requests use the secure (`__Host-`) cookies.
    pub fn secure(&self, tls: bool) -> bool {
        tls || self.config.secure_cookies == SecureCookies::Always
    }
}
