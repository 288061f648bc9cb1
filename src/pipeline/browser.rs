//! The browser steps of the pipeline (their order is in `mod.rs`): ③ on a browser route,
//! and the session cookie's claims for the browser endpoints.

use http::request::Parts;

use super::{unix_now, Conn, Pipeline};
use crate::auth::{bearer, Claims, TokenError};
use crate::browser::{request as browser_request, Browser};
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
}
