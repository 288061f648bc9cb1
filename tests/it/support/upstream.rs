//! Real upstream servers on 127.0.0.1:0 that record what the gateway sent them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use gateway::body::{full, Body};

/// What an upstream server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub version: http::Version,
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    /// The connection it came on (the gateway's side of it).
    pub peer: SocketAddr,
}

pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A real HTTP/1.1 server on 127.0.0.1:0 that records every request it gets.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    count: tokio::sync::watch::Receiver<usize>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    /// Answers 200 `ok` after reading the whole body.
    pub async fn start() -> Upstream {
        Self::with(Arc::new(|req: Request<Incoming>| {
            Box::pin(async move {
                let _ = req.into_body().collect().await;
                Response::new(full("ok"))
            })
        }))
        .await
    }

    /// Holds each request until `release` is notified (once per request), then answers
    /// 200 with `body`.
    pub async fn held(body: &'static str) -> (Upstream, Arc<tokio::sync::Notify>) {
        let release = Arc::new(tokio::sync::Notify::new());
        let r = release.clone();
        let up = Self::with(Arc::new(move |_req| {
            let r = r.clone();
            Box::pin(async move {
                r.notified().await;
                Response::new(full(body))
            })
        }))
        .await;
        (up, release)
    }

    /// Accepts requests and never answers them.
    pub async fn hanging() -> Upstream {
        Self::with(Arc::new(|_req| Box::pin(std::future::pending()))).await
    }

    /// Records each request's head, then hands it to `handler` (which sees the live body).
    pub async fn with(handler: Handler) -> Upstream {
        Self::serve(handler, None).await
    }

    /// Like [`Upstream::start`], over TLS with the given rustls server config.
    pub async fn tls(config: rustls::ServerConfig) -> Upstream {
        let ok: Handler = Arc::new(|req: Request<Incoming>| {
            Box::pin(async move {
                let _ = req.into_body().collect().await;
                Response::new(full("ok"))
            })
        });
        Self::serve(ok, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    pub async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (count_tx, count) = tokio::sync::watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = &mut stopped => return,
                };
                let record = record.clone();
                let handler = handler.clone();
                let count_tx = count_tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        let handler = handler.clone();
                        let count_tx = count_tx.clone();
                        async move {
                            let len = req
                                .headers()
                                .get("content-length")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            record.lock().unwrap().push(Seen {
                                method: req.method().clone(),
                                version: req.version(),
                                target: req.uri().to_string(),
                                headers: req.headers().clone(),
                                body_len: len,
                                peer,
                            });
                            let n = record.lock().unwrap().len();
                            count_tx.send_replace(n);
                            Ok::<_, std::convert::Infallible>(handler(req).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            // A failed handshake (wrong CA, no client cert) just drops the
                            // connection.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            count,
            stop: Some(stop),
        }
    }

    /// Waits (10 s at most) until this upstream has received `n` requests in all.
    pub async fn wait_requests(&self, n: usize) {
        let mut rx = self.count.clone();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the upstream received {} of {n} requests",
                    *self.count.borrow()
                )
            })
            .unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A loopback address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}
