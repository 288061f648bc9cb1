//! The local user store and password checks (argon2id; bcrypt for imported users).
//!
//! Hashing runs on tokio's blocking pool behind a semaphore: argon2 on the reactor would
//! stall every connection, and unbounded concurrent hashing would let a login storm take
//! all memory (each hash uses m KiB) and every core.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;

use crate::config::{User, UserId};
use crate::metrics::HashLabels;

/// Longer passwords are refused without being hashed in full: bounded work per request.
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub struct Users {
    by_name: HashMap<String, (UserId, String)>,
    ids: HashSet<UserId>,
    /// `[[users]] claims`, for users that have any.
    claims: HashMap<UserId, Vec<(String, serde_json::Value)>>,
    /// Verified for unknown usernames so that "no such user" costs the same as
    /// "wrong password" and cannot be told apart by timing: a hash with the cost
    /// parameters most users have (see [`dummy_hash`]).
    dummy_hash: Option<String>,
    hashing: Arc<Semaphore>,
    /// Counts every hash verified, so tests and operators can see that every kind of
    /// failure pays the same work.
    hashes: Counter,
    /// The same hashes by cost parameters (`gateway_password_hashes_by_cost_total`).
    hashes_by_cost: Family<HashLabels, Counter>,
}

/// The parameters of a PHC hash string that decide what verifying it costs.
pub fn cost_params(phc: &str) -> String {
    // bcrypt: `$2b$12$<salt and hash>`; its cost is the second field.
    if let Some(rest) = phc.strip_prefix("$2") {
        let mut fields = rest.split('$');
        return match (fields.next(), fields.next()) {
            (Some(variant), Some(cost)) => format!("bcrypt 2{variant} cost={cost}"),
            _ => "unparsable".into(),
        };
    }
    match PasswordHash::new(phc) {
        Ok(h) => format!(
            "{} v={} {} len={}",
            h.algorithm,
            h.version.unwrap_or_default(),
            h.params,
            h.hash.map_or(0, |o| o.len())
        ),
        Err(_) => "unparsable".into(),
    }
}

/// The hash unknown usernames are checked against: one with the most common cost
/// parameters among `users` (the first such user's, on a tie the earliest parameters).
/// An unknown username then costs what most known ones cost, not what the first user's
/// hash happens to cost.
pub fn dummy_hash(users: &[User]) -> Option<String> {
    let mut counts: Vec<(String, usize, &str)> = Vec::new();
    for u in users {
        let params = cost_params(&u.password_hash);
        match counts.iter_mut().find(|(p, _, _)| *p == params) {
            Some((_, n, _)) => *n += 1,
            None => counts.push((params, 1, &u.password_hash)),
        }
    }
    // `max_by_key` keeps the last maximum; iterate in reverse so ties go to the earliest.
    counts
        .iter()
        .rev()
        .max_by_key(|(_, n, _)| *n)
        .map(|(_, _, hash)| hash.to_string())
}

impl Users {
    pub fn new(users: &[User], max_concurrent_hashes: usize) -> Users {
        Users {
            by_name: users
                .iter()
                .map(|u| (u.username.clone(), (u.id.clone(), u.password_hash.clone())))
                .collect(),
            ids: users.iter().map(|u| u.id.clone()).collect(),
            claims: users
                .iter()
                .filter(|u| !u.claims.is_empty())
                .map(|u| (u.id.clone(), u.claims.clone()))
                .collect(),
            dummy_hash: dummy_hash(users),
            hashing: Arc::new(Semaphore::new(max_concurrent_hashes.max(1))),
            hashes: Counter::default(),
            hashes_by_cost: Family::default(),
        }
    }

    /// Counts the hashes this store verifies into `counter`, and by their cost parameters
    /// into `by_cost`.
    pub fn counting_into(
        mut self,
        counter: Counter,
        by_cost: Family<HashLabels, Counter>,
    ) -> Users {
        self.hashes = counter;
        self.hashes_by_cost = by_cost;
        self
    }

    /// Whether `username` is a local user (the remote check is asked only for others).
    pub fn knows(&self, username: &str) -> bool {
        self.by_name.contains_key(username)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether a token identity names a configured user.
    pub fn contains(&self, id: &UserId) -> bool {
        self.ids.contains(id)
    }

    /// The claims of a user's record (`[[users]] claims`); empty when none.
    pub fn claims(&self, id: &UserId) -> &[(String, serde_json::Value)] {
        self.claims.get(id).map_or(&[], Vec::as_slice)
    }

    /// Checks a username and password; `None` for every kind of failure, after the same work.
    /// `credentials` is `None` when the request did not carry a usable pair: the dummy hash
    /// is still verified so a malformed attempt costs what a wrong password costs.
    pub async fn authenticate(&self, credentials: Option<(&str, &str)>) -> Option<UserId> {
        let (user, password) = match credentials {
            Some((name, pw)) if pw.len() <= MAX_PASSWORD_BYTES => (self.by_name.get(name), pw),
            _ => (None, ""),
        };
        let hash = match user {
            Some((_, h)) => h.clone(),
            None => self.dummy_hash.clone()?,
        };
        self.hashes_by_cost
            .get_or_create(&HashLabels {
                params: cost_params(&hash),
            })
            .inc();
        let password = password.as_bytes().to_vec();
        let permit = self.hashing.clone().acquire_owned().await.ok()?;
        let hashes = self.hashes.clone();
        // A thread of its own per hash (its start costs microseconds, the hash ~20 ms): its
        // lowered priority cannot outlive it and slow other blocking work, such as the DNS
        // lookups the upstream connector runs on the runtime's blocking pool.
        let (done, result) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("gateway-hash".into())
            .spawn(move || {
                let _permit = permit;
                yield_to_requests();
                let ok = verify(&password, &hash);
                hashes.inc();
                let _ = done.send(ok);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a password hashing thread");
            return None;
        }
        let ok = result.await.unwrap_or(false);
        match user {
            Some((id, _)) if ok => Some(id.clone()),
            _ => None,
        }
    }
}

/// Checks `password` against an argon2id PHC string or a bcrypt hash (`$2b$`/`$2y$`;
/// bcrypt reads at most 72 bytes of the password, as every bcrypt implementation does).
fn verify(password: &[u8], hash: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
        .unwrap_or(false)
}

/// Lowers the calling thread's CPU priority (nice 10). Password hashes run on threads of
/// their own; under a login storm they would otherwise take CPU time
/// from the workers at equal weight and multiply proxied latency. At nice 10 a hashing
/// thread gets about a tenth of a core that a busy worker wants, and all of a core nobody
/// else wants. (Nice 19 measured no better on proxied p99 and halved logins/s.)
fn yield_to_requests() {
    // On Linux the nice value is per thread, and "the calling process" is the calling
    // thread. Failure (a sandbox forbidding it) only loses the courtesy.
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(None, 10);
}

/// Hashes a password as an argon2id PHC string with the crate's default (OWASP) parameters.
pub fn hash_password(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password, &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, hash: &str) -> User {
        User {
            id: UserId::Int(id),
            username: format!("user{id}"),
            password_hash: hash.into(),
            claims: Vec::new(),
        }
    }

    #[test]
    fn the_dummy_hash_has_the_most_common_parameters() {
        let cheap = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let costly = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let users = [user(1, cheap), user(2, costly), user(3, costly)];
        assert_eq!(dummy_hash(&users).as_deref(), Some(costly));
        assert_eq!(cost_params(costly), "argon2id v=19 m=19456,t=2,p=1 len=16");
        assert_eq!(
            cost_params("$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"),
            "bcrypt 2b cost=12"
        );
        // A tie goes to the parameters met first.
        assert_eq!(dummy_hash(&users[..2]).as_deref(), Some(cheap));
        assert_eq!(dummy_hash(&[]), None);
    }

    #[tokio::test]
    async fn checks_passwords() {
        let hash = hash_password(b"abcxyz").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let users = Users::new(
            &[User {
                id: UserId::Int(1),
                username: "user1".into(),
                password_hash: hash,
                claims: Vec::new(),
            }],
            2,
        );
        assert_eq!(
            users.authenticate(Some(("user1", "abcxyz"))).await,
            Some(UserId::Int(1))
        );
        assert_eq!(users.authenticate(Some(("user1", "wrong"))).await, None);
        assert_eq!(users.authenticate(Some(("nobody", "abcxyz"))).await, None);
        assert_eq!(users.authenticate(None).await, None);
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(users.authenticate(Some(("user1", &long))).await, None);
    }

    #[tokio::test]
    async fn checks_bcrypt_passwords_and_counts_every_hash() {
        let users = Users::new(
            &[User {
                id: UserId::Str("flask".into()),
                username: "flask".into(),
                password_hash: bcrypt::hash("s3cret", 4).unwrap(),
                claims: Vec::new(),
            }],
            1,
        );
        assert_eq!(
            users.authenticate(Some(("flask", "s3cret"))).await,
            Some(UserId::Str("flask".into()))
        );
        assert_eq!(users.authenticate(Some(("flask", "nope"))).await, None);
        assert_eq!(users.authenticate(Some(("nobody", "s3cret"))).await, None);
        assert_eq!(users.hashes.get(), 3);
    }
}
