//! Browser sessions: our own tokens, carried in cookies.
//!
//! A session begins with a [`Grant`] (a local login through the form, or an external
//! identity). It gets a session id (`sid`), written into every access token of the
//! session and signed into its CSRF token, and, with `[refresh]` on, a refresh-token
//! family whose token sits in an HttpOnly cookie sent only to the refresh path. Renewing
//! rotates that token like `POST /auth/refresh` does (reuse detection and grace
//! included) and keeps the `sid`: it is derived from the family, which outlives every
//! rotation, so the page's CSRF token stays valid for the whole session. Ending a
//! session revokes its access token (with `[revocation]`) and its refresh family on
//! every instance, and clears the cookies.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use serde_json::Value;

use super::cookies::{self, Spec};
use super::csrf::{self, CsrfKey, Purpose};
use crate::auth::lifecycle::LifecycleError;
use crate::auth::login::Issuer;
use crate::auth::refresh::{Holder, Refresh};
use crate::auth::revocation::Revocation;
use crate::auth::users::Users;
use crate::auth::Claims;
use crate::config::UserId;
use crate::store::StoreError;

/// The claim holding the session id in a session's access tokens.
pub const SID_CLAIM: &str = "sid";

/// What a successful login (local form or OIDC callback) hands to the session.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: UserId,
    /// Claims for the user's tokens. For a local user (`remote: false`) only those named
    /// in `[tokens] user_claims` are written, as at the login path; for a remote one,
    /// all of them. A claim named `sid` is replaced by the session's.
    pub claims: Vec<(String, Value)>,
    /// The user is not in `[[users]]` (an external identity): renewals keep these claims
    /// and do not look the user up locally.
    pub remote: bool,
}

/// Why a session could not begin, renew or end.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store did not take the refresh token (or the revocation).
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// Renewal refused: unknown, expired, reused or revoked refresh token, or the user is
    /// gone (the inner error says which).
    #[error("{0}")]
    Refresh(#[from] LifecycleError),
    #[error("cannot sign the session's token: {0}")]
    Sign(String),
    /// The session was renewed moments ago and is back at the renewal: the browser did
    /// not keep the cookies then set. Renewing again would loop.
    #[error("renewal loop: the browser did not keep the session cookies set moments ago (blocked, full or too large?)")]
    RenewalLoop,
    /// A session cookie would be too large for browsers to keep.
    #[error("{0}")]
    Cookie(#[from] cookies::CookieError),
}

/// How long the marker of a renewal lives: a second renewal of the session within this
/// is a loop (the browser did not keep the cookies just set), answered with an error.
/// A fresh access token is never due again this soon (renewal waits for its last half).
pub const RENEWAL_LOOP_WINDOW: Duration = Duration::from_secs(20);

/// Sessions for browsers. Built once per config in `pipeline/build.rs`.
pub struct Sessions {
    issuer: Arc<Issuer>,
    refresh: Option<Arc<Refresh>>,
    users: Arc<Users>,
    revocation: Option<Arc<Revocation>>,
    csrf: CsrfKey,
    /// `[tokens] lifetime`: the access cookie lives as long as its token.
    token_lifetime: Duration,
    /// The refresh cookie's `Path`.
    refresh_path: String,
}

/// The session id of a refresh family: stable across its rotations, and saying nothing
/// about the family id (which names the family in the store).
fn family_sid(family: &str) -> String {
    let mut input = b"gateway browser session id\0".to_vec();
    input.extend_from_slice(family.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest(&SHA256, &input).as_ref()[..16])
}

impl Sessions {
    pub fn new(
        issuer: Arc<Issuer>,
        refresh: Option<Arc<Refresh>>,
        users: Arc<Users>,
        revocation: Option<Arc<Revocation>>,
        csrf: CsrfKey,
        token_lifetime: Duration,
    ) -> Sessions {
        let refresh_path = refresh
            .as_ref()
            .map_or_else(|| "/".to_string(), |r| r.config.path.clone());
        Sessions {
            issuer,
            refresh,
            users,
            revocation,
            csrf,
            token_lifetime,
            refresh_path,
        }
    }

    /// The claims of a local user's record (`[[users]] claims`), for their [`Grant`].
    pub fn local_claims(&self, user: &UserId) -> Vec<(String, Value)> {
        self.users.claims(user).to_vec()
    }

    /// The refresh cookie's path (the refresh path), when sessions renew.
    pub fn refresh_path(&self) -> Option<&str> {
        self.refresh.as_ref().map(|_| self.refresh_path.as_str())
    }

    /// The CSRF key (the login form's tokens use it too).
    pub fn csrf(&self) -> &CsrfKey {
        &self.csrf
    }

    /// Whether sessions renew through the refresh path.
    pub fn renews(&self) -> bool {
        self.refresh.is_some()
    }

    /// How long the session lasts without activity: the refresh family's lifetime, or
    /// the access token's.
    fn session_lifetime(&self) -> Duration {
        self.refresh
            .as_ref()
            .map_or(self.token_lifetime, |r| r.config.lifetime)
    }

    /// Issues our access token (and refresh token when `[refresh]` is on) for `grant` and
    /// returns the Set-Cookie values: access cookie, refresh cookie (if any), CSRF cookie.
    pub async fn begin(
        &self,
        grant: &Grant,
        secure: bool,
        now_ms: i64,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        Ok(self.begin_with_sid(grant, secure, now_ms).await?.0)
    }

    /// [`Sessions::begin`], with the new session's id (what a cookie bound to this
    /// session, such as the OIDC logout hint, records).
    pub async fn begin_with_sid(
        &self,
        grant: &Grant,
        secure: bool,
        now_ms: i64,
    ) -> Result<(Vec<HeaderValue>, String), SessionError> {
        let claims: Vec<(String, Value)> = grant
            .claims
            .iter()
            .filter(|(k, _)| k != SID_CLAIM)
            .cloned()
            .collect();
        let (refresh_token, sid) = match &self.refresh {
            Some(r) => {
                let remote = grant.remote.then(|| claims.clone());
                let (token, family) = r.start_family(&grant.user, remote, now_ms).await?;
                (Some(token), family_sid(&family))
            }
            None => (None, csrf::nonce()),
        };
        let access = self.mint(&grant.user, &claims, grant.remote, &sid, now_ms / 1000)?;
        let cookies = self.cookies(&access, refresh_token.as_deref(), &sid, secure)?;
        Ok((cookies, sid))
    }

    /// Renews a session from its refresh cookie: a rotated refresh token and a new access
    /// token, as Set-Cookie values (access, refresh, CSRF). Fails without `[refresh]`,
    /// and, leaving the token unrotated, when its family's session id is not among
    /// `bound`: the ids named by cookies no other site can set (the CSRF cookie, the
    /// access cookie), so a refresh cookie planted from a sibling domain never signs the
    /// browser in as its planter.
    ///
    /// `looping`: the session was renewed moments ago ([`Sessions::just_renewed`]); a
    /// token that would rotate is then left as it is and the answer is
    /// [`SessionError::RenewalLoop`] (a dead one still fails as such).
    pub async fn renew(
        &self,
        refresh_token: &str,
        bound: &[String],
        looping: bool,
        secure: bool,
        now_ms: i64,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let looped = std::sync::atomic::AtomicBool::new(false);
        let foreign =
            || LifecycleError::InvalidRefreshToken("the refresh cookie is another session's");
        let Some(refresh) = &self.refresh else {
            return Err(LifecycleError::Internal("refresh tokens are off".into()).into());
        };
        let cutoff = |u: &UserId| self.revocation.as_ref().and_then(|r| r.user_cutoff(u));
        let mint = |h: &Holder| {
            let sid = family_sid(&h.family);
            let now = now_ms / 1000;
            // Refused before the store changes: the foreign token stays as it was.
            if !bound.contains(&sid) {
                return Err(foreign());
            }
            if looping {
                looped.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(LifecycleError::InvalidRefreshToken("renewed moments ago"));
            }
            match &h.remote {
                Some(claims) => self.mint(&h.user, claims, true, &sid, now),
                // A local user deleted since the login gets no new token.
                None if !self.users.contains(&h.user) => Err(SessionError::Refresh(
                    LifecycleError::InvalidRefreshToken("the user no longer exists"),
                )),
                None => self.mint(&h.user, self.users.claims(&h.user), false, &sid, now),
            }
            .map_err(|e| match e {
                SessionError::Refresh(l) => l,
                other => LifecycleError::Internal(other.to_string()),
            })
        };
        let rotated = refresh.rotate(refresh_token, now_ms, &cutoff, &mint).await;
        // A grace answer (a repeat, nothing rotated) in a loop is a loop too.
        if looped.into_inner() || (looping && rotated.is_ok()) {
            return Err(SessionError::RenewalLoop);
        }
        let pair = rotated?;
        let sid = self
            .sid_of_token(&pair.access_token)
            .ok_or_else(|| SessionError::Sign("the renewed token has no session id".into()))?;
        // A grace answer repeats an earlier pair without minting: checked here too.
        if !bound.contains(&sid) {
            return Err(foreign().into());
        }
        let mut set = self.cookies(&pair.access_token, Some(&pair.refresh_token), &sid, secure)?;
        let names = cookies::names(secure);
        let marker = format!("{sid}~{}", now_ms / 1000);
        set.push(self.renewed_spec(names, secure).checked(
            &self.csrf.token(Purpose::Renewed, &marker),
            RENEWAL_LOOP_WINDOW,
        )?);
        Ok(set)
    }

    /// Whether the request carries the marker of a renewal of one of the sessions `bound`
    /// made less than [`RENEWAL_LOOP_WINDOW`] before `now_ms`: renewing again would loop.
    pub fn just_renewed(
        &self,
        headers: &http::HeaderMap,
        secure: bool,
        bound: &[String],
        now_ms: i64,
    ) -> bool {
        let window = RENEWAL_LOOP_WINDOW.as_secs() as i64;
        cookies::find_all(headers, cookies::names(secure).renewed)
            .filter_map(|t| self.csrf.verify(Purpose::Renewed, t))
            .filter_map(|m| m.split_once('~'))
            .any(|(sid, at)| {
                bound.iter().any(|b| b == sid)
                    && at
                        .parse::<i64>()
                        .is_ok_and(|at| (0..window).contains(&(now_ms / 1000 - at)))
            })
    }

    /// Set-Cookie values that clear every session cookie.
    pub fn end(&self, secure: bool) -> Vec<HeaderValue> {
        let names = cookies::names(secure);
        let mut out = vec![self.access_spec(names, secure).clear()];
        if self.refresh.is_some() {
            out.push(self.refresh_spec(names, secure).clear());
            out.push(self.renewed_spec(names, secure).clear());
        }
        out.push(self.csrf_spec(names, secure).clear());
        out
    }

    /// Ends the session `sid` everywhere: its access token (when verified and
    /// `[revocation]` is on) is revoked by `jti`, and so is the family of each of
    /// `refresh_tokens` whose session id is `sid` (others, planted by another site, are
    /// left alone). Each step that the store took is in force; the first failure is
    /// returned.
    pub async fn revoke(
        &self,
        claims: Option<&Claims>,
        refresh_tokens: &[&str],
        sid: &str,
        now_ms: i64,
    ) -> Result<(), SessionError> {
        let mut failure = None;
        if let (Some(r), Some(c)) = (&self.revocation, claims) {
            if let Some(jti) = c.get("jti").and_then(Value::as_str) {
                if let Err(e) = r.revoke_jti(jti, c.exp.ceil() as i64, "logout").await {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(r) = &self.refresh {
            let ours = |family: &str| family_sid(family) == sid;
            for t in refresh_tokens {
                if let Err(e) = r.revoke_own_family(t, &ours, now_ms).await {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The session id of verified claims (`None`: not a browser session's token).
    pub fn sid<'c>(&self, claims: &'c Claims) -> Option<&'c str> {
        claims.get(SID_CLAIM).and_then(Value::as_str)
    }

    /// The CSRF token of the session `sid`.
    pub fn csrf_token(&self, sid: &str) -> String {
        self.csrf.token(Purpose::Session, sid)
    }

    /// The Set-Cookie value that (re)sets the CSRF cookie of the session `sid`.
    pub fn csrf_cookie(&self, sid: &str, secure: bool) -> Option<HeaderValue> {
        self.csrf_spec(cookies::names(secure), secure)
            .set(&self.csrf_token(sid), self.session_lifetime())
    }

    fn mint(
        &self,
        user: &UserId,
        record: &[(String, Value)],
        remote: bool,
        sid: &str,
        now: i64,
    ) -> Result<String, SessionError> {
        let more = [(SID_CLAIM.to_string(), Value::String(sid.to_string()))];
        self.issuer
            .issue_for(user, now, record, remote, &more)
            .map_err(|e| SessionError::Sign(e.to_string()))
    }

    /// The `sid` claim of a token we just signed (read back without verifying: it never
    /// left this function's caller).
    fn sid_of_token(&self, token: &str) -> Option<String> {
        let payload = token.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v.get(SID_CLAIM)?.as_str().map(str::to_string)
    }

    fn cookies(
        &self,
        access: &str,
        refresh: Option<&str>,
        sid: &str,
        secure: bool,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let names = cookies::names(secure);
        let mut out = Vec::with_capacity(4);
        out.push(
            self.access_spec(names, secure)
                .checked(access, self.token_lifetime)?,
        );
        if let (Some(t), Some(r)) = (refresh, &self.refresh) {
            out.push(
                self.refresh_spec(names, secure)
                    .checked(t, r.config.lifetime)?,
            );
        }
        out.push(
            self.csrf_spec(names, secure)
                .checked(&self.csrf_token(sid), self.session_lifetime())?,
        );
        Ok(out)
    }

    fn renewed_spec<'a>(&'a self, names: &'a cookies::Names, secure: bool) -> Spec<'a> {
        Spec {
            name: names.renewed,
            path: &self.refresh_path,
            http_only: true,
            secure,
        }
    }

    fn access_spec<'a>(&self, names: &'a cookies::Names, secure: bool) -> Spec<'a> {
        Spec {
            name: names.access,
            path: "/",
            http_only: true,
            secure,
        }
    }

    fn refresh_spec<'a>(&'a self, names: &'a cookies::Names, secure: bool) -> Spec<'a> {
        Spec {
            name: names.refresh,
            path: &self.refresh_path,
            http_only: true,
            secure,
        }
    }

    fn csrf_spec<'a>(&self, names: &'a cookies::Names, secure: bool) -> Spec<'a> {
        Spec {
            name: names.csrf,
            path: "/",
            // The page's scripts read it to echo it in the CSRF header.
            http_only: false,
            secure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RefreshConfig, TokensConfig};
    use crate::metrics::Metrics;

    fn issuer() -> Arc<Issuer> {
        let text = r#"
            [tokens]
            secret_env = "S"
            user_claims = ["roles"]
        "#;
        let env = |k: &str| (k == "S").then(|| "an ordinary test secret, 40 bytes long!".into());
        let loaded = crate::load::from_str_with_env(text, std::path::Path::new("."), &env).unwrap();
        let t: &TokensConfig = &loaded.config.tokens;
        Arc::new(Issuer::new(t, &loaded.built.keyring).unwrap())
    }

    fn sessions(refresh: bool) -> Sessions {
        let issuer = issuer();
        let users = Arc::new(Users::new(
            &[crate::config::User {
                id: UserId::Int(1),
                username: "u".into(),
                password_hash: String::new(),
                claims: vec![("roles".into(), serde_json::json!(["admin"]))],
            }],
            1,
        ));
        let refresh = refresh.then(|| {
            Arc::new(Refresh::new(
                RefreshConfig {
                    lifetime: Duration::from_secs(3600),
                    idle: Duration::from_secs(600),
                    grace: Duration::from_secs(0),
                    path: "/auth/refresh".into(),
                },
                crate::store::Stores::new().local(),
                Arc::new(Metrics::new()),
            ))
        });
        Sessions::new(
            issuer,
            refresh,
            users,
            None,
            CsrfKey::random(),
            Duration::from_secs(300),
        )
    }

    fn cookie<'v>(values: &'v [HeaderValue], name: &str) -> &'v str {
        values
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {values:?}"))
    }

    fn value(set_cookie: &str) -> &str {
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
    }

    fn payload(token: &str) -> Value {
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn begin_sets_three_cookies_bound_by_one_sid() {
        let s = sessions(true);
        let grant = Grant {
            user: UserId::Int(1),
            claims: vec![
                ("roles".into(), serde_json::json!(["admin"])),
                ("sid".into(), serde_json::json!("forged")),
            ],
            remote: false,
        };
        let set = s.begin(&grant, true, 1_800_000_000_000).await.unwrap();
        assert_eq!(set.len(), 3);
        let access = cookie(&set, cookies::SECURE.access);
        assert!(access.contains("HttpOnly") && access.contains("Secure"));
        assert!(access.contains("Path=/;") || access.ends_with("Path=/"));
        assert!(access.contains("Max-Age=300"));
        let refresh = cookie(&set, cookies::SECURE.refresh);
        assert!(refresh.contains("Path=/auth/refresh") && refresh.contains("HttpOnly"));
        assert!(refresh.contains("Max-Age=3600"));
        let csrf_cookie = cookie(&set, cookies::SECURE.csrf);
        assert!(!csrf_cookie.contains("HttpOnly"));
        let claims = payload(value(access));
        let sid = claims["sid"].as_str().unwrap();
        assert_ne!(sid, "forged");
        assert_eq!(claims["roles"], serde_json::json!(["admin"]));
        assert_eq!(
            s.csrf().verify(Purpose::Session, value(csrf_cookie)),
            Some(sid)
        );

        // A renewal rotates the refresh token and keeps the session id.
        let bound = [sid.to_string()];
        // A refresh token is renewed only for the session the other cookies name.
        assert!(s
            .renew(
                value(refresh),
                &["another".into()],
                false,
                true,
                1_800_000_000_500
            )
            .await
            .is_err());
        // A renewal moments after the last one is a loop: refused, nothing rotated.
        assert!(matches!(
            s.renew(value(refresh), &bound, true, true, 1_800_000_000_700)
                .await,
            Err(SessionError::RenewalLoop)
        ));
        let renewed = s
            .renew(value(refresh), &bound, false, true, 1_800_000_001_000)
            .await
            .unwrap();
        let access2 = payload(value(cookie(&renewed, cookies::SECURE.access)));
        assert_eq!(access2["sid"].as_str(), Some(sid));
        assert_eq!(access2["roles"], serde_json::json!(["admin"]));
        let refresh2 = value(cookie(&renewed, cookies::SECURE.refresh));
        assert_ne!(refresh2, value(refresh));
        // The used token again (no grace) revokes the family: the newest fails too.
        assert!(s
            .renew(value(refresh), &bound, false, true, 1_800_000_002_000)
            .await
            .is_err());
        assert!(s
            .renew(refresh2, &bound, false, true, 1_800_000_003_000)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_remote_grant_keeps_its_claims_and_needs_no_local_user() {
        let s = sessions(true);
        let grant = Grant {
            user: UserId::Str("alice@idp.example".into()),
            claims: vec![("email".into(), serde_json::json!("alice@idp.example"))],
            remote: true,
        };
        let set = s.begin(&grant, false, 1_800_000_000_000).await.unwrap();
        let access = payload(value(cookie(&set, cookies::PLAIN.access)));
        assert_eq!(access["email"], "alice@idp.example");
        assert!(!cookie(&set, cookies::PLAIN.access).contains("Secure"));
        let refresh = value(cookie(&set, cookies::PLAIN.refresh));
        let bound = [access["sid"].as_str().unwrap().to_string()];
        let renewed = s
            .renew(refresh, &bound, false, false, 1_800_000_001_000)
            .await
            .unwrap();
        let again = payload(value(cookie(&renewed, cookies::PLAIN.access)));
        assert_eq!(again["email"], "alice@idp.example");
        assert_eq!(again["identity"], "alice@idp.example");
    }

    #[tokio::test]
    async fn without_refresh_two_cookies_and_end_clears_them() {
        let s = sessions(false);
        let grant = Grant {
            user: UserId::Int(1),
            claims: Vec::new(),
            remote: false,
        };
        let set = s.begin(&grant, true, 1_800_000_000_000).await.unwrap();
        assert_eq!(set.len(), 2);
        let csrf_cookie = value(cookie(&set, cookies::SECURE.csrf));
        let sid = payload(value(cookie(&set, cookies::SECURE.access)))["sid"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(s.csrf_token(&sid), csrf_cookie);
        assert!(s
            .renew("x", std::slice::from_ref(&sid), false, true, 0)
            .await
            .is_err());
        let cleared = s.end(true);
        assert_eq!(cleared.len(), 2);
        assert!(cleared
            .iter()
            .all(|v| v.to_str().unwrap().contains("Max-Age=0")));
    }

    #[tokio::test]
    async fn revoking_ends_the_family() {
        let s = sessions(true);
        let grant = Grant {
            user: UserId::Int(1),
            claims: Vec::new(),
            remote: false,
        };
        let set = s.begin(&grant, true, 1_800_000_000_000).await.unwrap();
        let refresh = value(cookie(&set, cookies::SECURE.refresh)).to_string();
        let sid = payload(value(cookie(&set, cookies::SECURE.access)))["sid"]
            .as_str()
            .unwrap()
            .to_string();
        let other = s.begin(&grant, true, 1_800_000_000_000).await.unwrap();
        let other_refresh = value(cookie(&other, cookies::SECURE.refresh)).to_string();
        let other_sid = payload(value(cookie(&other, cookies::SECURE.access)))["sid"]
            .as_str()
            .unwrap()
            .to_string();
        // Only the family of the session named is revoked.
        s.revoke(None, &[&other_refresh, &refresh], &sid, 1_800_000_000_500)
            .await
            .unwrap();
        assert!(s
            .renew(&refresh, &[sid], false, true, 1_800_000_001_000)
            .await
            .is_err());
        assert!(s
            .renew(&other_refresh, &[other_sid], false, true, 1_800_000_001_000)
            .await
            .is_ok());
    }
}
