//! The embedded store: one instance, nothing to run. Also the local fallback of the login
//! limits while a shared store is unreachable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::entries::Entry as Mirrored;
use super::{Count, Store, StoreFuture, Subscription};

/// Keys held at most. Each failed login may add three; past this many the store forgets
/// expired keys first, then the ones closest to expiring, so an attacker spraying random
/// usernames can cost memory only up to this bound.
pub const MAX_KEYS: usize = 200_000;

/// What "never expires" means for a [`Store::raise`] counter here: longer than any process.
const COUNTER_LIFE: Duration = Duration::from_secs(10 * 365 * 86_400);

struct Entry {
    value: u64,
    /// The value of a text key (`put`); `None` for a counter.
    text: Option<String>,
    expires: Instant,
}

/// Expiring counters and values in a map behind one lock (each operation is a few map
/// lookups; the lock is never held across an await).
pub struct MemoryStore {
    map: Mutex<HashMap<String, Entry>>,
    max_keys: usize,
    /// Subscribers by channel; a closed one is dropped at the next publish.
    subscribers: Mutex<Vec<(String, UnboundedSender<String>)>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_capacity(MAX_KEYS)
    }
}

impl MemoryStore {
    /// A store that holds at most `max_keys` keys.
    pub fn with_capacity(max_keys: usize) -> MemoryStore {
        MemoryStore {
            map: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Keys held now (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one more key.
    fn make_room(map: &mut HashMap<String, Entry>, max: usize, now: Instant) {
        if map.len() < max {
            return;
        }
        map.retain(|_, e| e.expires > now);
        while map.len() >= max {
            let Some(soonest) = map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            map.remove(&soonest);
        }
    }

    fn incr_now(&self, keys: &[(&str, Duration)], now: Instant) -> Vec<Count> {
        let mut map = self.lock();
        keys.iter()
            .map(|(key, window)| {
                let live = map.get(*key).is_some_and(|e| e.expires > now);
                if !live {
                    map.remove(*key);
                    Self::make_room(&mut map, self.max_keys, now);
                    map.insert(
                        key.to_string(),
                        Entry {
                            value: 0,
                            text: None,
                            expires: now + *window,
                        },
                    );
                }
                match map.get_mut(*key) {
                    Some(e) => {
                        e.value = e.value.saturating_add(1);
                        Count {
                            value: e.value,
                            ttl: e.expires - now,
                        }
                    }
                    None => Count::default(),
                }
            })
            .collect()
    }

    fn put_now(&self, key: &str, value: &str, ttl: Duration, now: Instant) {
        let mut map = self.lock();
        if !map.contains_key(key) {
            Self::make_room(&mut map, self.max_keys, now);
        }
        map.insert(
            key.to_string(),
            Entry {
                value: 0,
                text: Some(value.to_string()),
                expires: now + ttl,
            },
        );
    }

    fn text_now(&self, key: &str, now: Instant) -> Option<String> {
        match self.lock().get(key) {
            Some(e) if e.expires > now => e.text.clone(),
            _ => None,
        }
    }

    fn peek_now(&self, keys: &[&str], now: Instant) -> Vec<Count> {
        let map = self.lock();
        keys.iter()
            .map(|key| match map.get(*key) {
                Some(e) if e.expires > now => Count {
                    value: e.value,
                    ttl: e.expires - now,
                },
                _ => Count::default(),
            })
            .collect()
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn incr<'a>(&'a self, keys: &'a [(&'a str, Duration)]) -> StoreFuture<'a, Vec<Count>> {
        let out = self.incr_now(keys, Instant::now());
        Box::pin(async move { Ok(out) })
    }

    fn peek<'a>(&'a self, keys: &'a [&'a str]) -> StoreFuture<'a, Vec<Count>> {
        let out = self.peek_now(keys, Instant::now());
        Box::pin(async move { Ok(out) })
    }

    fn set<'a>(&'a self, key: &'a str, value: u64, ttl: Duration) -> StoreFuture<'a, ()> {
        let now = Instant::now();
        let mut map = self.lock();
        if !map.contains_key(key) {
            Self::make_room(&mut map, self.max_keys, now);
        }
        map.insert(
            key.to_string(),
            Entry {
                value,
                text: None,
                expires: now + ttl,
            },
        );
        drop(map);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, keys: &'a [&'a str]) -> StoreFuture<'a, ()> {
        let mut map = self.lock();
        for k in keys {
            map.remove(*k);
        }
        drop(map);
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        let out = self.text_now(key, Instant::now());
        Box::pin(async move { Ok(out) })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        self.put_now(key, value, ttl, Instant::now());
        Box::pin(async { Ok(()) })
    }

    fn raise<'a>(
        &'a self,
        key: &'a str,
        entry: Mirrored,
        now: i64,
        counter: &'a str,
    ) -> StoreFuture<'a, u64> {
        let at = Instant::now();
        let mut map = self.lock();
        let held = match map.get(key) {
            Some(e) if e.expires > at => e.text.as_deref().and_then(Mirrored::parse),
            _ => None,
        };
        let raised = held.map_or(entry, |h| h.max(entry));
        let ttl = Duration::from_secs((raised.expires - now).max(1) as u64);
        if !map.contains_key(key) {
            Self::make_room(&mut map, self.max_keys, at);
        }
        map.insert(
            key.to_string(),
            Entry {
                value: 0,
                text: Some(raised.to_text()),
                expires: at + ttl,
            },
        );
        if !map.contains_key(counter) {
            Self::make_room(&mut map, self.max_keys, at);
        }
        let count = map.entry(counter.to_string()).or_insert(Entry {
            value: 0,
            text: None,
            expires: at + COUNTER_LIFE,
        });
        count.value = count.value.saturating_add(1);
        let n = count.value;
        drop(map);
        Box::pin(async move { Ok(n) })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a str,
        new: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut map = self.lock();
        let swapped = match map.get_mut(key) {
            Some(e) if e.expires > now && e.text.as_deref() == Some(expected) => {
                e.text = Some(new.to_string());
                e.expires = now + ttl;
                true
            }
            _ => false,
        };
        drop(map);
        Box::pin(async move { Ok(swapped) })
    }

    fn scan<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        let now = Instant::now();
        let out = self
            .lock()
            .iter()
            .filter(|(k, e)| e.expires > now && k.starts_with(prefix))
            .filter_map(|(k, e)| Some((k.clone(), e.text.clone()?)))
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> StoreFuture<'a, ()> {
        let mut subs = match self.subscribers.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        subs.retain(|(c, tx)| c != channel || tx.send(message.to_string()).is_ok());
        drop(subs);
        Box::pin(async { Ok(()) })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription> {
        let (tx, rx) = unbounded_channel();
        let mut subs = match self.subscribers.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        subs.retain(|(_, tx)| !tx.is_closed());
        subs.push((channel.to_string(), tx));
        drop(subs);
        Box::pin(async move { Ok(rx) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_expire_after_their_window() {
        let s = MemoryStore::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        assert_eq!(s.incr_now(&[("a", w)], t0)[0].value, 1);
        let c = s.incr_now(&[("a", w)], t0 + Duration::from_secs(4))[0];
        assert_eq!(c.value, 2);
        // A fixed window: the second hit does not push the expiry out.
        assert_eq!(c.ttl, Duration::from_secs(6));
        assert_eq!(s.peek_now(&["a"], t0 + Duration::from_secs(9))[0].value, 2);
        assert_eq!(s.peek_now(&["a"], t0 + w)[0], Count::default());
        assert_eq!(s.incr_now(&[("a", w)], t0 + w)[0].value, 1);
    }

    #[test]
    fn bounded_by_max_keys() {
        let s = MemoryStore::with_capacity(3);
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            s.incr_now(&[(k, Duration::from_secs(10 + i as u64))], t0);
        }
        assert_eq!(s.len(), 3);
        // The keys closest to expiry went first.
        assert_eq!(s.peek_now(&["a"], t0)[0].value, 0);
        assert_eq!(s.peek_now(&["e"], t0)[0].value, 1);
    }

    #[tokio::test]
    async fn set_and_delete() {
        let s = MemoryStore::default();
        s.set("k", 7, Duration::from_secs(5)).await.unwrap();
        assert_eq!(s.peek(&["k"]).await.unwrap()[0].value, 7);
        s.delete(&["k"]).await.unwrap();
        assert_eq!(s.peek(&["k"]).await.unwrap()[0].value, 0);
    }

    #[tokio::test]
    async fn text_values_swap_only_from_the_expected_value() {
        let s = MemoryStore::default();
        let ttl = Duration::from_secs(5);
        s.put("t:a", "one", ttl).await.unwrap();
        assert!(!s
            .compare_and_swap("t:a", "two", "three", ttl)
            .await
            .unwrap());
        assert!(s.compare_and_swap("t:a", "one", "two", ttl).await.unwrap());
        assert!(!s.compare_and_swap("t:a", "one", "two", ttl).await.unwrap());
        assert_eq!(s.get("t:a").await.unwrap().as_deref(), Some("two"));
        assert!(!s.compare_and_swap("t:none", "", "x", ttl).await.unwrap());
        s.set("t:counter", 1, ttl).await.unwrap();
        let found = s.scan("t:").await.unwrap();
        assert_eq!(found, vec![("t:a".to_string(), "two".to_string())]);
    }

    #[tokio::test]
    async fn subscribers_get_what_is_published_on_their_channel() {
        let s = MemoryStore::default();
        let mut a = s.subscribe("a").await.unwrap();
        let mut b = s.subscribe("b").await.unwrap();
        s.publish("a", "hello").await.unwrap();
        assert_eq!(a.recv().await.as_deref(), Some("hello"));
        assert!(b.try_recv().is_err());
    }
}
