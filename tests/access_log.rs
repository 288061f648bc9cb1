#![allow(clippy::unwrap_used)]

//! `[logging] access`: on by default (one `access` event per request), and `false` turns
//! the per-request event off while requests are still served. Its own binary for the
//! global subscriber.

#[path = "it/support/mod.rs"]
mod support;

use tracing_subscriber::layer::SubscriberExt;

use support::capture::Capture;
use support::*;

// The only test in this binary, so the global subscriber sees every thread.
#[tokio::test]
async fn access_log_is_on_by_default_and_off_with_access_false() {
    let logs = Capture::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || sink.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let up = Upstream::start().await;
    let on = gateway()
        .route("/logged", &up.url(), "required")
        .start()
        .await;
    let off = gateway()
        .route("/quiet", &up.url(), "required")
        .raw("[logging]\naccess = false")
        .start()
        .await;
    let auth = jwt_header(&token());
    assert_eq!(
        get(&on.url("/logged/x"), &[("authorization", &auth)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&off.url("/quiet/x"), &[("authorization", &auth)])
            .await
            .status,
        200
    );
    assert_eq!(get(&off.url("/quiet/y"), &[]).await.status, 401);
    assert_eq!(up.requests().len(), 2);
    on.stop().await;
    off.stop().await;

    let text = logs.text();
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"target\":\"access\""))
        .collect();
    assert!(
        access.iter().any(|l| l.contains("/logged/x")),
        "default: an access event per request:\n{text}"
    );
    assert!(
        !access.iter().any(|l| l.contains("/quiet")),
        "access = false: no access events:\n{text}"
    );
}
