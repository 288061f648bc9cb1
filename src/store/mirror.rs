//! A local copy of a set of store keys, read without a store round trip.
//!
//! Each entry is a key with a number and an expiry (Unix seconds). Writers call
//! [`Mirror::insert`]: the entry is applied here at once, written to the store with that
//! expiry, and published on the mirror's channel, so every other instance applies it as
//! soon as the message arrives. Messages can be missed (an instance was cut off, the
//! subscription dropped), so each instance also resyncs every `resync`: it reads the
//! store's write counter and, unless it holds every write up to it (see
//! [`super::generations`]), the whole set. After every (re)subscription, after any write
//! of its own failed, and every `FULL_EVERY`-th time, it reads the whole set whatever the
//! counter says. A write is one atomic step in the store that keeps the larger value and
//! numbers the write. Entries are only ever added or raised, never removed
//! before their expiry: a resync merges what the store holds into what is known here, and
//! writes back (and announces) what is known here but missing from the store. So an entry
//! applied locally during an outage reaches every instance once the store answers again,
//! and a store that lost its data (restarted empty) is filled again by the instances.
//!
//! The mirror tracks how current it is: [`Mirror::staleness`] is how long it has gone
//! without a working subscription and a successful resync. The first failure of an outage
//! is logged, later ones only counted; the recovery is logged once too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;

use super::entries::Entries;
pub use super::entries::Entry;
use super::generations::Seen;
use super::{Store, StoreError};

/// How current the mirror is.
struct Health {
    /// Since when the mirror may be missing entries; `None` while current.
    stale_since: Option<Instant>,
    /// Whether this outage was logged already.
    logged: bool,
}

/// See the module documentation.
pub struct Mirror {
    store: Arc<dyn Store>,
    /// Store keys of the entries start with this.
    prefix: String,
    channel: String,
    /// The store counter every write bumps (see [`super::generations`]); outside `prefix`,
    /// so a full read never mistakes it for an entry.
    generation: String,
    seen: Mutex<Seen>,
    resync: Duration,
    entries: RwLock<Entries>,
    /// `entries.len()`, readable without the lock (the common case: nothing revoked).
    count: AtomicUsize,
    health: Mutex<Health>,
    /// Sends `true` after the first complete load.
    loaded: tokio::sync::watch::Sender<bool>,
    errors: Counter,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Mirror {
    /// A mirror of the keys under `prefix` in `store`, announced on `channel`, read again
    /// every `resync`; store errors are counted in `errors`. Call [`Mirror::start`] to keep
    /// it current.
    pub fn new(
        store: Arc<dyn Store>,
        prefix: &str,
        channel: &str,
        resync: Duration,
        errors: Counter,
    ) -> Arc<Mirror> {
        Arc::new(Mirror {
            store,
            prefix: prefix.to_string(),
            channel: channel.to_string(),
            generation: format!("{}#generation", prefix.trim_end_matches(':')),
            seen: Mutex::new(Seen::default()),
            resync,
            entries: RwLock::new(Entries::default()),
            count: AtomicUsize::new(0),
            health: Mutex::new(Health {
                // Not loaded yet: stale from the start until the first load.
                stale_since: Some(Instant::now()),
                logged: false,
            }),
            loaded: tokio::sync::watch::Sender::new(false),
            errors,
        })
    }

    /// Starts the background task that subscribes and resyncs (needs a tokio runtime; it
    /// ends when the mirror is dropped).
    pub fn start(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sync(Arc::downgrade(self)));
        }
    }

    /// Waits until the first complete load, at most `within`; returns whether it happened.
    pub async fn loaded(&self, within: Duration) -> bool {
        let mut rx = self.loaded.subscribe();
        tokio::time::timeout(within, rx.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The entry at `key`, if known (expired entries may linger until the next sweep).
    pub fn get(&self, key: &str) -> Option<Entry> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.read().get_key(key)
    }

    /// Runs `look` over the entries under one read lock (the per-request path: several
    /// lookups, one lock). Not called when the mirror is empty, which gives `None`.
    pub fn view<R>(&self, look: impl FnOnce(&Entries) -> Option<R>) -> Option<R> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        look(&self.read())
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the mirror may have been missing entries; zero while current.
    pub fn staleness(&self) -> Duration {
        self.health_lock()
            .stale_since
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Applies `entry` at `key` here, then writes and announces it. Applied locally even
    /// when the store fails (the error is returned): this instance enforces it at once,
    /// and the first resync after the store answers again writes it back.
    pub async fn insert(&self, key: &str, entry: Entry) -> Result<(), StoreError> {
        let entry = self.merge(key, entry);
        self.share(key, entry).await
    }

    /// Writes `entry` to the store and announces it.
    async fn share(&self, key: &str, entry: Entry) -> Result<(), StoreError> {
        let stored = format!("{}{key}", self.prefix);
        let result = async {
            // The write and its number in one step: whoever reads the new number and then
            // the set finds the entry in it; and a lower value (a stale write-back, a
            // racing writer) never replaces a higher one in the store.
            let generation = self
                .store
                .raise(&stored, entry, unix_now(), &self.generation)
                .await?;
            self.seen_lock().saw(generation);
            let message = serde_json::to_string(&(key, entry.value, entry.expires, generation))
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            self.store.publish(&self.channel, &message).await
        }
        .await;
        if result.is_err() {
            self.errors.inc();
            // Held here but perhaps not in the store: the next resync writes it back.
            self.seen_lock().forget();
        }
        result
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        match self.entries.read() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        match self.entries.write() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn seen_lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn health_lock(&self) -> std::sync::MutexGuard<'_, Health> {
        match self.health.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Keeps the larger value and the later expiry; returns what is held now.
    fn merge(&self, key: &str, entry: Entry) -> Entry {
        let mut map = self.write();
        let held = map.merge(key, entry);
        self.count.store(map.len(), Ordering::Relaxed);
        held
    }

    fn apply_message(&self, text: &str) {
        // `[key, value, expires, generation]`; instances of an older version announce no
        // generation and count no write, so the next resync reads the whole set.
        let parsed = serde_json::from_str::<(String, i64, i64, u64)>(text)
            .map(|(k, v, e, g)| (k, v, e, Some(g)))
            .or_else(|_| {
                serde_json::from_str::<(String, i64, i64)>(text).map(|(k, v, e)| (k, v, e, None))
            });
        match parsed {
            Ok((key, value, expires, generation)) => {
                self.merge(&key, Entry { value, expires });
                match generation {
                    Some(g) => self.seen_lock().saw(g),
                    None => self.seen_lock().forget(),
                }
            }
            Err(_) => tracing::warn!(channel = %self.channel, "store: ignored a malformed message"),
        }
    }

    /// Drops the entries past their expiry.
    fn sweep(&self) {
        let now = unix_now();
        let mut map = self.write();
        map.retain(|e| e.expires > now);
        self.count.store(map.len(), Ordering::Relaxed);
    }

    /// Reads every entry from the store and merges it in, then writes back the entries
    /// the store lacks (or holds lower). Unless `full`, stops after reading the write
    /// counter when every write up to it is held here already.
    async fn resync(&self, full: bool) -> Result<(), StoreError> {
        // One round trip when nothing was missed: reading 100,000 entries every resync
        // cost each instance more than the per-request checks of all its traffic.
        let counter = self
            .store
            .peek(&[&self.generation])
            .await?
            .first()
            .map_or(0, |c| c.value);
        let ticket = {
            let mut seen = self.seen_lock();
            if !full && seen.may_skip(counter) {
                return Ok(());
            }
            seen.begin(counter)
        };
        let found = self.store.scan(&self.prefix).await?;
        let now = unix_now();
        let mut stored: HashMap<String, Entry> = HashMap::with_capacity(found.len());
        for (key, text) in found {
            if let (Some(key), Some(entry)) = (key.strip_prefix(&self.prefix), Entry::parse(&text))
            {
                stored.insert(key.to_string(), entry);
            }
        }
        // What is new here is found under the read lock; the write lock (which requests
        // wait for) is taken only to apply it, and not at all in the steady state.
        let news: Vec<(&String, &Entry)> = {
            let map = self.read();
            stored
                .iter()
                .filter(|(k, e)| {
                    e.expires > now
                        && map
                            .get_key(k)
                            .is_none_or(|h| h.value < e.value || h.expires < e.expires)
                })
                .collect()
        };
        if !news.is_empty() {
            let mut map = self.write();
            for (key, entry) in news {
                map.merge(key, *entry);
            }
            self.count.store(map.len(), Ordering::Relaxed);
        }
        let missing: Vec<(String, Entry)> = {
            let map = self.read();
            map.iter()
                .filter(|(k, e)| e.expires > now && stored.get(k).is_none_or(|s| s.value < e.value))
                .collect()
        };
        for (key, entry) in missing {
            self.share(&key, entry).await?;
        }
        self.seen_lock().read_all(ticket);
        Ok(())
    }

    fn current(&self) {
        let mut h = self.health_lock();
        if h.logged {
            tracing::warn!(
                channel = %self.channel,
                after = ?h.stale_since.map(|t| t.elapsed()),
                "store: reachable again; the local set is current (resynced)"
            );
        }
        h.stale_since = None;
        h.logged = false;
        drop(h);
        self.loaded.send_replace(true);
    }

    fn failed(&self, e: &StoreError) {
        self.errors.inc();
        let mut h = self.health_lock();
        h.stale_since.get_or_insert_with(Instant::now);
        if !h.logged {
            h.logged = true;
            tracing::error!(
                channel = %self.channel,
                error = %e,
                "store: cannot keep the local set current; it may miss new entries \
                 until the store answers again"
            );
        }
    }
}

/// Subscribes, loads everything, applies messages and resyncs every `resync`; on any
/// failure marks the mirror stale and starts over after a short pause.
async fn sync(weak: Weak<Mirror>) {
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(m) = weak.upgrade() else { return };
        let every = m.resync;
        let subscribed = match m.store.subscribe(&m.channel).await {
            Ok(rx) => match m.resync(true).await {
                Ok(()) => {
                    m.current();
                    Some(rx)
                }
                Err(e) => {
                    m.failed(&e);
                    None
                }
            },
            Err(e) => {
                m.failed(&e);
                None
            }
        };
        drop(m);
        if let Some(mut rx) = subscribed {
            pause = Duration::from_millis(50);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A periodic resync runs in a task of its own: reading a large set takes many
            // round trips, and messages must not wait for it.
            let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(1);
            let mut resyncing = false;
            loop {
                tokio::select! {
                    msg = rx.recv() => {
                        let Some(m) = weak.upgrade() else { return };
                        match msg {
                            Some(text) => m.apply_message(&text),
                            None => {
                                m.failed(&StoreError::Backend("the subscription was lost".into()));
                                break;
                            }
                        }
                    }
                    _ = tick.tick(), if !resyncing => {
                        let Some(m) = weak.upgrade() else { return };
                        m.sweep();
                        resyncing = true;
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let _ = done.send(m.resync(false).await).await;
                        });
                    }
                    Some(result) = done_rx.recv() => {
                        resyncing = false;
                        let Some(m) = weak.upgrade() else { return };
                        match result {
                            Ok(()) => m.current(),
                            Err(e) => m.failed(&e),
                        }
                    }
                }
            }
        }
        // Retried soon, backing off to a second: the next attempt is what ends the outage.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::generations;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn entries_reach_every_mirror_of_the_store_and_only_grow() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let every = Duration::from_secs(60);
        let a = Mirror::new(store.clone(), "r:", "r", every, Counter::default());
        let b = Mirror::new(store.clone(), "r:", "r", every, Counter::default());
        a.start();
        b.start();
        assert!(a.loaded(Duration::from_secs(5)).await);
        assert!(b.loaded(Duration::from_secs(5)).await);
        assert_eq!(a.staleness(), Duration::ZERO);
        let later = unix_now() + 100;
        a.insert(
            "k",
            Entry {
                value: 5,
                expires: later,
            },
        )
        .await
        .unwrap();
        assert_eq!(a.get("k").map(|e| e.value), Some(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.get("k").is_none() {
            assert!(Instant::now() < deadline, "the message never arrived");
            tokio::task::yield_now().await;
        }
        // A smaller value never lowers what is held.
        a.insert(
            "k",
            Entry {
                value: 1,
                expires: later,
            },
        )
        .await
        .unwrap();
        assert_eq!(a.get("k").map(|e| e.value), Some(5));
        // A late mirror loads the set from the store.
        let c = Mirror::new(store, "r:", "r", every, Counter::default());
        c.start();
        assert!(c.loaded(Duration::from_secs(5)).await);
        assert_eq!(c.get("k").map(|e| e.value), Some(5));
    }

    #[tokio::test]
    async fn a_resync_reads_the_set_only_when_a_write_was_missed() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let unstarted = || {
            // Not started: the test calls resync itself.
            Mirror::new(
                store.clone(),
                "r:",
                "r",
                Duration::from_secs(60),
                Counter::default(),
            )
        };
        let (a, b) = (unstarted(), unstarted());
        a.resync(false).await.unwrap();
        let entry = |value| Entry {
            value,
            expires: unix_now() + 100,
        };
        let ttl = Duration::from_secs(100);
        // Written behind the mirrors' back (no number, no message): a resync that holds
        // every numbered write stops at the counter, so it is not seen yet.
        store
            .put("r:quiet", &entry(1).to_text(), ttl)
            .await
            .unwrap();
        a.resync(false).await.unwrap();
        assert_eq!(a.get("quiet"), None);
        // Another instance's write whose message was lost: the counter moved past what
        // this mirror holds, so the next resync reads the whole set.
        b.insert("lost", entry(1)).await.unwrap();
        a.resync(false).await.unwrap();
        assert!(a.get("lost").is_some() && a.get("quiet").is_some());
        // A full resync (after every subscription) reads it whatever the counter says.
        store
            .put("r:later", &entry(1).to_text(), ttl)
            .await
            .unwrap();
        a.resync(true).await.unwrap();
        assert!(a.get("later").is_some());
        // And so does every FULL_EVERY-th periodic one.
        store.put("r:hand", &entry(1).to_text(), ttl).await.unwrap();
        for _ in 1..generations::FULL_EVERY {
            a.resync(false).await.unwrap();
        }
        assert_eq!(a.get("hand"), None);
        a.resync(false).await.unwrap();
        assert!(a.get("hand").is_some());
    }

    #[tokio::test]
    async fn a_lower_write_never_replaces_a_higher_one_in_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let every = Duration::from_secs(60);
        let a = Mirror::new(store.clone(), "r:", "r", every, Counter::default());
        let b = Mirror::new(store.clone(), "r:", "r", every, Counter::default());
        let later = unix_now() + 100;
        a.insert(
            "k",
            Entry {
                value: 9,
                expires: later,
            },
        )
        .await
        .unwrap();
        // b never heard of 9 (unstarted: no messages) and writes a lower value back.
        b.insert(
            "k",
            Entry {
                value: 2,
                expires: later + 50,
            },
        )
        .await
        .unwrap();
        let held = store
            .get("r:k")
            .await
            .unwrap()
            .and_then(|t| Entry::parse(&t));
        assert_eq!(
            held,
            Some(Entry {
                value: 9,
                expires: later + 50
            })
        );
    }

    #[tokio::test]
    async fn a_message_from_an_older_version_makes_the_next_resync_read_everything() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let a = Mirror::new(
            store.clone(),
            "r:",
            "r",
            Duration::from_secs(60),
            Counter::default(),
        );
        a.resync(false).await.unwrap();
        let later = unix_now() + 100;
        a.apply_message(&serde_json::to_string(&("old", 1, later)).unwrap());
        assert!(a.get("old").is_some());
        let text = Entry {
            value: 1,
            expires: later,
        }
        .to_text();
        store
            .put("r:uncounted", &text, Duration::from_secs(100))
            .await
            .unwrap();
        a.resync(false).await.unwrap();
        assert!(a.get("uncounted").is_some());
    }

    #[test]
    fn entries_round_trip_their_text_form() {
        let e = Entry {
            value: -3,
            expires: 17,
        };
        assert_eq!(Entry::parse(&e.to_text()), Some(e));
        assert_eq!(Entry::parse("x 1"), None);
    }
}
