//! What every attack case shares: a gateway with a required and a public route in front of
//! one recording upstream, the refusal assertion, and a raw-socket HTTP/1.1 exchange that
//! no client library normalizes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A gateway routing `/api` (required) and `/public` (public) to one recording upstream.
pub struct Target {
    pub gw: Gateway,
    pub up: Upstream,
}

pub async fn target() -> Target {
    target_with(gateway()).await
}

/// Like [`target`], on a builder the caller has already configured.
pub async fn target_with(builder: GatewayBuilder) -> Target {
    let up = Upstream::start().await;
    let gw = builder
        .route("/api", &up.url(), "required")
        .route("/public", &up.url(), "public")
        .start()
        .await;
    Target { gw, up }
}

impl Target {
    /// `GET /api/secret` with `headers`.
    pub async fn api(&self, headers: &[(&str, &str)]) -> Resp {
        get(&self.gw.url("/api/secret"), headers).await
    }

    /// `GET /api/secret` with `Authorization: JWT <token>`.
    pub async fn with_token(&self, token: &str) -> Resp {
        self.api(&[("authorization", &jwt_header(token))]).await
    }

    pub fn forwarded(&self) -> usize {
        self.up.requests().len()
    }

    pub fn assert_nothing_forwarded(&self, case: &str) {
        let seen = self.up.requests();
        assert!(seen.is_empty(), "{case}: the upstream received {seen:?}");
    }

    /// Sends `token` to the required route and asserts a 401 refusal (with `description`
    /// when given) and that the upstream received nothing.
    pub async fn refuses_token(&self, case: &str, token: &str, description: Option<&str>) {
        let r = self.with_token(token).await;
        assert_refused(&r, 401, case);
        // The answer never reflects the token (nor a long piece of it).
        if token.len() >= 16 {
            assert!(!r.text().contains(token), "{case}: token echoed");
            for part in token.split('.').filter(|p| p.len() >= 16) {
                assert!(!r.text().contains(part), "{case}: token segment echoed");
            }
        }
        if let Some(d) = description {
            assert_eq!(r.json()["description"], d, "{case}");
        }
        self.assert_nothing_forwarded(case);
    }

    /// Asserts that a valid token still works (the target is alive and the suite is not
    /// passing because everything is refused), then forgets that request.
    pub async fn still_serves(&self, case: &str) {
        let before = self.forwarded();
        let r = self.with_token(&token()).await;
        assert_eq!(r.status, 200, "{case}: a valid token stopped working");
        let seen = self.up.requests();
        assert_eq!(seen.len(), before + 1, "{case}");
        assert_eq!(seen[before].headers["x-identity"], "1", "{case}");
        self.up.seen.lock().unwrap().truncate(before);
    }
}

/// Asserts that `r` is the gateway's own refusal with `status`: a JSON object with exactly
/// `description`, `error` (non-empty strings) and `status_code`, newline-terminated.
pub fn assert_refused(r: &Resp, status: u16, case: &str) {
    assert_eq!(r.status.as_u16(), status, "{case}: {}", r.text());
    assert_error_shape(&r.body, status, case);
    assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
}

pub fn assert_error_shape(body: &[u8], status: u16, case: &str) {
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with('\n'), "{case}: {text:?}");
    assert!(text.starts_with("{\"description\":"), "{case}: {text}");
    let v: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text}"));
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ["description", "error", "status_code"], "{case}");
    for k in ["description", "error"] {
        assert!(
            obj[k].as_str().is_some_and(|s| !s.is_empty()),
            "{case}: {k} in {text}"
        );
    }
    assert_eq!(obj["status_code"], status, "{case}");
}

/// One response read off a raw socket.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// What a raw exchange produced.
#[derive(Debug)]
pub struct Exchange {
    pub responses: Vec<RawResp>,
    /// The server closed the connection (read EOF or reset) before `want` responses came.
    pub closed: bool,
}

impl Exchange {
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }
}

/// Writes `bytes` on a fresh connection, then reads responses until `want` of them arrived
/// or the server closed. A 5 s cap turns a hung server into a failing (not a stuck) test.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], want: usize) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything; that is not an error.
    let _ = s.write_all(bytes).await;
    let mut out = Exchange {
        responses: Vec::new(),
        closed: false,
    };
    let read = async {
        let mut buf = Vec::new();
        loop {
            while let Some(resp) = take_response(&mut buf) {
                out.responses.push(resp);
                if out.responses.len() >= want {
                    return;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    // A close-delimited body ends here.
                    if let Some(resp) = take_close_delimited(&mut buf) {
                        out.responses.push(resp);
                    }
                    out.closed = true;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    out
}

/// Parses one complete response with a `Content-Length` (or no body) off the front of `buf`.
fn take_response(buf: &mut Vec<u8>) -> Option<RawResp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let lower = head.to_ascii_lowercase();
    let len = match lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        Some(v) => v.trim().parse::<usize>().ok()?,
        None if lower.contains("transfer-encoding: chunked") => {
            return take_chunked(buf, end, head, status)
        }
        None if status == 204 || status == 304 || status < 200 => 0,
        // Close-delimited: wait for EOF.
        None => return None,
    };
    if buf.len() < end + len {
        return None;
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Some(RawResp { status, head, body })
}

fn take_chunked(buf: &mut Vec<u8>, start: usize, head: String, status: u16) -> Option<RawResp> {
    let mut at = start;
    let mut body = Vec::new();
    loop {
        let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let size_text = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // No trailers from our servers: the final CRLF follows.
            if buf.len() < at + 2 {
                return None;
            }
            buf.drain(..at + 2);
            return Some(RawResp { status, head, body });
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn take_close_delimited(buf: &mut Vec<u8>) -> Option<RawResp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let body = buf[end..].to_vec();
    buf.clear();
    Some(RawResp { status, head, body })
}

/// A request head on one line each, joined with CRLF, ending with the blank line.
pub fn head(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    s
}
