//! Authentication: reading the token from the request, verifying it into [`Claims`],
//! issuing tokens at the login path, the local user store, and the token lifecycle
//! (refresh tokens, logout, revocation).

pub mod authority;
pub mod bearer;
pub mod cache;
pub mod claims;
pub mod inspect;
pub mod issuers;
pub mod jwks;
pub mod keygen;
pub mod keys;
pub mod lifecycle;
pub mod login;
pub mod logout;
pub mod refresh;
pub mod remote;
pub mod revocation;
pub mod throttle;
pub mod users;
pub mod verify;

pub use claims::Claims;

/// A registered time claim, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeClaimName {
    Exp,
    Iat,
    Nbf,
}

impl TimeClaimName {
    /// The claim's name in a token.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeClaimName::Exp => "exp",
            TimeClaimName::Iat => "iat",
            TimeClaimName::Nbf => "nbf",
        }
    }
}

impl std::fmt::Display for TimeClaimName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request's token was not accepted. Each variant maps to one compat message
/// (see `rejection.rs`); the log gets the variant name as the precise reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token in the request")]
    Missing,
    #[error("authorization scheme is not the configured prefix")]
    UnsupportedScheme,
    #[error("prefix without a token")]
    TokenMissing,
    #[error("authorization header has more than two words, or appears twice")]
    ContainsSpaces,
    #[error("authorization header is not visible ASCII")]
    NotAscii,
    #[error("token longer than the configured maximum")]
    TooLarge,
    #[error("fewer than three segments")]
    NotEnoughSegments,
    #[error("more than three segments")]
    TooManySegments,
    #[error("bad JOSE header: {0}")]
    BadHeader(&'static str),
    #[error("token uses a critical header extension")]
    CriticalHeader,
    #[error("alg not allowed")]
    AlgNotAllowed,
    #[error("kid names no key of the keyring")]
    UnknownKey,
    #[error("bad payload encoding")]
    BadPayloadEncoding,
    #[error("bad signature encoding")]
    BadSignatureEncoding,
    #[error("signature verification failed")]
    BadSignature,
    #[error("payload: {0}")]
    BadPayload(PayloadProblem),
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    #[error("missing required claim {0}")]
    MissingRequiredClaim(std::sync::Arc<str>),
    #[error("claim {0} is not a number")]
    NotANumber(TimeClaimName),
    #[error("claim {0} is not a date within 1970..=9999")]
    DateOutOfRange(TimeClaimName),
    #[error("iat in the future")]
    IssuedInFuture,
    #[error("nbf in the future")]
    NotYetValid,
    #[error("expired")]
    Expired,
    #[error("exp - iat is longer than the maximum token lifetime")]
    LifetimeTooLong,
    #[error("aud does not match")]
    InvalidAudience,
    #[error("iss does not match")]
    InvalidIssuer,
    #[error("identity claim is not a string or an integer")]
    BadIdentity,
    #[error("identity cannot be carried in a header")]
    IdentityNotHeaderSafe,
    #[error("a mapped claim cannot be carried in a header")]
    ClaimNotHeaderSafe,
    #[error("identity is not a known user")]
    UnknownUser,
    #[error("revoked (by jti, or by its user's cut-off)")]
    Revoked,
}

/// Why a payload could not be read as claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadProblem {
    #[error("not JSON")]
    NotJson,
    #[error("not a JSON object")]
    NotAnObject,
    #[error("a claim appears twice")]
    DuplicateClaim,
}
