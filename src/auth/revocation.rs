//! Revocation: access tokens refused by `jti` until they expire, and per-user cut-offs
//! (every token of that user issued at or before the cut-off is refused).
//!
//! The per-request check never waits on the store: it reads the local set of a
//! [`Mirror`], which every instance keeps current through the store's pub/sub channel and
//! a periodic resync. When the mirror cannot be kept current for longer than
//! `max_staleness`, `on_store_error` decides: `fail_open` goes on with what is known,
//! `fail_closed` refuses required routes (and readiness) until the store answers again.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::lifecycle::unix_millis;
use super::{Claims, TokenError};
use crate::config::{Config, RevocationConfig, RevocationFailure, UserId};
use crate::metrics::{Metrics, RevocationLabels};
use crate::store::mirror::{Entry, Mirror};
use crate::store::StoreError;

/// Store keys of revocation entries start with this (after `[store] key_prefix`).
pub const PREFIX: &str = "revoked:";

/// A `jti` for a token issued at `now` (Unix seconds): the issue time in milliseconds
/// (8 bytes) and 12 random bytes, base64url. The milliseconds let a user cut-off tell a
/// token issued just before it from one issued just after it within the same second;
/// 96 random bits keep every `jti` unique.
pub fn new_jti(now: i64) -> String {
    // The clock's millisecond, kept within the second `now` names (the `iat`).
    let ms = unix_millis().clamp(now * 1000, now * 1000 + 999);
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&ms.to_be_bytes());
    rand::fill(&mut id[8..]);
    URL_SAFE_NO_PAD.encode(id)
}

/// The issue time (ms) one of our `jti`s carries.
fn jti_millis(jti: &str) -> Option<i64> {
    let mut id = [0u8; 20];
    match URL_SAFE_NO_PAD.decode_slice(jti, &mut id) {
        Ok(20) => Some(i64::from_be_bytes(id[..8].try_into().ok()?)),
        _ => None,
    }
}

/// Writes the mirror key of a user's cut-off into `out`: the identity as JSON, so `1` and
/// `"1"` differ.
fn write_user_key(user: &UserId, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"user:");
    // Writing JSON into a Vec cannot fail.
    let _ = match user {
        UserId::Int(i) => serde_json::to_writer(&mut *out, i),
        UserId::Str(s) => serde_json::to_writer(&mut *out, s),
    };
}

fn write_jti_key(jti: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"jti:");
    out.extend_from_slice(jti.as_bytes());
}

fn user_key(user: &UserId) -> String {
    let mut out = Vec::new();
    write_user_key(user, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn jti_key(jti: &str) -> String {
    format!("jti:{jti}")
}

thread_local! {
    /// The per-request lookup keys are written here: no allocation per request.
    static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Looks `key` (as `write` writes it) up in `mirror`.
fn lookup(mirror: &Mirror, write: impl FnOnce(&mut Vec<u8>)) -> Option<Entry> {
    KEY.with(|buf| {
        let mut buf = buf.borrow_mut();
        write(&mut buf);
        std::str::from_utf8(&buf).ok().and_then(|k| mirror.get(k))
    })
}

/// How long a user cut-off (and an operator's `jti` revocation, whose expiry is not
/// known) is kept: past the longest life any token it must cut can have.
pub fn keep_cutoffs(config: &Config) -> Duration {
    let t = &config.tokens;
    [
        Some(t.lifetime),
        t.max_lifetime,
        config.refresh.as_ref().map(|r| r.lifetime),
        Some(Duration::from_secs(86_400)),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or_default()
        + t.leeway
}

/// The revocation set of one process, shared by its pipelines.
pub struct Revocation {
    mirror: Arc<Mirror>,
    config: RevocationConfig,
    /// How long a user cut-off is kept: longer than any token it must cut can live.
    keep_cutoffs: Duration,
    /// `[tokens] leeway`: a token is accepted this long past its `exp`, so its `jti`
    /// revocation is kept that much longer.
    leeway: Duration,
    metrics: Arc<Metrics>,
}

impl Revocation {
    pub fn new(
        config: RevocationConfig,
        mirror: Arc<Mirror>,
        keep_cutoffs: Duration,
        leeway: Duration,
        metrics: Arc<Metrics>,
    ) -> Revocation {
        Revocation {
            mirror,
            config,
            keep_cutoffs,
            leeway,
            metrics,
        }
    }

    pub fn config(&self) -> &RevocationConfig {
        &self.config
    }

    /// Waits (at most `within`) for the set to be loaded from the store.
    pub async fn loaded(&self, within: Duration) -> bool {
        self.mirror.loaded(within).await
    }

    /// Refuses a verified token that was revoked by `jti`, or issued at or before its
    /// user's cut-off. `ours`: issued by this gateway (its `jti` carries the issue time).
    pub fn check(&self, claims: &Claims, ours: bool) -> Result<(), TokenError> {
        if self.mirror.is_empty() {
            return Ok(());
        }
        let jti = claims.get("jti").and_then(|v| v.as_str());
        if let Some(jti) = jti {
            if lookup(&self.mirror, |b| write_jti_key(jti, b)).is_some() {
                return Err(TokenError::Revoked);
            }
        }
        let cutoff = lookup(&self.mirror, |b| write_user_key(&claims.identity, b));
        if let Some(cutoff) = cutoff.map(|e| e.value) {
            let issued = match (ours, jti.and_then(jti_millis), claims.iat) {
                (true, Some(ms), _) => ms,
                // Whole seconds: a token of the cut-off's second is cut with it.
                (_, _, Some(iat)) => (iat * 1000.0) as i64,
                // No issue time at all: nothing proves it came after the cut-off.
                (_, _, None) => i64::MIN,
            };
            if issued <= cutoff {
                return Err(TokenError::Revoked);
            }
        }
        Ok(())
    }

    /// The user's cut-off (Unix ms), if any.
    pub fn user_cutoff(&self, user: &UserId) -> Option<i64> {
        self.mirror.get(&user_key(user)).map(|e| e.value)
    }

    /// Whether the set is older than `max_staleness`.
    pub fn is_stale(&self) -> bool {
        self.mirror.staleness() > self.config.max_staleness
    }

    /// Whether required routes must be refused now (`fail_closed` and stale).
    pub fn refuses(&self) -> bool {
        self.config.on_store_error == RevocationFailure::FailClosed && self.is_stale()
    }

    /// Revokes the token `jti` until `exp` (Unix seconds). `by` labels the metric.
    pub async fn revoke_jti(&self, jti: &str, exp: i64, by: &str) -> Result<(), StoreError> {
        self.count("jti", by);
        let entry = Entry {
            value: exp,
            expires: (exp + self.leeway.as_secs() as i64).max(unix_millis() / 1000 + 1),
        };
        self.mirror.insert(&jti_key(jti), entry).await
    }

    /// Revokes the token `jti` whose expiry is unknown (an operator's request): kept as
    /// long as a user cut-off.
    pub async fn revoke_jti_unknown_exp(&self, jti: &str, by: &str) -> Result<(), StoreError> {
        let until = unix_millis() / 1000 + self.keep_cutoffs.as_secs() as i64;
        self.revoke_jti(jti, until, by).await
    }

    /// Cuts every token of `user` issued at or before `at_ms` (Unix ms).
    pub async fn revoke_user(&self, user: &UserId, at_ms: i64, by: &str) -> Result<(), StoreError> {
        self.count("user", by);
        let entry = Entry {
            value: at_ms,
            expires: at_ms / 1000 + self.keep_cutoffs.as_secs() as i64,
        };
        self.mirror.insert(&user_key(user), entry).await
    }

    fn count(&self, kind: &str, by: &str) {
        self.metrics
            .revocations
            .get_or_create(&RevocationLabels {
                kind: kind.to_string(),
                by: by.to_string(),
            })
            .inc();
    }

    /// Sets the set-size and staleness gauges (read when metrics are scraped).
    pub fn update_gauges(&self) {
        self.metrics
            .revocation_set_size
            .set(self.mirror.len() as i64);
        self.metrics
            .revocation_staleness
            .set(self.mirror.staleness().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_match_the_stored_keys() {
        let mut buf = Vec::new();
        write_user_key(&UserId::Str("a\"b".into()), &mut buf);
        assert_eq!(buf, user_key(&UserId::Str("a\"b".into())).as_bytes());
        assert_eq!(user_key(&UserId::Int(7)), "user:7");
        assert_eq!(user_key(&UserId::Str("7".into())), "user:\"7\"");
        write_jti_key("j", &mut buf);
        assert_eq!(buf, jti_key("j").as_bytes());
    }

    #[test]
    fn our_jti_carries_the_issue_millisecond() {
        let jti = new_jti(1_000);
        let ms = jti_millis(&jti).unwrap();
        assert!((1_000_000..1_001_000).contains(&ms), "{ms}");
        assert_ne!(new_jti(1_000), jti);
        assert_eq!(jti_millis("not-ours"), None);
    }
}
