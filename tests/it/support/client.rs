//! A small HTTP client: one request per call, the whole response read, and raw bytes on a
//! socket for what no client library would send.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the compat error body exactly (sorted keys, trailing newline).
    pub fn assert_error(&self, status: u16, error: &str, description: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let want = format!(
            "{}\n",
            json!({"description": description, "error": error, "status_code": status})
        );
        assert_eq!(self.text(), want);
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send_request(b.body(body.into()).unwrap()).await
}

/// Sends a request built by the caller (for header values that are not text).
pub async fn send_request(req: Request<impl Into<Bytes>>) -> Resp {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = client
        .request(req.map(|b| Full::new(b.into())))
        .await
        .expect("request failed");
    let (parts, body) = res.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    request("GET", url, headers, Bytes::new()).await
}

pub async fn post_json(url: &str, body: &str) -> Resp {
    request(
        "POST",
        url,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Sends raw bytes and reads until the server closes (or 5 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits for the server to close `s` (EOF or reset), reading and discarding any answer
/// (hyper may send 408 first). Fails the test after 5 s.
pub async fn closed_by_server(s: &mut TcpStream, case: &str) {
    let mut buf = [0u8; 1024];
    let done = tokio::time::timeout(std::time::Duration::from_secs(5), async {
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
