//! Prometheus metrics, one registry per process (per started gateway in tests).
//!
//! Label values are bounded: routes come from the config, methods are folded to the
//! standard ones, reasons and outcomes are fixed words.

use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub upstream: String,
    pub server: String,
}

/// The cost parameters of a password hash computation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabels {
    /// `argon2id v=19 m=19456,t=2,p=1 len=32`, `bcrypt 2b cost=12`; `unparsable` for
    /// anything else.
    pub params: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    /// `flood`, `account`, `address` or `pair`.
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub backend: String,
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevocationLabels {
    /// `jti`, `user` or `family` (a refresh-token family).
    pub kind: String,
    /// `logout`, `operator` or `reuse`.
    pub by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    pub upstream_duration: Histogram,
    pub token_rejections: Family<ReasonLabels, Counter>,
    pub logins: Family<OutcomeLabels, Counter>,
    /// Password hashes verified, by cost parameters.
    pub password_hashes_by_cost: Family<HashLabels, Counter>,
    pub upstream_up: Family<ServerLabels, Gauge>,
    pub ejections: Family<ServerLabels, Counter>,
    pub open_connections: Gauge,
    /// HTTP/1.1 keep-alive connections parked while idle, without hyper's buffers.
    pub parked_connections: Gauge,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub tls_handshake_failures: Counter,
    /// Login attempts refused by a limit, by the limit's key kind.
    pub throttled: Family<ThrottleLabels, Counter>,
    /// Logins by outcome and by the store that held their limit counters.
    pub logins_by_store: Family<LoginStoreLabels, Counter>,
    pub store_errors: Family<StoreLabels, Counter>,
    pub store_duration: Histogram,
    /// 1 while the shared store answers (also 1 with the memory backend).
    pub store_up: Gauge,
    pub store_outages: Counter,
    /// Limit operations answered by local counters because the shared store was down.
    pub store_fallbacks: Counter,
    /// Password hashes verified (one per login attempt that reaches the check).
    pub password_hashes: Counter,
    /// Delegated credential checks, by outcome.
    pub remote_checks: Family<OutcomeLabels, Counter>,
    /// Refresh attempts, by outcome (`rotated`, `grace`, or the refusal's reason).
    pub refreshes: Family<OutcomeLabels, Counter>,
    /// Used refresh tokens presented again (each revoked its family).
    pub refresh_reuse: Counter,
    /// Revocations made on this instance, by kind and by whom.
    pub revocations: Family<RevocationLabels, Counter>,
    /// Entries in this instance's revocation set.
    pub revocation_set_size: Gauge,
    /// How long the revocation set has gone without being confirmed current (0 while it is).
    pub revocation_staleness: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Store operations of the revocation set that failed (writes, subscriptions, resyncs).
    pub revocation_store_errors: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginStoreLabels {
    pub outcome: String,
    /// `memory`, `redis` or `local_fallback`.
    pub store: String,
}

fn latency() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            duration: latency(),
            upstream_duration: latency(),
            token_rejections: Family::default(),
            logins: Family::default(),
            password_hashes_by_cost: Family::default(),
            upstream_up: Family::default(),
            ejections: Family::default(),
            open_connections: Gauge::default(),
            parked_connections: Gauge::default(),
            reloads: Family::default(),
            tls_handshake_failures: Counter::default(),
            throttled: Family::default(),
            logins_by_store: Family::default(),
            store_errors: Family::default(),
            store_duration: latency(),
            store_up: Gauge::default(),
            store_outages: Counter::default(),
            store_fallbacks: Counter::default(),
            password_hashes: Counter::default(),
            remote_checks: Family::default(),
            refreshes: Family::default(),
            refresh_reuse: Counter::default(),
            revocations: Family::default(),
            revocation_set_size: Gauge::default(),
            revocation_staleness: Gauge::default(),
            revocation_store_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gateway_requests",
            "Requests answered, by route, method and status",
            m.requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Time from request head to response head",
            m.duration.clone(),
        );
        registry.register(
            "gateway_upstream_duration_seconds",
            "Time the upstream took to answer with its response head",
            m.upstream_duration.clone(),
        );
        registry.register(
            "gateway_token_rejections",
            "Requests refused at authentication or authorization, by reason",
            m.token_rejections.clone(),
        );
        registry.register(
            "gateway_logins",
            "Login attempts, by outcome",
            m.logins.clone(),
        );
        registry.register(
            "gateway_password_hashes_by_cost",
            "Password hashes verified at the login path (known and unknown users alike), by \
             cost parameters",
            m.password_hashes_by_cost.clone(),
        );
        registry.register(
            "gateway_upstream_server_up",
            "1 when an upstream server may take requests (not ejected, passing checks)",
            m.upstream_up.clone(),
        );
        registry.register(
            "gateway_upstream_ejections",
            "Times a server was ejected after a failed connection or timeout",
            m.ejections.clone(),
        );
        registry.register(
            "gateway_open_connections",
            "Client connections open now",
            m.open_connections.clone(),
        );
        registry.register(
            "gateway_parked_connections",
            "Idle HTTP/1.1 keep-alive connections parked without their buffers",
            m.parked_connections.clone(),
        );
        registry.register(
            "gateway_config_reloads",
            "Configuration reloads, by outcome",
            m.reloads.clone(),
        );
        registry.register(
            "gateway_tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "gateway_login_throttled",
            "Login attempts refused by a limit, by key kind (flood, account, address, pair)",
            m.throttled.clone(),
        );
        registry.register(
            "gateway_login_outcomes",
            "Login attempts by outcome and by the store that held their limit counters",
            m.logins_by_store.clone(),
        );
        registry.register(
            "gateway_store_errors",
            "Store operations that failed or timed out, by backend and operation",
            m.store_errors.clone(),
        );
        registry.register(
            "gateway_store_duration_seconds",
            "Time the shared store took to answer an operation",
            m.store_duration.clone(),
        );
        m.store_up.set(1);
        registry.register(
            "gateway_store_up",
            "1 while the shared store answers, 0 during an outage",
            m.store_up.clone(),
        );
        registry.register(
            "gateway_store_outages",
            "Times the shared store became unreachable",
            m.store_outages.clone(),
        );
        registry.register(
            "gateway_store_fallbacks",
            "Login-limit operations answered by this instance's counters during an outage",
            m.store_fallbacks.clone(),
        );
        registry.register(
            "gateway_password_hashes",
            "Password hashes verified at the login path",
            m.password_hashes.clone(),
        );
        registry.register(
            "gateway_remote_login_checks",
            "Delegated credential checks, by outcome",
            m.remote_checks.clone(),
        );
        registry.register(
            "gateway_refreshes",
            "Refresh-token requests, by outcome",
            m.refreshes.clone(),
        );
        registry.register(
            "gateway_refresh_reuse_detections",
            "Used refresh tokens presented again; each revoked its family",
            m.refresh_reuse.clone(),
        );
        registry.register(
            "gateway_revocations",
            "Revocations made on this instance, by kind (jti, user, family) \
             and by (logout, operator, reuse)",
            m.revocations.clone(),
        );
        registry.register(
            "gateway_revocation_set_size",
            "Entries in this instance's revocation set",
            m.revocation_set_size.clone(),
        );
        registry.register(
            "gateway_revocation_staleness_seconds",
            "How long the revocation set has not been confirmed current (0 while it is)",
            m.revocation_staleness.clone(),
        );
        registry.register(
            "gateway_revocation_store_errors",
            "Failed store operations of the revocation set (writes, subscriptions, resyncs)",
            m.revocation_store_errors.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register(
            "gateway_build_info",
            "Build information; the value is always 1",
            build,
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The request counters of one route (or of the login path, the JWKS path, or requests
/// that matched no route), remembered by method and status: the label set is allocated
/// and hashed once per combination, not on every request.
pub struct RouteCounters {
    route: String,
    seen: RwLock<Vec<(&'static str, u16, Counter)>>,
}

/// Combinations remembered per route; beyond this (never in practice: methods are folded
/// to 8 words) a request falls back to the family lookup.
const MAX_REMEMBERED: usize = 64;

impl RouteCounters {
    pub fn new(route: impl Into<String>) -> RouteCounters {
        RouteCounters {
            route: route.into(),
            seen: RwLock::new(Vec::new()),
        }
    }

    /// The `route` label (and access-log field).
    pub fn name(&self) -> &str {
        &self.route
    }

    /// Counts one request in `family` under this route, `method` and `status`.
    pub fn inc(&self, family: &Family<RequestLabels, Counter>, method: &'static str, status: u16) {
        if let Ok(seen) = self.seen.read() {
            if let Some((_, _, c)) = seen.iter().find(|(m, s, _)| *m == method && *s == status) {
                c.inc();
                return;
            }
        }
        let counter = family
            .get_or_create(&RequestLabels {
                route: self.route.clone(),
                method: method.to_string(),
                status,
            })
            .clone();
        counter.inc();
        if let Ok(mut seen) = self.seen.write() {
            if seen.len() < MAX_REMEMBERED
                && !seen.iter().any(|(m, s, _)| *m == method && *s == status)
            {
                seen.push((method, status, counter));
            }
        }
    }
}

/// Folds a method into a bounded label value.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_counters_count_into_the_family_by_label() {
        let m = Metrics::new();
        let api = RouteCounters::new("api");
        for _ in 0..3 {
            api.inc(&m.requests, "GET", 200);
        }
        api.inc(&m.requests, "POST", 401);
        RouteCounters::new("api").inc(&m.requests, "GET", 200);
        let text = m.encode();
        assert!(
            text.contains(r#"gateway_requests_total{route="api",method="GET",status="200"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gateway_requests_total{route="api",method="POST",status="401"} 1"#),
            "{text}"
        );
    }
}
