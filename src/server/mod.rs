//! The listener: accept loop, one hyper-util auto (HTTP/1.1 + h2c) connection per client,
//! a connection limit, and graceful shutdown that drains in-flight requests up to a deadline.
//!
//! Requests read the pipeline through an [`ArcSwap`]: a reload swaps in a new one, and
//! requests already running finish on the one they started with.

pub mod reload;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// The pipeline every request reads, swapped whole on reload.
pub type SharedPipeline = Arc<ArcSwap<Pipeline>>;

/// What a client over the connection limit gets before the connection is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"description\":\"Too many connections; retry later\",\"error\":\"Service Unavailable\",\"status_code\":503}\n";

/// A bound listener with the pipeline it serves.
pub struct Server {
    listener: TcpListener,
    pipeline: SharedPipeline,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    shutdown_grace: Duration,
    max_header_bytes: usize,
    connections: Arc<Semaphore>,
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

impl Server {
    /// Binds the configured address (port 0 picks a free port; see [`Server::local_addr`]).
    /// `draining` is set when shutdown begins (readiness reads it).
    pub async fn bind(
        cfg: &ServerConfig,
        pipeline: SharedPipeline,
        metrics: Arc<Metrics>,
        draining: Arc<AtomicBool>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(cfg.listen).await?;
        Ok(Server {
            listener,
            pipeline,
            header_read_timeout: cfg.header_read_timeout,
            keep_alive_timeout: cfg.keep_alive_timeout,
            shutdown_grace: cfg.shutdown_grace,
            max_header_bytes: cfg.max_header_bytes,
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            metrics,
            draining,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Drained {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's header-read timeout only fires when the builder has a timer. It also
        // bounds how long an idle keep-alive connection waits for its next request.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            // Leave room above our own limit so oversized heads get our JSON 431, not
            // hyper's bare one.
            .max_buf_size((self.max_header_bytes + 16 * 1024).max(8192))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.max_header_bytes as u32)
            .keep_alive_interval(self.keep_alive_timeout / 2)
            .keep_alive_timeout(self.keep_alive_timeout);
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: keep serving the connections we have.
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tokio::spawn(refuse(stream));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let pipeline = self.pipeline.clone();
            let service = service_fn(move |req| {
                // Each request takes the pipeline current at its start.
                let pipeline = pipeline.load_full();
                async move { Ok::<_, Infallible>(pipeline.handle(req, peer).await) }
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            let open = OpenConnection::new(&self.metrics);
            tokio::spawn(async move {
                let _permit = permit;
                let _open = open;
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        self.draining.store(true, Ordering::Relaxed);
        drop(self.listener);
        let open = graceful.count();
        tracing::info!(open, grace = ?self.shutdown_grace, "shutting down: draining connections");
        tokio::select! {
            () = graceful.shutdown() => {
                tracing::info!("drained cleanly");
                Drained::Clean
            }
            () = tokio::time::sleep(self.shutdown_grace) => {
                tracing::warn!("grace period over; closing remaining connections");
                Drained::TimedOut(open)
            }
        }
    }
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
