//! Whose fault it is: an HTTP/1.0 upstream must not cost HTTP/1.1 clients their
//! keep-alive, and a client's badly framed body must not be blamed on the upstream.

use std::sync::Arc;

use http::{Response, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::support::*;
use gateway::body::full;

/// Regression: an HTTP/1.0 upstream's `HTTP/1.0 200 OK` reached HTTP/1.1 clients as is,
/// and their keep-alive connection was closed after every response.
#[tokio::test]
async fn an_http10_upstream_answers_in_the_clients_version_and_keeps_its_connection() {
    let up = Upstream::with(Arc::new(|req| {
        Box::pin(async move {
            let _ = req.into_body().collect().await;
            let mut res = Response::new(full("old"));
            *res.version_mut() = Version::HTTP_10;
            res
        })
    }))
    .await;
    let gw = gateway().route("/old", &up.url(), "public").start().await;
    let one = head(&["GET /old/a HTTP/1.1", "Host: gw"]);
    let two = head(&["GET /old/b HTTP/1.1", "Host: gw"]);
    let ex = exchange(gw.addr, format!("{one}{two}").as_bytes(), 2).await;
    assert_eq!(ex.statuses(), [200, 200], "{ex:?}");
    assert!(!ex.closed, "the client's connection was closed: {ex:?}");
    for r in &ex.responses {
        assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.head);
        assert!(
            !r.head.to_ascii_lowercase().contains("connection: close"),
            "{}",
            r.head
        );
        assert_eq!(r.body, b"old");
    }
    let seen = up.requests();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/old/a", "/old/b"]);
    // An HTTP/1.0 client still gets an HTTP/1.0 answer.
    let ex = exchange(
        gw.addr,
        head(&["GET /old/c HTTP/1.0", "Host: gw"]).as_bytes(),
        1,
    )
    .await;
    assert!(
        ex.responses[0].head.starts_with("HTTP/1.0 200 OK\r\n"),
        "{ex:?}"
    );
}

/// Regression: a chunked request body with a chunk line ending in a bare LF got 502, was
/// logged as `upstream_unavailable` and counted against the upstream. It is the client's
/// fault: 400 JSON, and the upstream's health and metrics are untouched.
#[tokio::test]
async fn a_badly_framed_request_body_is_the_clients_fault() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/up", &up.url(), "public")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .start()
        .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // A good first chunk, so the request is on its way upstream when the framing breaks.
    s.write_all(
        b"POST /up/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    up.wait_requests(1).await;
    s.write_all(b"3\nabc\n0\n\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    let body = &out[text.find("\r\n\r\n").unwrap() + 4..];
    assert_error_shape(body, 400, "bad chunk");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(body).unwrap()["description"],
        "The request body is not validly framed"
    );
    // The upstream saw the one request begin, and nothing else.
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].target, "/up/x");
    assert_eq!(seen[0].headers["transfer-encoding"], "chunked");

    // Nothing was held against the upstream: not ejected, no 502, still serving.
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.text();
    assert!(
        metrics
            .contains(r#"gateway_requests_total{route="routes[0]",method="POST",status="400"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"502\""), "{metrics}");
    assert!(
        !metrics.contains("gateway_upstream_ejections_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_upstream_duration_seconds_count 0"),
        "{metrics}"
    );
    let r = request("POST", &gw.url("/up/y"), &[], "fine").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/up/y");
}
