//! Every early end of a request, and the one place that turns it into an HTTP response.
//!
//! The mapping has no catch-all arm: adding a failure forces a decision about its status,
//! headers and body. Bodies always have the Flask-JWT shape
//! `{"description": ..., "error": ..., "status_code": N}` plus a newline (keys sorted), so one
//! client-side error handler covers every answer the gateway makes itself. The client is
//! told little; the log gets the precise reason (`Rejection::reason`).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use http::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::auth::lifecycle::LifecycleError;
use crate::auth::login::LoginError;
use crate::auth::{PayloadProblem, TimeClaimName, TokenError};
use crate::body::{full, Body};
use crate::browser::oidc::OidcRefusal;
use crate::browser::session::SessionError;
use crate::browser::BrowserError;
use crate::config::ErrorStyle;
use crate::proxy::UpstreamError;

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no route matches the path")]
    NoRoute,
    #[error("path refused: {0}")]
    BadPath(&'static str),
    #[error("host refused: {0}")]
    BadHost(&'static str),
    #[error("method refused: {0}")]
    BadMethod(&'static str),
    #[error("the token header {0} is listed in Connection")]
    TokenHeaderInConnection(http::HeaderName),
    #[error("request body badly framed: {0}")]
    BadRequestBody(String),
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    #[error("login refused: {0}")]
    Login(#[from] LoginError),
    #[error("{0}")]
    Lifecycle(#[from] LifecycleError),
    /// `fail_closed` and the revocation set is older than `max_staleness`.
    #[error("the revocation set is stale")]
    RevocationStale,
    #[error("request body over the route's limit")]
    BodyTooLarge,
    #[error("method not allowed on this route")]
    MethodNotAllowed(Vec<http::Method>),
    #[error("forbidden: {0}")]
    Forbidden(#[from] crate::policy::Forbidden),
    #[error("request headers over the limit")]
    HeadersTooLarge,
    /// The forward got no upstream response (see [`UpstreamError`]).
    #[error("{0}")]
    Upstream(UpstreamError),
    /// Browser mode: a sign-in redirect, a failed CSRF check, a bad form.
    #[error("{0}")]
    Browser(#[from] BrowserError),
    /// A step of the OIDC login was refused.
    #[error("OIDC login refused: {0}")]
    Oidc(Box<OidcRefusal>),
}

impl From<OidcRefusal> for Rejection {
    fn from(r: OidcRefusal) -> Rejection {
        Rejection::Oidc(Box::new(r))
    }
}

/// Who a rejection is the fault of; sets the level it is logged at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself (a bad token, path, body...): routine, logged at debug.
    Client,
    /// An upstream server (down, unreachable, slow): an operator should look, warn.
    Upstream,
    /// The gateway itself: a bug or a broken environment, error.
    Gateway,
}

impl From<UpstreamError> for Rejection {
    fn from(e: UpstreamError) -> Rejection {
        match e {
            // Counted against the route's limit while streaming: the client's fault, the
            // same answer as a declared oversize body.
            UpstreamError::BodyTooLarge => Rejection::BodyTooLarge,
            // The client's body broke on the way: a 400 for the client, nothing against
            // the upstream.
            UpstreamError::ClientBody(e) => Rejection::BadRequestBody(e.to_string()),
            e => Rejection::Upstream(e),
        }
    }
}

/// What shapes an error response besides the rejection itself.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    pub style: ErrorStyle,
    pub realm: String,
    pub prefix: String,
    /// Token rejections rendered once (see [`ErrorContext::new`]).
    rendered: Arc<[(TokenError, Rendered)]>,
}

/// A token rejection's response, rendered: cloning it copies no bytes.
#[derive(Debug)]
struct Rendered {
    status: StatusCode,
    body: Bytes,
    challenge: Option<HeaderValue>,
}

/// The token failures that come in floods (forged, stale or absent tokens): their answers
/// are rendered once per configuration, since nothing in them depends on the request.
const PRERENDERED: [TokenError; 5] = [
    TokenError::Missing,
    TokenError::BadSignature,
    TokenError::Expired,
    TokenError::UnknownKey,
    TokenError::NotEnoughSegments,
];

impl From<crate::proxy::forward::BodyTooLarge> for Rejection {
    fn from(_: crate::proxy::forward::BodyTooLarge) -> Rejection {
        Rejection::BodyTooLarge
    }
}

impl ErrorContext {
    pub fn new(style: ErrorStyle, realm: String, prefix: String) -> ErrorContext {
        let mut ctx = ErrorContext {
            style,
            realm,
            prefix,
            rendered: Arc::new([]),
        };
        let rendered: Vec<_> = PRERENDERED
            .into_iter()
            .map(|t| {
                let r = render_token(&t, &ctx);
                (t, r)
            })
            .collect();
        ctx.rendered = rendered.into();
        ctx
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    description: &'a str,
    error: &'a str,
    status_code: u16,
}

/// How a token failure is presented to an RFC 6750 client.
enum Rfc6750 {
    /// No credentials for this scheme: a bare challenge, no error code (§3.1).
    Challenge,
    /// A malformed request: 400 `invalid_request`.
    InvalidRequest,
    /// A token that fails verification: 401 `invalid_token`.
    InvalidToken,
}

impl Rejection {
    /// Whose fault the rejection is. Exhaustive: a new failure must say.
    pub fn fault(&self) -> Fault {
        match self {
            Rejection::NoRoute
            | Rejection::BadPath(_)
            | Rejection::BadHost(_)
            | Rejection::BadMethod(_)
            | Rejection::TokenHeaderInConnection(_)
            | Rejection::BadRequestBody(_)
            | Rejection::Token(_)
            | Rejection::BodyTooLarge
            | Rejection::MethodNotAllowed(_)
            | Rejection::Forbidden(_)
            | Rejection::HeadersTooLarge => Fault::Client,
            Rejection::Login(LoginError::Internal(_)) => Fault::Gateway,
            // The user service or the store (with fail_closed) could not answer.
            Rejection::Login(LoginError::Unavailable(_)) => Fault::Upstream,
            Rejection::Login(
                LoginError::MethodNotAllowed
                | LoginError::NotJson
                | LoginError::MalformedBody(_)
                | LoginError::BodyTooLarge
                | LoginError::RateLimited(_)
                | LoginError::InvalidCredentials,
            ) => Fault::Client,
            Rejection::Upstream(
                UpstreamError::NoHealthyServer { .. }
                | UpstreamError::Unreachable(_)
                | UpstreamError::Timeout,
            ) => Fault::Upstream,
            Rejection::Upstream(UpstreamError::BodyTooLarge | UpstreamError::ClientBody(_)) => {
                Fault::Client
            }
            Rejection::Upstream(UpstreamError::BadUri(_)) => Fault::Gateway,
            Rejection::Lifecycle(
                LifecycleError::MethodNotAllowed(_)
                | LifecycleError::NotJson
                | LifecycleError::MalformedBody(_)
                | LifecycleError::BodyTooLarge
                | LifecycleError::InvalidRefreshToken(_)
                | LifecycleError::RefreshReused
                | LifecycleError::NoJti,
            ) => Fault::Client,
            // The shared store did not answer (as a login's Unavailable).
            Rejection::Lifecycle(LifecycleError::Unavailable(_)) | Rejection::RevocationStale => {
                Fault::Upstream
            }
            Rejection::Lifecycle(LifecycleError::Internal(_)) => Fault::Gateway,
            Rejection::Browser(
                BrowserError::SignIn(_)
                | BrowserError::Csrf(_)
                | BrowserError::MethodNotAllowed(_)
                | BrowserError::BodyTooLarge
                | BrowserError::BadForm(_)
                | BrowserError::Session(SessionError::RenewalLoop),
            ) => Fault::Client,
            Rejection::Browser(BrowserError::Session(SessionError::Refresh(l))) => match l {
                LifecycleError::Unavailable(_) => Fault::Upstream,
                LifecycleError::Internal(_) => Fault::Gateway,
                LifecycleError::MethodNotAllowed(_)
                | LifecycleError::NotJson
                | LifecycleError::MalformedBody(_)
                | LifecycleError::BodyTooLarge
                | LifecycleError::InvalidRefreshToken(_)
                | LifecycleError::RefreshReused
                | LifecycleError::NoJti => Fault::Client,
            },
            Rejection::Browser(BrowserError::Session(SessionError::Store(_))) => Fault::Upstream,
            Rejection::Browser(BrowserError::Session(
                SessionError::Sign(_) | SessionError::Cookie(_),
            )) => Fault::Gateway,
            Rejection::Oidc(r) => match &r.error {
                crate::browser::oidc::OidcError::Internal(_) => Fault::Gateway,
                e if e.upstream_fault() => Fault::Upstream,
                _ => Fault::Client,
            },
        }
    }

    /// Logs the rejection of a request for `path` on `route`, at the level its
    /// [`fault`](Rejection::fault) calls for. Never carries a token: `TokenError` names
    /// only what was wrong.
    pub fn log(&self, route: &str, path: &str) {
        let reason = self.reason();
        match self.fault() {
            Fault::Client => {
                let fault = "client";
                tracing::debug!(route, path, reason, fault, error = %self, "request refused")
            }
            Fault::Upstream => {
                let fault = "upstream";
                tracing::warn!(route, path, reason, fault, error = %self, "request failed")
            }
            Fault::Gateway => {
                let fault = "gateway";
                tracing::error!(route, path, reason, fault, error = %self, "request failed")
            }
        }
    }

    /// A short, stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NoRoute => "no_route",
            Rejection::BadPath(_) => "bad_path",
            Rejection::BadHost(_) => "bad_host",
            Rejection::BadMethod(_) => "bad_method",
            Rejection::TokenHeaderInConnection(_) => "token_header_in_connection",
            Rejection::BadRequestBody(_) | Rejection::Upstream(UpstreamError::ClientBody(_)) => {
                "bad_request_body"
            }
            Rejection::Token(t) => t.reason(),
            Rejection::Login(l) => l.reason(),
            Rejection::Lifecycle(l) => l.reason(),
            Rejection::RevocationStale => "revocation_stale",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::Forbidden(_) => "forbidden",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::Upstream(UpstreamError::NoHealthyServer { .. }) => "no_healthy_upstream",
            Rejection::Upstream(UpstreamError::Unreachable(_)) => "upstream_unavailable",
            Rejection::Upstream(UpstreamError::Timeout) => "upstream_timeout",
            Rejection::Upstream(UpstreamError::BodyTooLarge) => "body_too_large",
            Rejection::Upstream(UpstreamError::BadUri(_)) => "internal",
            Rejection::Browser(b) => b.reason(),
            Rejection::Oidc(r) => r.error.reason(),
        }
    }

    /// The response the client gets.
    pub fn into_response(self, ctx: &ErrorContext) -> Response<Body> {
        match self {
            Rejection::NoRoute => json(
                StatusCode::NOT_FOUND,
                "Not Found",
                "No route matches the requested URL",
            ),
            Rejection::BadPath(why) | Rejection::BadHost(why) | Rejection::BadMethod(why) => {
                json(StatusCode::BAD_REQUEST, "Bad Request", why)
            }
            // Not a missing token: the client sent one and asked for its removal.
            Rejection::TokenHeaderInConnection(name) => json(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!(
                    "The {name} header is listed in Connection, which removes it before the \
                     token can be read"
                ),
            ),
            Rejection::BadRequestBody(_) | Rejection::Upstream(UpstreamError::ClientBody(_)) => {
                json(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    "The request body is not validly framed",
                )
            }
            Rejection::Token(t) => token_response(&t, ctx),
            Rejection::Login(l) => login_response(l),
            Rejection::Lifecycle(l) => lifecycle_response(l),
            Rejection::RevocationStale => json(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "Token revocations cannot be confirmed right now; retry later",
            ),
            Rejection::BodyTooLarge | Rejection::Upstream(UpstreamError::BodyTooLarge) => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                "The request body is larger than this route accepts",
            ),
            Rejection::MethodNotAllowed(methods) => {
                let mut res = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method Not Allowed",
                    "The method is not allowed for the requested URL.",
                );
                let allow = methods
                    .iter()
                    .map(http::Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    res.headers_mut().insert(ALLOW, v);
                }
                res
            }
            Rejection::Forbidden(_) => {
                let mut res = json(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "The token does not grant access to this resource",
                );
                if ctx.style == ErrorStyle::Rfc6750 {
                    let challenge = format!(
                        "Bearer realm=\"{}\", error=\"insufficient_scope\"",
                        quoted(&ctx.realm)
                    );
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        res.headers_mut().insert(WWW_AUTHENTICATE, v);
                    }
                }
                res
            }
            Rejection::HeadersTooLarge => json(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
                "The request headers are larger than the gateway accepts",
            ),
            Rejection::Upstream(UpstreamError::NoHealthyServer { .. }) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "No upstream server is available",
            ),
            Rejection::Upstream(UpstreamError::Unreachable(_)) => json(
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                "The upstream service could not be reached",
            ),
            Rejection::Upstream(UpstreamError::Timeout) => json(
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway Timeout",
                "The upstream service did not answer in time",
            ),
            Rejection::Upstream(UpstreamError::BadUri(_)) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                "The gateway failed to handle the request",
            ),
            Rejection::Browser(b) => browser_response(b),
            Rejection::Oidc(r) => oidc_response(*r),
        }
    }
}

/// Browser mode's refusals. A sign-in is a redirect (with no body a browser would show);
/// the rest are JSON like every other answer of ours.
fn browser_response(b: BrowserError) -> Response<Body> {
    match b {
        BrowserError::SignIn(location) => {
            let mut res = Response::new(crate::body::empty());
            *res.status_mut() = StatusCode::FOUND;
            res.headers_mut().insert(http::header::LOCATION, location);
            res.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            res
        }
        BrowserError::Csrf(_) => json(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The request did not come from this site's pages (CSRF check failed)",
        ),
        BrowserError::MethodNotAllowed(allow) => {
            method_not_allowed(HeaderValue::from_static(allow))
        }
        BrowserError::BodyTooLarge => json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            "The form is larger than the gateway reads",
        ),
        BrowserError::BadForm(why) => json(StatusCode::BAD_REQUEST, "Bad Request", why),
        BrowserError::Session(SessionError::RenewalLoop) => json(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "The browser did not keep the session cookies set a moment ago (are cookies for \
             this site blocked or full?); sign in again in a little while",
        ),
        BrowserError::Session(SessionError::Cookie(_)) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The session does not fit in a browser cookie; the gateway's log says why",
        ),
        BrowserError::Session(SessionError::Refresh(l)) => lifecycle_response(l),
        BrowserError::Session(SessionError::Store(_)) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "The session store cannot be reached; retry later",
        ),
        BrowserError::Session(SessionError::Sign(_)) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The gateway failed to handle the request",
        ),
    }
}

/// An OIDC refusal: the usual JSON body, or a small HTML page for a browser navigation;
/// either way the flow cookie it carried is cleared.
fn oidc_response(r: OidcRefusal) -> Response<Body> {
    let (status, text) = r.error.answer();
    let title = status.canonical_reason().unwrap_or("Error");
    let mut res = if r.html {
        // Only our own fixed texts go into the page: nothing from the request.
        let page = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>{title}</title></head>\n<body><main><h1>{title}</h1><p>{text}</p>\
             <p><a href=\"/\">Back to the start page</a></p></main></body></html>\n"
        );
        let mut res = Response::new(full(page));
        *res.status_mut() = status;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        res
    } else {
        json(status, title, text)
    };
    let h = res.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if let crate::browser::oidc::OidcError::MethodNotAllowed(allow) = r.error {
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(c) = r.clear {
        h.append(http::header::SET_COOKIE, c);
    }
    res
}

impl TokenError {
    /// The metric/log label for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::UnsupportedScheme
            | TokenError::TokenMissing
            | TokenError::ContainsSpaces
            | TokenError::NotAscii
            | TokenError::TooLarge
            | TokenError::NotEnoughSegments
            | TokenError::TooManySegments
            | TokenError::BadHeader(_)
            | TokenError::CriticalHeader
            | TokenError::BadPayloadEncoding
            | TokenError::BadSignatureEncoding
            | TokenError::BadPayload(_)
            | TokenError::MissingClaim(_)
            | TokenError::MissingRequiredClaim(_)
            | TokenError::NotANumber(_)
            | TokenError::DateOutOfRange(_)
            | TokenError::BadIdentity
            | TokenError::IdentityNotHeaderSafe
            | TokenError::ClaimNotHeaderSafe => "malformed",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::BadSignature => "bad_signature",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::Expired => "expired",
            TokenError::InvalidAudience => "wrong_audience",
            TokenError::InvalidIssuer => "wrong_issuer",
            TokenError::UnknownUser => "unknown_user",
            TokenError::Revoked => "revoked",
        }
    }

    /// Flask-JWT's `error` and `description` for this failure.
    fn compat(&self) -> (&'static str, Cow<'static, str>) {
        const HEADER: &str = "Invalid JWT header";
        const TOKEN: &str = "Invalid token";
        let d: &'static str = match self {
            TokenError::Missing => {
                return (
                    "Authorization Required",
                    "Request does not contain an access token".into(),
                )
            }
            TokenError::UnsupportedScheme => {
                return (HEADER, "Unsupported authorization type".into())
            }
            TokenError::TokenMissing => return (HEADER, "Token missing".into()),
            TokenError::ContainsSpaces => return (HEADER, "Token contains spaces".into()),
            TokenError::NotAscii => return (HEADER, "Token contains invalid characters".into()),
            TokenError::UnknownUser => return ("Invalid JWT", "User does not exist".into()),
            TokenError::Revoked => return (TOKEN, "Token has been revoked".into()),
            TokenError::MissingClaim(c) => {
                return (TOKEN, format!("Token is missing the \"{c}\" claim").into())
            }
            TokenError::MissingRequiredClaim(c) => {
                return (TOKEN, format!("Token is missing the \"{c}\" claim").into())
            }
            TokenError::TooLarge => "Token is too large",
            TokenError::NotEnoughSegments => "Not enough segments",
            TokenError::TooManySegments => "Too many segments",
            TokenError::BadHeader(why) => why,
            TokenError::CriticalHeader => "Unsupported critical header parameter",
            TokenError::AlgNotAllowed => "The specified alg value is not allowed",
            TokenError::UnknownKey => "Unknown key id (kid)",
            TokenError::LifetimeTooLong => "Token lifetime exceeds the maximum",
            TokenError::BadPayloadEncoding => "Invalid payload padding",
            TokenError::BadSignatureEncoding => "Invalid crypto padding",
            TokenError::BadSignature => "Signature verification failed",
            TokenError::BadPayload(PayloadProblem::NotJson) => "Invalid payload string: not JSON",
            TokenError::BadPayload(PayloadProblem::NotAnObject) => {
                "Invalid payload string: must be a json object"
            }
            TokenError::BadPayload(PayloadProblem::DuplicateClaim) => {
                "Invalid payload string: duplicate claim"
            }
            TokenError::NotANumber(TimeClaimName::Exp) => {
                "Expiration Time claim (exp) must be an integer."
            }
            TokenError::NotANumber(TimeClaimName::Iat) => {
                "Issued At claim (iat) must be an integer."
            }
            TokenError::NotANumber(TimeClaimName::Nbf) => {
                "Not Before claim (nbf) must be an integer."
            }
            TokenError::DateOutOfRange(TimeClaimName::Exp) => {
                "Expiration Time claim (exp) must be a date between 1970 and 9999."
            }
            TokenError::DateOutOfRange(TimeClaimName::Iat) => {
                "Issued At claim (iat) must be a date between 1970 and 9999."
            }
            TokenError::DateOutOfRange(TimeClaimName::Nbf) => {
                "Not Before claim (nbf) must be a date between 1970 and 9999."
            }
            TokenError::IssuedInFuture => "Issued At claim (iat) cannot be in the future.",
            TokenError::NotYetValid => "The token is not yet valid (nbf)",
            TokenError::Expired => "Signature has expired",
            TokenError::InvalidAudience => "Invalid audience",
            TokenError::InvalidIssuer => "Invalid issuer",
            TokenError::BadIdentity => "Identity claim must be a string or an integer",
            TokenError::IdentityNotHeaderSafe => "Identity claim cannot be forwarded as a header",
            TokenError::ClaimNotHeaderSafe => "A claim cannot be forwarded as a header",
        };
        (TOKEN, d.into())
    }

    fn rfc6750(&self) -> Rfc6750 {
        match self {
            TokenError::Missing | TokenError::UnsupportedScheme => Rfc6750::Challenge,
            TokenError::TokenMissing | TokenError::ContainsSpaces | TokenError::NotAscii => {
                Rfc6750::InvalidRequest
            }
            TokenError::TooLarge
            | TokenError::NotEnoughSegments
            | TokenError::TooManySegments
            | TokenError::BadHeader(_)
            | TokenError::CriticalHeader
            | TokenError::AlgNotAllowed
            | TokenError::UnknownKey
            | TokenError::LifetimeTooLong
            | TokenError::MissingRequiredClaim(_)
            | TokenError::BadPayloadEncoding
            | TokenError::BadSignatureEncoding
            | TokenError::BadSignature
            | TokenError::BadPayload(_)
            | TokenError::MissingClaim(_)
            | TokenError::NotANumber(_)
            | TokenError::DateOutOfRange(_)
            | TokenError::IssuedInFuture
            | TokenError::NotYetValid
            | TokenError::Expired
            | TokenError::InvalidAudience
            | TokenError::InvalidIssuer
            | TokenError::BadIdentity
            | TokenError::IdentityNotHeaderSafe
            | TokenError::ClaimNotHeaderSafe
            | TokenError::UnknownUser
            | TokenError::Revoked => Rfc6750::InvalidToken,
        }
    }
}

fn token_response(t: &TokenError, ctx: &ErrorContext) -> Response<Body> {
    let rendered;
    let r = match ctx.rendered.iter().find(|(k, _)| k == t) {
        Some((_, r)) => r,
        None => {
            rendered = render_token(t, ctx);
            &rendered
        }
    };
    let mut res = respond(r.status, r.body.clone());
    if let Some(c) = &r.challenge {
        res.headers_mut().insert(WWW_AUTHENTICATE, c.clone());
    }
    res
}

fn render_token(t: &TokenError, ctx: &ErrorContext) -> Rendered {
    let (error, description) = t.compat();
    match ctx.style {
        ErrorStyle::FlaskJwt => {
            // Flask-JWT sends the challenge only when no token was presented at all.
            let challenge = (*t == TokenError::Missing)
                .then(|| format!("{} realm=\"{}\"", ctx.prefix, quoted(&ctx.realm)));
            Rendered {
                status: StatusCode::UNAUTHORIZED,
                body: json_body(StatusCode::UNAUTHORIZED, error, &description),
                challenge: challenge.and_then(|c| HeaderValue::from_str(&c).ok()),
            }
        }
        ErrorStyle::Rfc6750 => {
            let realm = quoted(&ctx.realm);
            let (status, challenge) = match t.rfc6750() {
                Rfc6750::Challenge => (
                    StatusCode::UNAUTHORIZED,
                    format!("Bearer realm=\"{realm}\""),
                ),
                Rfc6750::InvalidRequest => (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Bearer realm=\"{realm}\", error=\"invalid_request\", \
                        error_description=\"{}\"",
                        quoted(&description)
                    ),
                ),
                Rfc6750::InvalidToken => (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "Bearer realm=\"{realm}\", error=\"invalid_token\", \
                        error_description=\"{}\"",
                        quoted(&description)
                    ),
                ),
            };
            Rendered {
                status,
                body: json_body(status, error, &description),
                challenge: HeaderValue::from_str(&challenge).ok(),
            }
        }
    }
}

/// Makes text safe inside an RFC 6750 quoted string (no `"` or `\`, visible ASCII only).
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}

/// The 405 of every endpoint, with its `Allow`.
fn method_not_allowed(allow: HeaderValue) -> Response<Body> {
    let mut res = json(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        "The method is not allowed for the requested URL.",
    );
    res.headers_mut().insert(ALLOW, allow);
    res
}

fn login_response(l: LoginError) -> Response<Body> {
    match l {
        LoginError::MethodNotAllowed => {
            method_not_allowed(HeaderValue::from_static(crate::auth::login::ALLOW_LOGIN))
        }
        LoginError::NotJson => json(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "The request body must be JSON (Content-Type: application/json)",
        ),
        LoginError::MalformedBody(why) => json(StatusCode::BAD_REQUEST, "Bad Request", why),
        LoginError::BodyTooLarge => json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            "The login request body is too large",
        ),
        // Flask-JWT's exact body, including its "Bad Request" error with status 401.
        LoginError::RateLimited(wait) => {
            let mut res = json(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "Too many login attempts; retry later",
            );
            res.headers_mut().insert(
                http::header::RETRY_AFTER,
                // Rounded up: retrying at the advertised second must not be too early.
                HeaderValue::from(wait.as_millis().div_ceil(1000).max(1) as u64),
            );
            res
        }
        LoginError::Unavailable(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "Logins are unavailable right now; retry later",
        ),
        LoginError::InvalidCredentials => json(
            StatusCode::UNAUTHORIZED,
            "Bad Request",
            "Invalid credentials",
        ),
        LoginError::Internal(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The gateway failed to issue a token",
        ),
    }
}

fn lifecycle_response(l: LifecycleError) -> Response<Body> {
    match l {
        LifecycleError::MethodNotAllowed(allow) => {
            method_not_allowed(HeaderValue::from_static(allow))
        }
        LifecycleError::NotJson => json(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "The request body must be JSON (Content-Type: application/json)",
        ),
        LifecycleError::MalformedBody(why) => json(StatusCode::BAD_REQUEST, "Bad Request", why),
        LifecycleError::BodyTooLarge => json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            "The request body is too large",
        ),
        LifecycleError::InvalidRefreshToken(_) | LifecycleError::RefreshReused => json(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Invalid refresh token",
        ),
        LifecycleError::NoJti => json(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "The token has no jti and cannot be revoked alone; log out everywhere instead",
        ),
        LifecycleError::Unavailable(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "The change could not be shared through the store; retry later",
        ),
        LifecycleError::Internal(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The gateway failed to complete the request",
        ),
    }
}

/// A JSON error response in the one shape every gateway error uses.
pub fn json(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    respond(status, json_body(status, error, description))
}

/// The JSON error body (with its trailing newline).
fn json_body(status: StatusCode, error: &str, description: &str) -> Bytes {
    let body = ErrorBody {
        description,
        error,
        status_code: status.as_u16(),
    };
    let mut text = serde_json::to_vec(&body).unwrap_or_default();
    text.push(b'\n');
    text.into()
}

/// A response with a JSON body.
fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::oidc::OidcError;

    /// The pre-rendered answers are byte for byte what rendering on demand gives.
    #[test]
    fn prerendered_token_answers_match_fresh_ones() {
        for style in [ErrorStyle::FlaskJwt, ErrorStyle::Rfc6750] {
            let ctx = ErrorContext::new(style, "Login \"Required\"".into(), "JWT".into());
            assert_eq!(ctx.rendered.len(), PRERENDERED.len());
            for (t, r) in ctx.rendered.iter() {
                let fresh = render_token(t, &ctx);
                assert_eq!(r.status, fresh.status, "{t:?}");
                assert_eq!(r.body, fresh.body, "{t:?}");
                assert_eq!(r.challenge, fresh.challenge, "{t:?}");
                let res = token_response(t, &ctx);
                assert_eq!(res.status(), fresh.status);
                assert_eq!(
                    res.headers().get(WWW_AUTHENTICATE),
                    fresh.challenge.as_ref()
                );
                assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
            }
        }
        let ctx = ErrorContext::new(ErrorStyle::Rfc6750, "r".into(), "Bearer".into());
        let expired = &ctx.rendered[2];
        assert_eq!(expired.0, TokenError::Expired);
        assert_eq!(
            expired.1.challenge.as_ref().unwrap(),
            "Bearer realm=\"r\", error=\"invalid_token\", \
                error_description=\"Signature has expired\""
        );
        assert_eq!(
            &expired.1.body[..],
            b"{\"description\":\"Signature has expired\",\
                \"error\":\"Invalid token\",\"status_code\":401}\n"
        );
    }

    /// Every variant's status, fault and body, pinned (Flask-JWT style). A new variant must
    /// be added here: the `match` below has no catch-all.
    #[tokio::test]
    async fn every_rejection_has_a_pinned_status_and_body() {
        use http_body_util::BodyExt;

        let io = || std::io::Error::other("refused");
        let bad_uri = http::Uri::builder()
            .path_and_query("\n")
            .build()
            .unwrap_err();
        let cases: Vec<(Rejection, u16, Fault, &str, &str)> = vec![
            (
                Rejection::NoRoute,
                404,
                Fault::Client,
                "Not Found",
                "No route matches the requested URL",
            ),
            (
                Rejection::BadPath("Bad path"),
                400,
                Fault::Client,
                "Bad Request",
                "Bad path",
            ),
            (
                Rejection::BadHost("Bad host"),
                400,
                Fault::Client,
                "Bad Request",
                "Bad host",
            ),
            (
                Rejection::Token(TokenError::Expired),
                401,
                Fault::Client,
                "Invalid token",
                "Signature has expired",
            ),
            (
                Rejection::Login(LoginError::InvalidCredentials),
                401,
                Fault::Client,
                "Bad Request",
                "Invalid credentials",
            ),
            (
                Rejection::Login(LoginError::RateLimited(std::time::Duration::from_millis(
                    1500,
                ))),
                429,
                Fault::Client,
                "Too Many Requests",
                "Too many login attempts; retry later",
            ),
            (
                Rejection::Login(LoginError::Unavailable("the user service: timeout".into())),
                503,
                Fault::Upstream,
                "Service Unavailable",
                "Logins are unavailable right now; retry later",
            ),
            (
                Rejection::Login(LoginError::Internal("x".into())),
                500,
                Fault::Gateway,
                "Internal Server Error",
                "The gateway failed to issue a token",
            ),
            (
                Rejection::BodyTooLarge,
                413,
                Fault::Client,
                "Payload Too Large",
                "The request body is larger than this route accepts",
            ),
            (
                Rejection::MethodNotAllowed(vec![http::Method::GET]),
                405,
                Fault::Client,
                "Method Not Allowed",
                "The method is not allowed for the requested URL.",
            ),
            (
                Rejection::Forbidden(crate::policy::Forbidden {
                    claim: "roles".into(),
                }),
                403,
                Fault::Client,
                "Forbidden",
                "The token does not grant access to this resource",
            ),
            (
                Rejection::HeadersTooLarge,
                431,
                Fault::Client,
                "Request Header Fields Too Large",
                "The request headers are larger than the gateway accepts",
            ),
            (
                UpstreamError::NoHealthyServer {
                    upstream: "api".into(),
                }
                .into(),
                503,
                Fault::Upstream,
                "Service Unavailable",
                "No upstream server is available",
            ),
            (
                UpstreamError::Unreachable(io().into()).into(),
                502,
                Fault::Upstream,
                "Bad Gateway",
                "The upstream service could not be reached",
            ),
            (
                UpstreamError::Timeout.into(),
                504,
                Fault::Upstream,
                "Gateway Timeout",
                "The upstream service did not answer in time",
            ),
            (
                UpstreamError::BodyTooLarge.into(),
                413,
                Fault::Client,
                "Payload Too Large",
                "The request body is larger than this route accepts",
            ),
            (
                UpstreamError::BadUri(bad_uri).into(),
                500,
                Fault::Gateway,
                "Internal Server Error",
                "The gateway failed to handle the request",
            ),
            (
                Rejection::Upstream(UpstreamError::BodyTooLarge),
                413,
                Fault::Client,
                "Payload Too Large",
                "The request body is larger than this route accepts",
            ),
            (
                UpstreamError::ClientBody("bad chunk".into()).into(),
                400,
                Fault::Client,
                "Bad Request",
                "The request body is not validly framed",
            ),
            (
                Rejection::Upstream(UpstreamError::ClientBody("bad chunk".into())),
                400,
                Fault::Client,
                "Bad Request",
                "The request body is not validly framed",
            ),
            (
                Rejection::BadMethod("The method is a case variant of a standard method"),
                400,
                Fault::Client,
                "Bad Request",
                "The method is a case variant of a standard method",
            ),
            (
                Rejection::TokenHeaderInConnection(http::header::AUTHORIZATION),
                400,
                Fault::Client,
                "Bad Request",
                "The authorization header is listed in Connection, which removes it before \
                 the token can be read",
            ),
            (
                LifecycleError::InvalidRefreshToken("unknown").into(),
                401,
                Fault::Client,
                "Unauthorized",
                "Invalid refresh token",
            ),
            (
                LifecycleError::RefreshReused.into(),
                401,
                Fault::Client,
                "Unauthorized",
                "Invalid refresh token",
            ),
            (
                LifecycleError::NoJti.into(),
                400,
                Fault::Client,
                "Bad Request",
                "The token has no jti and cannot be revoked alone; log out everywhere instead",
            ),
            (
                LifecycleError::Unavailable(crate::store::StoreError::NotConnected).into(),
                503,
                Fault::Upstream,
                "Service Unavailable",
                "The change could not be shared through the store; retry later",
            ),
            (
                Rejection::RevocationStale,
                503,
                Fault::Upstream,
                "Service Unavailable",
                "Token revocations cannot be confirmed right now; retry later",
            ),
            (
                BrowserError::Csrf("no CSRF token").into(),
                403,
                Fault::Client,
                "Forbidden",
                "The request did not come from this site's pages (CSRF check failed)",
            ),
            (
                BrowserError::Session(SessionError::Store(crate::store::StoreError::NotConnected))
                    .into(),
                503,
                Fault::Upstream,
                "Service Unavailable",
                "The session store cannot be reached; retry later",
            ),
            (
                OidcRefusal {
                    error: OidcError::StateMismatch,
                    html: false,
                    clear: None,
                }
                .into(),
                400,
                Fault::Client,
                "Bad Request",
                "The login callback does not belong to a login started in this browser",
            ),
            (
                OidcRefusal {
                    error: OidcError::GroupNotAllowed,
                    html: false,
                    clear: None,
                }
                .into(),
                403,
                Fault::Client,
                "Forbidden",
                "This account is not allowed to log in here",
            ),
            (
                OidcRefusal {
                    error: OidcError::IdTokenRefused(TokenError::BadSignature),
                    html: false,
                    clear: None,
                }
                .into(),
                502,
                Fault::Upstream,
                "Bad Gateway",
                "The identity provider could not be used to log in right now",
            ),
        ];
        let mut seen = Vec::new();
        let ctx = ErrorContext::new(ErrorStyle::FlaskJwt, "Login Required".into(), "JWT".into());
        for (rejection, status, fault, error, description) in cases {
            // Exhaustive: a new variant fails to compile until it has a row above.
            seen.push(match &rejection {
                Rejection::NoRoute => "NoRoute",
                Rejection::BadPath(_) => "BadPath",
                Rejection::BadHost(_) => "BadHost",
                Rejection::BadMethod(_) => "BadMethod",
                Rejection::TokenHeaderInConnection(_) => "TokenHeaderInConnection",
                Rejection::BadRequestBody(_) => "BadRequestBody",
                Rejection::Token(_) => "Token",
                Rejection::Login(_) => "Login",
                Rejection::BodyTooLarge => "BodyTooLarge",
                Rejection::MethodNotAllowed(_) => "MethodNotAllowed",
                Rejection::Forbidden(_) => "Forbidden",
                Rejection::HeadersTooLarge => "HeadersTooLarge",
                Rejection::Upstream(_) => "Upstream",
                Rejection::Lifecycle(_) => "Lifecycle",
                Rejection::RevocationStale => "RevocationStale",
                Rejection::Browser(_) => "Browser",
                Rejection::Oidc(_) => "Oidc",
            });
            let label = format!("{rejection:?}");
            assert_eq!(rejection.fault(), fault, "{label}");
            let res = rejection.into_response(&ctx);
            assert_eq!(res.status().as_u16(), status, "{label}");
            assert_eq!(res.headers()[CONTENT_TYPE], "application/json", "{label}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let expected = format!(
                "{{\"description\":\"{description}\",\"error\":\"{error}\",\
                \"status_code\":{status}}}\n"
            );
            assert_eq!(std::str::from_utf8(&body).unwrap(), expected, "{label}");
        }
        for variant in [
            "NoRoute",
            "BadPath",
            "BadHost",
            "BadMethod",
            "TokenHeaderInConnection",
            "BadRequestBody",
            "Token",
            "Login",
            "BodyTooLarge",
            "MethodNotAllowed",
            "Forbidden",
            "HeadersTooLarge",
            "Upstream",
            "Lifecycle",
            "RevocationStale",
            "Browser",
            "Oidc",
        ] {
            assert!(seen.contains(&variant), "no row for {variant}");
        }
    }

    #[test]
    fn a_sign_in_is_a_bodiless_uncached_redirect() {
        let ctx = ErrorContext::new(ErrorStyle::FlaskJwt, "Login Required".into(), "JWT".into());
        let location = HeaderValue::from_static("/auth/login?return_to=%2Fapp");
        let r = Rejection::from(BrowserError::SignIn(location.clone()));
        assert_eq!(r.fault(), Fault::Client);
        let res = r.into_response(&ctx);
        assert_eq!(res.status(), StatusCode::FOUND);
        assert_eq!(res.headers()[http::header::LOCATION], location);
        assert_eq!(res.headers()[http::header::CACHE_CONTROL], "no-store");
        assert_eq!(http_body::Body::size_hint(res.body()).exact(), Some(0));
    }

    #[test]
    fn every_time_claim_gets_its_own_message() {
        for (claim, words) in [
            (TimeClaimName::Exp, "(exp)"),
            (TimeClaimName::Iat, "(iat)"),
            (TimeClaimName::Nbf, "(nbf)"),
        ] {
            let (_, message) = TokenError::NotANumber(claim).compat();
            assert!(message.contains(words), "{claim}: {message}");
            let (_, message) = TokenError::DateOutOfRange(claim).compat();
            assert!(message.contains(words), "{claim}: {message}");
            assert!(
                message.contains("between 1970 and 9999"),
                "{claim}: {message}"
            );
        }
    }
}
