//! The listener: accept loop, one hyper-util auto (HTTP/1.1 + h2c) connection per client,
//! and graceful shutdown that drains in-flight requests up to a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::pipeline::Pipeline;

mod first_bytes;
use first_bytes::FirstBytes;

/// A bound listener with the pipeline it serves.
pub struct Server {
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    shutdown_grace: Duration,
}

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished its in-flight requests.
    Clean,
    /// The grace period ran out with this many connections still open.
    TimedOut(usize),
}

impl Server {
    /// Binds the configured address (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(cfg: &ServerConfig, pipeline: Arc<Pipeline>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(cfg.listen).await?;
        Ok(Server {
            listener,
            pipeline,
            header_read_timeout: cfg.header_read_timeout,
            keep_alive_timeout: cfg.keep_alive_timeout,
            shutdown_grace: cfg.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Drained {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's header-read timeout only fires when the builder has a timer.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
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
            let _ = stream.set_nodelay(true);
            let pipeline = self.pipeline.clone();
            let service = service_fn(move |req| {
                let pipeline = pipeline.clone();
                async move { Ok::<_, Infallible>(pipeline.handle(req, peer).await) }
            });
            let conn = builder
                .serve_connection_with_upgrades(
                    // The h1/h2 detection has no deadline of its own; see first_bytes.rs.
                    TokioIo::new(FirstBytes::new(stream, self.header_read_timeout)),
                    service,
                )
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
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
