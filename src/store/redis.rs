//! The shared store: Redis (or Valkey), for several instances.
//!
//! One multiplexed connection per process, behind redis-rs's `ConnectionManager`, which
//! reconnects with exponential backoff after the connection drops. The first connection is
//! made lazily: the gateway starts (and answers logins from local counters) while Redis is
//! still unreachable. Every command is bounded by `[store] timeout`, and
//! each operation is one command or one Lua script, so it is atomic and one round trip
//! (a scan takes one round trip per page). Each subscription has a connection of its own
//! (Redis reserves a subscribed connection for messages), pinged every second so a hung
//! server ends it as surely as a dead one.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use futures_util::StreamExt;

use super::entries::Entry;
use super::{Count, Store, StoreError, StoreFuture, Subscription};
use crate::config::{RedisConfig, StoreConfig};

/// Adds one to each key; a key new to the window gets its expiry (ARGV[i], ms). A key
/// left without one (written by something else) is given it, so no counter lives forever.
/// Returns value, ttl (ms) pairs.
const INCR: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if n == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[i])
    ttl = tonumber(ARGV[i])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out
";

/// Value (0 when absent or not a number) and ttl (ms, 0 when absent) of each key.
const PEEK: &str = r"
local out = {}
for _, key in ipairs(KEYS) do
  local v = tonumber(redis.call('GET', key)) or 0
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then ttl = 0 end
  out[#out + 1] = v
  out[#out + 1] = ttl
end
return out
";

/// Sets the key to ARGV[2] (expiring after ARGV[3] ms) when its value is ARGV[1] now.
const SWAP: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Raises the entry at KEYS[1] (text "value expires") to at least ARGV[1] / ARGV[2],
/// expiring at that expiry (ARGV[3] is now, Unix seconds; at least a second), and adds one
/// to the counter KEYS[2] (no expiry). Returns the counter. Lua numbers are doubles: exact
/// for the values written here (Unix seconds and milliseconds).
const RAISE: &str = r"
local v = tonumber(ARGV[1])
local e = tonumber(ARGV[2])
local held = redis.call('GET', KEYS[1])
if held then
  local hv, he = string.match(held, '^(%-?%d+) (%-?%d+)$')
  if hv then
    hv = tonumber(hv)
    he = tonumber(he)
    if hv > v then v = hv end
    if he > e then e = he end
  end
end
local ttl = (e - tonumber(ARGV[3])) * 1000
if ttl < 1000 then ttl = 1000 end
redis.call('SET', KEYS[1], string.format('%d %d', v, e), 'PX', string.format('%d', ttl))
return redis.call('INCR', KEYS[2])
";

/// Keys asked for per `SCAN` page (a hint to Redis) and per `MGET`.
const SCAN_PAGE: usize = 1000;

/// How often a subscription's connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);

pub struct RedisStore {
    /// `None` when the client could not be built (outside a tokio runtime, as in
    /// `gateway check`): every operation then fails at once.
    conn: Option<ConnectionManager>,
    /// For subscriptions, which need connections of their own.
    client: Option<redis::Client>,
    prefix: String,
    timeout: Duration,
    incr: redis::Script,
    peek: redis::Script,
    swap: redis::Script,
    raise: redis::Script,
}

impl RedisStore {
    /// A store for `redis`. Returns at once: the connection is made by the first
    /// operation (and made again after it drops), never blocking start.
    pub fn connect(redis: &RedisConfig, store: &StoreConfig) -> RedisStore {
        // Reconnects after a drop: a few quick retries with backoff (each bounded by our
        // timeout too); after them the next operation starts a new attempt.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(store.timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(store.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let client = redis
            .connection_info()
            .and_then(|info| match &redis.ca_pem {
                // Our CA instead of the system roots; rustls with the process's
                // provider (aws-lc-rs, the only one built in).
                Some(pem) => redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                ),
                None => redis::Client::open(info),
            })
            .map_err(|e| {
                let error = e.kind_name();
                tracing::error!(%error, "store: cannot use the Redis address")
            })
            .ok();
        // Outside a runtime (`gateway check`) nothing is connected: every operation fails.
        let conn = tokio::runtime::Handle::try_current()
            .ok()
            .and(client.clone())
            .and_then(|c| {
                ConnectionManager::new_lazy_with_config(c, config)
                    .map_err(|e| {
                        let error = e.kind_name();
                        tracing::error!(%error, "store: cannot use the Redis address")
                    })
                    .ok()
            });
        RedisStore {
            client: conn.as_ref().and(client),
            conn,
            prefix: store.key_prefix.clone(),
            timeout: store.timeout,
            incr: redis::Script::new(INCR),
            peek: redis::Script::new(PEEK),
            swap: redis::Script::new(SWAP),
            raise: redis::Script::new(RAISE),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.conn.clone().ok_or(StoreError::NotConnected)
    }

    /// Runs `op` bounded by the store's timeout.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Backend(e.kind_name())),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    async fn counts(
        &self,
        script: &redis::Script,
        keys: Vec<String>,
        args: Vec<u64>,
    ) -> Result<Vec<Count>, StoreError> {
        let mut conn = self.connection()?;
        let mut invocation = script.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        for a in &args {
            invocation.arg(a);
        }
        let flat: Vec<i64> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if flat.len() != keys.len() * 2 {
            return Err(StoreError::Backend("unexpected script answer".into()));
        }
        Ok(flat
            .chunks(2)
            .map(|pair| Count {
                value: pair[0].max(0) as u64,
                ttl: Duration::from_millis(pair[1].max(0) as u64),
            })
            .collect())
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// Forwards a subscription's messages until its connection drops, a ping goes
/// unanswered, or nobody listens any more.
async fn forward_messages(
    pubsub: redis::aio::PubSub,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    timeout: Duration,
) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Ok(text) = msg.get_payload::<String>() else { continue };
                if tx.send(text).is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if tx.is_closed() {
                    return;
                }
                let bound = timeout.max(Duration::from_millis(500));
                // A subscribed connection answers PING with an array (RESP2), not PONG:
                // any answer will do.
                let answered = tokio::time::timeout(bound, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// Error kinds are fixed words: the error text of a failed AUTH or a URL could carry a
/// secret, so only the kind is kept.
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    fn kind_name(&self) -> String {
        if self.is_timeout() {
            "timeout".into()
        } else if self.is_connection_refusal() {
            "connection refused".into()
        } else if self.is_connection_dropped() || self.is_io_error() {
            "connection lost".into()
        } else {
            format!("{:?}", self.kind())
        }
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn incr<'a>(&'a self, keys: &'a [(&'a str, Duration)]) -> StoreFuture<'a, Vec<Count>> {
        Box::pin(async move {
            let names = keys.iter().map(|(k, _)| self.key(k)).collect();
            let windows = keys
                .iter()
                .map(|(_, w)| (w.as_millis() as u64).max(1))
                .collect();
            self.counts(&self.incr, names, windows).await
        })
    }

    fn peek<'a>(&'a self, keys: &'a [&'a str]) -> StoreFuture<'a, Vec<Count>> {
        Box::pin(async move {
            let names = keys.iter().map(|k| self.key(k)).collect();
            self.counts(&self.peek, names, Vec::new()).await
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: u64, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg((ttl.as_millis() as u64).max(1));
            self.bounded(cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn delete<'a>(&'a self, keys: &'a [&'a str]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let mut conn = self.connection()?;
            let mut cmd = redis::cmd("DEL");
            for k in keys {
                cmd.arg(self.key(k));
            }
            self.bounded(cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(key));
            self.bounded(cmd.query_async::<Option<String>>(&mut conn))
                .await
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl));
            self.bounded(cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a str,
        new: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let mut invocation = self.swap.prepare_invoke();
            invocation
                .key(self.key(key))
                .arg(expected)
                .arg(new)
                .arg(millis(ttl));
            let swapped: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
            Ok(swapped == 1)
        })
    }

    fn raise<'a>(
        &'a self,
        key: &'a str,
        entry: Entry,
        now: i64,
        counter: &'a str,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let mut invocation = self.raise.prepare_invoke();
            invocation
                .key(self.key(key))
                .key(self.key(counter))
                .arg(entry.value)
                .arg(entry.expires)
                .arg(now);
            self.bounded(invocation.invoke_async(&mut conn)).await
        })
    }

    fn scan<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let pattern = format!("{}*", glob_escape(&self.key(prefix)));
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_PAGE);
                let (next, keys): (u64, Vec<String>) =
                    self.bounded(cmd.query_async(&mut conn)).await?;
                for chunk in keys.chunks(SCAN_PAGE) {
                    let mut get = redis::cmd("MGET");
                    for k in chunk {
                        get.arg(k);
                    }
                    let values: Vec<Option<String>> =
                        self.bounded(get.query_async(&mut conn)).await?;
                    for (k, v) in chunk.iter().zip(values) {
                        if let (Some(v), Some(k)) = (v, k.strip_prefix(&self.prefix)) {
                            out.push((k.to_string(), v));
                        }
                    }
                }
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection()?;
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(self.key(channel)).arg(message);
            self.bounded(cmd.query_async::<i64>(&mut conn)).await?;
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription> {
        Box::pin(async move {
            let client = self.client.clone().ok_or(StoreError::NotConnected)?;
            let mut pubsub = self.bounded(client.get_async_pubsub()).await?;
            self.bounded(pubsub.subscribe(self.key(channel))).await?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(forward_messages(pubsub, tx, self.timeout));
            Ok(rx)
        })
    }
}
