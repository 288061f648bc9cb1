//! The I/O object under hyper that lets an idle HTTP/1.1 connection be parked.
//!
//! hyper holds an 8 KiB read buffer and an 8 KiB write buffer for every HTTP/1.1 connection
//! for as long as it lives, idle or not, and has no option to give them back (its
//! `max_buf_size` cannot go below 8 KiB). nginx frees its buffers between requests, so an
//! idle keep-alive connection cost 18.7 KB here against its 0.4. The server therefore ends
//! hyper's connection object once the connection has been idle for a while, keeps the socket,
//! and starts a new hyper connection on it when the client's next bytes arrive (see
//! `connection.rs`). hyper's own API does the hard part: a graceful shutdown closes an idle
//! connection at once, and `into_parts` hands back the socket with any bytes read but not
//! parsed.
//!
//! [`Parkable`] is what hyper reads and writes through. It replays bytes already read (the
//! protocol detection's, hyper's leftovers, a parked socket's first bytes) before reading the
//! socket again, records in [`Activity`] whether bytes moved, and skips the socket shutdown
//! hyper performs when its connection ends while a park is under way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Response;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{Body, BoxError};

/// What an idle check reads: whether bytes moved or requests ran since the last look, and
/// whether the connection is between requests.
#[derive(Debug, Default)]
pub struct Activity {
    /// Reads that brought bytes. Only the connection's own task writes it.
    reads: AtomicU32,
    /// Writes that sent bytes. Likewise.
    writes: AtomicU32,
    /// `reads` when the connection was last at rest (its responses all sent, or a park
    /// begun). Bytes read since are a request begun, which hyper holds.
    reads_at_rest: AtomicU32,
    /// Requests begun on this connection.
    requests: AtomicU32,
    /// Requests whose response has not been sent whole yet.
    in_flight: AtomicU32,
    /// While set, hyper's shutdown of the socket is skipped: the socket is being parked.
    parking: AtomicBool,
    /// Set while a write or flush waits for the socket (a client that does not read): hyper
    /// is not idle then, even with every response handed over.
    write_blocked: AtomicBool,
}

/// What [`Activity::mark`] returns: unchanged marks mean nothing happened in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    reads: u32,
    writes: u32,
    requests: u32,
}

impl Activity {
    /// Counts a request until the returned guard is dropped: hand it to [`track`] with the
    /// response, so that a response body that stalls still counts as activity.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The counters now, to compare with a later mark.
    pub fn mark(&self) -> Mark {
        Mark {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Whether nothing happened since `mark`, and the connection is between requests: no
    /// response is being produced or sent, and no byte of a next request has come.
    pub fn idle_since(&self, mark: Mark) -> bool {
        self.mark() == mark
            && self.in_flight.load(Ordering::Relaxed) == 0
            && mark.reads == self.reads_at_rest.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
    }

    /// Whether a request has begun since `mark`.
    pub fn requested_since(&self, mark: Mark) -> bool {
        self.requests.load(Ordering::Relaxed) != mark.requests
    }

    /// Records that the connection is between requests now.
    pub fn at_rest(&self) {
        let reads = self.reads.load(Ordering::Relaxed);
        self.reads_at_rest.store(reads, Ordering::Relaxed);
    }

    pub fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }
}

/// Adds one to a counter only the connection's task writes: a plain load and store, not
/// a read-modify-write, as this runs for every read and write.
fn bump(counter: &AtomicU32) {
    let n = counter.load(Ordering::Relaxed);
    counter.store(n.wrapping_add(1), Ordering::Relaxed);
}

/// A request in flight; see [`Activity::begin`].
pub struct InFlight(Arc<Activity>);

/// `res` with `in_flight` held until its body has been sent (or dropped).
///
/// Why a body that is still streaming matters: hyper's graceful shutdown of a connection
/// that is not idle turns keep-alive off, so a park tried during a pause in a long
/// response (an upstream that streams slowly) would cost the client its connection.
pub fn track(res: Response<Body>, in_flight: InFlight) -> Response<Body> {
    if res.body().is_end_stream() {
        return res;
    }
    res.map(|body| {
        Tracked {
            body,
            _in_flight: in_flight,
        }
        .boxed()
    })
}

/// A response body and its [`InFlight`] guard.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.at_rest();
        }
    }
}

/// An I/O object that replays bytes already read, and can be parked; see the module doc.
pub struct Parkable<I> {
    io: I,
    replay: Bytes,
    activity: Arc<Activity>,
}

impl<I> Parkable<I> {
    pub fn new(io: I) -> Parkable<I> {
        Parkable {
            io,
            replay: Bytes::new(),
            activity: Arc::default(),
        }
    }

    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Makes `bytes` the next bytes read, ahead of any not yet replayed.
    pub fn replay(&mut self, bytes: Bytes) {
        if self.replay.is_empty() {
            self.replay = bytes;
        } else {
            let mut joined = Vec::with_capacity(bytes.len() + self.replay.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.replay);
            self.replay = joined.into();
        }
    }
}

impl<I> Parkable<I> {
    /// Records what a write did: bytes sent, or the socket full.
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {}
            Poll::Ready(Ok(_)) => {
                bump(&self.activity.writes);
                self.activity.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.activity.write_blocked.store(true, Ordering::Relaxed),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Parkable<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() != before {
            bump(&this.activity.reads);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Parkable<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.activity
            .write_blocked
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.parking.load(Ordering::Relaxed) {
            // hyper ended its connection because we parked it: the socket stays open.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replayed_bytes_come_first_and_in_order() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Parkable::new(server);
        client.write_all(b" world").await.unwrap();
        drop(client);
        io.replay(Bytes::from_static(b"lo"));
        io.replay(Bytes::from_static(b"hel"));
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn idle_means_nothing_moved_and_between_requests() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Parkable::new(server);
        let activity = io.activity().clone();
        let mark = activity.mark();
        assert!(activity.idle_since(mark));
        // Replayed bytes are not news: they were counted when first read.
        io.replay(Bytes::from_static(b"x"));
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        assert!(activity.idle_since(mark));

        // Bytes read: not idle since, and not idle later either, until a request ends.
        client.write_all(b"y").await.unwrap();
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        assert!(!activity.idle_since(mark));
        let mark = activity.mark();
        assert!(!activity.idle_since(mark), "a request head has begun");
        let request = activity.begin();
        let mark = activity.mark();
        assert!(
            !activity.idle_since(mark),
            "a request in flight is not idle"
        );
        drop(request);
        assert!(activity.idle_since(mark), "its end is a rest");

        let mark = activity.mark();
        io.write_all(b"z").await.unwrap();
        assert!(!activity.idle_since(mark));
        let mark = activity.mark();
        assert!(activity.idle_since(mark));

        // Two in flight (HTTP/2 streams): at rest only once both have ended.
        client.write_all(b"w").await.unwrap();
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        let (a, b) = (activity.begin(), activity.begin());
        drop(a);
        let mark = activity.mark();
        assert!(!activity.idle_since(mark));
        drop(b);
        assert!(activity.idle_since(mark));
    }

    #[tokio::test]
    async fn a_write_the_client_does_not_read_is_not_idle() {
        let (client, server) = tokio::io::duplex(16);
        let mut io = Parkable::new(server);
        let activity = io.activity().clone();
        // Fills the pipe; the rest of the write waits for a reader that never comes.
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), io.write_all(&[b'x'; 64])).await;
        assert!(blocked.is_err(), "the write went through");
        let mark = activity.mark();
        assert!(!activity.idle_since(mark));
        drop(client);
    }

    #[tokio::test]
    async fn a_park_skips_the_shutdown_and_anything_else_does_not() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Parkable::new(server);
        io.activity().set_parking(true);
        io.shutdown().await.unwrap();
        // Still open both ways.
        io.write_all(b"a").await.unwrap();
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"a");

        io.activity().set_parking(false);
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the client sees the end of the stream");
    }
}
