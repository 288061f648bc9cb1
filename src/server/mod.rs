//! The listeners: per worker thread an accept loop on each listener's socket (see
//! [`workers`]), one HTTP/1.1-or-HTTP/2 connection per client (see `connection.rs`), a
//! connection limit, and graceful shutdown that drains in-flight requests up to a deadline.
//!
//! Requests read the pipeline through an [`ArcSwap`]: a reload swaps in a new one, and
//! requests already running finish on the one they started with.

mod connection;
mod first_bytes;
mod park;
pub mod reload;
pub mod workers;

use connection::{Drain, Http};
use first_bytes::FirstBytes;
use park::Parkable;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::{Front, ServerConfig};
use crate::load::Built;
use crate::metrics::Metrics;
use crate::pipeline::{Conn, Pipeline};
use crate::rejection::Rejection;
use workers::Workers;

/// The pipeline every request reads, swapped whole on reload.
pub type SharedPipeline = Arc<ArcSwap<Pipeline>>;

/// What a client over the connection limit gets before the connection is closed. Written
/// as raw bytes, not through `Rejection`'s mapping: no HTTP connection is served for it (the
/// point is to spend nothing on it), so there is no `Response` to map into. Its body is
/// pinned to the mapping's JSON shape by a unit test below.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: \
    application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"description\":\"Too \
        many connections; retry later\",\"error\":\"Service Unavailable\",\"status_code\":503}\n";

/// A bound listener: one socket per worker, and what it serves.
struct Bound {
    sockets: Vec<std::net::TcpListener>,
    serves: Serves,
}

/// What a listener serves, shared by its accept loops.
#[derive(Clone)]
struct Serves {
    /// This listener's open connections (all workers), up to `server.max_connections`.
    connections: Arc<Semaphore>,
    tls: Option<TlsListener>,
    redirect_https_port: Option<u16>,
    front: Front,
}

/// A TLS listener's live settings. The rustls config sits behind an [`ArcSwap`] so a reload
/// can swap certificates; established connections keep the session they have.
#[derive(Clone)]
struct TlsListener {
    config: Arc<ArcSwap<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    hsts: Option<HeaderValue>,
    subject_header: Option<HeaderName>,
}

/// The listeners with the pipeline they serve.
pub struct Server {
    listeners: Vec<Bound>,
    workers: Workers,
    pipeline: SharedPipeline,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    park_idle_after: Option<Duration>,
    shutdown_grace: Duration,
    max_header_bytes: usize,
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
}

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished its in-flight requests.
    Clean,
    /// The grace period ran out; this many connections were open when the drain began.
    TimedOut(usize),
}

/// A listener's TLS config handle, for reloads: the configured address and the live config.
pub type TlsHandle = (SocketAddr, Arc<ArcSwap<rustls::ServerConfig>>);

impl Server {
    /// Starts the worker threads and binds every configured listener, one socket per worker
    /// (port 0 picks a free port; see [`Server::local_addrs`]), serving TLS with the configs
    /// the load stage built. `draining` is set when
    /// shutdown begins (readiness reads it).
    pub async fn bind(
        cfg: &ServerConfig,
        built: &Built,
        pipeline: SharedPipeline,
        metrics: Arc<Metrics>,
        draining: Arc<AtomicBool>,
    ) -> Result<Server, String> {
        let n = crate::worker::count(cfg.workers);
        let mut listeners = Vec::new();
        for (i, l) in cfg.listeners.iter().enumerate() {
            let built_tls = built.tls.get(i).cloned().flatten();
            let tls = match (&l.tls, built_tls) {
                (Some(t), Some(config)) => Some(TlsListener {
                    config: Arc::new(ArcSwap::new(config)),
                    handshake_timeout: t.handshake_timeout,
                    hsts: t.hsts.clone(),
                    subject_header: t.client_subject_header.clone(),
                }),
                (Some(t), None) => return Err(format!("{}: no TLS config was built", t.at)),
                (None, _) => None,
            };
            let sockets = workers::bind_shared(l.addr, n)
                .map_err(|e| format!("cannot bind {}: {e}", l.addr))?;
            listeners.push(Bound {
                sockets,
                serves: Serves {
                    connections: Arc::new(Semaphore::new(cfg.max_connections)),
                    tls,
                    redirect_https_port: l.redirect_https_port,
                    front: l.front,
                },
            });
        }
        let workers =
            Workers::start(n).map_err(|e| format!("cannot start {n} worker threads: {e}"))?;
        Ok(Server {
            listeners,
            workers,
            pipeline,
            header_read_timeout: cfg.header_read_timeout,
            keep_alive_timeout: cfg.keep_alive_timeout,
            park_idle_after: cfg.park_idle_after,
            shutdown_grace: cfg.shutdown_grace,
            max_header_bytes: cfg.max_header_bytes,
            metrics,
            draining,
        })
    }

    /// The bound addresses, in the configured order.
    pub fn local_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.listeners
            .iter()
            .map(|b| b.sockets[0].local_addr())
            .collect()
    }

    /// The first listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].sockets[0].local_addr()
    }

    /// The live TLS configs by configured address, for reloads.
    pub fn tls_handles(&self, cfg: &ServerConfig) -> Vec<TlsHandle> {
        cfg.listeners
            .iter()
            .zip(&self.listeners)
            .filter_map(|(c, b)| b.serves.tls.as_ref().map(|t| (c.addr, t.config.clone())))
            .collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Drained {
        let mut http1 = http1::Builder::new();
        // hyper's header-read timeout only fires when the builder has a timer. It also
        // bounds how long an idle keep-alive connection waits for its next request.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            // Leave room above our own limit so oversized heads get our JSON 431, not
            // hyper's bare one.
            .max_buf_size((self.max_header_bytes + 16 * 1024).max(8192))
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(self.max_header_bytes as u32)
            .keep_alive_interval(self.keep_alive_timeout / 2)
            .keep_alive_timeout(self.keep_alive_timeout);
        let shared = Arc::new(Shared {
            http: Http {
                http1,
                http2,
                park_after: self.park_idle_after,
                idle_timeout: self.header_read_timeout,
            },
            pipeline: self.pipeline.clone(),
            metrics: self.metrics.clone(),
        });
        // Every connection holds a receiver of `drain` until it has closed; the accept
        // loops hold one each too, and are gone before the drain begins.
        let (drain, drain_rx) = tokio::sync::watch::channel(false);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut accepting = Vec::new();
        for bound in self.listeners {
            for (socket, worker) in bound.sockets.into_iter().zip(self.workers.handles()) {
                accepting.push(worker.spawn(accept_loop(
                    socket,
                    bound.serves.clone(),
                    shared.clone(),
                    drain_rx.clone(),
                    stopped.clone(),
                )));
            }
        }
        drop(drain_rx);
        shutdown.await;
        self.draining.store(true, Ordering::Relaxed);
        let _ = stop.send(true);
        for task in accepting {
            let _ = task.await;
        }
        let open = drain.receiver_count();
        tracing::info!(open, grace = ?self.shutdown_grace, "shutting down: draining connections");
        // `send_replace`: `send` would refuse when no connection is open.
        drain.send_replace(true);
        let drained = tokio::select! {
            () = drain.closed() => {
                tracing::info!("drained cleanly");
                Drained::Clean
            }
            () = tokio::time::sleep(self.shutdown_grace) => {
                tracing::warn!("grace period over; closing remaining connections");
                Drained::TimedOut(open)
            }
        };
        // Connections still open after the grace period end with their worker.
        self.workers.stop().await;
        drained
    }
}

/// What every connection task needs.
struct Shared {
    /// Its `idle_timeout` is `[server] header_read_timeout`, which also bounds the first bytes.
    http: Http,
    pipeline: SharedPipeline,
    metrics: Arc<Metrics>,
}

/// Accepts on one worker's socket of a listener until `stopped` changes; runs on that
/// worker, so the connection tasks it spawns do too.
async fn accept_loop(
    socket: std::net::TcpListener,
    bound: Serves,
    shared: Arc<Shared>,
    drain: Drain,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register a listening socket");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let Ok(permit) = bound.connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let drain = drain.clone();
        let tls = bound.tls.clone();
        let redirect = bound.redirect_https_port;
        let front = bound.front;
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::new(&shared.metrics);
            match tls {
                None => {
                    let conn = Conn::new(peer, false, None);
                    // The h1/h2 detection has no deadline of its own; see first_bytes.rs.
                    let io = FirstBytes::new(
                        stream,
                        shared.http.idle_timeout,
                        conn.linger_on_close.clone(),
                    );
                    serve_connection(io, conn, None, redirect, front, &shared, drain).await;
                }
                // Boxed: the TLS state (a rustls connection and its buffers) would
                // otherwise make every plain connection's task as large as a TLS one's.
                Some(tls) => Box::pin(serve_tls(stream, peer, tls, front, &shared, drain)).await,
            }
        });
    }
}

/// A TLS connection: the handshake (bounded by the listener's timeout), then HTTP.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsListener,
    front: Front,
    shared: &Shared,
    mut drain: Drain,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.load_full());
    // A client that never finishes its handshake must not hold the connection, nor a drain.
    let handshake = tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream));
    let stream = match tokio::select! {
        done = handshake => done,
        _ = drain.wait_for(|draining| *draining) => return,
    } {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_subject = tls.subject_header.as_ref().and_then(|name| {
        let cert = stream.get_ref().1.peer_certificates()?.first()?;
        let value = HeaderValue::from_str(&crate::tls::subject(cert)?).ok()?;
        Some((name.clone(), value))
    });
    let conn = Conn::new(peer, true, client_subject);
    let io = FirstBytes::new(
        stream,
        shared.http.idle_timeout,
        conn.linger_on_close.clone(),
    );
    serve_connection(io, conn, tls.hsts.clone(), None, front, shared, drain).await;
}

async fn serve_connection<I>(
    io: FirstBytes<I>,
    conn: Conn,
    hsts: Option<HeaderValue>,
    redirect: Option<u16>,
    front: Front,
    shared: &Shared,
    drain: Drain,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = Parkable::new(io);
    let activity = io.activity().clone();
    let pipeline = shared.pipeline.clone();
    let conn = Arc::new(conn);
    let peer = conn.peer;
    let service = service_fn(move |req| {
        // Counted until the response head is ready: a connection is not idle before.
        let in_flight = activity.begin();
        // Each request takes the pipeline current at its start.
        let pipeline = pipeline.load_full();
        let conn = conn.clone();
        let hsts = hsts.clone();
        async move {
            if let Some(port) = redirect {
                return Ok::<_, Infallible>(redirect_to_https(&req, port, pipeline.errors()));
            }
            // Boxed: the pipeline's future is a few KB, and hyper moves the service's
            // future several times per request; a pointer is cheaper to move.
            let decision_only = front == Front::ForwardAuth
                || crate::forward_auth::mounted(&pipeline, req.uri().path());
            let mut res = if decision_only {
                Box::pin(crate::forward_auth::handle(&pipeline, req, &conn)).await
            } else {
                Box::pin(pipeline.handle(req, &conn)).await
            };
            if let Some(h) = hsts {
                res.headers_mut()
                    .insert(http::header::STRICT_TRANSPORT_SECURITY, h);
            }
            Ok(park::track(res, in_flight))
        }
    });
    if let Err(e) = connection::serve(&shared.http, io, service, drain, &shared.metrics).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// 301 to the same host and path over HTTPS; without a host, the 400 of the one mapping.
/// The 301 is no rejection, but it takes the same JSON body shape.
fn redirect_to_https<B>(
    req: &http::Request<B>,
    port: u16,
    errors: &crate::rejection::ErrorContext,
) -> http::Response<crate::body::Body> {
    let host = crate::routing::request_host(
        req.headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok()),
        req.uri().authority().map(|a| a.as_str()),
    );
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = match (host, port) {
        (Some(h), 443) => format!("https://{h}{pq}"),
        (Some(h), p) => format!("https://{h}:{p}{pq}"),
        (None, _) => {
            return Rejection::BadHost("A Host header is required").into_response(errors);
        }
    };
    let mut res = crate::rejection::json(
        http::StatusCode::MOVED_PERMANENTLY,
        "Moved Permanently",
        "This service is served over HTTPS",
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(http::header::LOCATION, v);
    }
    res
}

/// Counts an open client connection in the metrics until dropped.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(metrics: &Metrics) -> OpenConnection {
        metrics.open_connections.inc();
        OpenConnection(metrics.open_connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Answers a connection over the limit with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    tracing::warn!("connection limit reached; refusing a connection");
    let _ = stream.write_all(OVER_LIMIT).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn the_canned_503_has_the_mappings_body() {
        let text = std::str::from_utf8(OVER_LIMIT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mapped = crate::rejection::json(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "Too many connections; retry later",
        );
        let expected = mapped.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_bytes(), &expected[..]);
        assert!(
            head.contains(&format!("content-length: {}", expected.len())),
            "{head}"
        );
    }
}
