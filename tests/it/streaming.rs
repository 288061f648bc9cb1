//! Large bodies stream through the gateway in both directions without being buffered.
//!
//! Each test holds back most of the body until the far side has seen the first part: a
//! gateway that buffered whole bodies would never let the first part through, and the test
//! would fail on its deadline instead of passing.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};
use tokio_stream_shim::ReceiverStream;

use crate::support::*;

const MIB: usize = 1 << 20;
const TOTAL: usize = 64 * MIB;
const DEADLINE: Duration = Duration::from_secs(30);

/// A tiny adapter from an mpsc receiver to a `Stream` (what tokio-stream's wrapper does).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;

    pub struct ReceiverStream<T>(pub mpsc::Receiver<T>);

    impl<T> futures_util::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

type Chunks = ReceiverStream<Result<Frame<Bytes>, Infallible>>;

fn chunk() -> Bytes {
    Bytes::from(vec![b'z'; MIB])
}

#[tokio::test]
async fn a_64_mib_upload_streams_through() {
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let first_tx = Arc::new(Mutex::new(Some(first_tx)));
    let up = Upstream::with(Arc::new(move |req: Request<hyper::body::Incoming>| {
        let first_tx = first_tx.clone();
        Box::pin(async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    total += data.len();
                    if total >= MIB {
                        if let Some(tx) = first_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            Response::new(gateway::body::full(total.to_string()))
        })
    }))
    .await;
    let gw = gateway()
        .route("/upload", &up.url(), "required")
        .start()
        .await;

    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let body = StreamBody::new(ReceiverStream(rx));
    let client: Client<_, StreamBody<Chunks>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(gw.url("/upload"))
        .header("authorization", jwt_header(&token()))
        .header("content-length", TOTAL.to_string())
        .body(body)
        .unwrap();
    let pending = tokio::spawn(client.request(req));

    tx.send(Ok(Frame::data(chunk()))).await.unwrap();
    tokio::time::timeout(DEADLINE, first_rx)
        .await
        .expect("the first MiB never reached the upstream: the gateway buffers uploads")
        .unwrap();
    for _ in 1..TOTAL / MIB {
        tx.send(Ok(Frame::data(chunk()))).await.unwrap();
    }
    drop(tx);
    let res = tokio::time::timeout(DEADLINE, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got, TOTAL.to_string());
}

#[tokio::test]
async fn a_64_mib_download_streams_through() {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let up = Upstream::with(Arc::new(move |_req| {
        let rx = rx.lock().unwrap().take().expect("one download only");
        Box::pin(async move {
            Response::new(
                StreamBody::new(ReceiverStream(rx))
                    .map_err(|e: Infallible| match e {})
                    .boxed(),
            )
        })
    }))
    .await;
    let gw = gateway()
        .route("/download", &up.url(), "public")
        .start()
        .await;

    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let pending = tokio::spawn(client.get(gw.url("/download").parse().unwrap()));
    tx.send(Ok(Frame::data(chunk()))).await.unwrap();
    let res = tokio::time::timeout(DEADLINE, pending)
        .await
        .expect("no response head before the body was complete")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = res.into_body().into_data_stream();
    let mut total = 0;
    // Read the first MiB while the upstream still holds the other 63.
    while total < MIB {
        total += tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("the first MiB never arrived: the gateway buffers downloads")
            .unwrap()
            .unwrap()
            .len();
    }
    let feeder = tokio::spawn(async move {
        for _ in 1..TOTAL / MIB {
            tx.send(Ok(Frame::data(chunk()))).await.unwrap();
        }
    });
    while let Some(data) = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap() {
        total += data.unwrap().len();
    }
    feeder.await.unwrap();
    assert_eq!(total, TOTAL);
}

/// Peak resident memory of this test process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_1_gib_upload_streams_with_bounded_memory() {
    const GIB: usize = 1 << 30;
    let up = Upstream::with(Arc::new(|req: Request<hyper::body::Incoming>| {
        Box::pin(async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    total += data.len();
                }
            }
            Response::new(gateway::body::full(total.to_string()))
        })
    }))
    .await;
    let gw = gateway()
        .route("/upload", &up.url(), "public")
        .start()
        .await;
    let before = peak_rss_kib();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    let client: Client<_, StreamBody<Chunks>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(gw.url("/upload"))
        .header("content-length", GIB.to_string())
        .body(StreamBody::new(ReceiverStream(rx)))
        .unwrap();
    let pending = tokio::spawn(client.request(req));
    // One chunk reused: the test itself holds 1 MiB, whatever the gateway does.
    let chunk = chunk();
    for _ in 0..GIB / MIB {
        tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
    }
    drop(tx);
    let res = tokio::time::timeout(Duration::from_secs(300), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        GIB.to_string()
    );
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    // Other tests run in this process at the same time; a buffering gateway would add 1024.
    assert!(
        grown_mib < 400,
        "peak memory grew by {grown_mib} MiB while streaming 1 GiB"
    );
}
