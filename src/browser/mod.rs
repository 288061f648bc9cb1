//! Browser mode: web apps behind the gateway, for browsers that send cookies, not
//! `Authorization` headers.
//!
//! - [`session`] — a login ([`session::Grant`]) becomes a session: our access token in
//!   an HttpOnly cookie, a refresh cookie scoped to the refresh path, a CSRF cookie;
//!   renewal through the refresh family; the end of a session everywhere.
//! - [`cookies`] — our cookies' names (`__Host-` on secure origins), `Set-Cookie`
//!   values, reading them, and removing them before a request goes upstream.
//! - [`csrf`] — signed double-submit tokens for the session and the login form.

pub mod cookies;
pub mod csrf;
pub mod session;

/// An external identity provider shown on the login page next to the local form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderLink {
    /// What the button says ("Sign in with …" is the page's).
    pub label: String,
    /// Where it leads (a path of ours that starts the provider's flow).
    pub href: String,
}
