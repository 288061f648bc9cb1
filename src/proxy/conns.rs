//! HTTP/1.1 upstream connections kept open between requests: for each worker thread and
//! server, a stack of idle connections (the most recently used on top).
//!
//! A connection has no task of its own: whoever holds it drives it. While a request is in
//! flight that is the request's own task (the client connection's, for HTTP/1.1 clients):
//! the send polls hyper's client connection next to the response future, and the response
//! body polls it as it streams, so the request, its answer and their bodies never cross a
//! task boundary or wake a second task. Parked on its stack a connection is polled by no
//! one but [`Conns::reap`]; it is polled once as it is parked (to take in the end of its
//! exchange). One the server closed while it was parked notices when the next request
//! drives it: hyper then hands that request back unsent, and the next connection takes it.
//!
//! A worker only reuses the connections it drives itself, so taking or returning one is an
//! uncontended lock, and a request never waits on another thread. A connection goes back
//! on the stack when its response body has been read to the end; one whose response was
//! abandoned (client gone, timeout) is closed instead, as HTTP/1.1 cannot skip the rest of
//! a response. Idle connections are closed after `idle_timeout` (see [`Conns::reap`]).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
    upstream: Box<Upstream>,
    since: Instant,
}

/// One HTTP/1.1 connection to a server: hyper's request handle and the connection itself,
/// which makes progress only while someone polls it ([`Upstream::drive`]). Boxed once
/// when connected: a connection (TLS state included) is a few hundred bytes, and a request
/// moves its connection from the stack to the send, the lease and the response body.
struct Upstream {
    sender: SendRequest<Body>,
    /// `None` once the connection has ended.
    conn: Option<Connection<MaybeHttpsStream<TokioIo<TcpStream>>, Body>>,
    relay: Arc<Relay>,
    /// `relay` as the waker the connection registers; made once.
    waker: Waker,
}

impl Upstream {
    fn new(
        sender: SendRequest<Body>,
        conn: Connection<MaybeHttpsStream<TokioIo<TcpStream>>, Body>,
    ) -> Upstream {
        let relay = Arc::new(Relay::default());
        Upstream {
            sender,
            conn: Some(conn),
            waker: Waker::from(relay.clone()),
            relay,
        }
    }

    /// Runs `f`, which drives the connection and polls what it feeds, for the task of `cx`:
    /// the connection's wake-ups go to that task from now on, except those raised while
    /// `f` runs. Those come from the task's own work on the connection's channels (taking
    /// the response body's chunk wakes the connection, which is waiting to send the
    /// next); passed on, each would make the runtime poll the whole client connection
    /// once more for nothing. One that came is passed on after all if `f` ends pending,
    /// so nothing the connection waits for is lost.
    fn poll_driving<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Upstream) -> Poll<T>,
    ) -> Poll<T> {
        self.relay.follow(Some(cx.waker()));
        self.relay.state.store(DRIVING, Ordering::Release);
        let polled = f(self);
        if self.relay.state.swap(IDLE, Ordering::AcqRel) == MISSED && polled.is_pending() {
            cx.waker().wake_by_ref();
        }
        polled
    }

    /// Lets the connection do whatever it can without waiting: write the request and its
    /// body, read the response, notice a close.
    fn drive(&mut self) {
        if let Some(conn) = &mut self.conn {
            if let Poll::Ready(ended) = Pin::new(conn).poll(&mut Context::from_waker(&self.waker)) {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                self.conn = None;
            }
        }
    }

    /// Drives the connection for no task: it goes idle, and wakes nobody while parked.
    fn park(&mut self) {
        self.relay.follow(None);
        self.drive();
    }

    /// Open, and ready to take a request now.
    fn is_ready(&self) -> bool {
        self.conn.is_some() && self.sender.is_ready()
    }
}

const IDLE: u8 = 0;
const DRIVING: u8 = 1;
const MISSED: u8 = 2;

/// The waker a connection registers: it wakes the task that drives the connection, or
/// notes the wake-up while that task is inside [`Upstream::poll_driving`].
#[derive(Default)]
struct Relay {
    task: Mutex<Option<Waker>>,
    /// `IDLE`, `DRIVING`, or `MISSED` (driving, and a wake-up came).
    state: AtomicU8,
}

impl Relay {
    fn follow(&self, task: Option<&Waker>) {
        if let Ok(mut current) = self.task.lock() {
            match (current.as_ref(), task) {
                (Some(c), Some(t)) if c.will_wake(t) => {}
                _ => *current = task.cloned(),
            }
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Err(IDLE) =
            self.state
                .compare_exchange(DRIVING, MISSED, Ordering::AcqRel, Ordering::Acquire)
        {
            if let Some(task) = self.task.lock().ok().as_deref().and_then(Option::as_ref) {
                task.wake_by_ref();
            }
        }
    }
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
    /// `origin`, on an idle connection of this worker or a new one, driving the connection
    /// from the calling task until the response head is in. The response body drives it
    /// on as it is read and returns it when read to the end.
    pub async fn send(
        self: &Arc<Self>,
        server: usize,
        origin: &Uri,
        mut req: Request<Body>,
    ) -> Result<Response<Returning>, SendError> {
        let worker = worker::index() % self.idle.len();
        loop {
            let (mut upstream, reused) = match self.take(worker, server) {
                Some(u) => (u, true),
                // Boxed: connecting (TCP, perhaps TLS, hyper's handshake) is rare on a
                // kept-alive pool, and its future would otherwise make every send larger.
                None => (Box::pin(self.connect(origin)).await?, false),
            };
            let mut response = pin!(upstream.sender.try_send_request(req));
            // The request goes out, and its answer comes in, as this task drives the
            // connection; the response future resolves once the head has been read (or
            // the connection failed, which hands it the error). Only the drive can
            // complete it, and it is polled right after each drive: it needs no waker.
            let answered = poll_fn(|cx| {
                upstream.poll_driving(cx, |upstream| {
                    upstream.drive();
                    response
                        .as_mut()
                        .poll(&mut Context::from_waker(Waker::noop()))
                })
            })
            .await;
            match answered {
                Ok(res) => {
                    let lease = Lease {
                        conns: self.clone(),
                        worker,
                        server,
                        upstream,
                    };
                    return Ok(res.map(|inner| Returning {
                        inner,
                        lease: Some(lease),
                        reusable: true,
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
    fn take(&self, worker: usize, server: usize) -> Option<Box<Upstream>> {
        loop {
            let idle = self.idle[worker][server].lock().ok()?.pop()?;
            if idle.since.elapsed() >= self.idle_timeout {
                // Everything below it on the stack is older still.
                self.idle[worker][server].lock().ok()?.clear();
                return None;
            }
            // Not driven here: one the server closed while it was parked hands the
            // request back unsent when it is driven, and `send` tries the next.
            if idle.upstream.is_ready() {
                return Some(idle.upstream);
            }
        }
    }

    async fn connect(&self, origin: &Uri) -> Result<Box<Upstream>, SendError> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let io = connector
            .call(origin.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(SendError::Exchange)?;
        Ok(Box::new(Upstream::new(sender, conn)))
    }

    /// Closes the connections idle for `idle_timeout` or closed by their server. The pool
    /// calls it periodically, so quiet servers do not keep connections forever.
    pub fn reap(&self) {
        for worker in self.idle.iter() {
            for server in worker.iter() {
                if let Ok(mut list) = server.lock() {
                    list.retain_mut(|i| {
                        // Takes in a close from the server, if one came.
                        i.upstream.drive();
                        i.since.elapsed() < self.idle_timeout && i.upstream.is_ready()
                    });
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
    upstream: Box<Upstream>,
}

impl Lease {
    /// Puts the connection back on its stack once it can take a request.
    fn give_back(mut self) {
        // The end of the exchange may still be unseen by the connection (it has read the
        // last bytes but not yet turned idle): let it catch up.
        self.upstream.park();
        if self.upstream.conn.is_none() || self.upstream.sender.is_closed() {
            return;
        }
        if self.upstream.is_ready() {
            self.push();
            return;
        }
        // Still finishing the exchange: an upload the server answered before reading it
        // all. A task of its own drives it off the request path, never longer than a
        // connection may stay idle, and parks it if it comes out ready.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limit = self.conns.idle_timeout;
        rt.spawn(async move {
            let ready = poll_fn(|cx| {
                self.upstream.poll_driving(cx, |upstream| {
                    upstream.drive();
                    match (upstream.conn.is_some(), upstream.sender.is_ready()) {
                        (false, _) => Poll::Ready(false),
                        (true, true) => Poll::Ready(true),
                        (true, false) => Poll::Pending,
                    }
                })
            });
            if let Ok(true) = tokio::time::timeout(limit, ready).await {
                self.push();
            }
        });
    }

    fn push(self) {
        if let Ok(mut list) = self.conns.idle[self.worker][self.server].lock() {
            list.push(Idle {
                upstream: self.upstream,
                since: Instant::now(),
            });
        }
    }
}

/// An upstream response body that drives its connection as it is read and returns the
/// connection for reuse once read to the end. Dropped earlier, the connection is closed.
pub struct Returning {
    inner: Incoming,
    /// The connection, held until the body is dropped (it feeds `inner`).
    lease: Option<Lease>,
    /// False once the body failed: the connection is then unusable.
    reusable: bool,
    ended: bool,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let inner = &mut this.inner;
        // Only the connection fills `inner`, as it is driven here: `inner` needs no waker.
        let mut unwatched = Context::from_waker(Waker::noop());
        let polled = match &mut this.lease {
            Some(lease) => lease.upstream.poll_driving(cx, |upstream| {
                // What the connection has already read comes first; the connection is
                // driven to read more only when there is none.
                match Pin::new(&mut *inner).poll_frame(&mut unwatched) {
                    Poll::Pending => {
                        upstream.drive();
                        Pin::new(&mut *inner).poll_frame(&mut unwatched)
                    }
                    ready => ready,
                }
            }),
            // Only `drop` takes the lease.
            None => Pin::new(inner).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => this.reusable = false,
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
        if self.reusable && (self.ended || self.inner.is_end_stream()) {
            if let Some(lease) = self.lease.take() {
                lease.give_back();
            }
        }
    }
}
