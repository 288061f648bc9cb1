//! Availability limits: header read timeout, header size, connection limit.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let up = Upstream::start().await;
    let gw = gateway()
        .server("header_read_timeout = \"300ms\"")
        .route("/p", &up.url(), "public")
        .start()
        .await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /p HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Meanwhile other clients are served.
    assert_eq!(get(&gw.url("/p"), &[]).await.status, 200);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the slow connection was never closed");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let up = Upstream::start().await;
    let gw = gateway()
        .server("max_header_bytes = \"4KiB\"")
        .route("/p", &up.url(), "public")
        .start()
        .await;
    let big = "v".repeat(6000);
    get(&gw.url("/p"), &[("x-big", &big)]).await.assert_error(
        431,
        "Request Header Fields Too Large",
        "The request headers are larger than the gateway accepts",
    );
    assert!(up.requests().is_empty());
    assert_eq!(get(&gw.url("/p"), &[("x-small", "v")]).await.status, 200);
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let up = Upstream::start().await;
    let gw = gateway()
        .server("max_connections = 2")
        .route("/p", &up.url(), "public")
        .start()
        .await;
    let a = TcpStream::connect(gw.addr).await.unwrap();
    let mut b = TcpStream::connect(gw.addr).await.unwrap();
    // Make sure both are accepted and being served before the third arrives.
    b.write_all(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let third = raw(gw.addr, b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    assert!(
        third.ends_with(
            "{\"description\":\"Too many connections; retry \
             later\",\"error\":\"Service Unavailable\",\"status_code\":503}\n"
        ),
        "{third}"
    );
    drop(a);
    drop(b);
    // Freed slots are reused (the server notices the closes asynchronously).
    eventually("the freed slots to serve a new connection", async || {
        raw(
            gw.addr,
            b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .starts_with("HTTP/1.1 200")
    })
    .await;
}
