//! State shared across requests and, with Redis, across instances.
//!
//! One [`Store`] trait, two backends: [`memory::MemoryStore`] (the default: one instance,
//! nothing to run) and [`redis::RedisStore`] (many instances share one Redis). Callers
//! never wait on a store without a bound: every operation of the Redis backend is limited
//! by `[store] timeout`, and callers decide what a failure means (the login limits fall
//! back to local counters, see `auth/throttle.rs`).
//!
//! The operations are the small set the features above need, each atomic on its own:
//! windowed counters (login limits), text values with an expiry and a compare-and-swap on
//! them (refresh-token families and their rotation), a scan by key prefix and a pub/sub
//! channel (the revocation set each instance mirrors, see [`mirror`]).
//! Keys are the caller's; a backend only prepends `[store] key_prefix`.

pub mod entries;
pub mod generations;
pub mod memory;
pub mod mirror;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{StoreBackend, StoreConfig};

/// A counter's value and the time left before it expires (zero when it does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub value: u64,
    pub ttl: Duration,
}

/// Why a store operation did not complete. The message never carries a value or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store is not connected yet")]
    NotConnected,
    #[error("store error: {0}")]
    Backend(String),
}

/// The future every store operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The messages of one subscription, in publication order. It closes when the
/// subscription is lost (the connection dropped); the subscriber then subscribes again and
/// reads what it may have missed some other way (see [`mirror`]).
pub type Subscription = tokio::sync::mpsc::UnboundedReceiver<String>;

/// A key-value store with expiring keys. Every method is one atomic step on the backend
/// (one round trip for Redis), so instances sharing it never see half an update.
pub trait Store: Send + Sync {
    /// `"memory"` or `"redis"`, for metrics and logs.
    fn backend(&self) -> &'static str;

    /// Adds one to each counter and returns the new values. A counter that did not exist
    /// starts at 1 and expires after its window; an existing one keeps its expiry (a fixed
    /// window from the first hit).
    fn incr<'a>(&'a self, keys: &'a [(&'a str, Duration)]) -> StoreFuture<'a, Vec<Count>>;

    /// The current value of each counter (0 when absent or expired), without changing any.
    fn peek<'a>(&'a self, keys: &'a [&'a str]) -> StoreFuture<'a, Vec<Count>>;

    /// Sets `key` to `value`, expiring after `ttl`.
    fn set<'a>(&'a self, key: &'a str, value: u64, ttl: Duration) -> StoreFuture<'a, ()>;

    /// Removes the keys (absent keys are fine).
    fn delete<'a>(&'a self, keys: &'a [&'a str]) -> StoreFuture<'a, ()>;

    /// The text stored at `key` by [`Store::put`] or [`Store::compare_and_swap`]; `None`
    /// when absent or expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Sets `key` to the text `value`, expiring after `ttl`.
    fn put<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()>;

    /// Sets `key` to `new` (expiring after `ttl`) only when its text is exactly `expected`
    /// now; returns whether it did. Of several callers racing with the same `expected`,
    /// exactly one wins.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a str,
        new: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Raises the text entry at `key` (an [`entries::Entry`] in its text form) to at least
    /// `entry` (the larger value, the later expiry), expiring at that expiry (Unix seconds;
    /// `now` is the caller's clock, at least a second from now), and adds one to the
    /// counter `counter`, which never expires; returns the counter's new value. One atomic
    /// step: an entry never reaches the store without its number, and a lower write never
    /// replaces a higher one.
    fn raise<'a>(
        &'a self,
        key: &'a str,
        entry: entries::Entry,
        now: i64,
        counter: &'a str,
    ) -> StoreFuture<'a, u64>;

    /// Every live text key that starts with `prefix`, with its value. Not a snapshot:
    /// keys written while it runs may or may not be in it.
    fn scan<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>>;

    /// Sends `message` to every current subscriber of `channel`, on every instance.
    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> StoreFuture<'a, ()>;

    /// Subscribes to `channel`; messages published after this returns arrive in order.
    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription>;
}

/// The configured store, built once per process and kept across reloads, so counters
/// survive a reload and the Redis connection is not re-opened for each one. A reload that
/// changes `[store]` gets a new store (the old one's counters are dropped with it).
#[derive(Default)]
pub struct Stores {
    current: std::sync::Mutex<Option<(StoreConfig, Arc<dyn Store>)>>,
    /// The per-instance counters used when the shared store is down (and as the store
    /// itself with `backend = "memory"`).
    local: Arc<memory::MemoryStore>,
    /// The mirrored set (revocations), kept across reloads like the store it mirrors.
    mirror: std::sync::Mutex<Option<(MirrorKey, Arc<mirror::Mirror>)>>,
}

/// What a mirror was built for: a reload with the same store and settings keeps it.
#[derive(PartialEq)]
struct MirrorKey {
    store: StoreConfig,
    prefix: String,
    resync: Duration,
}

impl Stores {
    pub fn new() -> Stores {
        Stores::default()
    }

    /// The store for `config`: the one already built when `config` is unchanged.
    pub fn get(&self, config: &StoreConfig) -> Arc<dyn Store> {
        let mut current = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((c, store)) = current.as_ref() {
            if c == config {
                return store.clone();
            }
        }
        let store: Arc<dyn Store> = match &config.backend {
            StoreBackend::Memory => self.local.clone(),
            StoreBackend::Redis(r) => Arc::new(redis::RedisStore::connect(r, config)),
        };
        *current = Some((config.clone(), store.clone()));
        store
    }

    /// The mirror of the keys under `prefix` in the store for `config` (see
    /// [`mirror::Mirror`]), started on first use and kept while the settings stay the same.
    pub fn mirror(
        &self,
        config: &StoreConfig,
        prefix: &str,
        resync: Duration,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> Arc<mirror::Mirror> {
        let key = MirrorKey {
            store: config.clone(),
            prefix: prefix.to_string(),
            resync,
        };
        let mut held = match self.mirror.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((k, m)) = held.as_ref() {
            if *k == key {
                return m.clone();
            }
        }
        let channel = format!("{prefix}channel");
        let m = mirror::Mirror::new(self.get(config), prefix, &channel, resync, errors);
        m.start();
        *held = Some((key, m.clone()));
        m
    }

    /// This instance's own counters.
    pub fn local(&self) -> Arc<memory::MemoryStore> {
        self.local.clone()
    }
}
