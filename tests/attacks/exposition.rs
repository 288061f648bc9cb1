//! `/metrics` content negotiation, checked by the tools that read it.
//!
//! Regression: `/metrics` always answered OpenMetrics, whatever `Accept` said, and tools
//! that read only the classic text format (`promtool check metrics`, several agents)
//! rejected it. The classic 0.0.4 text format is linted by `promtool` (Debian's
//! `prometheus` package; `tests/prepare.sh` installs it), the OpenMetrics form by the
//! official Python client's strict OpenMetrics parser.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::*;

fn pipe(program: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (tests/prepare.sh installs it)"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn metrics_answer_each_scraper_in_the_format_it_asked_for() {
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/api", &up.url(), "required")
        .raw("[admin]\nlisten = \"127.0.0.1:0\"")
        .start()
        .await;
    // Fill every kind of metric: counters, histograms, label families.
    assert_eq!(get(&gw.url("/api/x"), &[]).await.status, 401);
    let jwt = format!("JWT {}", token());
    assert_eq!(
        get(&gw.url("/api/x"), &[("authorization", &jwt)])
            .await
            .status,
        200
    );
    assert_eq!(up.requests().len(), 1);

    // No Accept, `*/*`, or text/plain: the classic text format, promtool-clean.
    for accept in [
        None,
        Some("*/*"),
        Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let r = get(&gw.admin_url("/metrics"), &headers).await;
        assert_eq!(r.status, 200, "{accept:?}");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{accept:?}"
        );
        let text = r.text();
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE gateway_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"gateway_token_rejections_total{reason="missing"} 1"#),
            "{text}"
        );
        let out = pipe("promtool", &["check", "metrics"], &r.body);
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Prometheus's own Accept header: OpenMetrics, which the strict parser reads.
    let prometheus = concat!(
        "application/openmetrics-text;version=1.0.0,",
        "application/openmetrics-text;version=0.0.1;q=0.75,",
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    );
    let r = get(&gw.admin_url("/metrics"), &[("accept", prometheus)]).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.text().ends_with("# EOF\n"), "{}", r.text());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/prom_parse.py");
    let out = pipe("python3", &[script.to_str().unwrap()], &r.body);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.text()
    );
    let samples: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(samples
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "gateway_requests_total" && s["labels"]["status"] == "200"));
    // And promtool, which reads only the classic format, refuses this one: the negotiation
    // is what keeps it working.
    assert!(!pipe("promtool", &["check", "metrics"], &r.body)
        .status
        .success());
}
