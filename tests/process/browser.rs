//! A real browser through browser mode: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven by Selenium (PyPI) from `tests/browser/login_flow.py`,
//! against the in-process gateway and a recording upstream that answers HTML. The
//! script signs in through the form, reloads, signs out and tries return URLs off the
//! site; this side checks what the upstream received.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use gateway::body::full;

use crate::support::*;

/// An upstream page that names the identity it was sent.
async fn app() -> Upstream {
    Upstream::with(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let who = req
                .headers()
                .get("x-identity")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            let mut res = Response::new(full(format!(
                "<!doctype html><title>Inbox</title><p>identity={who}</p>\n"
            )));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        })
    }))
    .await
}

fn require_browser() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the browser tests need Debian's chromium and chromium-driver \
             (tests/prepare.sh installs them)"
        );
    }
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .expect("python3 is needed for the browser tests");
    assert!(
        selenium.success(),
        "the Python package selenium is missing (tests/prepare.sh installs it)"
    );
}

#[tokio::test]
async fn chromium_signs_in_reloads_signs_out_and_refuses_foreign_return_urls() {
    require_browser();
    let up = app().await;
    let gw = gateway()
        .route_with("/app", &up.url(), "required", &["browser = true"])
        .table("[refresh]\n[revocation]\n")
        .start()
        .await;
    let base = gw.url("");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/login_flow.py");
    // The script calls back into the in-process gateway: off the runtime's threads.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(base)
            .output()
            .expect("python3 runs the Selenium script")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser flow failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // What the upstream saw: the signed-in page loads (the first and the reload), each
    // as user 1, none with a cookie or header of ours.
    let seen = up.requests();
    let inbox: Vec<_> = seen
        .iter()
        .filter(|s| s.target.starts_with("/app/inbox"))
        .collect();
    assert_eq!(inbox.len(), 2, "{seen:?}");
    // The script's POST with our header, and not the one with only X-CSRF-Token.
    let posts: Vec<_> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 1, "{seen:?}");
    for s in &seen {
        assert_eq!(s.headers.get("x-identity").unwrap(), "1");
        for v in s.headers.get_all("cookie") {
            assert!(!v.to_str().unwrap().contains("gateway-"), "{v:?}");
        }
        assert!(s.headers.get("x-gateway-csrf").is_none());
    }
}
