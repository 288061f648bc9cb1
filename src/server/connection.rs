//! One client connection after accept (and TLS): HTTP/1.1 or HTTP/2, a graceful drain, and
//! idle HTTP/1.1 connections parked without hyper's buffers.
//!
//! The protocol is chosen as hyper-util's auto builder chooses it: the HTTP/2 connection
//! preface (RFC 9113 section 3.4) means HTTP/2, anything else HTTP/1.1. The bytes read to
//! decide are replayed to hyper. hyper's own builders are used directly because the auto
//! builder's connection cannot hand its socket back, which parking needs (see `park.rs`).
//!
//! An HTTP/1.1 connection is served in segments, each a hyper connection on the same
//! socket. A segment ends when hyper's connection does (the client closed, an error, an
//! upgrade, a drain), or when the connection has been between requests (every response
//! sent whole, no byte of a next one read) and has moved no byte for [`Http::park_after`]
//! (checked on a timer, so a busy connection pays nothing per request for it). Then hyper is
//! asked for a graceful shutdown, which ends an idle connection at once; the socket is kept
//! and waits, with no hyper state, for the client's next bytes, its idle deadline, or the
//! drain. Should hyper's connection not be idle after all (a write stalled on a full socket),
//! it is left to finish with keep-alive off, and closes as hyper would.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::park::Parkable;
use crate::body::Body;
use crate::metrics::Metrics;

/// The HTTP/2 connection preface a client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a parked socket's closing write may take (a TLS close_notify).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The protocol settings every connection is served with.
pub struct Http {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    /// How long an HTTP/1.1 connection stays idle before it is parked; `None` never parks.
    pub park_after: Option<Duration>,
    /// How long an idle HTTP/1.1 connection may wait for its next request in all (hyper's
    /// header-read timeout, which also bounds that wait while hyper holds the connection).
    pub idle_timeout: Duration,
}

/// What a connection is served over: a TCP stream, or TLS on one.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Socket for T {}

/// What answers a connection's requests: the server's service around the pipeline.
pub trait Handler:
    Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Unpin
    + Send
    + 'static
{
}

impl<S> Handler for S where
    S: Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Unpin
        + Send
        + 'static
{
}

/// The signal that starts a drain: it changes to `true` once, and every connection holds a
/// receiver until it has closed.
pub type Drain = watch::Receiver<bool>;

/// Serves `io` until the client closes, an error, or the end of a drain.
pub async fn serve<I, S>(
    http: &Http,
    mut io: Parkable<I>,
    service: S,
    mut drain: Drain,
    metrics: &Metrics,
) -> Result<(), hyper::Error>
where
    I: Socket,
    S: Handler,
{
    // A drain does not wait for a client that has not said which protocol it speaks.
    let chosen = tokio::select! {
        chosen = is_h2(&mut io) => chosen,
        _ = drain.wait_for(|draining| *draining) => return Ok(()),
    };
    match chosen {
        Ok(true) => serve_h2(http, io, service, &mut drain).await,
        Ok(false) => serve_h1(http, io, service, &mut drain, metrics).await,
        // Timed out (the first-bytes deadline) or failed before a protocol was chosen.
        Err(e) => {
            tracing::debug!(error = %e, "connection ended before its first request");
            Ok(())
        }
    }
}

/// Reads until the bytes differ from the HTTP/2 preface or complete it, and puts them back.
async fn is_h2<I: AsyncRead + Unpin>(io: &mut Parkable<I>) -> std::io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let h2 = loop {
        if filled == buf.len() {
            break true;
        }
        let n = io.read(&mut buf[filled..]).await?;
        let read = &buf[filled..filled + n];
        filled += n;
        if n == 0 || read != &H2_PREFACE[filled - n..filled] {
            break false;
        }
    };
    io.replay(Bytes::copy_from_slice(&buf[..filled]));
    Ok(h2)
}

async fn serve_h2<I, S>(
    http: &Http,
    io: Parkable<I>,
    service: S,
    drain: &mut Drain,
) -> Result<(), hyper::Error>
where
    I: Socket,
    S: Handler,
{
    // Boxed: hyper's HTTP/2 state is large, and inline it would be part of every
    // connection's task, HTTP/1.1 ones included.
    let mut conn = Box::pin(http.http2.serve_connection(TokioIo::new(io), service));
    if *drain.borrow() {
        conn.as_mut().graceful_shutdown();
        return conn.await;
    }
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = drain.changed() => conn.as_mut().graceful_shutdown(),
    }
    conn.await
}

/// How an HTTP/1.1 segment ended.
enum Segment {
    /// hyper's connection is over, and so is the client connection.
    Ended(Result<(), hyper::Error>),
    /// hyper's idle connection ended at our request; the socket is to be parked.
    Parked,
}

async fn serve_h1<I, S>(
    http: &Http,
    mut io: Parkable<I>,
    mut service: S,
    drain: &mut Drain,
    metrics: &Metrics,
) -> Result<(), hyper::Error>
where
    I: Socket,
    S: Handler,
{
    let activity = io.activity().clone();
    // False for a segment that began with bytes hyper had buffered (a pipelined head that
    // stalled): it may not park before a request of its own has begun, or each new hyper
    // connection's fresh header-read timer would let that head stall without end.
    let mut may_park = true;
    loop {
        // Boxed: the box (hyper's connection state) is freed while the socket is parked.
        let mut conn = Box::new(
            http.http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        let ended = match http.park_after {
            Some(after) => run_segment(&mut conn, after, may_park, &activity, drain).await,
            None => Segment::Ended(run_to_end(&mut conn, drain).await),
        };
        match ended {
            Segment::Ended(r) => return r,
            Segment::Parked => {}
        }
        activity.set_parking(false);
        // An upgraded connection never parks (its segment ends as `Ended`).
        let Some(parts) = conn.into_parts() else {
            return Ok(());
        };
        io = parts.io.into_inner();
        service = parts.service;
        // Moved out even when empty: the (empty) bytes still hold hyper's whole read buffer.
        let read_buf = parts.read_buf;
        // Blank lines before a request are ignored (RFC 9112 section 2.2): with only those
        // left over, the connection still parks.
        if !read_buf.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            // The start of a pipelined head, read with the request before it: serve it.
            io.replay(read_buf);
            may_park = false;
            continue;
        }
        may_park = true;
        drop(read_buf);
        // The park's own first read is the start of a request.
        activity.at_rest();
        metrics.parked_connections.inc();
        let woke = park(&mut io, http, drain).await;
        metrics.parked_connections.dec();
        match woke {
            Woke::Bytes => {}
            Woke::Closed => return Ok(()),
            Woke::Deadline | Woke::Drain => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.shutdown()).await;
                return Ok(());
            }
        }
    }
}

type H1<I, S> = http1::UpgradeableConnection<TokioIo<Parkable<I>>, S>;

/// A segment without parking: until hyper's connection ends, shut gracefully on a drain.
async fn run_to_end<I, S>(conn: &mut H1<I, S>, drain: &mut Drain) -> Result<(), hyper::Error>
where
    I: Socket,
    S: Handler,
{
    if !*drain.borrow() {
        tokio::select! {
            r = &mut *conn => return r,
            _ = drain.changed() => {}
        }
    }
    Pin::new(&mut *conn).graceful_shutdown();
    conn.await
}

/// Runs hyper's connection until it ends, or until it has been idle for `after` and has
/// ended at our request (see the module doc).
async fn run_segment<I, S>(
    conn: &mut H1<I, S>,
    after: Duration,
    mut may_park: bool,
    activity: &super::park::Activity,
    drain: &mut Drain,
) -> Segment
where
    I: Socket,
    S: Handler,
{
    if *drain.borrow() {
        return Segment::Ended(run_to_end(conn, drain).await);
    }
    let tick = tokio::time::sleep(after);
    tokio::pin!(tick);
    let started = activity.mark();
    let mut seen = started;
    loop {
        tokio::select! {
            biased;
            r = &mut *conn => return Segment::Ended(r),
            _ = drain.changed() => return Segment::Ended(run_to_end(conn, drain).await),
            () = tick.as_mut() => {
                may_park = may_park || activity.requested_since(started);
                if may_park && activity.idle_since(seen) {
                    activity.set_parking(true);
                    Pin::new(&mut *conn).graceful_shutdown();
                    // An idle hyper connection ends within this poll; a busy one carries
                    // on with keep-alive off, and closes the socket when it is done.
                    match poll_fn(|cx| Poll::Ready(Pin::new(&mut *conn).poll(cx))).await {
                        Poll::Ready(Ok(())) => return Segment::Parked,
                        Poll::Ready(Err(e)) => return Segment::Ended(Err(e)),
                        Poll::Pending => {
                            activity.set_parking(false);
                            return Segment::Ended(run_to_end(conn, drain).await);
                        }
                    }
                }
                seen = activity.mark();
                tick.as_mut().reset(Instant::now() + after);
            }
        }
    }
}

/// How a parked socket woke.
enum Woke {
    /// The client sent bytes; they are replayed to the next segment.
    Bytes,
    /// The client closed (or the socket failed).
    Closed,
    /// The connection has been idle for its whole idle timeout.
    Deadline,
    Drain,
}

/// Waits, holding only the socket, for the client's next bytes.
async fn park<I: AsyncRead + Unpin>(io: &mut Parkable<I>, http: &Http, drain: &mut Drain) -> Woke {
    // hyper's header-read timer ran for at least `park_after` before the park.
    let rest = http
        .idle_timeout
        .saturating_sub(http.park_after.unwrap_or_default());
    // Small: it is part of every connection task's state, parked or not.
    let mut first = [0u8; 64];
    tokio::select! {
        read = io.read(&mut first) => match read {
            Ok(0) | Err(_) => Woke::Closed,
            Ok(n) => {
                io.replay(Bytes::copy_from_slice(&first[..n]));
                Woke::Bytes
            }
        },
        () = tokio::time::sleep(rest) => Woke::Deadline,
        _ = drain.changed() => Woke::Drain,
    }
}
