//! Reload (file change, SIGHUP, broken config) and SIGTERM drain.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn config(upstream: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nreload_poll = \"20ms\"\nshutdown_grace = \"10s\"\n\
         [tokens]\nsecret_file = \"secret\"\n[[routes]]\npath = \"/p\"\nupstream = \"{upstream}\"\n\
         auth = \"public\"\n{extra}"
    )
}

struct FileGateway {
    addr: std::net::SocketAddr,
    reloader: Arc<gateway::server::reload::Reloader>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_file(text: &str) -> FileGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = gateway::load::load(&path).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = gateway::start_file(&path, &loaded, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    tokio::spawn(started.serving);
    FileGateway {
        addr: started.addr,
        reloader: started.reloader.unwrap(),
        path,
        _dir: dir,
        _stop: stop,
    }
}

#[tokio::test]
async fn a_changed_file_is_reloaded() {
    let old = Upstream::start().await;
    let new = Upstream::start().await;
    let gw = start_file(&config(&old.url(), "")).await;
    let url = format!("http://{}/p", gw.addr);
    assert_eq!(get(&url, &[]).await.status, 200);
    let mut outcomes = gw.reloader.outcomes();
    std::fs::write(&gw.path, config(&new.url(), "")).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        outcomes.wait_for(|c| c.applied == 1),
    )
    .await
    .expect("the file change was not picked up")
    .unwrap();
    assert_eq!(get(&url, &[]).await.status, 200);
    assert_eq!(old.requests().len(), 1);
    assert_eq!(new.requests().len(), 1);
}

#[tokio::test]
async fn a_broken_reload_keeps_the_old_config() {
    let up = Upstream::start().await;
    let gw = start_file(&config(&up.url(), "")).await;
    let url = format!("http://{}/p", gw.addr);
    let mut outcomes = gw.reloader.outcomes();
    std::fs::write(&gw.path, config(&up.url(), "auht = \"public\"\n")).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        outcomes.wait_for(|c| c.refused == 1),
    )
    .await
    .expect("the broken file was not noticed")
    .unwrap();
    let err = gw.reloader.reload().unwrap_err();
    assert!(err.to_string().contains("auht"), "{err}");
    assert_eq!(get(&url, &[]).await.status, 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn reload_under_load_fails_no_request() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = start_file(&config(&a.url(), "")).await;
    let url = format!("http://{}/p", gw.addr);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..50 {
                    statuses.push(get(&url, &[]).await.status.as_u16());
                }
                statuses
            })
        })
        .collect();
    for i in 0..6 {
        let target = if i % 2 == 0 { b.url() } else { a.url() };
        std::fs::write(&gw.path, config(&target, "")).unwrap();
        gw.reloader.reload().unwrap();
    }
    for c in clients {
        assert!(c.await.unwrap().iter().all(|s| *s == 200));
    }
    assert_eq!(a.requests().len() + b.requests().len(), 200);
}

/// A gateway process started from the real binary, with its log lines.
struct Process {
    child: Child,
    logs: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
    addr: String,
}

impl Process {
    fn start(config_path: &std::path::Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args([
                "run",
                "--log-format",
                "json",
                "--config",
                config_path.to_str().unwrap(),
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, logs) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut p = Process {
            child,
            logs,
            seen: Vec::new(),
            addr: String::new(),
        };
        let line = p.wait_log("listening");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        p.addr = v["addr"].as_str().unwrap().to_string();
        p
    }

    fn wait_log(&mut self, needle: &str) -> String {
        loop {
            let line = self
                .logs
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    let old = Upstream::start().await;
    let new = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let path = dir.path().join("gateway.toml");
    // File watching off: only the signal can reload.
    let text = |u: &str| config(u, "").replace("reload_poll = \"20ms\"", "reload_poll = \"0s\"");
    std::fs::write(&path, text(&old.url())).unwrap();
    let mut p = Process::start(&path);
    let url = format!("http://{}/p", p.addr);
    assert_eq!(get(&url, &[]).await.status, 200);
    std::fs::write(&path, text(&new.url())).unwrap();
    p.signal("-HUP");
    p.wait_log("configuration reloaded");
    assert_eq!(get(&url, &[]).await.status, 200);
    assert_eq!((old.requests().len(), new.requests().len()), (1, 1));
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    let (slow, release) = Upstream::held("finished").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(&slow.url(), "")).unwrap();
    let mut p = Process::start(&path);
    let url = format!("http://{}/p", p.addr);
    let pending = tokio::spawn(async move { get(&url, &[]).await });
    slow.wait_requests(1).await;
    p.signal("-TERM");
    p.wait_log("draining");
    release.notify_one();
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "finished");
    p.wait_log("drained cleanly");
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn access_log_lines_carry_the_fields_and_no_secrets() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let path = dir.path().join("gateway.toml");
    let text = config(&up.url(), "").replace("auth = \"public\"", "auth = \"required\"");
    std::fs::write(
        &path,
        format!(
            "{text}\n[[users]]\nid = 1\nusername = \"user1\"\npassword_hash = \"{}\"\n",
            gateway::auth::users::hash_password(PASSWORD.as_bytes()).unwrap()
        ),
    )
    .unwrap();
    let mut p = Process::start(&path);
    let token = token();
    let url = format!("http://{}/p/x?api_key=hunter2", p.addr);
    let r = get(
        &url,
        &[
            ("authorization", &jwt_header(&token)),
            ("x-request-id", "ignored"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let line = p.wait_log("\"target\":\"access\"");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(
        v["path"], "/p/x",
        "the query string is not logged by default"
    );
    assert_eq!(v["route"], "routes[0]");
    assert_eq!(v["upstream"], up.url());
    assert_eq!(v["status"], 200);
    assert_eq!(v["identity"], "1");
    assert_eq!(v["reason"], "-");
    assert_eq!(v["request_id"], r.header("x-request-id").unwrap());
    assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(v["micros"].as_u64().is_some() && v["bytes"].as_u64() == Some(2));
    // A refused request logs its reason; nothing logs the token or the query's secret.
    get(&url, &[("authorization", "JWT not.a.token")]).await;
    let line = p.wait_log("\"target\":\"access\"");
    assert!(line.contains("\"reason\":\"malformed\""), "{line}");
    p.signal("-TERM");
    p.wait_log("stopped");
    let _ = p.child.wait();
    let rest: Vec<String> = p.logs.try_iter().collect();
    assert!(p.seen.len() >= 4);
    for l in p.seen.iter().chain(&rest) {
        assert!(
            !l.contains(&token) && !l.contains("hunter2"),
            "a secret reached the log: {l}"
        );
    }
}
