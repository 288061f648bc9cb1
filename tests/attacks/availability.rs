//! Availability: slow and idle connections and HTTP/2 floods (rapid reset, CONTINUATION,
//! on hand-made h2c frames) must not stop the gateway from serving others, and slow or
//! idle connections must not outlive their timeouts. Counts and times are bounded (a few hundred
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
        "GET /api/secret HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        jwt_header(&token())
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

/// One HTTP/2 frame: 9-byte header, then the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// HPACK for `GET /api/secret` on `gw` (static-table indexes, literal values, no Huffman).
fn request_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x44); // :path, literal with incremental indexing, indexed name 4
    b.push(11);
    b.extend_from_slice(b"/api/secret");
    b.push(0x41); // :authority
    b.push(2);
    b.extend_from_slice(b"gw");
    b
}

/// Reads one HTTP/2 frame; returns its 9-byte header (the payload is read and dropped).
async fn read_frame(s: &mut TcpStream) -> std::io::Result<[u8; 9]> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok(head)
}

/// Reads frames until a PING ACK (the server got through everything before it) or the
/// connection ends. Returns whether a GOAWAY was seen and whether the connection ended.
async fn until_ping_ack(s: &mut TcpStream) -> (bool, bool) {
    let mut goaway = false;
    let read = async {
        loop {
            let Ok(head) = read_frame(s).await else {
                return true;
            };
            match (head[3], head[4]) {
                (GOAWAY, _) => goaway = true,
                (PING, 0x1) => return false,
                _ => {}
            }
        }
    };
    let ended = tokio::time::timeout(CAP, read)
        .await
        .expect("neither a PING ACK nor a close");
    (goaway, ended)
}

/// Sends one complete request on `stream` and waits for its response HEADERS: proof that
/// the hand-made frames are valid HTTP/2, so a flood that follows is read as one.
async fn h2_round_trip(s: &mut TcpStream, stream: u32) {
    let req = frame(HEADERS, END_STREAM | END_HEADERS, stream, &request_block());
    s.write_all(&req).await.unwrap();
    let read = async {
        loop {
            let head = read_frame(s).await.unwrap();
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            assert_ne!(head[3], GOAWAY, "the server refused the hand-made frames");
            if head[3] == HEADERS && id == stream {
                return;
            }
        }
    };
    tokio::time::timeout(CAP, read)
        .await
        .expect("no response to a valid h2 request");
}

#[tokio::test]
async fn h2_rapid_reset_flood_leaves_the_gateway_serving() {
    let t = short_timeouts().await;
    let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).await.unwrap();
    h2_round_trip(&mut s, 1).await;
    let mut flood = Vec::new();
    // 5000 streams opened and cancelled at once (CVE-2023-44487).
    for i in 1..=5000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &request_block(),
        ));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    flood.extend(frame(PING, 0, 0, b"rapidrst"));
    let _ = s.write_all(&flood).await;
    // Either the server calls the client off (GOAWAY / close) or it got through it all.
    let (goaway, ended) = until_ping_ack(&mut s).await;
    assert!(goaway || !ended, "the connection dropped without a GOAWAY");
    served_promptly(&t, "after a rapid-reset flood").await;
    // None of the cancelled requests carried a token: none was forwarded.
    assert_eq!(t.forwarded(), 1);
    drop(s);
    let Target { gw, up: _up } = t;
    let drained = tokio::time::timeout(CAP, gw.stop())
        .await
        .expect("drain hung");
    assert_eq!(drained, gateway::server::Drained::Clean);
}

#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    let t = short_timeouts().await;
    let mut s = TcpStream::connect(t.gw.addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).await.unwrap();
    h2_round_trip(&mut s, 1).await;
    let flood = frame(HEADERS, END_STREAM, 3, &request_block());
    // Literal header fields (new name, no indexing), 134 bytes each, 7 per frame: a header
    // block that never ends (CVE-2024-27316 and kin). 4 MiB is far past any header limit.
    let mut field = vec![0x00, 5];
    field.extend_from_slice(b"x-aaa");
    field.push(126);
    field.extend_from_slice(&[b'v'; 126]);
    let chunk: Vec<u8> = field.repeat(7);
    let one = frame(CONTINUATION, 0, 3, &chunk);
    let frames = 4 * 1024 * 1024 / one.len();
    let writer = async {
        if s.write_all(&flood).await.is_err() {
            return false;
        }
        for _ in 0..frames {
            if s.write_all(&one).await.is_err() {
                return false;
            }
        }
        true
    };
    // The server must stop reading (GOAWAY and close) long before the flood ends; a write
    // that fails, or a close afterwards, both show it.
    let wrote_all = tokio::time::timeout(CAP, writer).await.unwrap_or(false);
    if wrote_all {
        closed_by_server(&mut s, "an endless header block").await;
    }
    served_promptly(&t, "after a CONTINUATION flood").await;
    assert_eq!(t.forwarded(), 1);
}
