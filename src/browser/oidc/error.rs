//! Why an OIDC step was refused, and what the client is told: one status and one short
//! text per failure (the log has the precise reason), JSON for API clients, an HTML page
//! for a browser navigation.

use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::discovery::DiscoveryError;
use crate::auth::TokenError;
use crate::browser::request;

/// Why an OIDC login step was refused. Each maps to one status in `rejection.rs`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("no [[oidc]] provider of that name")]
    UnknownProvider,
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("the return URL is not a relative same-site path")]
    BadReturnUrl,
    #[error("the request has no usable Host to build the redirect URI from")]
    NoHost,
    #[error("the callback lacks code or state")]
    MissingParameters,
    #[error("the provider refused the login: {0}")]
    ProviderRefused(String),
    #[error("no login in progress (no flow cookie)")]
    NoFlow,
    #[error("the flow cookie was changed or is not ours")]
    BadFlow,
    #[error("the login took longer than flow_lifetime")]
    FlowExpired,
    #[error("state does not match the flow cookie")]
    StateMismatch,
    #[error("the callback was already used")]
    Replayed,
    #[error("the callback's iss is not the provider's")]
    IssuerMismatch,
    #[error("the provider refused the authorization code")]
    CodeRefused,
    #[error("the provider: {0}")]
    ProviderUnavailable(DiscoveryError),
    #[error("ID token refused: {0}")]
    IdTokenRefused(TokenError),
    #[error("the ID token's nonce is not this login's")]
    NonceMismatch,
    #[error("the email is missing, unverified or of a domain not allowed")]
    EmailNotAllowed,
    #[error("no allowed group")]
    GroupNotAllowed,
    #[error("the provider's identity is a local user's, and the provider may not assert it")]
    LocalIdentity,
    #[error("the session could not begin: {0}")]
    SessionUnavailable(String),
    #[error("{0}")]
    Internal(&'static str),
}

impl OidcError {
    /// The metric and log label.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider => "oidc_unknown_provider",
            OidcError::MethodNotAllowed(_) => "method_not_allowed",
            OidcError::BadReturnUrl => "oidc_bad_return_url",
            OidcError::NoHost => "oidc_no_host",
            OidcError::MissingParameters => "oidc_missing_parameters",
            OidcError::ProviderRefused(_) => "oidc_provider_refused",
            OidcError::NoFlow => "oidc_no_flow",
            OidcError::BadFlow => "oidc_bad_flow",
            OidcError::FlowExpired => "oidc_flow_expired",
            OidcError::StateMismatch => "oidc_state_mismatch",
            OidcError::Replayed => "oidc_replayed",
            OidcError::IssuerMismatch => "oidc_issuer_mismatch",
            OidcError::CodeRefused => "oidc_code_refused",
            OidcError::ProviderUnavailable(_) => "oidc_provider_unavailable",
            OidcError::IdTokenRefused(_) => "oidc_id_token_refused",
            OidcError::NonceMismatch => "oidc_nonce_mismatch",
            OidcError::EmailNotAllowed => "oidc_email_not_allowed",
            OidcError::GroupNotAllowed => "oidc_group_not_allowed",
            OidcError::LocalIdentity => "oidc_local_identity",
            OidcError::SessionUnavailable(_) => "unavailable",
            OidcError::Internal(_) => "internal",
        }
    }

    /// Status and the client-facing text (short; the log has the precise reason).
    pub fn answer(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            OidcError::UnknownProvider => (S::NOT_FOUND, "No such login provider"),
            OidcError::MethodNotAllowed(_) => (
                S::METHOD_NOT_ALLOWED,
                "The method is not allowed for the requested URL.",
            ),
            OidcError::BadReturnUrl => (
                S::BAD_REQUEST,
                "The return URL must be a path on this site, such as /app",
            ),
            OidcError::NoHost => (S::BAD_REQUEST, "The request names no host"),
            OidcError::MissingParameters => {
                (S::BAD_REQUEST, "The login callback lacks its code or state")
            }
            OidcError::NoFlow | OidcError::FlowExpired => (
                S::BAD_REQUEST,
                "No login is in progress in this browser, or it took too long; start again",
            ),
            OidcError::BadFlow | OidcError::StateMismatch => (
                S::BAD_REQUEST,
                "The login callback does not belong to a login started in this browser",
            ),
            OidcError::Replayed => (
                S::BAD_REQUEST,
                "This login callback was already used; start again",
            ),
            OidcError::IssuerMismatch => (
                S::BAD_REQUEST,
                "The login callback names another identity provider",
            ),
            OidcError::NonceMismatch => (
                S::BAD_REQUEST,
                "The identity provider's token was issued for another login attempt",
            ),
            OidcError::CodeRefused => (
                S::BAD_REQUEST,
                "The identity provider refused the login code; start again",
            ),
            OidcError::ProviderRefused(_) => {
                (S::FORBIDDEN, "The identity provider did not log you in")
            }
            OidcError::EmailNotAllowed | OidcError::GroupNotAllowed => {
                (S::FORBIDDEN, "This account is not allowed to log in here")
            }
            OidcError::LocalIdentity => (
                S::FORBIDDEN,
                "This account has the identity of a local user; it cannot log in with this provider",
            ),
            OidcError::SessionUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "The session could not be started right now; retry later",
            ),
            OidcError::ProviderUnavailable(_) | OidcError::IdTokenRefused(_) => (
                S::BAD_GATEWAY,
                "The identity provider could not be used to log in right now",
            ),
            OidcError::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "The gateway failed to handle the request",
            ),
        }
    }

    /// Whose fault it is: the provider's (it is down or answers nonsense), the gateway's,
    /// or else the request's.
    pub fn upstream_fault(&self) -> bool {
        matches!(
            self,
            OidcError::ProviderUnavailable(_)
                | OidcError::IdTokenRefused(_)
                | OidcError::SessionUnavailable(_)
        )
    }
}

/// A refused OIDC step with how to answer it: an HTML page for a browser navigation, and
/// the Set-Cookie that clears a flow cookie the request carried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct OidcRefusal {
    pub error: OidcError,
    pub html: bool,
    pub clear: Option<HeaderValue>,
}

/// A refusal for a request: HTML for a browser navigation, JSON otherwise.
pub fn refusal(error: OidcError, parts: &Parts, clear: Option<HeaderValue>) -> OidcRefusal {
    OidcRefusal {
        error,
        html: request::is_navigation(&parts.method, &parts.headers),
        clear,
    }
}
