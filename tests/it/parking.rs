//! Idle HTTP/1.1 keep-alive connections parked without hyper's buffers: the next request on
//! the same socket is served (also one whose head arrives in pieces), a parked connection
//! still ends at its idle timeout and at a drain, a stalled head is not stretched by parks,
//! and a slow answer or a pausing response body keeps its keep-alive.
//!
//! `park_idle_after` is short here, and every wait is on the `gateway_parked_connections`
//! gauge or on the socket, with a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const CAP: Duration = Duration::from_secs(5);

pub(crate) fn parking(idle_timeout: &str) -> GatewayBuilder {
    gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .server("park_idle_after = \"50ms\"")
        .server(&format!("header_read_timeout = \"{idle_timeout}\""))
}

/// The `gateway_parked_connections` gauge.
pub(crate) async fn parked(gw: &Gateway) -> u64 {
    gauge(gw, "gateway_parked_connections").await
}

/// A gauge without labels, from `/metrics`.
pub(crate) async fn gauge(gw: &Gateway, name: &str) -> u64 {
    let r = get(&gw.admin_url("/metrics"), &[]).await;
    let text = r.text();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits until the gateway has accepted `n` connections (all still open).
pub(crate) async fn wait_open(gw: &Gateway, n: u64) {
    eventually(&format!("{n} open connection(s)"), async || {
        gauge(gw, "gateway_open_connections").await == n
    })
    .await;
}

pub(crate) async fn wait_parked(gw: &Gateway, n: u64) {
    eventually(&format!("{n} parked connection(s)"), async || {
        parked(gw).await == n
    })
    .await;
}

fn api_request() -> String {
    format!(
        "GET /api/secret HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        jwt_header(&token())
    )
}

/// Reads one response with a `content-length` body; returns the head and the body.
async fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(CAP, async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                    return (head, body);
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed mid-response: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no complete response in time")
}

/// A parking gateway (`builder`) routing `/api` (required) to a recording upstream.
async fn api_gateway(builder: GatewayBuilder) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = builder.route("/api", &up.url(), "required").start().await;
    (up, gw)
}

/// `GET /api/secret` on `s`: a 200 that keeps the connection; returns the body.
async fn get_ok(s: &mut TcpStream) -> String {
    s.write_all(api_request().as_bytes()).await.unwrap();
    let (head, body) = read_response(s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    body
}

/// A new connection to `gw` that has been served one request.
async fn served(gw: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    get_ok(&mut s).await;
    s
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests_on_the_same_socket() {
    let (up, gw) = api_gateway(parking("10s")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(api_request().as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    wait_parked(&gw, 1).await;

    // The next head arrives in two pieces, the first while parked.
    let req = api_request();
    let (first, rest) = req.split_at(20);
    s.write_all(first.as_bytes()).await.unwrap();
    wait_parked(&gw, 0).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, "ok");

    // And it parks again, and serves again.
    wait_parked(&gw, 1).await;
    get_ok(&mut s).await;
    assert_eq!(up.requests().len(), 3);
}

#[tokio::test]
async fn a_parked_connection_still_ends_at_its_idle_timeout() {
    let (_up, gw) = api_gateway(parking("600ms")).await;
    let mut s = served(&gw).await;
    wait_parked(&gw, 1).await;
    closed_by_server(&mut s, "parked past the idle timeout").await;
    wait_parked(&gw, 0).await;
}

/// A head left half-sent after a request is still cut off by `header_read_timeout`: parking
/// (which hands hyper a new connection, with a fresh header-read timer) must not keep it
/// alive.
#[tokio::test]
async fn a_stalled_head_is_cut_off_across_parks() {
    let (up, gw) = api_gateway(parking("600ms")).await;
    let mut s = served(&gw).await;
    s.write_all(b"GET /api/secret HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        .await
        .unwrap();
    closed_by_server(&mut s, "stalled head").await;
    assert_eq!(
        up.requests().len(),
        1,
        "the stalled request was not forwarded"
    );
}

/// The same with the stalled head sent together with the request before it (pipelined):
/// hyper has read its first bytes before the connection came to rest.
#[tokio::test]
async fn a_stalled_pipelined_head_is_cut_off_across_parks() {
    let (up, gw) = api_gateway(parking("600ms")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let both = format!(
        "{}GET /api/secret HTTP/1.1\r\nHost: gw\r\nX-Slow: ",
        api_request()
    );
    s.write_all(both.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    closed_by_server(&mut s, "stalled pipelined head").await;
    assert_eq!(
        up.requests().len(),
        1,
        "the stalled request was not forwarded"
    );
}

/// A head that pauses longer than the idle window is a request begun, not idleness: it is
/// answered without `connection: close`, and the connection serves the next one.
#[tokio::test]
async fn a_head_that_pauses_keeps_its_keep_alive() {
    let (_up, gw) = api_gateway(parking("10s")).await;
    let mut s = served(&gw).await;
    wait_parked(&gw, 1).await;
    let req = api_request();
    let (first, rest) = req.split_at(30);
    s.write_all(first.as_bytes()).await.unwrap();
    wait_parked(&gw, 0).await;
    let _other = let_an_idle_window_pass(&gw).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    get_ok(&mut s).await;
}

#[tokio::test]
async fn a_drain_closes_parked_connections_at_once() {
    let (_up, gw) = api_gateway(parking("60s").server("shutdown_grace = \"30s\"")).await;
    let mut s = served(&gw).await;
    wait_parked(&gw, 1).await;
    let drained = tokio::time::timeout(CAP, gw.stop())
        .await
        .expect("the drain waited for a parked connection");
    assert_eq!(drained, gateway::server::Drained::Clean);
    closed_by_server(&mut s, "parked at the drain").await;
}

/// A client that has not yet said which protocol it speaks does not hold up a drain (it
/// waits for its first bytes up to `header_read_timeout`, 60 s here).
#[tokio::test]
async fn a_drain_does_not_wait_for_a_silent_client() {
    let (_up, gw) = api_gateway(parking("60s").server("shutdown_grace = \"30s\"")).await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // Half the HTTP/2 preface: still undecided.
    let mut half = TcpStream::connect(gw.addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    wait_open(&gw, 2).await;
    let drained = tokio::time::timeout(CAP, gw.stop())
        .await
        .expect("the drain waited for a silent client");
    assert_eq!(drained, gateway::server::Drained::Clean);
    closed_by_server(&mut silent, "silent at the drain").await;
    closed_by_server(&mut half, "half a preface at the drain").await;
}

/// A client of hyper's own, so keep-alive is judged as a real client judges it.
async fn client(
    gw: &Gateway,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

fn get_api() -> Request<Empty<Bytes>> {
    Request::get("/api/secret")
        .header("host", "gw")
        .header("authorization", jwt_header(&token()))
        .body(Empty::new())
        .unwrap()
}

/// Parks a second connection: proof that a whole idle window passed meanwhile.
/// The other connection is returned: it stays open (and parked) while it is held.
async fn let_an_idle_window_pass(
    gw: &Gateway,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (mut other, _task) = client(gw).await;
    let r = other.send_request(get_api()).await.unwrap();
    r.into_body().collect().await.unwrap();
    wait_parked(gw, 1).await;
    other
}

#[tokio::test]
async fn a_slow_answer_keeps_its_keep_alive() {
    let (slow, release) = Upstream::held("late").await;
    let fast = Upstream::start().await;
    let gw = parking("10s")
        .route("/api/slow", &slow.url(), "required")
        .route("/api", &fast.url(), "required")
        .start()
        .await;
    let (mut send, _task) = client(&gw).await;
    let req = Request::get("/api/slow")
        .header("host", "gw")
        .header("authorization", jwt_header(&token()))
        .body(Empty::new())
        .unwrap();
    let pending = send.send_request(req);
    let waiting = tokio::spawn(pending);
    slow.wait_requests(1).await;
    // The slow request is not idle: only the other connection parks.
    let _other = let_an_idle_window_pass(&gw).await;
    release.notify_one();
    let r = waiting.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
    assert_eq!(
        &r.into_body().collect().await.unwrap().to_bytes()[..],
        b"late"
    );
    // The same connection serves the next request.
    send.ready().await.unwrap();
    let r = send.send_request(get_api()).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_pausing_response_body_keeps_its_keep_alive() {
    let resume = Arc::new(tokio::sync::Notify::new());
    let r2 = resume.clone();
    let pausing = Upstream::with(Arc::new(move |_req| {
        let resume = r2.clone();
        Box::pin(async move {
            let first = stream::iter([Ok::<_, gateway::body::BoxError>(Frame::data(
                Bytes::from_static(b"first,"),
            ))]);
            let second = stream::once(async move {
                resume.notified().await;
                Ok(Frame::data(Bytes::from_static(b"second")))
            });
            Response::new(StreamBody::new(stream::StreamExt::chain(first, second)).boxed())
        })
    }))
    .await;
    let fast = Upstream::start().await;
    let gw = parking("10s")
        .route("/api/stream", &pausing.url(), "required")
        .route("/api", &fast.url(), "required")
        .start()
        .await;
    let (mut send, _task) = client(&gw).await;
    let req = Request::get("/api/stream")
        .header("host", "gw")
        .header("authorization", jwt_header(&token()))
        .body(Empty::new())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first,");
    // The body pauses for a whole idle window: the connection must not be parked, nor
    // have keep-alive turned off.
    let _other = let_an_idle_window_pass(&gw).await;
    resume.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
    send.ready().await.unwrap();
    let r = send.send_request(get_api()).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_request_with_a_body_then_a_park_then_the_next_request() {
    let (up, gw) = api_gateway(parking("10s")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let body = "x".repeat(20_000);
    let post = format!(
        "POST /api/upload HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n{body}",
        jwt_header(&token()),
        body.len()
    );
    // The body pauses halfway for a whole idle window: a request in flight, not idleness.
    let (first, rest) = post.split_at(post.len() - 10_000);
    s.write_all(first.as_bytes()).await.unwrap();
    let _other = let_an_idle_window_pass(&gw).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // Now this connection parks too (the other one of the idle window already has).
    wait_parked(&gw, 2).await;
    get_ok(&mut s).await;
    // The upload, the idle window's own request, then the next request.
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    let posts: Vec<_> = seen.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body_len, 20_000);
    assert_eq!(seen[2].target, "/api/secret");
}

/// An upgrade on a connection that was parked, and the tunnel it becomes is never parked.
#[tokio::test]
async fn an_upgrade_after_a_park_becomes_a_tunnel_that_stays() {
    let up = crate::protocols::echo_upgrade().await;
    let gw = parking("10s")
        .route("/ws", &up.url(), "required")
        .start()
        .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let plain = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        jwt_header(&token())
    );
    s.write_all(plain.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "no upgrade");
    wait_parked(&gw, 1).await;
    let upgrade = crate::protocols::websocket_request();
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // The tunnel outlives an idle window and still echoes.
    let _other = let_an_idle_window_pass(&gw).await;
    for msg in [&b"hello"[..], b"after a while"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(CAP, s.read_exact(&mut got))
            .await
            .expect("the tunnel answered")
            .unwrap();
        assert_eq!(got, msg);
    }
}

/// An HTTP/2 connection (never parked: hyper's HTTP/2 state has no such seam) keeps
/// serving after an idle window with parking on.
#[tokio::test]
async fn an_idle_http2_connection_keeps_serving() {
    let (up, gw) = api_gateway(parking("10s")).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let h2_get = || {
        Request::get(format!("http://{}/api/secret", gw.addr))
            .header("authorization", jwt_header(&token()))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let r = send.send_request(h2_get()).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    // Only the HTTP/1.1 connection of this check parks.
    let _other = let_an_idle_window_pass(&gw).await;
    let r = send.send_request(h2_get()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests().len(), 3);
}
