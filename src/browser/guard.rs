//! What a browser route adds to the decision (③ and ④): the session cookie as a
//! second place for our token, the redirect of a navigation that has no usable session,
//! the CSRF check of cookie-authenticated unsafe requests, and the removal of our
//! cookies and CSRF header before anything goes upstream.

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, SEC_WEBSOCKET_KEY, VARY};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;

use super::cookies;
use super::csrf::Purpose;
use super::request::{self, CSRF_FIELD};
use super::{Browser, BrowserError};
use crate::auth::Claims;
use crate::body::Body;

/// Form bodies read for their `gateway_csrf` field are at most this large; bigger forms
/// (uploads) send the token in the CSRF header (`X-Gateway-CSRF`) instead.
pub const MAX_FORM: usize = 1 << 20;

/// What the CSRF check of a cookie-authenticated request concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Csrf {
    /// Nothing (more) to check: a safe method, or the CSRF header matched.
    Passed,
    /// A form without the header: its `gateway_csrf` field must be a token of this session
    /// id. The body is read (at most [`MAX_FORM`]) before anything is forwarded.
    InForm(String),
}

impl Browser {
    /// The session cookie's token, for a request whose token header is absent.
    pub fn cookie_token<'h>(&self, headers: &'h HeaderMap, secure: bool) -> Option<&'h str> {
        cookies::find(headers, cookies::names(secure).access)
    }

    /// The redirect for a navigation without a usable session: through the renewal when
    /// the session may still be renewable (`due`: its token is about to expire; or its
    /// CSRF cookie, which lives as long as the refresh family, is there), else to the
    /// login page. Both carry the path and query the browser asked for as the return URL.
    pub fn sign_in(&self, parts: &Parts, secure: bool, due: bool) -> BrowserError {
        let wanted = parts
            .uri
            .path_and_query()
            .map_or(request::HOME, |p| p.as_str());
        let back = request::safe_return(wanted).unwrap_or(request::HOME);
        let renewable = self.sessions.refresh_path().filter(|_| {
            due || cookies::find(&parts.headers, cookies::names(secure).csrf).is_some()
        });
        let to = match renewable {
            Some(refresh) => request::with_return(refresh, back),
            None => request::with_return(&self.config.login_page, back),
        };
        match http::HeaderValue::from_str(&to) {
            Ok(v) => BrowserError::SignIn(v),
            Err(_) => BrowserError::SignIn(http::HeaderValue::from_static("/")),
        }
    }

    /// Whether a navigation with these verified claims should renew first: the token
    /// expires within `renew_before` and sessions renew.
    pub fn due(&self, claims: &Claims, now: i64) -> bool {
        self.sessions.renews() && claims.exp - (now as f64) < self.renew_before.as_secs_f64()
    }

    /// The CSRF check of a request authenticated by the session cookie: unsafe methods
    /// must come from our origin (`Origin` / `Sec-Fetch-Site`, when sent) and echo the
    /// session's token in the CSRF header or, for a form, a `gateway_csrf` field. A WebSocket
    /// handshake must come from our origin too.
    pub fn check_csrf(
        &self,
        parts: &Parts,
        claims: &Claims,
        secure: bool,
    ) -> Result<Csrf, BrowserError> {
        let authority = request::authority(&parts.headers, &parts.uri);
        let cross_site = || BrowserError::Csrf("a cross-site request");
        if !request::unsafe_method(&parts.method) {
            // A WebSocket handshake is a GET that scripts of any origin may start, and its
            // messages change state: only our own pages may open one on the cookie.
            if parts.headers.contains_key(SEC_WEBSOCKET_KEY) {
                request::same_origin(&parts.headers, secure, authority)
                    .map_err(|_| cross_site())?;
            }
            return Ok(Csrf::Passed);
        }
        request::same_origin(&parts.headers, secure, authority).map_err(|_| cross_site())?;
        let sid = self.sessions.sid(claims).ok_or(BrowserError::Csrf(
            "the cookie's token is not a browser session's",
        ))?;
        match parts.headers.get(&self.config.csrf_header) {
            Some(v) if self.is_session_token(v.as_bytes(), sid) => Ok(Csrf::Passed),
            Some(_) => Err(BrowserError::Csrf("the CSRF header is not the session's")),
            None if request::is_form(&parts.headers) => Ok(Csrf::InForm(sid.to_string())),
            None => Err(BrowserError::Csrf("no CSRF token")),
        }
    }

    /// Whether `presented` is a CSRF token we signed (with the current key or one still
    /// accepted) for the session `sid`.
    fn is_session_token(&self, presented: &[u8], sid: &str) -> bool {
        std::str::from_utf8(presented)
            .ok()
            .and_then(|t| self.sessions.csrf().verify(Purpose::Session, t))
            .is_some_and(|nonce| bool::from(nonce.as_bytes().ct_eq(sid.as_bytes())))
    }

    /// Reads a form body (at most [`MAX_FORM`]) and checks its `gateway_csrf` field: a
    /// token of the session `sid`. Returns the body, to be forwarded as read.
    pub async fn check_form(&self, mut body: Body, sid: &str) -> Result<Bytes, BrowserError> {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    BrowserError::BodyTooLarge
                } else {
                    BrowserError::BadForm("the body could not be read")
                }
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_FORM {
                    return Err(BrowserError::BodyTooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }
        let bytes = buf.freeze();
        let mut found = form_urlencoded::parse(&bytes).filter(|(k, _)| k == CSRF_FIELD);
        match (found.next(), found.next()) {
            (Some((_, v)), None) if self.is_session_token(v.as_bytes(), sid) => Ok(bytes),
            (Some(_), Some(_)) => Err(BrowserError::BadForm("gateway_csrf appears twice")),
            _ => Err(BrowserError::Csrf(
                "the form's gateway_csrf is missing or not the session's",
            )),
        }
    }

    /// Marks the upstream's response to a cookie-authenticated request as one browser's:
    /// `Vary: Cookie`, and `Cache-Control: private` when the upstream said nothing about
    /// caching (a shared cache must not hand one user's page to another).
    pub fn mark_private(headers: &mut HeaderMap) {
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }

    /// Removes our cookies from a request about to go upstream (every route: backends
    /// never see our tokens), and on a browser route our CSRF header (elsewhere a header
    /// of that name is the app's own).
    pub fn strip(&self, headers: &mut HeaderMap, browser_route: bool) {
        cookies::strip(headers);
        if browser_route {
            headers.remove(&self.config.csrf_header);
        }
    }
}
