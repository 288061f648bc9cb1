//! The verified-token cache: a repeated token costs a hash and a lookup instead of decoding,
//! claim parsing and a signature check (for HMAC keys, the parsing is most of what it saves).
//!
//! An entry is keyed by the SHA-256 of the whole token and remembers the generation of the
//! keyring that verified it, so a keyring change (reload, JWKS rotation) makes every older
//! entry miss. It is used only until the token's own `exp` (plus the same leeway the
//! verifier allows): after that the token goes through full verification and fails there.
//! Time only moves forward, so `nbf` and `iat`, which passed once, keep passing.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest::{digest, SHA256};

use super::Claims;

struct Entry {
    generation: u64,
    claims: Claims,
}

/// A bounded map from token hash to the claims its verification produced.
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

fn key(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (at least 1).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The claims of `token` if it was verified by the keyring `generation` and is not
    /// expired at `now` (with `leeway` seconds, as the verifier counts).
    pub fn get(&self, token: &str, generation: u64, now: f64, leeway: f64) -> Option<Claims> {
        let k = key(token);
        let mut map = self.entries.lock().ok()?;
        match map.get(&k) {
            Some(e) if e.generation == generation && e.claims.exp >= now - leeway => {
                Some(e.claims.clone())
            }
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful verification.
    pub fn insert(&self, token: &str, generation: u64, claims: &Claims, now: f64, leeway: f64) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if map.len() >= self.capacity {
            // Drop what can no longer be used; if the cache is full of live tokens, start
            // over rather than pay for an LRU on every hit.
            map.retain(|_, e| e.generation == generation && e.claims.exp >= now - leeway);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(
            key(token),
            Entry {
                generation,
                claims: claims.clone(),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |m| m.len())
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
            extra: vec![("roles".into(), serde_json::json!(["admin"]))],
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
    fn stays_bounded() {
        let c = TokenCache::new(3);
        for i in 0..10 {
            c.insert(&format!("t{i}"), 1, &claims(1000.0), 0.0, 0.0);
            assert!(c.len() <= 3);
        }
        assert!(c.get("t9", 1, 0.0, 0.0).is_some());
    }
}
