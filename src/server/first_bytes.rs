//! A deadline on a connection's first bytes.
//!
//! hyper-util's HTTP/1-or-2 detection reads up to the 24-byte HTTP/2 preface with no
//! timeout, and hyper's `header_read_timeout` only starts once that is done: a client that
//! connects and sends nothing (or a prefix of the preface) would hold its socket and task
//! forever. [`FirstBytes`] fails the read with `TimedOut` when those bytes have not arrived
//! by the deadline; after them it is a plain pass-through and hyper's own timers apply.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Bytes the protocol detection reads before hyper takes over (the HTTP/2 preface length).
const DETECTION_BYTES: usize = 24;

/// An I/O object whose first [`DETECTION_BYTES`] must arrive within a deadline.
pub struct FirstBytes<I> {
    io: I,
    /// `None` once the first bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
}

impl<I> FirstBytes<I> {
    pub fn new(io: I, timeout: Duration) -> FirstBytes<I> {
        FirstBytes {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            read: 0,
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

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstBytes<I> {
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
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silent_peers_time_out_and_talkative_ones_do_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = FirstBytes::new(server, Duration::from_millis(50));
        let mut buf = [0u8; 8];
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut io = FirstBytes::new(server, Duration::from_secs(60));
        client.write_all(&[b'x'; DETECTION_BYTES]).await.unwrap();
        let mut buf = [0u8; DETECTION_BYTES];
        io.read_exact(&mut buf).await.unwrap();
        // Past the first bytes, silence is hyper's business, not ours.
        assert!(io.deadline.is_none(), "the deadline still applies");
    }
}
