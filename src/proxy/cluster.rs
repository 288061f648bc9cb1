//! An upstream cluster (one `[[upstreams]]` entry): its servers, load balancing, passive
//! and active health, retries. Its idle HTTP/1.1 connections are kept by [`super::conns`].
//!
//! A server that refuses connections or times out is ejected for `eject_for` (passive
//! health); active checks, when configured, mark servers down after `unhealthy_threshold`
//! failures and up again after `healthy_threshold` successes. Requests go only to servers
//! that are neither ejected nor marked down; with none left the answer is 503.
//!
//! Retries: a request is tried again on another server only when it is idempotent, has no
//! body, and its connection could not be made (so it was never sent): a POST is never
//! duplicated.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::client::{self, HttpClient};
use super::conns::{Conns, SendError};
use crate::body::{empty, Body, BoxError};
use crate::config::{Balance, HealthConfig, UpstreamConfig, UpstreamProtocol};
use crate::worker;

/// Why a forwarded request got no upstream response. The pipeline folds it into its
/// `Rejection` (one mapping to HTTP); nothing here knows a status code.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Every server is ejected or marked down (or the cluster has none left to try).
    #[error("no healthy server in upstream {upstream}")]
    NoHealthyServer { upstream: String },
    /// No connection could be made, or the exchange failed on an open one.
    #[error("upstream unreachable: {}", client::describe(&**.0))]
    Unreachable(BoxError),
    /// No response head within the timeout (connect or response).
    #[error("upstream did not answer in time")]
    Timeout,
    /// The request body went over the route's `max_body` while it streamed upstream.
    #[error("request body over the route's limit")]
    BodyTooLarge,
    /// The client's own request body failed while it streamed upstream (bad framing, a
    /// cut connection): not the upstream's fault.
    #[error("{}", client::describe(&**.0))]
    ClientBody(BoxError),
    /// The configured server and the request's path make no valid URI.
    #[error("cannot build the upstream URI: {0}")]
    BadUri(#[from] http::Error),
}

/// One server of a cluster.
pub struct Server {
    scheme: Scheme,
    authority: Authority,
    /// `scheme://authority/`, what the connector dials.
    origin: Uri,
    /// The `Host` an HTTP/1.1 request gets when the client sent none (HTTP/2 clients).
    host: http::HeaderValue,
    /// Prepended to every forwarded path; empty or `/base`.
    base_path: String,
    /// `scheme://authority`, for logs.
    pub label: String,
    outstanding: Arc<AtomicUsize>,
    /// Milliseconds since the cluster's epoch until which the server is skipped.
    ejected_until: AtomicU64,
    /// Active health verdict (always true without health checks).
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
}

impl Server {
    /// The request target on this server. Takes the path by value: without a base path it
    /// becomes the URI as it is.
    fn uri(&self, path_and_query: String) -> Result<Uri, http::Error> {
        let target = if self.base_path.is_empty() {
            path_and_query
        } else {
            format!("{}{path_and_query}", self.base_path)
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
    }

    /// The origin-form request target on this server (`/base/path?query`).
    fn target(&self, path_and_query: String) -> Result<Uri, http::Error> {
        if self.base_path.is_empty() {
            Uri::builder().path_and_query(path_and_query).build()
        } else {
            Uri::builder()
                .path_and_query(format!("{}{path_and_query}", self.base_path))
                .build()
        }
    }

    fn available(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now_ms
    }
}

/// Aborts the active health-check task when the cluster is dropped (e.g. replaced by a reload).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The servers of one upstream and how requests are spread over them.
pub struct Cluster {
    pub name: String,
    servers: Arc<[Server]>,
    /// HTTP/1.1 clusters: the connection pool, idle connections per worker and server
    /// (requests other than upgrades go through these).
    conns: Option<Arc<Conns>>,
    /// One client per worker thread, picked by [`worker::index`]: every request of an
    /// HTTP/2 cluster, upgrades of an HTTP/1.1 cluster.
    clients: Box<[HttpClient]>,
    balance: Balance,
    version: Version,
    next: AtomicUsize,
    retries: u32,
    eject_for: Duration,
    response_timeout: Duration,
    epoch: Instant,
    metrics: Arc<crate::metrics::Metrics>,
    _health: Option<AbortOnDrop>,
    _reaper: Option<AbortOnDrop>,
}

/// What one forwarded request needs from the pipeline.
pub struct Outbound {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// Idempotent and bodiless: safe to try on another server if no connection was made.
    pub retryable: bool,
    /// The route's timeout for the response head, if it overrides the cluster's.
    pub timeout: Option<Duration>,
}

impl Cluster {
    /// Builds the cluster with a client for each of `workers` worker threads and, with health
    /// checks configured inside a runtime, starts them (on that runtime, with a client of
    /// their own).
    pub fn new(
        cfg: &UpstreamConfig,
        metrics: Arc<crate::metrics::Metrics>,
        workers: usize,
    ) -> Result<Cluster, String> {
        let connector = client::cluster_connector(cfg)?;
        let clients = client::build(cfg, &connector, workers);
        let servers: Vec<Server> = cfg
            .servers
            .iter()
            .map(|uri| {
                let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
                let authority = uri
                    .authority()
                    .cloned()
                    .unwrap_or_else(|| Authority::from_static("localhost"));
                Server {
                    origin: Uri::builder()
                        .scheme(scheme.clone())
                        .authority(authority.clone())
                        .path_and_query("/")
                        .build()
                        .unwrap_or_default(),
                    host: http::HeaderValue::from_str(authority.as_str())
                        .unwrap_or_else(|_| http::HeaderValue::from_static("localhost")),
                    scheme,
                    authority,
                    base_path: uri.path().trim_end_matches('/').to_string(),
                    label: format!(
                        "{}://{}",
                        uri.scheme_str().unwrap_or("http"),
                        uri.authority().map_or("", Authority::as_str)
                    ),
                    outstanding: Arc::new(AtomicUsize::new(0)),
                    ejected_until: AtomicU64::new(0),
                    healthy: AtomicBool::new(true),
                    successes: AtomicU32::new(0),
                    failures: AtomicU32::new(0),
                }
            })
            .collect();
        let servers: Arc<[Server]> = servers.into();
        let health = match (&cfg.health, tokio::runtime::Handle::try_current()) {
            (Some(h), Ok(rt)) => Some(AbortOnDrop(
                rt.spawn(check_health(
                    cfg.name.clone(),
                    servers.clone(),
                    // Its own client: checks must not park connections in a worker's pool.
                    client::build(cfg, &connector, 1).remove(0),
                    h.clone(),
                ))
                .abort_handle(),
            )),
            _ => None,
        };
        let conns = (cfg.protocol == UpstreamProtocol::Http1).then(|| {
            Arc::new(Conns::new(
                connector,
                workers,
                servers.len(),
                cfg.idle_timeout,
            ))
        });
        // Idle connections of quiet servers are closed by this task, not left to the server.
        let reaper = match (&conns, tokio::runtime::Handle::try_current()) {
            (Some(c), Ok(rt)) => {
                let c = Arc::downgrade(c);
                let every = cfg
                    .idle_timeout
                    .clamp(Duration::from_secs(1), Duration::from_secs(30));
                Some(AbortOnDrop(
                    rt.spawn(async move {
                        let mut tick = tokio::time::interval(every);
                        loop {
                            tick.tick().await;
                            match c.upgrade() {
                                Some(c) => c.reap(),
                                None => return,
                            }
                        }
                    })
                    .abort_handle(),
                ))
            }
            _ => None,
        };
        Ok(Cluster {
            name: cfg.name.clone(),
            servers,
            conns,
            clients: clients.into(),
            balance: cfg.balance,
            version: if cfg.protocol == UpstreamProtocol::H2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            next: AtomicUsize::new(0),
            retries: cfg.retries,
            eject_for: cfg.eject_for,
            response_timeout: cfg.response_timeout,
            epoch: Instant::now(),
            metrics,
            _health: health,
            _reaper: reaper,
        })
    }

    /// The calling worker thread's client.
    fn client(&self) -> &HttpClient {
        &self.clients[worker::index() % self.clients.len()]
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Each server's label and whether it may take requests now.
    pub fn server_states(&self) -> impl Iterator<Item = (&str, bool)> {
        let now = self.now_ms();
        self.servers
            .iter()
            .map(move |s| (s.label.as_str(), s.available(now)))
    }

    /// Whether at least one server may take requests now.
    pub fn has_available(&self) -> bool {
        let now = self.now_ms();
        self.servers.iter().any(|s| s.available(now))
    }

    fn no_healthy_server(&self) -> UpstreamError {
        UpstreamError::NoHealthyServer {
            upstream: self.name.clone(),
        }
    }

    /// Picks a server not in `tried` by the cluster's balancing rule.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i) && self.servers[*i].available(now));
        match self.balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            // Ties go to the round-robin order, so equal servers still share the load.
            Balance::LeastOutstanding => {
                candidates.min_by_key(|i| self.servers[*i].outstanding.load(Ordering::Relaxed))
            }
        }
    }

    fn eject(&self, server: &Server, why: &str) {
        if self.eject_for.is_zero() {
            return;
        }
        let until = self.now_ms() + self.eject_for.as_millis() as u64;
        server.ejected_until.store(until, Ordering::Relaxed);
        self.metrics
            .ejections
            .get_or_create(&crate::metrics::ServerLabels {
                upstream: self.name.clone(),
                server: server.label.clone(),
            })
            .inc();
        tracing::warn!(
            upstream = %self.name,
            server = %server.label,
            reason = why,
            eject_for = ?self.eject_for,
            "server ejected"
        );
    }

    /// Sends the request to a server of this cluster. Returns the response (its body keeps the
    /// server's outstanding count until it ends) and the server's label.
    pub async fn send(&self, out: Outbound) -> Result<(Response<Body>, &str), UpstreamError> {
        // A retry goes to a server not tried yet, so a cluster never makes more attempts than
        // it has servers (one server: one attempt, and nothing needs copying for a retry).
        let attempts = if out.retryable {
            (1 + self.retries as usize).min(self.servers.len())
        } else {
            1
        };
        let timeout = out.timeout.unwrap_or(self.response_timeout);
        let mut body = Some(out.body);
        let mut headers = Some(out.headers);
        let mut path_and_query = Some(out.path_and_query);
        // Servers whose connection failed; allocated only when there is a retry.
        let mut tried = Vec::new();
        let mut last = None;
        for attempt in 0..attempts {
            let Some(idx) = self.pick(&tried) else { break };
            let server = &self.servers[idx];
            // The last attempt takes the request's parts; earlier ones send copies.
            let last_attempt = attempt + 1 == attempts;
            let pq = take_or_copy(&mut path_and_query, last_attempt).unwrap_or_default();
            let mut req = Request::new(body.take().unwrap_or_else(empty));
            *req.method_mut() = out.method.clone();
            *req.version_mut() = self.version;
            *req.headers_mut() = take_or_copy(&mut headers, last_attempt).unwrap_or_default();
            let guard = Outstanding::new(server);
            let sent = match &self.conns {
                Some(conns) => {
                    *req.uri_mut() = server.target(pq)?;
                    // HTTP/1.1 needs a Host; HTTP/2 clients send :authority instead.
                    if !req.headers().contains_key(http::header::HOST) {
                        req.headers_mut()
                            .insert(http::header::HOST, server.host.clone());
                    }
                    match tokio::time::timeout(timeout, conns.send(idx, &server.origin, req)).await
                    {
                        Ok(Ok(res)) => Ok(Ok(res.map(|b| counted(b, guard)))),
                        Ok(Err(SendError::Connect(e))) => Ok(Err(Failed::Connect(e))),
                        Ok(Err(SendError::Exchange(e))) => Ok(Err(Failed::Exchange(e.into()))),
                        Err(elapsed) => Err(elapsed),
                    }
                }
                None => {
                    *req.uri_mut() = server.uri(pq)?;
                    match tokio::time::timeout(timeout, self.client().request(req)).await {
                        Ok(Ok(res)) => Ok(Ok(res.map(|b| counted(b, guard)))),
                        Ok(Err(e)) if e.is_connect() => Ok(Err(Failed::Connect(e.into()))),
                        Ok(Err(e)) => Ok(Err(Failed::Exchange(e.into()))),
                        Err(elapsed) => Err(elapsed),
                    }
                }
            };
            match sent {
                Ok(Ok(res)) => return Ok((res, &server.label)),
                // The request may have been sent: never retried.
                Err(_) => {
                    self.eject(server, "response timeout");
                    return Err(UpstreamError::Timeout);
                }
                Ok(Err(Failed::Connect(e))) => {
                    tried.push(idx);
                    let timed_out = client::timed_out(&*e);
                    self.eject(
                        server,
                        if timed_out {
                            "connect timeout"
                        } else {
                            "connect failed"
                        },
                    );
                    last = Some(if timed_out {
                        UpstreamError::Timeout
                    } else {
                        UpstreamError::Unreachable(e)
                    });
                }
                Ok(Err(Failed::Exchange(e))) => {
                    if client::caused_by::<http_body_util::LengthLimitError>(&*e) {
                        return Err(UpstreamError::BodyTooLarge);
                    }
                    if client::caused_by::<crate::body::ClientBodyError>(&*e) {
                        return Err(UpstreamError::ClientBody(e));
                    }
                    return Err(UpstreamError::Unreachable(e));
                }
            }
        }
        Err(last.unwrap_or_else(|| self.no_healthy_server()))
    }

    /// Opens a request whose response may switch protocols (Upgrade): no retries, HTTP/1.1.
    pub async fn send_upgrade(&self, out: Outbound) -> Result<Response<Incoming>, UpstreamError> {
        let idx = self.pick(&[]).ok_or_else(|| self.no_healthy_server())?;
        let server = &self.servers[idx];
        let mut req = Request::new(out.body);
        *req.method_mut() = out.method;
        *req.uri_mut() = server.uri(out.path_and_query)?;
        *req.headers_mut() = out.headers;
        let timeout = out.timeout.unwrap_or(self.response_timeout);
        match tokio::time::timeout(timeout, self.client().request(req)).await {
            Ok(Ok(res)) => Ok(res),
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => {
                if e.is_connect() {
                    self.eject(server, "connect failed");
                }
                Err(UpstreamError::Unreachable(e.into()))
            }
        }
    }
}

/// The part itself for the last use, a copy before that.
fn take_or_copy<T: Clone>(part: &mut Option<T>, last: bool) -> Option<T> {
    if last {
        part.take()
    } else {
        part.clone()
    }
}

/// How an attempt failed.
enum Failed {
    /// No connection: nothing was sent, another server may take the request.
    Connect(BoxError),
    /// On an open connection: the request may have been sent.
    Exchange(BoxError),
}

/// The response body, boxed, holding the server's outstanding count until it ends.
fn counted<B>(inner: B, guard: Outstanding) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    http_body_util::BodyExt::boxed(Counted {
        inner,
        _guard: guard,
    })
}

/// Counts a request against its server until the response body ends or is dropped.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    fn new(server: &Server) -> Outstanding {
        server.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(server.outstanding.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream response body that holds its server's outstanding count.
struct Counted<B> {
    inner: B,
    _guard: Outstanding,
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Active health checks: GET `path` on every server each `interval`.
async fn check_health(
    cluster: String,
    servers: Arc<[Server]>,
    client: HttpClient,
    cfg: HealthConfig,
) {
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for server in servers.iter() {
            let ok = match server.uri(cfg.path.clone()) {
                Ok(uri) => {
                    let mut req = Request::new(empty());
                    *req.uri_mut() = uri;
                    matches!(
                        tokio::time::timeout(cfg.timeout, client.request(req)).await,
                        Ok(Ok(res)) if res.status().is_success() || res.status().is_redirection()
                    )
                }
                Err(_) => false,
            };
            record_check(&cluster, server, ok, &cfg);
        }
    }
}

fn record_check(cluster: &str, server: &Server, ok: bool, cfg: &HealthConfig) {
    let was = server.healthy.load(Ordering::Relaxed);
    if ok {
        server.failures.store(0, Ordering::Relaxed);
        let n = server.successes.fetch_add(1, Ordering::Relaxed) + 1;
        if !was && n >= cfg.healthy_threshold {
            server.healthy.store(true, Ordering::Relaxed);
            tracing::info!(upstream = cluster, server = %server.label, "server healthy again");
        }
    } else {
        server.successes.store(0, Ordering::Relaxed);
        let n = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if was && n >= cfg.unhealthy_threshold {
            server.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(upstream = cluster, server = %server.label, "server failed its \
                health checks");
        }
    }
}
