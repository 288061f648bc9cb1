//! Upstream pools: balancing, passive and active health, retries, 503, HTTPS upstreams.

use std::sync::{Arc, Mutex};

use http::Response;
use tokio::sync::Notify;

use gateway::body::full;

use crate::support::*;

fn pool(name: &str, servers: &[String], extra: &str) -> String {
    let list = servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[upstreams.{name}]\nservers = [{list}]\n{extra}")
}

#[tokio::test]
async fn round_robin_spreads_the_load() {
    let ups = [
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let urls: Vec<String> = ups.iter().map(Upstream::url).collect();
    let gw = gateway()
        .route("/p", "app", "public")
        .raw(&pool("app", &urls, ""))
        .start()
        .await;
    for _ in 0..9 {
        assert_eq!(get(&gw.url("/p"), &[]).await.status, 200);
    }
    for u in &ups {
        assert_eq!(u.requests().len(), 3);
    }
}

/// A gateway whose pool lists a server that refuses connections before `good`.
async fn dead_then_good(good: &Upstream, retries: u32) -> Gateway {
    let dead = format!("http://{}", closed_port().await);
    gateway()
        .route("/p", "app", "public")
        .raw(&pool(
            "app",
            &[dead, good.url()],
            &format!("eject_for = \"60s\"\nretries = {retries}"),
        ))
        .start()
        .await
}

#[tokio::test]
async fn a_refusing_server_is_skipped_and_ejected() {
    let good = Upstream::start().await;
    let gw = dead_then_good(&good, 1).await;
    // GETs without a body are retried on the other server when the connection fails.
    for _ in 0..6 {
        assert_eq!(get(&gw.url("/p"), &[]).await.status, 200);
    }
    assert_eq!(good.requests().len(), 6);
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let good = Upstream::start().await;
    let gw = dead_then_good(&good, 3).await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            request(
                "POST",
                &gw.url("/p"),
                &[("content-type", "text/plain")],
                "payload",
            )
            .await
            .status
            .as_u16(),
        );
    }
    // Round robin sends one of the two POSTs to the dead server: it fails with 502 and is not
    // replayed; the other reaches the good server once.
    statuses.sort();
    assert_eq!(statuses, [200, 502]);
    assert_eq!(good.requests().len(), 1);
}

#[tokio::test]
async fn a_post_that_was_sent_is_not_duplicated() {
    // The server reads the request, then drops the connection without answering.
    let rude = Upstream::with(Arc::new(|req| {
        Box::pin(async move {
            let _ = http_body_util::BodyExt::collect(req.into_body()).await;
            panic!("connection dropped on purpose");
        })
    }))
    .await;
    let good = Upstream::start().await;
    let gw = gateway()
        .route("/p", "app", "public")
        .raw(&pool("app", &[rude.url(), good.url()], "retries = 3"))
        .start()
        .await;
    let r = request("POST", &gw.url("/p"), &[], "once").await;
    assert_eq!(r.status, 502);
    assert_eq!(rude.requests().len(), 1);
    assert!(good.requests().is_empty(), "the POST was replayed");
}

#[tokio::test]
async fn all_servers_down_is_503() {
    let a = format!("http://{}", closed_port().await);
    let b = format!("http://{}", closed_port().await);
    let gw = gateway()
        .route("/p", "app", "public")
        .raw(&pool("app", &[a, b], "eject_for = \"60s\""))
        .start()
        .await;
    get(&gw.url("/p"), &[]).await.assert_error(
        502,
        "Bad Gateway",
        "The upstream service could not be reached",
    );
    get(&gw.url("/p"), &[]).await.assert_error(
        503,
        "Service Unavailable",
        "No upstream server is available",
    );
}

/// An upstream that holds each request until released, and says when one arrived.
struct Holding {
    up: Upstream,
    release: Arc<Notify>,
}

async fn holding() -> Holding {
    let (up, release) = Upstream::held("held").await;
    Holding { up, release }
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_server() {
    let a = holding().await;
    let b = holding().await;
    let gw = gateway()
        .route("/p", "app", "public")
        .raw(&pool(
            "app",
            &[a.up.url(), b.up.url()],
            "balance = \"least_outstanding\"",
        ))
        .start()
        .await;
    let url = gw.url("/p");
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await }
    });
    // Wait until the first request is held by one of them.
    let (busy, idle) = tokio::select! {
        () = a.up.wait_requests(1) => (&a, &b),
        () = b.up.wait_requests(1) => (&b, &a),
    };
    // The next requests all go to the idle server, whatever round robin would say.
    for n in 1..=3 {
        let pending = tokio::spawn({
            let url = url.clone();
            async move { get(&url, &[]).await }
        });
        idle.up.wait_requests(n).await;
        idle.release.notify_one();
        assert_eq!(pending.await.unwrap().status, 200);
    }
    assert_eq!(busy.up.requests().len(), 1);
    busy.release.notify_one();
    assert_eq!(first.await.unwrap().status, 200);
}

#[tokio::test]
async fn active_health_checks_take_a_server_out_and_back() {
    let healthy = Arc::new(Mutex::new(false));
    let flag = healthy.clone();
    let flaky = Upstream::with(Arc::new(move |req| {
        let ok = *flag.lock().unwrap();
        Box::pin(async move {
            let status = if req.uri().path() == "/healthz" && !ok {
                503
            } else {
                200
            };
            Response::builder()
                .status(status)
                .body(gateway::body::full("flaky"))
                .unwrap()
        })
    }))
    .await;
    let steady = Upstream::start().await;
    let health = "[upstreams.app.health]\npath = \"/healthz\"\ninterval = \"20ms\"\n\
                  timeout = \"1s\"\nunhealthy_threshold = 2\nhealthy_threshold = 1";
    let gw = gateway()
        .route("/p", "app", "public")
        .raw(&pool("app", &[flaky.url(), steady.url()], health))
        .start()
        .await;
    // Two failed checks mark the flaky server down.
    flaky.wait_requests(2).await;
    let before = flaky.requests().iter().filter(|s| s.target == "/p").count();
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/p"), &[]).await.status, 200);
    }
    assert_eq!(
        flaky.requests().iter().filter(|s| s.target == "/p").count(),
        before,
        "traffic reached a server marked down"
    );
    // It recovers after one good check.
    *healthy.lock().unwrap() = true;
    let seen = flaky.requests().len();
    flaky.wait_requests(seen + 2).await;
    for _ in 0..4 {
        get(&gw.url("/p"), &[]).await;
    }
    assert!(
        flaky.requests().iter().filter(|s| s.target == "/p").count() > before,
        "a recovered server got no traffic"
    );
}

/// Distinct gateway-side connections the upstream saw.
fn upstream_connections(up: &Upstream) -> usize {
    let peers: std::collections::HashSet<_> = up.requests().iter().map(|s| s.peer).collect();
    peers.len()
}

/// A gateway with one worker, routing `/p` to `upstream` without authentication.
async fn one_worker(upstream: &str) -> Gateway {
    gateway()
        .server("workers = 1")
        .route("/p", upstream, "public")
        .start()
        .await
}

#[tokio::test]
async fn one_worker_reuses_one_upstream_connection() {
    let up = Upstream::start().await;
    let gw = one_worker(&up.url()).await;
    // Each get() is a new client connection; the upstream connection stays the same.
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/p"), &[]).await.status, 200);
    }
    assert_eq!(up.requests().len(), 20);
    assert_eq!(upstream_connections(&up), 1);
}

#[tokio::test]
async fn workers_share_the_clients_and_keep_their_own_upstream_connections() {
    let up = Upstream::start().await;
    let gw = gateway()
        .server("workers = 4")
        .route("/p", &up.url(), "required")
        .start()
        .await;
    let token = token();
    let auth = jwt_header(&token);
    // 40 client connections, one request each, one after another: the kernel spreads the
    // connections over the 4 workers' sockets, and each worker keeps one upstream
    // connection of its own. All 40 on one worker has odds of 4^-39.
    for _ in 0..40 {
        let r = get(
            &gw.url("/p"),
            &[("authorization", &auth), ("x-identity", "admin")],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().all(|s| s.headers["x-identity"] == "1"));
    let n = upstream_connections(&up);
    assert!(
        (2..=4).contains(&n),
        "{n} upstream connections for 4 workers"
    );
}

/// A raw HTTP/1.1 server that answers each connection's first request with `ok`, without
/// `Connection: close`, and then closes the connection. Returns its URL and a counter of
/// the connections it accepted.
async fn one_shot_upstream() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Closed with no warning, as a server whose keep-alive timer fired.
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn a_connection_the_server_closed_is_not_reused() {
    let (url, accepted) = one_shot_upstream().await;
    let gw = one_worker(&url).await;
    for _ in 0..5 {
        let r = get(&gw.url("/p"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_connections_past_idle_timeout_are_not_reused() {
    let up = Upstream::start().await;
    let gw = gateway()
        .server("workers = 1")
        .route("/p", "app", "public")
        .raw(&pool("app", &[up.url()], "idle_timeout = \"0s\""))
        .start()
        .await;
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/p"), &[]).await.status, 200);
    }
    assert_eq!(upstream_connections(&up), 4);
}

#[tokio::test]
async fn a_response_abandoned_midway_closes_its_connection() {
    // /endless streams a body that never ends; everything else answers "small".
    let up = Upstream::with(Arc::new(|req: http::Request<hyper::body::Incoming>| {
        Box::pin(async move {
            if req.uri().path() == "/p/endless" {
                let chunks = futures_util::stream::repeat_with(|| {
                    Ok::<_, gateway::body::BoxError>(hyper::body::Frame::data(
                        bytes::Bytes::from_static(&[b'x'; 16384]),
                    ))
                });
                Response::new(http_body_util::BodyExt::boxed(
                    http_body_util::StreamBody::new(chunks),
                ))
            } else {
                Response::new(full("small"))
            }
        })
    }))
    .await;
    let gw = one_worker(&up.url()).await;
    // Read the head and a little of the body, then hang up.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /p/endless HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    // What is left of the endless body must not be read as the next response.
    for _ in 0..3 {
        let r = get(&gw.url("/p/small"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "small");
    }
    up.wait_requests(4).await;
    assert_eq!(upstream_connections(&up), 2);
}

#[tokio::test]
async fn bodiless_responses_return_their_connection() {
    let up = Upstream::with(Arc::new(|req: http::Request<hyper::body::Incoming>| {
        Box::pin(async move {
            let mut res = Response::new(full(""));
            if req.method() != http::Method::HEAD {
                *res.status_mut() = http::StatusCode::NO_CONTENT;
            }
            res
        })
    }))
    .await;
    let gw = one_worker(&up.url()).await;
    for i in 0..6 {
        let method = if i % 2 == 0 { "HEAD" } else { "GET" };
        let r = request(method, &gw.url("/p"), &[], bytes::Bytes::new()).await;
        assert!(r.status == 200 || r.status == 204, "{}", r.status);
    }
    assert_eq!(up.requests().len(), 6);
    assert_eq!(upstream_connections(&up), 1);
}

#[tokio::test]
async fn a_connection_still_uploading_is_not_handed_to_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw upstream: /p/upload is answered 401 at once and its body never read (the
    // connection stays open); anything else gets 200 "ok".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    if head.starts_with(b"POST /p/upload") {
                        let _ = s
                            .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        std::future::pending::<()>().await;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let gw = gateway()
        .server("workers = 1")
        .route("/p", "app", "public")
        .raw(&pool("app", &[url], "response_timeout = \"3s\""))
        .start()
        .await;
    // The client declares 8 MiB, sends 64 KiB and waits: the gateway's upstream connection
    // is left in the middle of the request body when the 401 comes back.
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"POST /p/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 8388608\r\n\r\n")
        .await
        .unwrap();
    client.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
    let mut buf = [0u8; 256];
    let n = client.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
    // The next request must not wait on that connection (it would time out with 504).
    let r = get(&gw.url("/p/next"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
    drop(client);
}
