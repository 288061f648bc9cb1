//! Availability: slow and idle connections must not stop the gateway from serving others,
//! and must not outlive their timeouts. Counts and times are bounded (a few hundred
//! sockets, sub-second timeouts); every wait is on an event, with a cap that fails the test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::support::*;

const CAP: Duration = Duration::from_secs(5);

async fn short_timeouts() -> Target {
    target_with(
        gateway()
            .server("header_read_timeout = \"400ms\"")
            .server("shutdown_grace = \"3s\""),
    )
    .await
}

/// Waits for the server to close `s` (EOF or reset), reading and discarding any answer
/// (hyper may send 408 first). Fails the test after the cap.
async fn closed_by_server(s: &mut TcpStream, case: &str) {
    let mut buf = [0u8; 1024];
    let done = tokio::time::timeout(CAP, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(done.is_ok(), "{case}: the server kept the connection open");
}

async fn served_promptly(t: &Target, case: &str) {
    let r = tokio::time::timeout(CAP, t.with_token(&token()))
        .await
        .unwrap_or_else(|_| panic!("{case}: a normal request was not served"));
    assert_eq!(r.status, 200, "{case}");
}

#[tokio::test]
async fn slowloris_heads_are_cut_off_and_others_are_served() {
    let t = short_timeouts().await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
        s.write_all(b"GET /api/secret HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    served_promptly(&t, "100 slow heads open").await;
    for s in &mut slow {
        closed_by_server(s, "slow head").await;
    }
    served_promptly(&t, "after slow heads").await;
    let forwarded = t.forwarded();
    assert_eq!(forwarded, 2, "only the two normal requests were forwarded");
}

/// Regression: a connection that sent nothing was never closed (hyper-util's h1/h2
/// detection has no deadline, and hyper's header-read timer starts after it), so idle
/// sockets could exhaust the gateway's file descriptors.
#[tokio::test]
async fn idle_connections_are_cut_off_and_others_are_served() {
    let t = short_timeouts().await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(t.gw.addr).await.unwrap());
    }
    served_promptly(&t, "200 idle connections open").await;
    for s in &mut idle {
        closed_by_server(s, "idle connection").await;
    }
    // A prefix of the HTTP/2 preface, then silence: the same deadline.
    let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_by_server(&mut s, "partial h2 preface").await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_cut_off() {
    let t = short_timeouts().await;
    let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
    let req = format!(
        "GET /api/secret HTTP/1.1\r\nHost: gw\r\nAuthorization: JWT {}\r\n\r\n",
        token()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the answer, then stay silent: the next head must arrive in time too.
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    closed_by_server(&mut s, "idle keep-alive").await;
}

#[tokio::test]
async fn slow_bodies_do_not_block_others_and_leave_no_task_behind() {
    let t = short_timeouts().await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
        s.write_all(
            b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\nabc",
        )
        .await
        .unwrap();
        slow.push(s);
    }
    served_promptly(&t, "50 slow bodies open").await;
    // Unauthenticated slow bodies on a required route are refused without reading them.
    let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
    s.write_all(b"POST /api/secret HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\nabc")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(CAP, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The clients give up; the gateway then drains cleanly: no connection task is stuck.
    drop(slow);
    drop(s);
    let Target { gw, up } = t;
    let drained = tokio::time::timeout(CAP, gw.stop())
        .await
        .expect("drain hung");
    assert_eq!(drained, gateway::server::Drained::Clean);
    for seen in up.requests() {
        assert!(
            seen.target.starts_with("/public") || seen.headers["x-identity"] == "1",
            "{seen:?}"
        );
    }
}
