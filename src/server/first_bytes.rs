//! A deadline on a connection's first bytes.
//!
//! The HTTP/1-or-2 choice (`connection.rs`) reads up to the 24-byte HTTP/2 preface, and
//! hyper's `header_read_timeout` only starts once that is done: without a deadline, a client that
//! connects and sends nothing (or a prefix of the preface) would hold its socket and task
//! forever. [`FirstBytes`] fails the read with `TimedOut` when those bytes have not arrived
//! by the deadline; after them it is a plain pass-through and hyper's own timers apply.
//!
//! It also lingers on close, as nginx does, once the pipeline has refused a request whose
//! body it may not have read (the shared `armed` flag): when hyper then shuts the
//! connection down while the client is still sending (a body refused with 413), closing at
//! once would make the kernel answer the client's next bytes with a reset, which destroys
//! the response the client has not read yet. After shutting down its write side the
//! connection keeps reading and discarding, for [`LINGER_TIME`] or [`LINGER_BYTES`] at most,
//! until the client closes. Unarmed (every other close, upgraded connections included) it
//! shuts down at once: draining there would swallow what a client sends after a half-close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Bytes the protocol detection reads before hyper takes over (the HTTP/2 preface length).
const DETECTION_BYTES: usize = 24;

/// How long a closing connection keeps draining what its client still sends.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much a closing connection drains at most.
const LINGER_BYTES: usize = 1 << 20;

/// An I/O object whose first [`DETECTION_BYTES`] must arrive within a deadline, and which
/// lingers on shutdown.
pub struct FirstBytes<I> {
    io: I,
    /// `None` once the first bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
    /// Whether closing should linger; set by the pipeline (see the module doc).
    armed: Arc<AtomicBool>,
    /// Set once the write side is shut: draining until the client closes.
    linger: Option<Linger>,
}

struct Linger {
    until: Pin<Box<Sleep>>,
    drained: usize,
}

impl<I> FirstBytes<I> {
    pub fn new(io: I, timeout: Duration, armed: Arc<AtomicBool>) -> FirstBytes<I> {
        FirstBytes {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            read: 0,
            armed,
            linger: None,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytes<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let this = &mut *self;
        let Some(deadline) = &mut this.deadline else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                this.read += buf.filled().len() - before;
                if this.read >= DETECTION_BYTES || buf.filled().len() == before {
                    // Detection is over (or the peer closed): hyper's timers take over.
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Still waiting: the deadline's timer is registered alongside the socket.
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request head before the header read timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FirstBytes<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.armed.load(Ordering::Relaxed) {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        }
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                drained: 0,
            });
        }
        let Some(linger) = &mut this.linger else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                // The client closed, or the connection failed: nothing left to protect.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    linger.drained += buf.filled().len();
                    if linger.drained >= LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending => {
                    return match linger.until.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silent_peers_time_out_and_talkative_ones_do_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = FirstBytes::new(server, Duration::from_millis(50), Arc::default());
        let mut buf = [0u8; 8];
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut io = FirstBytes::new(server, Duration::from_secs(60), Arc::default());
        client.write_all(&[b'x'; DETECTION_BYTES]).await.unwrap();
        let mut buf = [0u8; DETECTION_BYTES];
        io.read_exact(&mut buf).await.unwrap();
        // Past the first bytes, silence is hyper's business, not ours.
        assert!(io.deadline.is_none(), "the deadline still applies");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_until_the_client_closes_or_the_linger_time_ends() {
        let armed = || Arc::new(AtomicBool::new(true));
        // A client still sending when the server closes: drained until it hangs up.
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = FirstBytes::new(server, Duration::from_secs(60), armed());
        client.write_all(&[b'x'; 10_000]).await.unwrap();
        let shut = tokio::spawn(async move { io.shutdown().await });
        client.write_all(&[b'y'; 10_000]).await.unwrap();
        // Our side is shut for writing: the client reads end of stream.
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(client);
        shut.await.unwrap().unwrap();

        // A client that never closes is let go after the linger time.
        let (_client, server) = tokio::io::duplex(64);
        let mut io = FirstBytes::new(server, Duration::from_secs(60), armed());
        let started = tokio::time::Instant::now();
        io.shutdown().await.unwrap();
        assert!(started.elapsed() >= LINGER_TIME);
    }

    #[tokio::test(start_paused = true)]
    async fn unarmed_shutdown_does_not_read() {
        // An ordinary close (or an upgraded connection's half-close) reads nothing: bytes
        // the client sends afterwards stay for whoever reads this connection next.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = FirstBytes::new(server, Duration::from_secs(60), Arc::default());
        client.write_all(b"after").await.unwrap();
        let started = tokio::time::Instant::now();
        io.shutdown().await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        let mut buf = [0u8; 5];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"after");
    }
}
