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
use serde_json::Value;

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

/// Namespaces of the mirror's keys.
const JTI: &str = "jti:";
const USER: &str = "user:";

/// Writes the rest (after [`USER`]) of a user's cut-off key into `out`: the identity as
/// JSON, so `1` and `"1"` differ.
fn write_user_rest(user: &UserId, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    match user {
        // Writing into a String cannot fail.
        UserId::Int(i) => drop(write!(out, "{i}")),
        // JSON escapes only these in a string; most identities need none, and are quoted
        // here without building a second string.
        UserId::Str(s) if !s.chars().any(|c| c == '"' || c == '\\' || c < ' ') => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        UserId::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
    }
}

fn user_key(user: &UserId) -> String {
    let mut rest = String::new();
    write_user_rest(user, &mut rest);
    format!("{USER}{rest}")
}

fn jti_key(jti: &str) -> String {
    format!("{JTI}{jti}")
}

thread_local! {
    /// The per-request user lookup key is written here: no allocation per request.
    static USER_REST: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
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

/// What the check found for a token.
enum Found {
    Jti,
    /// The user's cut-off (Unix ms).
    Cutoff(i64),
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
        let jti = claims.get("jti").and_then(|v| v.as_str());
        // One read lock for both lookups; an empty set (the common case) takes none, and
        // the user key is built only while some user has a cut-off.
        let found = self.mirror.view(|entries| {
            if jti.is_some_and(|j| entries.get(JTI, j).is_some()) {
                return Some(Found::Jti);
            }
            if !entries.holds(USER) {
                return None;
            }
            USER_REST.with(|rest| {
                let mut rest = rest.borrow_mut();
                write_user_rest(&claims.identity, &mut rest);
                entries.get(USER, &rest).map(|e| Found::Cutoff(e.value))
            })
        });
        match found {
            None => Ok(()),
            Some(Found::Jti) => Err(TokenError::Revoked),
            Some(Found::Cutoff(cutoff)) => {
                let issued = match (ours, jti.and_then(jti_millis), claims.iat) {
                    (true, Some(ms), _) => ms,
                    // Whole seconds: a token of the cut-off's second is cut with it.
                    (_, _, Some(iat)) => (iat * 1000.0) as i64,
                    // No issue time at all: nothing proves it came after the cut-off.
                    (_, _, None) => i64::MIN,
                };
                if issued <= cutoff {
                    Err(TokenError::Revoked)
                } else {
                    Ok(())
                }
            }
        }
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
        assert_eq!(user_key(&UserId::Int(7)), "user:7");
        assert_eq!(user_key(&UserId::Int(-7)), "user:-7");
        assert_eq!(user_key(&UserId::Str("7".into())), "user:\"7\"");
        assert_eq!(jti_key("j"), "jti:j");
        // The quick quoting and JSON agree on every kind of string.
        for s in [
            "alice",
            "a\"b",
            "back\\slash",
            "tab\t",
            "\u{7f}",
            "é ü 漢",
            "nul\0",
            "",
        ] {
            let mut rest = String::new();
            write_user_rest(&UserId::Str(s.into()), &mut rest);
            assert_eq!(rest, serde_json::to_string(s).unwrap(), "{s:?}");
        }
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
