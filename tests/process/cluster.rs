//! Several instances behind a load balancer, as `deploy/local-cluster.sh` runs them: three
//! gateway processes (the built binary), HAProxy checking each one's `/readyz` on its admin
//! port, and an nginx backend echoing `X-Identity`, all on 127.0.0.1.
//!
//! Proves: a token issued by one instance is accepted by the others; a rolling restart under
//! continuous load through the load balancer loses no request; an instance that is not
//! ready is taken out of the load balancer and comes back when it is ready again. With
//! `[refresh]` and `[revocation]` on: a logout, a refresh-token reuse, "log out everywhere"
//! and operator revocations made on one process reach the other two within a second; with
//! Redis killed they serve on (fail_open), and a revocation made during the outage reaches
//! the others once Redis is back.
//! Needs `haproxy`, `nginx` and `curl` (`.ci/run` installs them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::support::*;

/// One cluster at a time: each is seven processes, and the machine may have two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local-cluster.sh")
}

/// A base port whose whole layout (base .. base+23) is free on 127.0.0.1 right now, below
/// Linux's ephemeral range (32768..) so that other tests' `127.0.0.1:0` never take it.
fn free_base_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..200 {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed) as u32 + std::process::id();
        let base = 10_000 + (slot % 220) as u16 * 100;
        let free = [0, 1, 2, 3, 11, 12, 13, 21, 22, 23]
            .iter()
            .all(|off| std::net::TcpListener::bind(("127.0.0.1", base + off)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free block of ports on 127.0.0.1");
}

/// `deploy/local-cluster.sh start`, running until dropped.
struct Cluster {
    child: Child,
    state: PathBuf,
    base: u16,
    ports: HashMap<String, u16>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn command(state: &Path, base: u16, subcommand: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg(subcommand)
            .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_gateway"))
            .env("CLUSTER_BASE_PORT", base.to_string())
            .env("CLUSTER_DIR", state)
            .env("CLUSTER_WAIT_SECS", WAIT.as_secs().to_string())
            .env_remove("GATEWAY_SECRET");
        cmd
    }

    /// Starts the cluster and returns once the script says every piece is up and HAProxy
    /// has every gateway UP.
    async fn start() -> Cluster {
        Self::start_with(&[]).await
    }

    /// Like [`Cluster::start`], with extra environment for the script.
    async fn start_with(env: &'static [(&'static str, &'static str)]) -> Cluster {
        tokio::task::spawn_blocking(move || Self::start_blocking(env))
            .await
            .unwrap()
    }

    fn start_blocking(env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let base = free_base_port();
        let err = std::fs::File::create(dir.path().join("start.err")).unwrap();
        let mut child = Self::command(&state, base, "start")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("bash is needed");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut cluster = Cluster {
            child,
            state,
            base,
            ports: HashMap::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT * 3;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.starts_with("ready: ") => break,
                Ok(_) => {}
                Err(e) => panic!("the cluster did not start ({e}):\n{}", cluster.logs()),
            }
        }
        let env = std::fs::read_to_string(cluster.state.join("cluster.env")).unwrap();
        cluster.ports = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect();
        cluster
    }

    /// The script's stderr and every gateway's log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        let err = self.state.parent().unwrap().join("start.err");
        for path in [err]
            .into_iter()
            .chain((1..=3).map(|i| self.state.join(format!("gateway{i}.log"))))
            .chain([self.state.join("haproxy.log")])
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn port(&self, key: &str) -> u16 {
        self.ports[key]
    }

    fn lb(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port("LB_PORT"))
    }

    fn gateway(&self, i: usize, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.port(&format!("GATEWAY{i}_PORT"))
        )
    }

    fn admin(&self, i: usize, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.port(&format!("GATEWAY{i}_ADMIN_PORT"))
        )
    }

    fn pid(&self, i: usize) -> u32 {
        std::fs::read_to_string(self.state.join(format!("gateway{i}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn exits(&self, i: usize) -> Vec<String> {
        std::fs::read_to_string(self.state.join(format!("gateway{i}.exits")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.state.join(format!("gateway{i}.toml"))
    }

    /// HAProxy's status of `server` ("UP", "DOWN", "UP 1/2", ...), from its CSV stats.
    async fn lb_status(&self, server: &str) -> String {
        let csv = get(
            &format!("http://127.0.0.1:{}/stats;csv", self.port("STATS_PORT")),
            &[],
        )
        .await
        .text();
        csv.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > 17 && f[0] == "gateways" && f[1] == server)
            .map(|f| f[17].to_string())
            .unwrap_or_else(|| panic!("no server {server} in the HAProxy stats:\n{csv}"))
    }

    async fn wait_lb(&self, server: &str, status: &str) {
        eventually_within(
            WAIT,
            &format!("HAProxy to mark {server} {status}"),
            async || self.lb_status(server).await == status,
        )
        .await;
    }

    /// Logs in as user1 at `url` (a gateway's `/auth`) and returns the header value.
    async fn login(&self, url: &str) -> String {
        let r = post_json(
            url,
            &json!({"username": "user1", "password": PASSWORD}).to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "login failed: {}", r.text());
        jwt_header(r.json()["access_token"].as_str().unwrap())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM the script: its EXIT trap stops exactly the PIDs it recorded.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The script could not clean up: stop what it recorded, if it is still ours.
        let state = self.state.to_string_lossy().into_owned();
        for entry in std::fs::read_dir(&self.state)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = pid.trim();
                let cmdline =
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if !pid.is_empty() && cmdline.contains(&state) {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_by_one_instance_is_accepted_by_the_others() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start().await;
    let auth = c.login(&c.gateway(1, "/auth")).await;

    for i in [2, 3] {
        let r = get(&c.gateway(i, "/whoami"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "gateway {i}: {}", r.text());
        assert_eq!(r.text(), "1\n", "gateway {i} forwarded another identity");
    }
    // Through the load balancer: round robin over three UP servers visits each of them.
    let mut served = BTreeSet::new();
    for _ in 0..6 {
        let r = get(&c.lb("/whoami"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "1\n");
        served.insert(r.header("x-served-by").unwrap().to_string());
    }
    assert_eq!(
        served,
        BTreeSet::from(["gateway1", "gateway2", "gateway3"].map(String::from))
    );

    // What an operator compares during a rollout: one keyring fingerprint on every instance.
    let mut keys = BTreeSet::new();
    for i in 1..=3 {
        let config = get(&c.admin(i, "/config"), &[]).await;
        assert_eq!(config.status, 200, "{}", config.text());
        let fingerprint = config.json()["keys_sha256"].as_str().unwrap().to_string();
        assert!(!fingerprint.is_empty());
        keys.insert(fingerprint);
    }
    assert_eq!(keys.len(), 1, "skewed keys: {keys:?}");

    // The instances share the cluster's secret, not just any secret: a token signed with
    // another one is refused by every instance.
    let forged = jwt_header(&token());
    for i in 1..=3 {
        let r = get(&c.gateway(i, "/whoami"), &[("authorization", &forged)]).await;
        assert_eq!(r.status, 401, "gateway {i}: {}", r.text());
    }
}

/// What one client of the load saw.
#[derive(Default)]
struct Seen {
    ok: usize,
    failures: Vec<String>,
    served_by: BTreeMap<String, usize>,
}

/// GETs `url` with `auth` in a loop over one keep-alive connection pool until `stop` is
/// set or `max` requests were made, counting every outcome.
async fn client_load(
    url: String,
    auth: String,
    stop: Arc<AtomicBool>,
    progress: Arc<tokio::sync::watch::Sender<usize>>,
    max: usize,
) -> Seen {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut seen = Seen::default();
    for _ in 0..max {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let req = http::Request::get(&url)
            .header("authorization", &auth)
            .body(Full::new(Bytes::new()))
            .unwrap();
        match client.request(req).await {
            Ok(res) => {
                let status = res.status();
                let by = res
                    .headers()
                    .get("x-served-by")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                match res.into_body().collect().await.map(|b| b.to_bytes()) {
                    Ok(body) if status == 200 && body == "1\n" => {
                        seen.ok += 1;
                        *seen.served_by.entry(by).or_default() += 1;
                    }
                    Ok(body) => seen.failures.push(format!(
                        "{status} from {by}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => seen.failures.push(format!("{status} from {by}: body: {e}")),
                }
            }
            Err(e) => seen.failures.push(format!("request failed: {e:?}")),
        }
        progress.send_modify(|n| *n += 1);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_no_request() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start().await;
    let auth = c.login(&c.lb("/auth")).await;
    let old: Vec<u32> = (1..=3).map(|i| c.pid(i)).collect();

    const CLIENTS: usize = 4;
    // A bound on the load; the restart takes a few seconds, far fewer requests than this.
    const MAX_PER_CLIENT: usize = 50_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (progress, mut count) = tokio::sync::watch::channel(0usize);
    let progress = Arc::new(progress);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client_load(
                c.lb("/whoami"),
                auth.clone(),
                stop.clone(),
                progress.clone(),
                MAX_PER_CLIENT,
            ))
        })
        .collect();
    let wait_count = |count: &mut tokio::sync::watch::Receiver<usize>, n: usize| {
        let mut count = count.clone();
        async move {
            tokio::time::timeout(WAIT, count.wait_for(|c| *c >= n))
                .await
                .expect("the load stalled")
                .map(|c| *c)
                .unwrap()
        }
    };
    // Load is flowing before the first SIGTERM.
    let before = wait_count(&mut count, 100).await;

    let restart =
        tokio::process::Command::from(Cluster::command(&c.state, c.base, "rolling-restart"))
            .output()
            .await
            .unwrap();
    let during = *count.borrow() - before;
    assert!(
        restart.status.success(),
        "rolling-restart failed:\n{}\n{}",
        String::from_utf8_lossy(&restart.stderr),
        c.logs()
    );
    // And still flowing after the last instance is back.
    let after = *count.borrow();
    wait_count(&mut count, after + 100).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut failures = Vec::new();
    let mut served_by: BTreeMap<String, usize> = BTreeMap::new();
    for client in clients {
        let seen = client.await.unwrap();
        total += seen.ok + seen.failures.len();
        failures.extend(seen.failures);
        for (k, v) in seen.served_by {
            *served_by.entry(k).or_default() += v;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed, e.g. {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        c.logs()
    );
    assert!(
        total < CLIENTS * MAX_PER_CLIENT,
        "the load ran into its bound"
    );
    assert!(during > 0, "no request was made during the restart");
    assert_eq!(served_by.len(), 3, "{served_by:?}");
    for i in 1..=3 {
        assert_ne!(c.pid(i), old[i - 1], "gateway {i} was not restarted");
        // One SIGTERM each, and each drained and exited 0.
        assert_eq!(c.exits(i), ["0"], "gateway {i} exit statuses");
    }
    eprintln!("{total} requests, {during} during the rolling restart, all 200: {served_by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_is_not_ready_is_taken_out_of_the_load_balancer() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start().await;
    let auth = c.login(&c.lb("/auth")).await;

    // Make gateway 2 unready without stopping it: reload it with an upstream where nothing
    // listens, so its pool has no available server.
    let path = c.config_path(2);
    let good = std::fs::read_to_string(&path).unwrap();
    let backend = format!("\"http://127.0.0.1:{}\"", c.port("BACKEND_PORT"));
    assert_eq!(good.matches(&backend).count(), 1);
    let nowhere = format!("\"http://{}\"", closed_port().await);
    std::fs::write(&path, good.replace(&backend, &nowhere)).unwrap();
    signal(c.pid(2), "-HUP");

    eventually_within(WAIT, "gateway 2 /readyz to answer 503", async || {
        get(&c.admin(2, "/readyz"), &[]).await.status == 503
    })
    .await;
    let r = get(&c.admin(2, "/readyz"), &[]).await;
    let body: Value = r.json();
    assert_eq!(body["status"], "not ready", "{body}");
    assert!(!body["reasons"].as_array().unwrap().is_empty(), "{body}");
    // Alive all along: liveness and readiness are different questions.
    assert_eq!(get(&c.admin(2, "/healthz"), &[]).await.status, 200);
    c.wait_lb("gateway2", "DOWN").await;

    // Asked directly, gateway 2 fails; through the load balancer, nobody notices.
    let r = get(&c.gateway(2, "/whoami"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let mut served = BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        let r = get(&c.lb("/whoami"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "1\n");
        *served
            .entry(r.header("x-served-by").unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["gateway1", "gateway3"],
        "{served:?}"
    );

    // Ready again: back in rotation.
    std::fs::write(&path, &good).unwrap();
    signal(c.pid(2), "-HUP");
    eventually_within(WAIT, "gateway 2 /readyz to answer 200", async || {
        get(&c.admin(2, "/readyz"), &[]).await.status == 200
    })
    .await;
    c.wait_lb("gateway2", "UP").await;
    let mut served = BTreeSet::new();
    for _ in 0..6 {
        let r = get(&c.lb("/whoami"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        served.insert(r.header("x-served-by").unwrap().to_string());
    }
    assert!(served.contains("gateway2"), "{served:?}");
}

/// A login through `url` from the loopback source address `from` (curl binds it), as
/// (status, Retry-After).
fn login_from(url: &str, from: &str, user: &str, password: &str) -> (u16, Option<u64>) {
    let body = json!({"username": user, "password": password}).to_string();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-"])
        .args(["--interface", from, "-H", "content-type: application/json"])
        .args(["--data", &body, url])
        .output()
        .expect("curl is needed");
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no status from curl: {head} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let retry = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    (status, retry)
}

#[tokio::test]
async fn the_three_gateways_share_login_limits_in_redis_behind_haproxy() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start_with(&[("CLUSTER_ADDRESS_FAILURES", "5")]).await;
    let lb = cluster.lb("/auth");
    // A password spray from one client, spread by HAProxy over the three gateways.
    for i in 0..5 {
        let (status, _) = login_from(&lb, "127.0.0.2", &format!("spray{i}"), "Autumn2026!");
        assert_eq!(status, 401, "attempt {i}\n{}", cluster.logs());
    }
    let (status, retry) = login_from(&lb, "127.0.0.2", "spray9", "Autumn2026!");
    assert_eq!(status, 429, "{}", cluster.logs());
    assert!(retry.is_some_and(|r| r > 0));
    // Another client behind the same HAProxy has its own budget (trusted_proxies).
    assert_eq!(login_from(&lb, "127.0.0.3", "user1", "abcxyz").0, 200);
    assert_eq!(login_from(&lb, "127.0.0.3", "spray1", "x").0, 401);
    // Wrong passwords for one account from ten addresses: locked on every gateway.
    for i in 0..10 {
        let from = format!("127.0.1.{}", i + 1);
        assert_eq!(
            login_from(&lb, &from, "user2", "wrong").0,
            401,
            "attempt {i}"
        );
    }
    for i in 1..=3 {
        let (status, retry) =
            login_from(&cluster.gateway(i, "/auth"), "127.0.0.1", "user2", "abcxyz");
        assert_eq!(status, 429, "gateway {i}");
        assert!(retry.is_some_and(|r| r >= 50), "gateway {i}: {retry:?}");
    }
    // Successful logins were never limited.
    for _ in 0..30 {
        assert_eq!(login_from(&lb, "127.0.0.4", "user1", "abcxyz").0, 200);
    }
}

#[tokio::test]
async fn without_trusted_proxies_every_client_shares_the_proxy_budget() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start_with(&[
        ("CLUSTER_ADDRESS_FAILURES", "5"),
        ("CLUSTER_TRUSTED_PROXIES", "[]"),
    ])
    .await;
    let lb = cluster.lb("/auth");
    for i in 0..5 {
        assert_eq!(
            login_from(&lb, "127.0.0.2", &format!("spray{i}"), "x").0,
            401
        );
    }
    // A different client, but all the gateways see is HAProxy's address.
    assert_eq!(login_from(&lb, "127.0.0.3", "user1", "abcxyz").0, 429);
}

/// What gateway `i` answers to `GET /` with `access`.
async fn status_on(cluster: &Cluster, i: usize, access: &str) -> u16 {
    get(
        &cluster.gateway(i, "/"),
        &[("authorization", &jwt_header(access))],
    )
    .await
    .status
    .as_u16()
}

/// Polls gateways 1..=3 until each refuses `access` (within a second: the set travels by
/// Redis pub/sub, not by the periodic resync).
async fn refused_on_all(cluster: &Cluster, what: &str, access: &str) {
    for i in 1..=3 {
        eventually_within(
            Duration::from_secs(1),
            &format!("{what} refused on gateway {i}"),
            async || status_on(cluster, i, access).await == 401,
        )
        .await;
    }
}

/// Logs in as `user` on gateway `i`: (access token, refresh token).
async fn pair_from(cluster: &Cluster, i: usize, user: &str) -> (String, String) {
    let body = json!({"username": user, "password": PASSWORD}).to_string();
    let r = post_json(&cluster.gateway(i, "/auth"), &body).await;
    assert_eq!(r.status, 200, "login on {i}: {}", r.text());
    tokens_of(&r.json())
}

fn tokens_of(body: &Value) -> (String, String) {
    let field = |k: &str| {
        body[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k}: {body}"))
            .to_string()
    };
    (field("access_token"), field("refresh_token"))
}

async fn refresh_on(cluster: &Cluster, i: usize, refresh_token: &str) -> Value {
    let body = json!({"refresh_token": refresh_token}).to_string();
    let r = post_json(&cluster.gateway(i, "/auth/refresh"), &body).await;
    if r.status != 200 {
        assert_eq!(r.status, 401, "{}", r.text());
        r.assert_error(401, "Unauthorized", "Invalid refresh token");
        return Value::Null;
    }
    r.json()
}

async fn logout_on(cluster: &Cluster, i: usize, access: &str, body: Value) {
    let r = request(
        "POST",
        &cluster.gateway(i, "/auth/logout"),
        &[
            ("authorization", &jwt_header(access)),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "logout on {i}: {}", r.text());
}

fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn logout_refresh_reuse_and_revocations_reach_the_three_processes() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start_with(&[("CLUSTER_LIFECYCLE", "1")]).await;
    // Log in on 1, refresh on 2, log out on 3.
    let (_, r1) = pair_from(&cluster, 1, "user1").await;
    let (a2, r2) = tokens_of(&refresh_on(&cluster, 2, &r1).await);
    for i in 1..=3 {
        assert_eq!(status_on(&cluster, i, &a2).await, 200, "{}", cluster.logs());
    }
    logout_on(&cluster, 3, &a2, json!({"refresh_token": r2})).await;
    refused_on_all(&cluster, "the logged-out access token", &a2).await;
    for i in 1..=3 {
        assert!(refresh_on(&cluster, i, &r2).await.is_null(), "gateway {i}");
    }

    // Reuse: r1 → r2 → r3; within grace r1's own successor is answered again, but r1
    // presented after r2 was rotated too is a reuse, and the newest token dies with it.
    let (_, r1) = pair_from(&cluster, 1, "user1").await;
    let first = refresh_on(&cluster, 2, &r1).await;
    assert_eq!(
        refresh_on(&cluster, 3, &r1).await,
        first,
        "grace answers the same pair"
    );
    let (_, r2) = tokens_of(&first);
    let (_, r3) = tokens_of(&refresh_on(&cluster, 3, &r2).await);
    assert!(refresh_on(&cluster, 2, &r1).await.is_null());
    for i in 1..=3 {
        assert!(refresh_on(&cluster, i, &r3).await.is_null(), "gateway {i}");
    }

    // Log out everywhere on 2 cuts both of user1's tokens on all three; a new login works.
    let (t1, _) = pair_from(&cluster, 1, "user1").await;
    let (t2, _) = pair_from(&cluster, 3, "user1").await;
    logout_on(&cluster, 2, &t1, json!({"everywhere": true})).await;
    refused_on_all(&cluster, "user1's first token", &t1).await;
    refused_on_all(&cluster, "user1's second token", &t2).await;
    let (fresh, _) = pair_from(&cluster, 3, "user1").await;
    for i in 1..=3 {
        assert_eq!(status_on(&cluster, i, &fresh).await, 200, "gateway {i}");
    }

    // Operators: by jti on 1's admin listener, by user on 2's, and `gateway revoke`.
    let (u2, _) = pair_from(&cluster, 2, "user2").await;
    let revoke = async |i: usize, body: Value| {
        let r = post_json(&cluster.admin(i, "/revocations"), &body.to_string()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    };
    revoke(1, json!({"jti": jti_of(&fresh)})).await;
    refused_on_all(&cluster, "the admin jti revocation", &fresh).await;
    assert_eq!(status_on(&cluster, 1, &u2).await, 200);
    revoke(2, json!({"user": 2})).await;
    refused_on_all(&cluster, "the admin user revocation", &u2).await;
    let (last, _) = pair_from(&cluster, 1, "user1").await;
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["revoke", "--jti", &jti_of(&last), "--config"])
        .arg(cluster.config_path(3))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused_on_all(&cluster, "gateway revoke --jti", &last).await;
}

/// A Redis the test starts on `port` (the cluster's, after the cluster's own was killed),
/// stopped by PID when dropped.
struct Redis {
    child: Child,
    /// Its working directory, removed after it stops.
    _dir: tempfile::TempDir,
}

impl Redis {
    fn on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed");
        Redis { child, _dir: dir }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_revocation_made_while_redis_was_down_reaches_the_other_processes_when_it_returns() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start_with(&[("CLUSTER_LIFECYCLE", "1")]).await;
    let (before, _) = pair_from(&cluster, 1, "user1").await;
    let (cut_off, _) = pair_from(&cluster, 2, "user1").await;
    let (good, _) = pair_from(&cluster, 3, "user2").await;
    logout_on(&cluster, 1, &before, json!({})).await;
    refused_on_all(&cluster, "the revocation before the outage", &before).await;

    let redis_pid: u32 = std::fs::read_to_string(cluster.state.join("redis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    signal(redis_pid, "-KILL");
    // fail_open (the default): past max_staleness (5 s) every instance still serves with
    // what it knows, the old revocation included, and counts the outage.
    let gauge = |text: String, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    for i in 1..=3 {
        let metrics = cluster.admin(i, "/metrics");
        eventually_within(
            WAIT,
            &format!("gateway {i} past max_staleness"),
            async || {
                let text = get(&metrics, &[]).await.text();
                gauge(text, "gateway_revocation_staleness_seconds ") > 5.0
            },
        )
        .await;
        // Several failures (every reconnect attempt), counted.
        eventually_within(WAIT, &format!("gateway {i} counts retries"), async || {
            let text = get(&metrics, &[]).await.text();
            gauge(text, "gateway_revocation_store_errors_total ") >= 2.0
        })
        .await;
        assert_eq!(status_on(&cluster, i, &good).await, 200, "gateway {i}");
        assert_eq!(status_on(&cluster, i, &before).await, 401, "gateway {i}");
    }
    // Revoked on 1 while cut off: in force there at once; the store did not take it.
    let r = post_json(
        &cluster.admin(1, "/revocations"),
        &json!({"jti": jti_of(&cut_off)}).to_string(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(status_on(&cluster, 1, &cut_off).await, 401);
    assert_eq!(status_on(&cluster, 2, &cut_off).await, 200);

    // Redis back, empty: gateway 1's resync after reconnecting writes its entries back and
    // announces them, so 2 and 3 refuse the token revoked during the outage.
    let _redis = Redis::on(cluster.port("REDIS_PORT"));
    for i in 1..=3 {
        eventually_within(
            WAIT,
            &format!("the outage's revocation on gateway {i}"),
            async || status_on(&cluster, i, &cut_off).await == 401,
        )
        .await;
        assert_eq!(status_on(&cluster, i, &before).await, 401, "gateway {i}");
        assert_eq!(status_on(&cluster, i, &good).await, 200, "gateway {i}");
    }
    // The outage was logged once per instance, however many failures it counted, and so
    // was the recovery.
    let log = |i: usize| {
        std::fs::read_to_string(cluster.state.join(format!("gateway{i}.log"))).unwrap_or_default()
    };
    let lines = |i: usize, text: &str| log(i).lines().filter(|l| l.contains(text)).count();
    for i in 1..=3 {
        eventually_within(
            WAIT,
            &format!("gateway {i} logs its recovery"),
            async || lines(i, "store: reachable again") >= 1,
        )
        .await;
        assert_eq!(
            lines(i, "store: reachable again"),
            1,
            "gateway {i}:\n{}",
            log(i)
        );
        assert_eq!(
            lines(i, "store: cannot keep the local set current"),
            1,
            "gateway {i}:\n{}",
            log(i)
        );
    }
}
