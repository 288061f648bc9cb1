//! HTTP/1.1 upstream connections kept open between requests: for each worker thread and
//! server, a stack of idle connections (the most recently used on top).
//!
//! A worker only reuses the connections it drives itself, so taking or returning one is an
//! uncontended lock, and a request never waits on another thread. A connection goes back
//! on the stack when its response body has been read to the end; one whose response was
//! abandoned (client gone, timeout) is closed instead, as HTTP/1.1 cannot skip the rest of
//! a response. Idle connections are closed after `idle_timeout` (see [`Conns::reap`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::{Body, BoxError};
use crate::worker;

/// The connection pool of one upstream cluster: idle HTTP/1.1 connections by worker and
/// server.
pub struct Conns {
    connector: HttpsConnector<HttpConnector>,
    idle_timeout: Duration,
    /// `idle[worker][server]`.
    idle: Box<[Box<[Stack]>]>,
}

/// One worker's idle connections to one server, the most recently used last.
type Stack = Mutex<Vec<Idle>>;

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made, so nothing was sent.
    Connect(BoxError),
    /// The exchange failed on an open connection; the request may have been sent.
    Exchange(hyper::Error),
}

impl Conns {
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        workers: usize,
        servers: usize,
        idle_timeout: Duration,
    ) -> Conns {
        let idle = (0..workers.max(1))
            .map(|_| (0..servers).map(|_| Mutex::default()).collect())
            .collect();
        Conns {
            connector,
            idle_timeout,
            idle,
        }
    }

    /// Sends `req` (origin-form target, `Host` set) to server number `server`, reached at
    /// `origin`, on an idle connection of this worker or a new one. The response body
    /// returns the connection when it has been read to the end.
    pub async fn send(
        self: &Arc<Self>,
        server: usize,
        origin: &Uri,
        mut req: Request<Body>,
    ) -> Result<Response<Returning>, SendError> {
        let worker = worker::index() % self.idle.len();
        loop {
            let (mut sender, reused) = match self.take(worker, server) {
                Some(s) => (s, true),
                None => (self.connect(origin).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let lease = Some(Lease {
                        conns: self.clone(),
                        worker,
                        server,
                        sender,
                    });
                    return Ok(res.map(|inner| Returning {
                        inner,
                        lease,
                        ended: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // A kept-alive connection the server closed just before our request
                    // went out: nothing was written, so another connection may take it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection of this worker that is ready for a request.
    /// Never waits: one that is not ready (closed since) is dropped.
    fn take(&self, worker: usize, server: usize) -> Option<SendRequest<Body>> {
        loop {
            let idle = self.idle[worker][server].lock().ok()?.pop()?;
            if idle.since.elapsed() >= self.idle_timeout {
                // Everything below it on the stack is older still.
                self.idle[worker][server].lock().ok()?.clear();
                return None;
            }
            if idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
    }

    async fn connect(&self, origin: &Uri) -> Result<SendRequest<Body>, SendError> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let io = connector
            .call(origin.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(SendError::Exchange)?;
        // Runs on this worker for as long as the connection is open.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Closes the connections idle for `idle_timeout` or closed by their server. The pool
    /// calls it periodically, so quiet servers do not keep connections forever.
    pub fn reap(&self) {
        for worker in self.idle.iter() {
            for server in worker.iter() {
                if let Ok(mut list) = server.lock() {
                    list.retain(|i| i.since.elapsed() < self.idle_timeout && !i.sender.is_closed());
                }
            }
        }
    }
}

/// A connection in use; back on its stack when the response has been read.
struct Lease {
    conns: Arc<Conns>,
    worker: usize,
    server: usize,
    sender: SendRequest<Body>,
}

impl Lease {
    /// Puts the connection back on its stack once it can take a request.
    fn give_back(mut self) {
        if self.sender.is_closed() {
            return;
        }
        if self.sender.is_ready() {
            self.push();
            return;
        }
        // Still finishing the exchange: an upload the server answered before reading it
        // all, or the connection's task has not yet seen the end of the response. Waiting
        // happens off the request path, never longer than a connection may stay idle.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limit = self.conns.idle_timeout;
        rt.spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(limit, self.sender.ready()).await {
                self.push();
            }
        });
    }

    fn push(self) {
        if let Ok(mut list) = self.conns.idle[self.worker][self.server].lock() {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

/// An upstream response body that returns its connection for reuse once read to the end.
/// Dropped earlier, the connection is closed.
pub struct Returning {
    inner: Incoming,
    lease: Option<Lease>,
    ended: bool,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            // A failed exchange leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // hyper stops polling a body once it reports its end, so a length-delimited body
        // read to the end may never have answered `None`.
        if self.ended || self.inner.is_end_stream() {
            if let Some(lease) = self.lease.take() {
                lease.give_back();
            }
        }
    }
}
