//! The endpoints browsers use: the login page, the form login at the login path, the
//! logout button, and the renewal at the refresh path.
//!
//! Each answers a browser, so successes are redirects (`303` after a form, `302` after
//! a navigation) carrying `Set-Cookie`, and a failed sign-in shows the page again with
//! a message that never says whether the user exists.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION, RETRY_AFTER, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::cookies::{self, Spec};
use super::csrf::{self, Purpose};
use super::page::View;
use super::request::{self, HOME, RETURN_TO};
use super::session::{Grant, SessionError};
use super::{Browser, BrowserError};
use crate::auth::lifecycle::{read_bounded, unix_millis, BodyReadError, LifecycleError};
use crate::auth::login::{Login, LoginError};
use crate::auth::Claims;
use crate::body::{empty, Body};

/// The login form's nonce cookie lives this long: a page left open longer is shown
/// again with a fresh form.
const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(3600);

/// The logout form is one field.
const LOGOUT_BODY: usize = 4096;

const PAGE_TITLE: &str = "Sign in";

const INVALID: &str = "Invalid username or password.";
const EXPIRED_FORM: &str = "The sign-in form expired. Please try again.";
const LIMITED: &str = "Too many sign-in attempts. Please wait a while and try again.";
const UNAVAILABLE: &str = "Signing in is not possible right now. Please try again later.";

/// A redirect for a browser, never cached.
pub fn redirect(status: StatusCode, location: &str, set: Vec<HeaderValue>) -> Response<Body> {
    let mut res = Response::new(empty());
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static(HOME)),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for v in set {
        h.append(SET_COOKIE, v);
    }
    res
}

/// The form fields browser mode reads; each may appear once.
#[derive(Default)]
struct Form {
    username: Option<String>,
    password: Option<String>,
    csrf_token: Option<String>,
    return_to: Option<String>,
}

fn parse_form(bytes: &[u8]) -> Result<Form, BrowserError> {
    let mut f = Form::default();
    for (k, v) in form_urlencoded::parse(bytes) {
        let slot = match &*k {
            "username" => &mut f.username,
            "password" => &mut f.password,
            request::CSRF_FIELD => &mut f.csrf_token,
            RETURN_TO => &mut f.return_to,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(BrowserError::BadForm("a field appears twice"));
        }
    }
    Ok(f)
}

async fn read_form<B>(parts: &Parts, body: B, limit: usize) -> Result<Form, BrowserError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if !request::is_form(&parts.headers) {
        return Err(BrowserError::BadForm("the body is not a form"));
    }
    let bytes = read_bounded(&parts.headers, body, limit)
        .await
        .map_err(|e| match e {
            BodyReadError::TooLarge => BrowserError::BodyTooLarge,
            BodyReadError::Unreadable => BrowserError::BadForm("the body could not be read"),
        })?;
    parse_form(&bytes)
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Browser {
    /// The login page path.
    pub fn login_page(&self) -> &str {
        &self.config.login_page
    }

    /// `GET` on the login page: the form (with a login CSRF token and its cookie), or,
    /// for a signed-in session (`claims`, verified from its cookie), who is signed in and
    /// the logout button.
    pub fn page(
        &self,
        parts: &Parts,
        claims: Option<&Claims>,
        secure: bool,
    ) -> Result<Response<Body>, BrowserError> {
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(BrowserError::MethodNotAllowed("GET, HEAD"));
        }
        let return_to = request::return_to(parts.uri.query());
        if let Some((c, sid)) = claims.and_then(|c| Some((c, self.sessions.sid(c)?))) {
            let identity = c.identity.header_text();
            let token = self.sessions.csrf_token(sid);
            let providers = self.provider_links(&return_to);
            let view = View {
                title: PAGE_TITLE,
                return_to: &return_to,
                signed_in: Some(&identity),
                logout_action: &self.config.logout_path,
                logout_csrf: &token,
                providers: &providers,
                ..View::default()
            };
            return Ok(self.page.response(StatusCode::OK, &view));
        }
        Ok(self.form_page(parts, secure, StatusCode::OK, None, &return_to))
    }

    /// The login form, with `error` shown; reuses the form nonce of the browser's cookie
    /// (so several tabs share one) or sets a new one.
    fn form_page(
        &self,
        parts: &Parts,
        secure: bool,
        status: StatusCode,
        error: Option<&str>,
        return_to: &str,
    ) -> Response<Body> {
        let names = cookies::names(secure);
        let existing = cookies::find(&parts.headers, names.login).filter(|n| {
            n.len() == 22
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        let nonce = existing.map_or_else(csrf::nonce, str::to_string);
        let token = self.sessions.csrf().token(Purpose::Login, &nonce);
        let providers = self.provider_links(return_to);
        let view = View {
            title: PAGE_TITLE,
            action: Some(&self.login_path),
            csrf_token: &token,
            return_to,
            error,
            providers: &providers,
            ..View::default()
        };
        let mut res = self.page.response(status, &view);
        let spec = Spec {
            name: names.login,
            path: "/",
            http_only: true,
            secure,
        };
        if let Some(v) = spec.set(&nonce, LOGIN_FORM_LIFETIME) {
            res.headers_mut().append(SET_COOKIE, v);
        }
        res
    }

    /// A form `POST` to the login path. Returns the answer and the login outcome (for
    /// the metrics and the access log).
    pub async fn form_login<B>(
        &self,
        req: Request<B>,
        login: &Login,
        client: IpAddr,
        secure: bool,
    ) -> (Result<Response<Body>, BrowserError>, &'static str)
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        let authority = request::authority(&parts.headers, &parts.uri).map(str::to_string);
        if request::same_origin(&parts.headers, secure, authority.as_deref()).is_err() {
            return (
                Err(BrowserError::Csrf("a login form posted from another site")),
                "csrf",
            );
        }
        let form = match read_form(&parts, body, login.max_body()).await {
            Ok(f) => f,
            Err(e) => {
                let reason = e.reason();
                return (Err(e), reason);
            }
        };
        let return_to = form
            .return_to
            .as_deref()
            .and_then(request::safe_return)
            .unwrap_or(HOME)
            .to_string();
        let names = cookies::names(secure);
        let nonce = cookies::find(&parts.headers, names.login);
        let signed = form
            .csrf_token
            .as_deref()
            .and_then(|t| self.sessions.csrf().verify(Purpose::Login, t));
        if !matches!((nonce, signed), (Some(c), Some(n)) if same(c, n)) {
            let page = self.form_page(
                &parts,
                secure,
                StatusCode::FORBIDDEN,
                Some(EXPIRED_FORM),
                &return_to,
            );
            return (Ok(page), "csrf");
        }
        let credentials = match (&form.username, &form.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.as_str(), p.as_str())),
            _ => None,
        };
        let (user, remote) = match login.check_credentials(client, credentials).await {
            Ok(found) => found,
            Err(e) => {
                let reason = e.reason();
                let (status, message) = match &e {
                    LoginError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, LIMITED),
                    LoginError::Unavailable(_) | LoginError::Internal(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
                    }
                    _ => (StatusCode::UNAUTHORIZED, INVALID),
                };
                if matches!(e, LoginError::Unavailable(_) | LoginError::Internal(_)) {
                    tracing::warn!(error = %e, "browser login: the credential check failed");
                }
                let mut page = self.form_page(&parts, secure, status, Some(message), &return_to);
                if let LoginError::RateLimited(wait) = e {
                    let secs = wait.as_secs().max(1);
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        page.headers_mut().insert(RETRY_AFTER, v);
                    }
                }
                return (Ok(page), reason);
            }
        };
        let grant = Grant {
            claims: remote
                .clone()
                .unwrap_or_else(|| self.sessions.local_claims(&user)),
            remote: remote.is_some(),
            user,
        };
        match self.sessions.begin(&grant, secure, unix_millis()).await {
            Ok(mut set) => {
                set.push(
                    Spec {
                        name: names.login,
                        path: "/",
                        http_only: true,
                        secure,
                    }
                    .clear(),
                );
                (
                    Ok(redirect(StatusCode::SEE_OTHER, &return_to, set)),
                    "success",
                )
            }
            Err(e) => (Err(e.into()), "unavailable"),
        }
    }

    /// The logout button: a form `POST` with the session's CSRF token. Revokes the access
    /// token (`claims`, when its cookie still verifies) and the refresh family, clears
    /// the cookies and shows the login page. Also returns the session id the CSRF token
    /// proved (the session that signed out, expired access token or not).
    pub async fn logout<B>(
        &self,
        req: Request<B>,
        claims: Option<&Claims>,
        secure: bool,
    ) -> Result<(Response<Body>, String), BrowserError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if req.method() != Method::POST {
            return Err(BrowserError::MethodNotAllowed("POST"));
        }
        let (parts, body) = req.into_parts();
        let authority = request::authority(&parts.headers, &parts.uri).map(str::to_string);
        if request::same_origin(&parts.headers, secure, authority.as_deref()).is_err() {
            return Err(BrowserError::Csrf("a logout posted from another site"));
        }
        let names = cookies::names(secure);
        let cookie = cookies::find(&parts.headers, names.csrf).map(str::to_string);
        let form = read_form(&parts, body, LOGOUT_BODY).await?;
        let token = form.csrf_token.as_deref().unwrap_or("");
        let nonce = self
            .sessions
            .csrf()
            .verify(Purpose::Session, token)
            .ok_or(BrowserError::Csrf("no valid CSRF token in the logout form"))?;
        // The token is the one our cookie holds (double submit) and, when the session's
        // access token still verifies, that session's.
        if !cookie.as_deref().is_some_and(|c| same(c, token)) {
            return Err(BrowserError::Csrf(
                "the logout form's token is not the cookie's",
            ));
        }
        if claims.is_some_and(|c| self.sessions.sid(c) != Some(nonce)) {
            return Err(BrowserError::Csrf(
                "the logout form's token is another session's",
            ));
        }
        // Every refresh cookie is looked at: a sibling domain may have planted one of its
        // own first; only the family of the session signing out is revoked.
        let refresh: Vec<&str> = cookies::find_all(&parts.headers, names.refresh).collect();
        let revoked = self
            .sessions
            .revoke(claims, &refresh, nonce, unix_millis())
            .await;
        if let Err(e) = revoked {
            // In force on this instance; the store shares it once it answers.
            tracing::warn!(error = %e, "browser logout: the store did not take every revocation");
        }
        let res = redirect(
            StatusCode::SEE_OTHER,
            &self.config.login_page,
            self.sessions.end(secure),
        );
        Ok((res, nonce.to_string()))
    }

    /// `GET` on the refresh path: renews the session from its refresh cookie and goes
    /// back to `return_to`; without a live refresh token, to the login page (the stale
    /// cookies cleared, so the next navigation cannot loop here).
    ///
    /// `bound`: the session ids the request's CSRF and access cookies name (signatures
    /// verified, expiry ignored). Only a refresh cookie of one of those sessions renews;
    /// every cookie of the refresh name is tried, since a sibling domain can plant one
    /// (with `Domain=`) that the browser sends first.
    pub async fn renew(
        &self,
        parts: &Parts,
        secure: bool,
        bound: &[String],
    ) -> Result<Response<Body>, BrowserError> {
        let return_to = request::return_to(parts.uri.query());
        let to_login = request::with_return(&self.config.login_page, &return_to);
        let names = cookies::names(secure);
        let looping = self
            .sessions
            .just_renewed(&parts.headers, secure, bound, unix_millis());
        let mut refused = None;
        for token in cookies::find_all(&parts.headers, names.refresh) {
            let renewed = self
                .sessions
                .renew(token, bound, looping, secure, unix_millis())
                .await;
            match renewed {
                Ok(set) => return Ok(redirect(StatusCode::FOUND, &return_to, set)),
                Err(SessionError::RenewalLoop) => {
                    tracing::warn!(
                        "browser: a session renewed moments ago is back at the renewal: the \
                         browser did not keep its cookies (blocked, full, or too large); \
                         not renewing again"
                    );
                    return Err(SessionError::RenewalLoop.into());
                }
                Err(SessionError::Refresh(LifecycleError::Unavailable(e)))
                | Err(SessionError::Store(e)) => {
                    return Err(BrowserError::Session(SessionError::Store(e)))
                }
                Err(SessionError::Refresh(e)) => refused = Some(e.reason()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(reason) = refused {
            tracing::debug!(reason, "browser: renewal refused; sign in again");
        }
        Ok(redirect(
            StatusCode::FOUND,
            &to_login,
            self.sessions.end(secure),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_appear_once() {
        let f = parse_form(b"username=a&password=b%26c&gateway_csrf=t&return_to=%2Fx&csrf_token=x")
            .unwrap();
        assert_eq!(f.password.as_deref(), Some("b&c"));
        assert_eq!(f.return_to.as_deref(), Some("/x"));
        assert!(matches!(
            parse_form(b"username=a&username=b"),
            Err(BrowserError::BadForm(_))
        ));
    }
}
