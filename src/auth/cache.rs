//! The verified-token cache: a repeated token costs a hash and a lookup instead of decoding,
//! claim parsing and a signature check (for HMAC keys, the parsing is most of what it saves).
//!
//! An entry is found by the token's signature segment and used only when the whole stored
//! token equals the presented one, byte for byte: hashing the short signature is cheaper
//! than hashing the token (every request, forged ones too, pays for the lookup), and the
//! full comparison means no other token, however crafted, can hit it. Only verified tokens
//! are inserted. An entry remembers the generation of the keyring that verified it, so a
//! keyring change (reload, JWKS rotation) makes every older entry miss. It is used only
//! until the token's own `exp` (plus the same leeway the verifier allows): after that the
//! token goes through full verification and fails there.
//! Time only moves forward, so `nbf` and `iat`, which passed once, keep passing.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Claims;

struct Entry {
    /// The whole token; a lookup must match it exactly.
    token: Box<str>,
    generation: u64,
    claims: Claims,
}

/// Signature segment → entry.
type Shard = Mutex<HashMap<Box<str>, Entry>>;

/// A bounded map from token hash to the claims its verification produced, split into
/// shards by the hash so worker threads rarely wait on each other's lock.
pub struct TokenCache {
    /// Entries per shard; the shards together hold at most the configured capacity.
    per_shard: usize,
    shards: Box<[Shard]>,
}

/// Shards at most (fewer for a smaller capacity, so the bound holds exactly).
const SHARDS: usize = 16;

/// Longer tokens are verified every time: entries store the whole token, and this keeps the
/// cache's memory bounded (10,000 entries of at most 2 KiB: ~20 MB) however tokens are
/// minted. Typical tokens are a few hundred bytes.
const MAX_CACHED_TOKEN: usize = 2048;

/// The signature segment (what follows the last dot; the whole token if it has none).
fn signature(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(_, sig)| sig)
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (at least 1).
    pub fn new(capacity: usize) -> TokenCache {
        let capacity = capacity.max(1);
        let shards = capacity.min(SHARDS);
        TokenCache {
            per_shard: capacity / shards,
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, sig: &str) -> &Shard {
        let first = sig.as_bytes().first().copied().unwrap_or(0);
        &self.shards[first as usize % self.shards.len()]
    }

    /// The claims of `token` if it was verified by the keyring `generation` and is not
    /// expired at `now` (with `leeway` seconds, as the verifier counts).
    pub fn get(&self, token: &str, generation: u64, now: f64, leeway: f64) -> Option<Claims> {
        let sig = signature(token);
        let mut map = self.shard(sig).lock().ok()?;
        match map.get(sig) {
            // Another token with the same signature text: not ours to answer.
            Some(e) if *e.token != *token => None,
            Some(e) if e.generation == generation && e.claims.exp >= now - leeway => {
                Some(e.claims.clone())
            }
            Some(_) => {
                map.remove(sig);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful verification (of a token up to `MAX_CACHED_TOKEN` bytes).
    pub fn insert(&self, token: &str, generation: u64, claims: &Claims, now: f64, leeway: f64) {
        if token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let sig = signature(token);
        let Ok(mut map) = self.shard(sig).lock() else {
            return;
        };
        if map.len() >= self.per_shard {
            // Drop what can no longer be used; if the shard is full of live tokens, start
            // it over rather than pay for an LRU on every hit.
            map.retain(|_, e| e.generation == generation && e.claims.exp >= now - leeway);
            if map.len() >= self.per_shard {
                map.clear();
            }
        }
        map.insert(
            sig.into(),
            Entry {
                token: token.into(),
                generation,
                claims: claims.clone(),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserId;

    fn claims(exp: f64) -> Claims {
        Claims {
            identity: UserId::Int(1),
            exp,
            iat: None,
            extra: vec![("roles".into(), serde_json::json!(["admin"]))].into(),
        }
    }

    #[test]
    fn hits_until_exp_and_only_for_the_same_keyring() {
        let c = TokenCache::new(10);
        c.insert("a.b.c", 7, &claims(100.0), 50.0, 10.0);
        assert_eq!(c.get("a.b.c", 7, 60.0, 10.0), Some(claims(100.0)));
        assert_eq!(c.get("a.b.c", 7, 110.0, 10.0), Some(claims(100.0)));
        // Past exp + leeway: full verification again (which then fails).
        assert_eq!(c.get("a.b.c", 7, 110.5, 10.0), None);
        c.insert("a.b.c", 7, &claims(100.0), 50.0, 10.0);
        // Another keyring generation: a miss, and the stale entry is gone.
        assert_eq!(c.get("a.b.c", 8, 60.0, 10.0), None);
        assert_eq!(c.get("a.b.c", 7, 60.0, 10.0), None);
        assert_eq!(c.get("a.b.X", 7, 60.0, 10.0), None);
    }

    #[test]
    fn only_the_exact_token_hits() {
        let c = TokenCache::new(10);
        c.insert("h.p.sig", 1, &claims(100.0), 0.0, 0.0);
        assert!(c.get("h.p.sig", 1, 0.0, 0.0).is_some());
        // Same signature text, other header or payload: a miss, and the entry survives.
        assert_eq!(c.get("h.evil.sig", 1, 0.0, 0.0), None);
        assert_eq!(c.get("evil.p.sig", 1, 0.0, 0.0), None);
        assert_eq!(c.get("h.p.sig.", 1, 0.0, 0.0), None);
        assert!(c.get("h.p.sig", 1, 0.0, 0.0).is_some());
        // Tokens over the size cap are not kept.
        let long = format!("h.{}.sig2", "p".repeat(MAX_CACHED_TOKEN));
        c.insert(&long, 1, &claims(100.0), 0.0, 0.0);
        assert_eq!(c.get(&long, 1, 0.0, 0.0), None);
    }

    #[test]
    fn stays_bounded() {
        for capacity in [1, 3, 16, 100] {
            let c = TokenCache::new(capacity);
            for i in 0..10 * capacity {
                c.insert(&format!("t{i}"), 1, &claims(1000.0), 0.0, 0.0);
                assert!(c.len() <= capacity, "{} > {capacity}", c.len());
                // The newest entry is always kept.
                assert!(c.get(&format!("t{i}"), 1, 0.0, 0.0).is_some());
            }
        }
    }
}
