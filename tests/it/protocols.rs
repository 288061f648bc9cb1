//! Protocols: h2c from clients, h2 to upstreams, upgrades (WebSocket-style) after
//! authentication, trailers, `Expect: 100-continue`, and `Upgrade: h2c` not passed on.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

type FrameIter = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

fn h2_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

#[tokio::test]
async fn h2c_clients_are_authenticated_and_forwarded() {
    let up = Upstream::start().await;
    let gw = gateway().route("/api", &up.url(), "required").start().await;
    let req = Request::get(gw.url("/api/x"))
        .header("authorization", jwt_header(&token()))
        .header("x-identity", "forged")
        .body(Empty::new())
        .unwrap();
    let res = h2_client().request(req).await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-identity"], "1");
    assert_eq!(seen.version, Version::HTTP_11);
    let res = h2_client()
        .request(Request::get(gw.url("/api/x")).body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn h2_upstreams_and_trailers() {
    let up = Upstream::with(Arc::new(|_req| {
        Box::pin(async {
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                Ok(Frame::data(Bytes::from("body"))),
                Ok(Frame::trailers({
                    let mut t = http::HeaderMap::new();
                    t.insert("grpc-status", "0".parse().unwrap());
                    t
                })),
            ];
            Response::new(
                StreamBody::new(futures_util::stream::iter(frames))
                    .map_err(|e: Infallible| match e {})
                    .boxed(),
            )
        })
    }))
    .await;
    let gw = gateway()
        .route("/svc", "grpcish", "public")
        .raw(&format!(
            "[upstreams.grpcish]\nservers = [\"{}\"]\nprotocol = \"h2\"",
            up.url()
        ))
        .start()
        .await;
    let req = Request::get(gw.url("/svc"))
        .header("te", "trailers")
        .body(Empty::new())
        .unwrap();
    let res = h2_client().request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.last().version, Version::HTTP_2);
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap()),
        Some("0")
    );
    assert_eq!(collected.to_bytes(), "body");
}

/// An upstream that accepts any `Upgrade` and echoes bytes on the upgraded connection.
pub(crate) async fn echo_upgrade() -> Upstream {
    Upstream::with(Arc::new(|mut req| {
        Box::pin(async move {
            if !req.headers().contains_key("upgrade") {
                return Response::new(gateway::body::full("no upgrade"));
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on.await.unwrap());
                let mut buf = [0u8; 64];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => io.write_all(&buf[..n]).await.unwrap(),
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(gateway::body::empty())
                .unwrap()
        })
    }))
    .await
}

/// A WebSocket upgrade of `GET /ws` with a valid token.
pub(crate) fn websocket_request() -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: {}\r\n\r\n",
        jwt_header(&token())
    )
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "connection closed mid-head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn websocket_upgrades_pass_after_authentication() {
    let up = echo_upgrade().await;
    let gw = gateway().route("/ws", &up.url(), "required").start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = websocket_request();
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let seen = up.last();
    assert_eq!(seen.headers["x-identity"], "1");
    assert_eq!(seen.headers["upgrade"], "websocket");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test]
async fn upgrades_without_a_token_are_refused() {
    let up = echo_upgrade().await;
    let gw = gateway().route("/ws", &up.url(), "required").start().await;
    let r = raw(
        gw.addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn h2c_upgrade_is_not_passed_upstream() {
    let up = Upstream::start().await;
    let gw = gateway().route("/p", &up.url(), "public").start().await;
    let r = raw(
        gw.addr,
        b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = up.last();
    assert!(
        !seen.headers.contains_key("upgrade") && !seen.headers.contains_key("http2-settings"),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn expect_100_continue() {
    let up = Upstream::start().await;
    let gw = gateway().route("/p", &up.url(), "public").start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let interim = read_head(&mut s).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    s.write_all(b"hello").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = up.last();
    assert_eq!(seen.body_len, 5);
    assert!(!seen.headers.contains_key("expect"));
}

#[tokio::test]
async fn request_trailers_reach_an_h2_upstream() {
    let up = Upstream::with(Arc::new(|req| {
        Box::pin(async move {
            let collected = req.into_body().collect().await.unwrap();
            let t = collected
                .trailers()
                .and_then(|t| t.get("x-checksum"))
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            Response::new(gateway::body::full(t))
        })
    }))
    .await;
    let gw = gateway()
        .route("/up", "h2up", "public")
        .raw(&format!(
            "[upstreams.h2up]\nservers = [\"{}\"]\nprotocol = \"h2\"",
            up.url()
        ))
        .start()
        .await;
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from("data"))),
        Ok(Frame::trailers({
            let mut t = http::HeaderMap::new();
            t.insert("x-checksum", "abc".parse().unwrap());
            t
        })),
    ];
    let client: Client<_, StreamBody<FrameIter>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::post(gw.url("/up"))
        .header("te", "trailers")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "abc");
}
