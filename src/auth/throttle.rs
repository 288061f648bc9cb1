//! Brute-force limits at the login path: they count failed logins, never successful ones.
//!
//! Three failure counters, each with its own threshold and window (`[login.limits]`):
//! - per **account** (the submitted username, whether or not it exists, so a 429 never
//!   tells which accounts exist); reaching it locks the account for `lockout`, doubled on
//!   each further lockout up to `max_lockout`;
//! - per **client address** over all usernames (a password spray from one address);
//! - per **(address, account)**, which a successful login clears.
//!
//! Apart from them, a high per-address cap on *all* attempts ([`Throttle::admit`]) runs
//! before the body is read, bounding hashing work under a flood. It is per instance.
//!
//! The counters live in the store (`[store]`): shared by every instance with Redis. When
//! the shared store does not answer within its timeout the limits go on with this
//! instance's own counters (`on_store_error = "fail_open"`, the default) or refuse logins
//! with 503 (`"fail_closed"`), logged once per outage and counted; during an outage the
//! shared store is tried again at most once per [`PROBE_EVERY`], so logins do not each pay
//! the timeout.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::{LoginConfig, LoginLimits, OnStoreError};
use crate::metrics::{LoginStoreLabels, Metrics, OutcomeLabels, StoreLabels, ThrottleLabels};
use crate::store::memory::MemoryStore;
use crate::store::{Count, Store, StoreError};

/// During an outage, how often one login tries the shared store again.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Which limit refused an attempt (the `key` label of the throttle metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The per-address cap on all attempts.
    Flood,
    Account,
    Address,
    Pair,
}

impl LimitKind {
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::Flood => "flood",
            LimitKind::Account => "account",
            LimitKind::Address => "address",
            LimitKind::Pair => "pair",
        }
    }
}

/// Why an attempt may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over a limit: retry after this long.
    Limited(LimitKind, Duration),
    /// The shared store is down and `on_store_error = "fail_closed"`.
    StoreDown,
}

type Flood = governor::DefaultKeyedRateLimiter<IpAddr>;

#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    last_probe: Option<Instant>,
}

/// The login limits of one configuration. Counters live in the store, so a reload that
/// builds a new `Throttle` keeps them.
pub struct Throttle {
    limits: LoginLimits,
    /// The shared store; `None` with `backend = "memory"` (then `local` is the store).
    shared: Option<Arc<dyn Store>>,
    local: Arc<MemoryStore>,
    flood: Option<Flood>,
    /// Calls since the flood limiter last forgot idle clients.
    calls: AtomicUsize,
    outage: Mutex<Outage>,
    metrics: Arc<Metrics>,
}

/// The store keys of one attempt. Usernames are hashed: the store never holds account
/// names, and a key's length does not depend on what a client sent.
struct Keys {
    account: String,
    lock: String,
    level: String,
    address: String,
    pair: String,
}

impl Keys {
    fn new(client: IpAddr, username: &str) -> Keys {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, username.as_bytes());
        let user = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..18]);
        let address = address_key(client);
        Keys {
            account: format!("login:acct:{user}"),
            lock: format!("login:lock:{user}"),
            level: format!("login:level:{user}"),
            pair: format!("login:pair:{address}:{user}"),
            address: format!("login:addr:{address}"),
        }
    }
}

/// An IPv4 address as itself; an IPv6 address by its /64, the block one subscriber gets
/// (counting single IPv6 addresses would give every attacker 2^64 budgets).
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Throttle {
    /// `shared` is the configured store when it is not this process (`backend = "redis"`).
    pub fn new(
        config: &LoginConfig,
        shared: Option<Arc<dyn Store>>,
        local: Arc<MemoryStore>,
        metrics: Arc<Metrics>,
    ) -> Throttle {
        let quota = NonZeroU32::new(config.max_attempts).and_then(|burst| {
            governor::Quota::with_period(config.attempts_window / burst.get())
                .map(|q| q.allow_burst(burst))
        });
        Throttle {
            limits: config.limits.clone(),
            shared,
            local,
            flood: quota.map(governor::RateLimiter::keyed),
            calls: AtomicUsize::new(0),
            outage: Mutex::new(Outage::default()),
            metrics,
        }
    }

    /// The flood cap: counts an attempt of any outcome from `client`. Runs before any
    /// parsing or hashing, so a flood costs almost nothing.
    pub fn admit(&self, client: IpAddr) -> Result<(), Refusal> {
        let Some(flood) = &self.flood else {
            return Ok(());
        };
        // Forget clients whose budget is full again, so the table stays bounded.
        if self.calls.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            flood.retain_recent();
        }
        flood.check_key(&client).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            self.hit(LimitKind::Flood);
            Refusal::Limited(LimitKind::Flood, wait)
        })
    }

    /// Counts a finished login attempt by outcome and by the store that held its counters.
    pub fn count_outcome(&self, outcome: &str) {
        let store = match &self.shared {
            None => "memory",
            Some(_) if self.in_outage() => "local_fallback",
            Some(s) => s.backend(),
        };
        self.metrics
            .logins_by_store
            .get_or_create(&LoginStoreLabels {
                outcome: outcome.into(),
                store: store.into(),
            })
            .inc();
    }

    /// Counts a delegated credential check by outcome.
    pub fn count_remote(&self, outcome: &str) {
        self.metrics
            .remote_checks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    fn in_outage(&self) -> bool {
        self.outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since
            .is_some()
    }

    fn hit(&self, kind: LimitKind) {
        self.metrics
            .throttled
            .get_or_create(&ThrottleLabels {
                key: kind.label().into(),
            })
            .inc();
    }

    /// Whether `username` from `client` may try a password now. Runs before hashing.
    pub async fn check(&self, client: IpAddr, username: &str) -> Result<(), Refusal> {
        let keys = Keys::new(client, username);
        let names = [
            keys.lock.as_str(),
            keys.address.as_str(),
            keys.pair.as_str(),
        ];
        let counts = self.peek(&names).await?;
        let l = &self.limits;
        let over = [
            (LimitKind::Account, counts[0], 1),
            (LimitKind::Address, counts[1], l.address.failures),
            (LimitKind::Pair, counts[2], l.pair.failures),
        ];
        // The longest wait among the limits reached: retrying sooner is refused again.
        let refused = over
            .iter()
            .filter(|(_, c, max)| c.value >= u64::from(*max))
            .max_by_key(|(_, c, _)| c.ttl);
        match refused {
            Some((kind, count, _)) => {
                self.hit(*kind);
                Err(Refusal::Limited(
                    *kind,
                    count.ttl.max(Duration::from_secs(1)),
                ))
            }
            None => Ok(()),
        }
    }

    /// Records a failed login: counts it on every key and locks the account when it
    /// reaches its threshold.
    pub async fn failed(&self, client: IpAddr, username: &str) -> Result<(), Refusal> {
        let keys = Keys::new(client, username);
        let l = &self.limits;
        let counts = self
            .incr(&[
                (keys.account.as_str(), l.account.window),
                (keys.address.as_str(), l.address.window),
                (keys.pair.as_str(), l.pair.window),
            ])
            .await?;
        if counts[0].value >= u64::from(l.account.failures) {
            // The lockout level outlives the lockouts, so each next one is twice as long;
            // it is forgotten a day (or twice `max_lockout`) after the first lockout.
            let level = self.incr(&[(keys.level.as_str(), level_window(l))]).await?[0].value;
            let lockout = lockout_for(l, level);
            self.set(&keys.lock, lockout).await?;
            self.delete(&[keys.account.as_str()]).await?;
            tracing::warn!(
                lockout_secs = lockout.as_secs(),
                "login: an account reached its failure limit and is locked"
            );
        }
        Ok(())
    }

    /// Records a successful login: clears the (address, account) counter.
    pub async fn succeeded(&self, client: IpAddr, username: &str) -> Result<(), Refusal> {
        let keys = Keys::new(client, username);
        self.delete(&[keys.pair.as_str()]).await
    }

    /// The shared store, unless it is down and was probed less than [`PROBE_EVERY`] ago.
    fn shared(&self) -> Option<&dyn Store> {
        let shared = self.shared.as_deref()?;
        let mut o = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if o.since.is_none() {
            return Some(shared);
        }
        let now = Instant::now();
        if o.last_probe
            .is_some_and(|t| now.duration_since(t) < PROBE_EVERY)
        {
            return None;
        }
        o.last_probe = Some(now);
        Some(shared)
    }

    fn store_answered(&self, store: &dyn Store, started: Instant) {
        self.metrics
            .store_duration
            .observe(started.elapsed().as_secs_f64());
        let mut o = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = o.since.take() {
            tracing::info!(
                backend = store.backend(),
                outage_secs = since.elapsed().as_secs(),
                "store: reachable again; login limits are shared again"
            );
            self.metrics.store_up.set(1);
        }
    }

    fn store_failed(&self, store: &dyn Store, op: &'static str, e: &StoreError) {
        self.metrics
            .store_errors
            .get_or_create(&StoreLabels {
                backend: store.backend().into(),
                op: op.into(),
            })
            .inc();
        let mut o = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if o.since.is_none() {
            let now = Instant::now();
            o.since = Some(now);
            o.last_probe = Some(now);
            self.metrics.store_up.set(0);
            self.metrics.store_outages.inc();
            match self.limits.on_store_error {
                OnStoreError::FailOpen => {
                    tracing::error!(
                        backend = store.backend(),
                        error = %e,
                        "store: unreachable; login limits fall back to this instance's \
                         counters until it is back"
                    )
                }
                OnStoreError::FailClosed => {
                    tracing::error!(
                        backend = store.backend(),
                        error = %e,
                        "store: unreachable; logins are refused (503) until it is back \
                         (on_store_error = \"fail_closed\")"
                    )
                }
            }
        }
    }

    /// The local counters, when the limits may use them (always with the memory backend;
    /// during an outage only with `fail_open`).
    fn fallback(&self) -> Result<&MemoryStore, Refusal> {
        if self.shared.is_some() {
            if self.limits.on_store_error == OnStoreError::FailClosed {
                return Err(Refusal::StoreDown);
            }
            self.metrics.store_fallbacks.inc();
        }
        Ok(&self.local)
    }

    async fn peek(&self, keys: &[&str]) -> Result<Vec<Count>, Refusal> {
        if let Some(store) = self.shared() {
            let started = Instant::now();
            match store.peek(keys).await {
                Ok(v) => {
                    self.store_answered(store, started);
                    return Ok(v);
                }
                Err(e) => self.store_failed(store, "peek", &e),
            }
        }
        Ok(self.fallback()?.peek(keys).await.unwrap_or_default())
    }

    async fn incr(&self, keys: &[(&str, Duration)]) -> Result<Vec<Count>, Refusal> {
        if let Some(store) = self.shared() {
            let started = Instant::now();
            match store.incr(keys).await {
                Ok(v) => {
                    self.store_answered(store, started);
                    return Ok(v);
                }
                Err(e) => self.store_failed(store, "incr", &e),
            }
        }
        let local = self.fallback()?;
        Ok(local.incr(keys).await.unwrap_or_default())
    }

    async fn set(&self, key: &str, ttl: Duration) -> Result<(), Refusal> {
        if let Some(store) = self.shared() {
            let started = Instant::now();
            match store.set(key, 1, ttl).await {
                Ok(()) => {
                    self.store_answered(store, started);
                    return Ok(());
                }
                Err(e) => self.store_failed(store, "set", &e),
            }
        }
        let _ = self.fallback()?.set(key, 1, ttl).await;
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<(), Refusal> {
        if let Some(store) = self.shared() {
            let started = Instant::now();
            match store.delete(keys).await {
                Ok(()) => {
                    self.store_answered(store, started);
                    return Ok(());
                }
                Err(e) => self.store_failed(store, "delete", &e),
            }
        }
        let _ = self.fallback()?.delete(keys).await;
        Ok(())
    }
}

/// How long an account's lockout level is remembered from its first lockout.
pub fn level_window(l: &LoginLimits) -> Duration {
    (l.max_lockout * 2).max(Duration::from_secs(24 * 3600))
}

/// The `level`-th lockout (1 = the first): `lockout`, doubled per level, at most `max_lockout`.
fn lockout_for(l: &LoginLimits, level: u64) -> Duration {
    let doublings = level.saturating_sub(1).min(32) as u32;
    l.lockout
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(l.max_lockout)
        .min(l.max_lockout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let l = LoginLimits {
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
            ..LoginLimits::default()
        };
        let got: Vec<u64> = (1..=6).map(|n| lockout_for(&l, n).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 480, 600, 600]);
        assert_eq!(lockout_for(&l, u64::MAX).as_secs(), 600);
    }

    #[test]
    fn addresses_key_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(address_key(mapped), "10.1.2.3");
    }

    #[test]
    fn usernames_are_hashed_in_keys() {
        let k = Keys::new("10.0.0.1".parse().unwrap(), "alice@example.com");
        for key in [&k.account, &k.lock, &k.level, &k.pair, &k.address] {
            assert!(!key.contains("alice"), "{key}");
        }
        assert_ne!(
            k.account,
            Keys::new("10.0.0.1".parse().unwrap(), "Alice@example.com").account
        );
    }
}
