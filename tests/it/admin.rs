//! The admin listener: health, readiness, metrics (parsed by the official Python client's
//! OpenMetrics parser), config fingerprints.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::*;

/// Scrapes `/metrics` as Prometheus does (asking for OpenMetrics) and parses it with
/// `prometheus_client`.
async fn scrape(gw: &Gateway) -> Vec<Value> {
    let r = get(
        &gw.admin_url("/metrics"),
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/prom_parse.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus-client (.ci/run installs it)");
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition did not parse: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.text()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[tokio::test]
async fn health_and_metrics() {
    let up = Upstream::start().await;
    let gw = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .route("/api", &up.url(), "required")
        .start()
        .await;
    let r = get(&gw.admin_url("/healthz"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"status": "ok"}))
    );
    assert_eq!(get(&gw.admin_url("/readyz"), &[]).await.status, 200);
    // The admin endpoints are not on the public listener.
    assert_eq!(get(&gw.url("/metrics"), &[]).await.status, 404);

    let auth = jwt_header(&token());
    for _ in 0..3 {
        assert_eq!(
            get(&gw.url("/api"), &[("authorization", &auth)])
                .await
                .status,
            200
        );
    }
    let expired =
        mint(json!({"exp": now() - 3600, "iat": now() - 4000, "nbf": now() - 4000, "identity": 1}));
    get(&gw.url("/api"), &[("authorization", &jwt_header(&expired))]).await;
    get(&gw.url("/api"), &[]).await;
    gw.login("user1", PASSWORD).await;
    post_json(&gw.url("/auth"), r#"{"username":"user1","password":"no"}"#).await;

    let m = scrape(&gw).await;
    assert_eq!(
        value(
            &m,
            "gateway_requests_total",
            &[("route", "routes[0]"), ("method", "GET"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_requests_total",
            &[("route", "routes[0]"), ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_token_rejections_total",
            &[("reason", "expired")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_token_rejections_total",
            &[("reason", "missing")]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "gateway_logins_total", &[("outcome", "success")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_logins_total",
            &[("outcome", "invalid_credentials")]
        ),
        1.0
    );
    // 3 + 2 refused + 2 logins + the 404 for /metrics on the public port.
    assert_eq!(
        value(&m, "gateway_request_duration_seconds_count", &[]),
        8.0
    );
    assert_eq!(
        value(&m, "gateway_upstream_duration_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_upstream_server_up",
            &[("upstream", "routes[0]")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(m.iter().any(|s| s["name"] == "gateway_open_connections"));
}

#[tokio::test]
async fn readiness_fails_when_an_upstream_has_no_server() {
    let dead = format!("http://{}", closed_port().await);
    let gw = gateway()
        .raw(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[upstreams.app]\nservers = [\"{dead}\"]\n\
             eject_for = \"60s\""
        ))
        .route("/p", "app", "public")
        .start()
        .await;
    assert_eq!(get(&gw.admin_url("/readyz"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/p"), &[]).await.status, 502);
    let r = get(&gw.admin_url("/readyz"), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["reasons"],
        json!(["upstream app has no available server"])
    );
    let m = scrape(&gw).await;
    assert_eq!(
        value(
            &m,
            "gateway_upstream_ejections_total",
            &[("upstream", "app")]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "gateway_upstream_server_up", &[("upstream", "app")]),
        0.0
    );
}

#[tokio::test]
async fn readiness_fails_while_draining() {
    let (slow, release) = Upstream::held("done").await;
    let mut gw = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .route("/p", &slow.url(), "public")
        .start()
        .await;
    let url = gw.url("/p");
    let pending = tokio::spawn(async move { get(&url, &[]).await });
    slow.wait_requests(1).await;
    gw.begin_stop();
    let mut last = None;
    eventually("readiness to report draining", async || {
        let r = get(&gw.admin_url("/readyz"), &[]).await;
        let draining = r.status == 503;
        last = Some(r);
        draining
    })
    .await;
    assert_eq!(last.unwrap().json()["reasons"], json!(["draining"]));
    release.notify_one();
    assert_eq!(pending.await.unwrap().status, 200);
    assert_eq!(gw.finish().await, gateway::server::Drained::Clean);
}

#[tokio::test]
async fn config_fingerprints_match_across_instances_and_never_show_secrets() {
    let a = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .respond_identity("/p")
        .start()
        .await;
    let b = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .respond_identity("/p")
        .start()
        .await;
    let fa = get(&a.admin_url("/config"), &[]).await;
    let fb = get(&b.admin_url("/config"), &[]).await;
    assert_eq!(fa.json()["keys_sha256"], fb.json()["keys_sha256"]);
    assert_eq!(fa.json()["keys_sha256"].as_str().unwrap().len(), 64);
    assert!(!fa.text().contains(std::str::from_utf8(SECRET).unwrap()));
    let other = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .table("[[keys]]\nid = \"other\"\nalgorithm = \"HS256\"\nsecret_file = \"other\"")
        .file("other", "a-completely-different-secret-0123456789")
        .respond_identity("/p")
        .start()
        .await;
    let fo = get(&other.admin_url("/config"), &[]).await;
    assert_ne!(fa.json()["keys_sha256"], fo.json()["keys_sha256"]);
}

#[tokio::test]
async fn a_named_route_labels_its_metrics() {
    let up = Upstream::start().await;
    let gw = gateway()
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .route_with("/api", &up.url(), "required", &["name = \"orders\""])
        .start()
        .await;
    let auth = jwt_header(&token());
    assert_eq!(
        get(&gw.url("/api"), &[("authorization", &auth)])
            .await
            .status,
        200
    );
    assert_eq!(get(&gw.url("/api"), &[]).await.status, 401);
    let m = scrape(&gw).await;
    for (status, count) in [("200", 1.0), ("401", 1.0)] {
        assert_eq!(
            value(
                &m,
                "gateway_requests_total",
                &[("route", "orders"), ("status", status)]
            ),
            count
        );
    }
    assert_eq!(
        value(&m, "gateway_requests_total", &[("route", "routes[0]")]),
        0.0
    );
    // The inline upstream keeps the key path as its label.
    assert_eq!(
        value(
            &m,
            "gateway_upstream_server_up",
            &[("upstream", "routes[0]")]
        ),
        1.0
    );
}
