//! Logging: `tracing` to stderr, human-readable or JSON, level from `RUST_LOG`; and
//! [`record`], the one call that counts a finished request in the metrics and writes its
//! access-log line.
//!
//! The access log is the `access` target, one event per request. Nothing here ever
//! receives a token, password or secret.

use std::time::Duration;

use http::Method;
use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;
use crate::metrics::{method_label, Metrics, OutcomeLabels, ReasonLabels, RouteCounters};

/// What the metrics record about one finished request.
pub struct Finished<'a> {
    /// The route's counters (or those of the login path, the JWKS path, no route).
    pub counters: &'a RouteCounters,
    pub method: &'a Method,
    pub status: u16,
    pub elapsed: Duration,
    /// The login outcome, for requests to the login path.
    pub login: Option<&'static str>,
    /// The rejection's reason, when the gateway answered itself.
    pub reason: Option<&'static str>,
    /// Whether the request was refused for its token or claims.
    pub token_refused: bool,
}

/// The access-log fields beyond [`Finished`]; built only when the access log is on.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    /// The client behind a trusted proxy (an address); otherwise the peer (address:port).
    pub client: &'a dyn std::fmt::Display,
    /// The path, with its query only when `[logging] query` allows it.
    pub path: String,
    pub upstream: &'a str,
    pub bytes: Option<u64>,
    pub identity: &'a str,
}

/// Counts a finished request (requests, duration, logins or token rejections) and, with
/// `access`, writes its access-log line.
pub fn record(metrics: &Metrics, f: &Finished<'_>, access: Option<AccessLine<'_>>) {
    f.counters
        .inc(&metrics.requests, method_label(f.method), f.status);
    metrics.duration.observe(f.elapsed.as_secs_f64());
    if let Some(outcome) = f.login {
        metrics
            .logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    } else if let Some(reason) = f.reason.filter(|_| f.token_refused) {
        metrics
            .token_rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
    let Some(a) = access else {
        return;
    };
    tracing::info!(
        target: "access",
        request_id = a.request_id,
        client = %a.client,
        method = %f.method,
        path = %a.path,
        route = f.counters.name(),
        upstream = a.upstream,
        status = f.status,
        bytes = a.bytes,
        identity = a.identity,
        reason = f.reason.unwrap_or("-"),
        micros = f.elapsed.as_micros() as u64,
    );
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
