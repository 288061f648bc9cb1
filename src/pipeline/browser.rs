//! The browser steps of the pipeline (their order is in `mod.rs`): ③ on a browser route,
//! and the session cookie's claims for the browser endpoints.

use http::request::Parts;

use super::{unix_now, Conn, Pipeline};
use crate::auth::{bearer, Claims, TokenError};
use crate::browser::csrf::Purpose;
use crate::browser::{cookies, request as browser_request, Browser};
use crate::rejection::Rejection;

impl Pipeline {
    /// ③ on a browser route: the token header when there is one (it wins), else the
    /// session cookie. A navigation without a usable session is redirected to sign in
    /// (when `redirects`), one whose token is about to expire through the renewal.
    /// Returns the claims and whether they came from the cookie.
    pub(super) async fn authenticate_browser(
        &self,
        browser: &Browser,
        parts: &Parts,
        conn: &Conn,
        issuers: &[usize],
        redirects: bool,
    ) -> Result<(Claims, bool), Rejection> {
        match bearer::extract(&parts.headers, &self.token_header, &self.prefix) {
            Err(TokenError::Missing) => {}
            Ok(token) => return Ok((self.verify_token(token, issuers).await?, false)),
            Err(e) => return Err(e.into()),
        }
        let secure = browser.secure(conn.tls);
        let navigation = redirects && browser_request::is_navigation(&parts.method, &parts.headers);
        let sign_in = |due| Rejection::Browser(browser.sign_in(parts, secure, due));
        let Some(token) = browser.cookie_token(&parts.headers, secure) else {
            return Err(if navigation {
                sign_in(false)
            } else {
                TokenError::Missing.into()
            });
        };
        // The session cookie carries our own tokens only: never an issuer's.
        match self.verify_token(token, &[]).await {
            Ok(claims) if navigation && browser.due(&claims, unix_now()) => Err(sign_in(true)),
            Ok(claims) => Ok((claims, true)),
            Err(_) if navigation => Err(sign_in(false)),
            Err(e) => Err(e.into()),
        }
    }

    /// The verified claims of the session cookie of a browser endpoint's request, if
    /// any (the login page shows who is signed in; the logout revokes that token).
    pub(super) async fn session_claims(
        &self,
        browser: &Browser,
        headers: &http::HeaderMap,
        secure: bool,
    ) -> Option<Claims> {
        let token = browser.cookie_token(headers, secure)?;
        self.verify_token(token, &[]).await.ok()
    }

    /// The session ids the request's own cookies name: each CSRF cookie's (a token we
    /// signed) and each access cookie's (our signature; an expired token counts, since a
    /// session renews after its access token expired). On a secure origin both cookies
    /// are `__Host-`: no other host can set them, so a refresh cookie is renewed only for
    /// the session they name.
    pub(super) async fn bound_sessions(
        &self,
        browser: &Browser,
        headers: &http::HeaderMap,
        secure: bool,
    ) -> Vec<String> {
        let names = cookies::names(secure);
        let mut sids: Vec<String> = cookies::find_all(headers, names.csrf)
            .filter_map(|t| browser.sessions.csrf().verify(Purpose::Session, t))
            .map(str::to_string)
            .collect();
        for token in cookies::find_all(headers, names.access) {
            let verified = self.authority.verify_ours_ignoring_exp(token, unix_now());
            if let Ok(claims) = verified.await {
                sids.extend(browser.sessions.sid(&claims).map(str::to_string));
            }
        }
        sids
    }
}
