//! The login endpoint (Flask-JWT's `POST /auth`): credentials in, signed token out.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

use super::claims::IssuedClaims;
use super::keys::{KeyError, Keyring};
use super::lifecycle::{
    is_json, read_bounded, read_json, unix_millis, BodyReadError, LifecycleError,
};
use super::refresh::{Holder, Refresh};
use super::remote::Remote;
use super::revocation::Revocation;
use super::throttle::{Refusal, Throttle};
use super::users::Users;
use crate::body::{empty, full, Body};
use crate::config::{LoginConfig, TokensConfig, UserId};

/// The methods the login path answers, as Flask lists them.
pub const ALLOW_LOGIN: &str = "POST, OPTIONS";

/// Why a login did not produce a token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("content type is not JSON")]
    NotJson,
    #[error("malformed body: {0}")]
    MalformedBody(&'static str),
    #[error("body too large")]
    BodyTooLarge,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many attempts; retry in {0:?}")]
    RateLimited(std::time::Duration),
    /// The shared store (with `fail_closed`) or the user service could not answer.
    #[error("login unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl LoginError {
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::MethodNotAllowed => "method_not_allowed",
            LoginError::NotJson | LoginError::MalformedBody(_) => "malformed_login",
            LoginError::BodyTooLarge => "body_too_large",
            LoginError::InvalidCredentials => "invalid_credentials",
            LoginError::RateLimited(_) => "rate_limited",
            LoginError::Unavailable(_) => "unavailable",
            LoginError::Internal(_) => "internal",
        }
    }
}

/// Signs tokens for verified users. Built once per configuration.
pub struct Issuer {
    header: Header,
    key: EncodingKey,
    lifetime: i64,
    not_before: i64,
    identity_claim: String,
    issuer: Option<String>,
    audience: Option<String>,
    issue_sub: bool,
    issue_jti: bool,
    user_claims: Vec<String>,
}

impl Issuer {
    /// An issuer signing with the keyring's signing key.
    pub fn new(t: &TokensConfig, keys: &Keyring) -> Result<Issuer, KeyError> {
        let key = keys
            .signing()
            .ok_or_else(|| KeyError("the keyring has no signing key".into()))?;
        let encoding = key
            .encoding
            .clone()
            .ok_or_else(|| KeyError("the signing key cannot sign".into()))?;
        // Header::new gives exactly {"typ":"JWT","alg":...}, Flask-JWT's header; the kid is
        // added only when verifiers need it to pick the key.
        let mut header = Header::new(key.algorithm);
        if keys.tokens_carry_kid() {
            header.kid = key.id.clone();
        }
        Ok(Issuer {
            header,
            key: encoding,
            lifetime: t.lifetime.as_secs() as i64,
            not_before: t.not_before.as_secs() as i64,
            identity_claim: t.identity_claim.clone(),
            issuer: t.issuer.clone(),
            audience: t.audience.clone(),
            issue_sub: t.issue_sub,
            issue_jti: t.issue_jti,
            user_claims: t.user_claims.clone(),
        })
    }

    /// The same issuer, writing a `jti` into every token (revocation needs one).
    pub fn with_jti(mut self) -> Issuer {
        self.issue_jti = true;
        self
    }

    /// A token for `identity`, issued at Unix time `now`.
    pub fn issue(
        &self,
        identity: &UserId,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_with(identity, now, &[])
    }

    /// A token for `identity` carrying the configured `user_claims` found in `record`
    /// (the user's `[[users]] claims`) or, for the operator CLI, given directly.
    pub fn issue_with(
        &self,
        identity: &UserId,
        now: i64,
        record: &[(String, Value)],
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let extra: Vec<(String, Value)> = record
            .iter()
            .filter(|(k, _)| self.user_claims.iter().any(|c| c == k))
            .cloned()
            .collect();
        self.sign(identity, now, &extra)
    }

    /// A session's token: the claims of `record` as [`Issuer::issue_with`] keeps them (or
    /// all of them when `all`: a user vouched for elsewhere), then `more`, which replace
    /// any claim of `record` with the same name (a claim never appears twice).
    pub fn issue_for(
        &self,
        identity: &UserId,
        now: i64,
        record: &[(String, Value)],
        all: bool,
        more: &[(String, Value)],
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut extra: Vec<(String, Value)> = record
            .iter()
            .filter(|(k, _)| all || self.user_claims.iter().any(|c| c == k))
            .filter(|(k, _)| !more.iter().any(|(m, _)| m == k))
            .cloned()
            .collect();
        extra.extend(more.iter().cloned());
        self.sign(identity, now, &extra)
    }

    /// Like [`Issuer::issue_with`], but every claim in `extra` is written (operator CLI).
    pub fn sign(
        &self,
        identity: &UserId,
        now: i64,
        extra: &[(String, Value)],
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let subject = self.issue_sub.then(|| identity.header_text());
        let jti = self.issue_jti.then(|| super::revocation::new_jti(now));
        let claims = IssuedClaims {
            exp: now + self.lifetime,
            iat: now,
            nbf: now + self.not_before,
            identity_claim: &self.identity_claim,
            identity,
            issuer: self.issuer.as_deref(),
            audience: self.audience.as_deref(),
            subject: subject.as_deref(),
            jti: jti.as_deref(),
            extra,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }
}

/// The login endpoint.
pub struct Login {
    pub path: String,
    config: LoginConfig,
    issuer: Arc<Issuer>,
    users: Arc<Users>,
    /// The flood cap and the failed-login limits.
    throttle: Throttle,
    /// The delegated credential check, for usernames the local users do not know.
    remote: Option<Remote>,
    /// Refresh tokens, when `[refresh]` is on.
    refresh: Option<Arc<Refresh>>,
    /// The revocation set (user cut-offs end refresh families too).
    revocation: Option<Arc<Revocation>>,
}

/// The login answer. Without refresh tokens it is exactly Flask-JWT's body.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// The body of `POST /auth/refresh`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

/// The methods the refresh path answers.
pub const ALLOW_POST: &str = "POST, OPTIONS";

impl From<Refusal> for LoginError {
    fn from(r: Refusal) -> LoginError {
        match r {
            Refusal::Limited(_, wait) => LoginError::RateLimited(wait),
            Refusal::StoreDown => LoginError::Unavailable("the store is unreachable".into()),
        }
    }
}

impl Login {
    pub fn new(
        config: LoginConfig,
        issuer: Arc<Issuer>,
        users: Arc<Users>,
        throttle: Throttle,
        remote: Option<Remote>,
    ) -> Login {
        Login {
            path: config.path.clone(),
            config,
            issuer,
            users,
            throttle,
            remote,
            refresh: None,
            revocation: None,
        }
    }

    /// With refresh tokens (and the revocation set whose cut-offs end their families).
    pub fn with_lifecycle(
        mut self,
        refresh: Option<Arc<Refresh>>,
        revocation: Option<Arc<Revocation>>,
    ) -> Login {
        self.refresh = refresh;
        self.revocation = revocation;
        self
    }

    /// The largest login body accepted (`[login] max_body`).
    pub fn max_body(&self) -> usize {
        self.config.max_body
    }

    /// A login through the browser form: the same flood cap, failed-login limits,
    /// credential check (local users, then the user service) and outcome counting as a
    /// `POST` of JSON credentials. `credentials` is `None` when the form lacked a usable
    /// pair (it then fails as a wrong password does, after the same work). Returns the
    /// user and, for one the user service vouched for, its claims.
    pub async fn check_credentials(
        &self,
        client: IpAddr,
        credentials: Option<(&str, &str)>,
    ) -> Result<(UserId, Option<Vec<(String, Value)>>), LoginError> {
        let result = self.check_once(client, credentials).await;
        self.throttle.count_outcome(match &result {
            Ok(_) => "success",
            Err(e) => e.reason(),
        });
        result
    }

    async fn check_once(
        &self,
        client: IpAddr,
        credentials: Option<(&str, &str)>,
    ) -> Result<(UserId, Option<Vec<(String, Value)>>), LoginError> {
        self.throttle.admit(client)?;
        let name = credentials.map_or("", |(u, _)| u);
        self.throttle.check(client, name).await?;
        match self.verify(credentials).await? {
            Some(found) => {
                // A failure to clear the pair counter must not cost the user the login.
                let _ = self.throttle.succeeded(client, name).await;
                Ok(found)
            }
            None => {
                self.throttle.failed(client, name).await?;
                Err(LoginError::InvalidCredentials)
            }
        }
    }

    /// The refresh path, when refresh tokens are on.
    pub fn refresh_path(&self) -> Option<&str> {
        self.refresh.as_ref().map(|r| r.config.path.as_str())
    }

    /// The refresh tokens, when on (logout revokes their families).
    pub fn refresh(&self) -> Option<&Refresh> {
        self.refresh.as_deref()
    }

    /// Answers one request to the refresh path: a new pair for a live refresh token.
    pub async fn handle_refresh<B>(&self, req: Request<B>) -> Result<Response<Body>, LifecycleError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Some(refresh) = &self.refresh else {
            return Err(LifecycleError::Internal("refresh tokens are off".into()));
        };
        match *req.method() {
            Method::POST => {}
            Method::OPTIONS => {
                let mut res = Response::new(empty());
                res.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(ALLOW_POST));
                return Ok(res);
            }
            _ => return Err(LifecycleError::MethodNotAllowed(ALLOW_POST)),
        }
        let (parts, body) = req.into_parts();
        let presented: RefreshBody = read_json(&parts.headers, body, None).await?;
        let now_ms = unix_millis();
        let cutoff = |u: &UserId| self.revocation.as_ref().and_then(|r| r.user_cutoff(u));
        let mint = |h: &Holder| {
            let now = now_ms / 1000;
            let signed = match &h.remote {
                Some(claims) => self.issuer.sign(&h.user, now, claims),
                // A local user deleted since the login gets no new token.
                None if !self.users.contains(&h.user) => {
                    return Err(LifecycleError::InvalidRefreshToken(
                        "the user no longer exists",
                    ))
                }
                None => self
                    .issuer
                    .issue_with(&h.user, now, self.users.claims(&h.user)),
            };
            signed.map_err(|e| LifecycleError::Internal(e.to_string()))
        };
        let pair = refresh
            .rotate(&presented.refresh_token, now_ms, &cutoff, &mint)
            .await?;
        let mut body =
            serde_json::to_vec(&pair).map_err(|e| LifecycleError::Internal(e.to_string()))?;
        body.push(b'\n');
        let mut res = Response::new(full(body));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // RFC 6749 §5.1: responses carrying tokens are never cached.
        res.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        Ok(res)
    }

    /// Answers one request to the login path from `client`.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        client: IpAddr,
        now: impl FnOnce() -> i64,
    ) -> Result<Response<Body>, LoginError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        match *req.method() {
            Method::POST => {}
            Method::OPTIONS => {
                let mut res = Response::new(empty());
                res.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(ALLOW_LOGIN));
                return Ok(res);
            }
            _ => return Err(LoginError::MethodNotAllowed),
        }
        let result = self.attempt(req, client, now).await;
        self.throttle.count_outcome(match &result {
            Ok(_) => "success",
            Err(e) => e.reason(),
        });
        result
    }

    /// One `POST`: the limits, the body, the credential check, the token.
    async fn attempt<B>(
        &self,
        req: Request<B>,
        client: IpAddr,
        now: impl FnOnce() -> i64,
    ) -> Result<Response<Body>, LoginError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.throttle.admit(client)?;
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(LoginError::NotJson);
        }
        // A declared oversize body is refused before any of it is read.
        let (parts, body) = req.into_parts();
        let bytes = read_bounded(&parts.headers, body, self.config.max_body)
            .await
            .map_err(|e| match e {
                BodyReadError::TooLarge => LoginError::BodyTooLarge,
                BodyReadError::Unreadable => {
                    LoginError::MalformedBody("The request body could not be read")
                }
            })?;
        let fields = parse_login(&bytes, &self.config)?;
        let credentials = match (&fields.username, &fields.password, fields.extra) {
            (Some(Value::String(u)), Some(Value::String(p)), false)
                if !u.is_empty() && !p.is_empty() =>
            {
                Some((u.as_str(), p.as_str()))
            }
            _ => None,
        };
        // Limits are keyed by the submitted name; a request without a usable pair counts
        // against the empty name (and its address) like any other failure.
        let name = credentials.map_or("", |(u, _)| u);
        self.throttle.check(client, name).await?;
        let (token, refresh_token) = match self.verify(credentials).await? {
            Some((id, claims)) => {
                // A failure to clear the pair counter must not cost the user the login.
                let _ = self.throttle.succeeded(client, name).await;
                let signed = match &claims {
                    Some(remote) => self.issuer.sign(&id, now(), remote),
                    None => self.issuer.issue_with(&id, now(), self.users.claims(&id)),
                };
                let token = signed.map_err(|e| LoginError::Internal(e.to_string()))?;
                let refresh_token = match &self.refresh {
                    Some(r) => Some(r.start(&id, claims, unix_millis()).await.map_err(|e| {
                        tracing::warn!(
                            error = %e,
                            "login: the store did not take the refresh token"
                        );
                        LoginError::Unavailable(e.to_string())
                    })?),
                    None => None,
                };
                (token, refresh_token)
            }
            None => {
                self.throttle.failed(client, name).await?;
                return Err(LoginError::InvalidCredentials);
            }
        };
        let mut body = serde_json::to_vec(&TokenResponse {
            access_token: &token,
            refresh_token: refresh_token.as_deref(),
        })
        .map_err(|e| LoginError::Internal(e.to_string()))?;
        body.push(b'\n');
        let mut res = Response::new(full(body));
        *res.status_mut() = StatusCode::OK;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(res)
    }
}

impl Login {
    /// The user the credentials prove, with the claims of a remote answer (`None` for a
    /// local user). Local users first; the user service only for names they do not know.
    /// An unknown name pays the local dummy hash either way.
    async fn verify(
        &self,
        credentials: Option<(&str, &str)>,
    ) -> Result<Option<(UserId, Option<Vec<(String, Value)>>)>, LoginError> {
        if let Some(id) = self.users.authenticate(credentials).await {
            return Ok(Some((id, None)));
        }
        let (Some(remote), Some((user, password))) = (&self.remote, credentials) else {
            return Ok(None);
        };
        if self.users.knows(user) {
            return Ok(None);
        }
        let answer = remote.check(user, password).await;
        self.throttle.count_remote(match &answer {
            Ok(Some(_)) => "accepted",
            Ok(None) => "refused",
            Err(e) => e.label(),
        });
        match answer {
            Ok(Some(u)) => Ok(Some((u.id, Some(u.claims)))),
            Ok(None) => Ok(None),
            // Logged (as the upstream's fault) with the rejection; never with credentials.
            Err(e) => Err(LoginError::Unavailable(format!("the user service: {e}"))),
        }
    }
}

/// The two credential fields as sent, and whether anything else was sent.
#[derive(Debug, Default)]
struct LoginFields {
    username: Option<Value>,
    password: Option<Value>,
    extra: bool,
}

struct LoginSeed<'a>(&'a LoginConfig);

const NOT_OBJECT: &str = "login body is not an object";

impl<'de> DeserializeSeed<'de> for LoginSeed<'_> {
    type Value = LoginFields;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<LoginFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LoginSeed<'_> {
    type Value = LoginFields;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NOT_OBJECT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LoginFields, A::Error> {
        let mut out = LoginFields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = if key == self.0.username_field.as_str() {
                &mut out.username
            } else if key == self.0.password_field.as_str() {
                &mut out.password
            } else {
                out.extra = true;
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if slot.replace(map.next_value()?).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(out)
    }
}

fn parse_login(bytes: &[u8], config: &LoginConfig) -> Result<LoginFields, LoginError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = LoginSeed(config).deserialize(&mut de).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data && e.to_string().contains(NOT_OBJECT) {
            LoginError::MalformedBody("The request body must be a JSON object")
        } else if e.to_string().starts_with("duplicate member") {
            LoginError::MalformedBody("The request body repeats a member")
        } else {
            LoginError::MalformedBody("The request body is not valid JSON")
        }
    })?;
    de.end()
        .map_err(|_| LoginError::MalformedBody("The request body is not valid JSON"))?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoginConfig {
        LoginConfig {
            path: "/auth".into(),
            username_field: "username".into(),
            password_field: "password".into(),
            max_body: 1024,
            max_concurrent_hashes: 1,
            max_attempts: 1,
            attempts_window: std::time::Duration::from_secs(60),
            limits: Default::default(),
            remote: None,
        }
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.api+json",
            "Application/JSON",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn login_bodies() {
        let c = cfg();
        let f = parse_login(br#"{"username":"a","password":"b"}"#, &c).unwrap();
        assert_eq!(f.username, Some(Value::from("a")));
        assert!(!f.extra);
        assert!(
            parse_login(br#"{"username":"a","password":"b","x":1}"#, &c)
                .unwrap()
                .extra
        );
        let refused = |body: &[u8], words: &str| match parse_login(body, &c) {
            Err(LoginError::MalformedBody(m)) => m.contains(words),
            _ => false,
        };
        assert!(refused(b"[1,2]", "object"));
        assert!(refused(b"{", "valid JSON"));
        assert!(refused(br#"{"username":"a","username":"b"}"#, "repeats"));
    }

    #[test]
    fn flask_jwt_signing_vector() {
        // The compat doc's vector: HS256 over a fixed signing input with key `super-secret`.
        let input = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.\
            eyJleHAiOjE3OTU4NjcyMjUsImlhdCI6MTc5NTg2NjkyNSwi\
            bmJmIjoxNzk1ODY2OTI1LCJpZGVudGl0eSI6MX0";
        let key = EncodingKey::from_secret(b"super-secret").unwrap();
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        assert_eq!(sig, "YPa3yKBeiFA8WxpRgnXvJdee8ci8KrfQTH1EjZ2NJAE");
        // And our issuer produces that exact signing input for the same times and identity.
        let issuer = Issuer {
            header: Header::new(jsonwebtoken::Algorithm::HS256),
            key,
            lifetime: 300,
            not_before: 0,
            identity_claim: "identity".into(),
            issuer: None,
            audience: None,
            issue_sub: false,
            issue_jti: false,
            user_claims: Vec::new(),
        };
        let token = issuer.issue(&UserId::Int(1), 1795866925).unwrap();
        assert_eq!(
            token,
            format!("{input}.YPa3yKBeiFA8WxpRgnXvJdee8ci8KrfQTH1EjZ2NJAE")
        );
    }
}
