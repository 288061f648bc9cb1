//! Refresh tokens: opaque, rotated on every use, in families (one per login) whose reuse
//! revokes them.
//!
//! A refresh token is 256 random bits (base64url). The store holds only its SHA-256, as
//! the key of its record: family, user, state. The family's own key says whether it is
//! live; it expires with the family's absolute lifetime, and each token's record with
//! the idle timeout, so an unused family dies on its own.
//!
//! Rotation is one compare-and-swap on the presented token's record (live → used), so of
//! two instances rotating the same token at once exactly one wins. A used token presented
//! again revokes its family: every token of it, the newest included, stops working on
//! every instance (they all read the family's state from the store). The exception is the
//! grace window: within `grace` of its rotation, and while the token that replaced it has
//! not been used itself, the previous token gets the same new pair again (parallel tabs,
//! a retried request). That pair is kept sealed (AES-256-GCM) under a key derived from
//! the previous token, which the store never holds: only its holder can open it.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lifecycle::LifecycleError;
use crate::config::{sha256_hex, RefreshConfig, UserId};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::store::{Store, StoreError};

/// Random bytes in a refresh token.
const TOKEN_BYTES: usize = 32;

/// A family's state value while it may refresh.
const LIVE: &str = "live";
const REVOKED: &str = "revoked";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Live,
    Used,
}

/// One refresh token's record (stored as JSON under the token's hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// The family id.
    family: String,
    /// The user, as the identity claim's JSON.
    user: Value,
    /// When the family began (Unix ms): a user cut-off after it ends the family.
    created: i64,
    /// When the family ends (Unix seconds).
    expires: i64,
    /// Claims from the user service, for users it vouched for (not local users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remote: Option<Vec<(String, Value)>>,
    state: State,
    /// When it was rotated (Unix ms); 0 while live.
    #[serde(default)]
    rotated: i64,
    /// The hash of the token that replaced it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    next: String,
    /// The pair answered at rotation, sealed under the key derived from this token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sealed: String,
}

/// The user a refresh token belongs to, as the caller needs it to mint an access token.
pub struct Holder {
    pub user: UserId,
    /// The family (one login): the same across every rotation of it.
    pub family: String,
    /// `Some` for a user the user service vouched for (their claims at login).
    pub remote: Option<Vec<(String, Value)>>,
}

/// A new pair of tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pair {
    pub access_token: String,
    pub refresh_token: String,
}

/// Refresh-token families in the store. Built once per configuration.
pub struct Refresh {
    pub config: RefreshConfig,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

fn token_key(hash: &str) -> String {
    format!("refresh:token:{hash}")
}

fn family_key(family: &str) -> String {
    format!("refresh:family:{family}")
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Whether `token` has the shape of one of ours (43 base64url characters), checked
/// before anything is hashed or asked of the store.
fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key that seals the pair answered for `token`'s rotation. Derived with its own
/// label, so the stored hash (the record's key) says nothing about it.
fn sealing_key(token: &str) -> Option<LessSafeKey> {
    let mut input = b"gateway refresh pair sealing key\0".to_vec();
    input.extend_from_slice(token.as_bytes());
    let d = digest(&SHA256, &input);
    UnboundKey::new(&AES_256_GCM, d.as_ref())
        .ok()
        .map(LessSafeKey::new)
}

fn seal(token: &str, pair: &Pair) -> Option<String> {
    let key = sealing_key(token)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let mut data = serde_json::to_vec(pair).ok()?;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Some(URL_SAFE_NO_PAD.encode(out))
}

fn open(token: &str, sealed: &str) -> Option<Pair> {
    let key = sealing_key(token)?;
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, data) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    serde_json::from_slice(plain).ok()
}

fn user_of(v: &Value) -> Option<UserId> {
    match v {
        Value::Number(n) => n.as_i64().map(UserId::Int),
        Value::String(s) => Some(UserId::Str(s.clone())),
        _ => None,
    }
}

fn until(expires: i64, now_ms: i64) -> Duration {
    Duration::from_millis(((expires * 1000) - now_ms).max(1) as u64)
}

impl Refresh {
    pub fn new(config: RefreshConfig, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Refresh {
        Refresh {
            config,
            store,
            metrics,
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .refreshes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Starts a family for a login of `user` at `now_ms` and returns its first token.
    pub async fn start(
        &self,
        user: &UserId,
        remote: Option<Vec<(String, Value)>>,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        self.start_family(user, remote, now_ms)
            .await
            .map(|(token, _)| token)
    }

    /// Like [`Refresh::start`], also returning the new family's id (never sent to a
    /// client: the caller derives what it needs from it).
    pub async fn start_family(
        &self,
        user: &UserId,
        remote: Option<Vec<(String, Value)>>,
        now_ms: i64,
    ) -> Result<(String, String), StoreError> {
        let family = random_b64(16);
        let expires = now_ms / 1000 + self.config.lifetime.as_secs() as i64;
        self.store
            .put(&family_key(&family), LIVE, self.config.lifetime)
            .await?;
        let record = Record {
            family,
            user: user.to_json(),
            created: now_ms,
            expires,
            remote,
            state: State::Live,
            rotated: 0,
            next: String::new(),
            sealed: String::new(),
        };
        let token = self.put_live(&record, now_ms).await?;
        Ok((token, record.family))
    }

    /// Stores `record` (live) under a new token and returns the token.
    async fn put_live(&self, record: &Record, now_ms: i64) -> Result<String, StoreError> {
        let token = random_b64(TOKEN_BYTES);
        let text = serde_json::to_string(record).map_err(|e| StoreError::Backend(e.to_string()))?;
        let ttl = until(record.expires, now_ms).min(self.config.idle);
        self.store
            .put(&token_key(&sha256_hex(token.as_bytes())), &text, ttl)
            .await?;
        Ok(token)
    }

    /// The record of `token` and its stored text, when the token and its family are live
    /// (or used: reuse and grace are the caller's to judge).
    async fn find(
        &self,
        token: &str,
        now_ms: i64,
        cutoff: &(dyn Fn(&UserId) -> Option<i64> + Sync),
    ) -> Result<(Record, String, UserId), LifecycleError> {
        if !well_formed(token) {
            return Err(LifecycleError::InvalidRefreshToken("not a refresh token"));
        }
        let key = token_key(&sha256_hex(token.as_bytes()));
        let text = self
            .store
            .get(&key)
            .await
            .map_err(LifecycleError::Unavailable)?
            .ok_or(LifecycleError::InvalidRefreshToken("unknown or expired"))?;
        let record: Record = serde_json::from_str(&text)
            .map_err(|_| LifecycleError::InvalidRefreshToken("unreadable record"))?;
        let user = user_of(&record.user)
            .ok_or(LifecycleError::InvalidRefreshToken("unreadable record"))?;
        let family = self
            .store
            .get(&family_key(&record.family))
            .await
            .map_err(LifecycleError::Unavailable)?;
        if family.as_deref() != Some(LIVE) || record.expires * 1000 <= now_ms {
            return Err(LifecycleError::InvalidRefreshToken(
                "family revoked or expired",
            ));
        }
        if cutoff(&user).is_some_and(|c| record.created <= c) {
            return Err(LifecycleError::InvalidRefreshToken(
                "user logged out everywhere",
            ));
        }
        Ok((record, text, user))
    }

    /// Rotates `token`: a new pair, whose access token `mint` makes for the holder (it
    /// also refuses users that no longer exist). See the module documentation for reuse
    /// and grace. `cutoff` gives a user's log-out-everywhere time (Unix ms).
    pub async fn rotate(
        &self,
        token: &str,
        now_ms: i64,
        cutoff: &(dyn Fn(&UserId) -> Option<i64> + Sync),
        mint: &(dyn Fn(&Holder) -> Result<String, LifecycleError> + Sync),
    ) -> Result<Pair, LifecycleError> {
        let result = self.rotate_once(token, now_ms, cutoff, mint).await;
        self.count(match &result {
            Ok((_, true)) => "grace",
            Ok((_, false)) => "rotated",
            Err(e) => e.reason(),
        });
        result.map(|(pair, _)| pair)
    }

    async fn rotate_once(
        &self,
        token: &str,
        now_ms: i64,
        cutoff: &(dyn Fn(&UserId) -> Option<i64> + Sync),
        mint: &(dyn Fn(&Holder) -> Result<String, LifecycleError> + Sync),
    ) -> Result<(Pair, bool), LifecycleError> {
        let (record, text, user) = self.find(token, now_ms, cutoff).await?;
        if record.state == State::Used {
            return self.reused(token, &record, now_ms).await.map(|p| (p, true));
        }
        let holder = Holder {
            user,
            family: record.family.clone(),
            remote: record.remote.clone(),
        };
        let access_token = mint(&holder)?;
        let successor = Record {
            state: State::Live,
            rotated: 0,
            next: String::new(),
            sealed: String::new(),
            ..record.clone()
        };
        let refresh_token = self
            .put_live(&successor, now_ms)
            .await
            .map_err(LifecycleError::Unavailable)?;
        let pair = Pair {
            access_token,
            refresh_token,
        };
        let used = Record {
            state: State::Used,
            rotated: now_ms,
            next: sha256_hex(pair.refresh_token.as_bytes()),
            sealed: seal(token, &pair).unwrap_or_default(),
            ..record.clone()
        };
        let used_text =
            serde_json::to_string(&used).map_err(|e| LifecycleError::Internal(e.to_string()))?;
        let key = token_key(&sha256_hex(token.as_bytes()));
        // Used records stay until the family ends: a reuse must still be recognized.
        let swapped = self
            .store
            .compare_and_swap(&key, &text, &used_text, until(record.expires, now_ms))
            .await
            .map_err(LifecycleError::Unavailable)?;
        if swapped {
            return Ok((pair, false));
        }
        // Another request rotated it first: ours never existed. Answer as a repeat of
        // theirs (grace, or reuse when past it).
        let mine = token_key(&pair.next_hash());
        let _ = self.store.delete(&[mine.as_str()]).await;
        let (record, _, _) = self.find(token, now_ms, cutoff).await?;
        if record.state == State::Live {
            return Err(LifecycleError::Internal("rotation did not settle".into()));
        }
        self.reused(token, &record, now_ms).await.map(|p| (p, true))
    }

    /// A used token again: the same pair within grace while its successor is unused,
    /// else the family is revoked.
    async fn reused(
        &self,
        token: &str,
        record: &Record,
        now_ms: i64,
    ) -> Result<Pair, LifecycleError> {
        let grace = self.config.grace.as_millis() as i64;
        if grace > 0 && now_ms - record.rotated <= grace && !record.next.is_empty() {
            let successor = self
                .store
                .get(&token_key(&record.next))
                .await
                .map_err(LifecycleError::Unavailable)?
                .and_then(|t| serde_json::from_str::<Record>(&t).ok());
            if successor.is_some_and(|s| s.state == State::Live) {
                if let Some(pair) = open(token, &record.sealed) {
                    return Ok(pair);
                }
            }
        }
        self.metrics.refresh_reuse.inc();
        tracing::warn!(
            user = %record.user,
            "refresh: a used refresh token was presented again; its family is revoked"
        );
        self.revoke(&record.family, record.expires, now_ms, "reuse")
            .await
            .map_err(LifecycleError::Unavailable)?;
        Err(LifecycleError::RefreshReused)
    }

    async fn revoke(
        &self,
        family: &str,
        expires: i64,
        now_ms: i64,
        by: &str,
    ) -> Result<(), StoreError> {
        self.metrics
            .revocations
            .get_or_create(&crate::metrics::RevocationLabels {
                kind: "family".into(),
                by: by.into(),
            })
            .inc();
        self.store
            .put(&family_key(family), REVOKED, until(expires, now_ms))
            .await
    }

    /// Revokes the family of `token` when it belongs to `user` (logout). Returns whether
    /// a family was revoked (an unknown token, or another user's, revokes nothing).
    pub async fn revoke_family_of(
        &self,
        token: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.revoke_family(token, Some(user), &|_| true, now_ms)
            .await
    }

    /// Revokes the family of `token` when `family` accepts its id (a browser logout: the
    /// family of the session signing out). Returns whether a family was revoked.
    pub async fn revoke_own_family(
        &self,
        token: &str,
        family: &(dyn Fn(&str) -> bool + Sync),
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.revoke_family(token, None, family, now_ms).await
    }

    async fn revoke_family(
        &self,
        token: &str,
        user: Option<&UserId>,
        family: &(dyn Fn(&str) -> bool + Sync),
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        if !well_formed(token) {
            return Ok(false);
        }
        let key = token_key(&sha256_hex(token.as_bytes()));
        let Some(text) = self.store.get(&key).await? else {
            return Ok(false);
        };
        let Ok(record) = serde_json::from_str::<Record>(&text) else {
            return Ok(false);
        };
        if user.is_some_and(|u| user_of(&record.user).as_ref() != Some(u))
            || !family(&record.family)
        {
            return Ok(false);
        }
        self.revoke(&record.family, record.expires, now_ms, "logout")
            .await?;
        Ok(true)
    }
}

impl Pair {
    fn next_hash(&self) -> String {
        sha256_hex(self.refresh_token.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_pair_opens_only_with_its_token() {
        let t = random_b64(TOKEN_BYTES);
        assert!(well_formed(&t));
        let pair = Pair {
            access_token: "a.b.c".into(),
            refresh_token: random_b64(TOKEN_BYTES),
        };
        let sealed = seal(&t, &pair).unwrap();
        assert_eq!(open(&t, &sealed).unwrap().refresh_token, pair.refresh_token);
        assert!(open(&random_b64(TOKEN_BYTES), &sealed).is_none());
        assert!(!sealed.contains(&pair.refresh_token));
    }

    #[test]
    fn only_our_shape_is_a_refresh_token() {
        assert!(!well_formed("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
        assert!(!well_formed(&"a".repeat(44)));
        assert!(!well_formed(&format!("{}=", "a".repeat(42))));
    }
}
