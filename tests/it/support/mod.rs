//! Test harness: a real gateway and real upstream servers on 127.0.0.1:0, a small HTTP
//! client, raw sockets, and token minting.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use gateway::body::{full, Body};

pub mod capture;
pub mod pki;

/// The HMAC secret every test gateway uses (written to a secret_file).
pub const SECRET: &[u8] = b"integration-test-secret-0123456789abcdef";
/// The seed users' password.
pub const PASSWORD: &str = "abcxyz";
const HASH1: &str = "$argon2id$v=19$m=19456,t=2,p=1$wSaoz+WjVyDsS0mngmCCZw$lmrh+SyHdtpcel/Vv+nEzSbKyrsRTlKEFpoT+qiXaQw";
const HASH2: &str = "$argon2id$v=19$m=19456,t=2,p=1$EHZg7TkI/yDxnjGOSQpsjA$40+bAy3AVg+q4NBXHUe7bqEqyoyKNkNyBIQ90IpAM+4";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------- tokens

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header.payload` (both raw JSON text) with `secret` using `alg` (an HMAC alg).
pub fn sign_with(
    alg: jsonwebtoken::Algorithm,
    header: &str,
    payload: &str,
    secret: &[u8],
) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap();
    format!("{input}.{sig}")
}

/// An HS256 token with the Flask-JWT header over `payload` (raw JSON text).
pub fn sign_raw(payload: &str) -> String {
    sign_with(
        jsonwebtoken::Algorithm::HS256,
        r#"{"typ":"JWT","alg":"HS256"}"#,
        payload,
        SECRET,
    )
}

/// An HS256 token over `claims`.
pub fn mint(claims: Value) -> String {
    sign_raw(&claims.to_string())
}

/// Flask-JWT claims for `identity`, valid now for 300 s.
pub fn claims(identity: Value) -> Value {
    let t = now();
    json!({"exp": t + 300, "iat": t, "nbf": t, "identity": identity})
}

/// A valid token for user 1.
pub fn token() -> String {
    mint(claims(json!(1)))
}

// ---------------------------------------------------------------- upstream

/// What an upstream server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub version: http::Version,
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    /// The connection it came on (the gateway's side of it).
    pub peer: SocketAddr,
}

pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A real HTTP/1.1 server on 127.0.0.1:0 that records every request it gets.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    count: tokio::sync::watch::Receiver<usize>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    /// Answers 200 `ok` after reading the whole body.
    pub async fn start() -> Upstream {
        Self::with(Arc::new(|req: Request<Incoming>| {
            Box::pin(async move {
                let _ = req.into_body().collect().await;
                Response::new(full("ok"))
            })
        }))
        .await
    }

    /// Holds each request until `release` is notified (once per request), then answers
    /// 200 with `body`.
    pub async fn held(body: &'static str) -> (Upstream, Arc<tokio::sync::Notify>) {
        let release = Arc::new(tokio::sync::Notify::new());
        let r = release.clone();
        let up = Self::with(Arc::new(move |_req| {
            let r = r.clone();
            Box::pin(async move {
                r.notified().await;
                Response::new(full(body))
            })
        }))
        .await;
        (up, release)
    }

    /// Accepts requests and never answers them.
    pub async fn hanging() -> Upstream {
        Self::with(Arc::new(|_req| Box::pin(std::future::pending()))).await
    }

    /// Records each request's head, then hands it to `handler` (which sees the live body).
    pub async fn with(handler: Handler) -> Upstream {
        Self::serve(handler, None).await
    }

    /// Like [`Upstream::start`], over TLS with the given rustls server config.
    pub async fn tls(config: rustls::ServerConfig) -> Upstream {
        let ok: Handler = Arc::new(|req: Request<Incoming>| {
            Box::pin(async move {
                let _ = req.into_body().collect().await;
                Response::new(full("ok"))
            })
        });
        Self::serve(ok, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    pub async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (count_tx, count) = tokio::sync::watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = &mut stopped => return,
                };
                let record = record.clone();
                let handler = handler.clone();
                let count_tx = count_tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        let handler = handler.clone();
                        let count_tx = count_tx.clone();
                        async move {
                            let len = req
                                .headers()
                                .get("content-length")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            record.lock().unwrap().push(Seen {
                                method: req.method().clone(),
                                version: req.version(),
                                target: req.uri().to_string(),
                                headers: req.headers().clone(),
                                body_len: len,
                                peer,
                            });
                            let n = record.lock().unwrap().len();
                            count_tx.send_replace(n);
                            Ok::<_, std::convert::Infallible>(handler(req).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            // A failed handshake (wrong CA, no client cert) just drops the connection.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            count,
            stop: Some(stop),
        }
    }

    /// Waits (10 s at most) until this upstream has received `n` requests in all.
    pub async fn wait_requests(&self, n: usize) {
        let mut rx = self.count.clone();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the upstream received {} of {n} requests",
                    *self.count.borrow()
                )
            })
            .unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A loopback address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------- gateway

/// Builds a gateway config around the seed users and a secret file, then starts it.
pub struct GatewayBuilder {
    extra: String,
    login_lines: Vec<String>,
    tokens: Vec<String>,
    server: Vec<String>,
    routes: String,
    login: bool,
    users: bool,
    /// Root-level tables (`[[keys]]`, `[[issuers]]`, `[jwks]`); with `[[keys]]` the
    /// `[tokens]` secret_file line is left out.
    tables: String,
    /// Files written next to the config before it is loaded.
    files: Vec<(String, Vec<u8>)>,
}

pub fn gateway() -> GatewayBuilder {
    GatewayBuilder {
        extra: String::new(),
        login_lines: Vec::new(),
        tokens: Vec::new(),
        server: Vec::new(),
        routes: String::new(),
        login: true,
        users: true,
        tables: String::new(),
        files: Vec::new(),
    }
}

impl GatewayBuilder {
    /// Adds a `key = value` line to `[tokens]`.
    pub fn tokens(mut self, line: &str) -> Self {
        self.tokens.push(line.to_string());
        self
    }

    /// Adds a `key = value` line to `[login]`.
    pub fn login(mut self, line: &str) -> Self {
        self.login_lines.push(line.to_string());
        self
    }

    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Adds a route to `upstream` with `auth`, plus extra `key = value` lines.
    pub fn route(self, path: &str, upstream: &str, auth: &str) -> Self {
        self.route_with(path, upstream, auth, &[])
    }

    pub fn route_with(mut self, path: &str, upstream: &str, auth: &str, extra: &[&str]) -> Self {
        self.routes.push_str(&format!(
            "\n[[routes]]\npath = \"{path}\"\nupstream = \"{upstream}\"\nauth = \"{auth}\"\n"
        ));
        for line in extra {
            self.routes.push_str(line);
            self.routes.push('\n');
        }
        self
    }

    pub fn respond_identity(mut self, path: &str) -> Self {
        self.routes.push_str(&format!(
            "\n[[routes]]\npath = \"{path}\"\nrespond = \"identity\"\nauth = \"required\"\n"
        ));
        self
    }

    /// Appends raw TOML (tables such as `[upstreams.x]` or `[identity]`) after the routes.
    pub fn raw(mut self, toml: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// Appends root-level TOML (`[[keys]]`, `[[issuers]]`, `[jwks]` tables).
    pub fn table(mut self, toml: &str) -> Self {
        self.tables.push('\n');
        self.tables.push_str(toml);
        self.tables.push('\n');
        self
    }

    /// Writes `contents` to `name` in the config's folder before loading.
    pub fn file(mut self, name: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((name.to_string(), contents.as_ref().to_vec()));
        self
    }

    pub fn without_users(mut self) -> Self {
        self.users = false;
        self.login = false;
        self
    }

    pub fn toml(&self) -> String {
        // With [[listeners]] in the extra tables, they replace `listen`.
        let mut t = if self.extra.contains("[[listeners]]") {
            String::from("[server]\n")
        } else {
            String::from("[server]\nlisten = \"127.0.0.1:0\"\n")
        };
        for l in &self.server {
            t.push_str(l);
            t.push('\n');
        }
        if self.tables.contains("[[keys]]") {
            t.push_str("[tokens]\n");
        } else {
            t.push_str("[tokens]\nsecret_file = \"secret\"\n");
        }
        for l in &self.tokens {
            t.push_str(l);
            t.push('\n');
        }
        if self.login {
            t.push_str("[login]\n");
            for l in &self.login_lines {
                t.push_str(l);
                t.push('\n');
            }
        }
        if self.users {
            t.push_str(&format!(
                "[[users]]\nid = 1\nusername = \"user1\"\npassword_hash = \"{HASH1}\"\n"
            ));
            t.push_str(&format!(
                "[[users]]\nid = \"alice\"\nusername = \"user2\"\npassword_hash = \"{HASH2}\"\n"
            ));
        }
        t.push_str(&self.routes);
        t.push_str(&self.extra);
        t.push_str(&self.tables);
        t
    }

    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let loaded = gateway::load::from_str(&self.toml(), dir.path())
            .unwrap_or_else(|e| panic!("{e}\n{}", self.toml()));
        let (stop, stopped) = oneshot::channel::<()>();
        let started = gateway::start(&loaded, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let addr = started.addr;
        let addrs = started.addrs.clone();
        let admin = started.admin_addr;
        let task = tokio::spawn(started.serving);
        Gateway {
            addr,
            addrs,
            admin,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }
}

/// A running in-process gateway; stopped (and drained) on drop or with [`Gateway::stop`].
pub struct Gateway {
    pub addr: SocketAddr,
    /// Every listener's address, in the configured order.
    pub addrs: Vec<SocketAddr>,
    /// The admin listener, when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<gateway::server::Drained>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin.expect("no [admin] in this config")
        )
    }

    /// Begins shutdown without waiting for the drain; `finish` waits for it.
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub async fn finish(mut self) -> gateway::server::Drained {
        self.begin_stop();
        self.task.take().unwrap().await.unwrap()
    }

    pub async fn stop(mut self) -> gateway::server::Drained {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }

    /// Logs in through `/auth` and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = post_json(
            &self.url("/auth"),
            &json!({"username": username, "password": password}).to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "login failed: {}", r.text());
        r.json()["access_token"].as_str().unwrap().to_string()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

// ---------------------------------------------------------------- client

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the compat error body exactly (sorted keys, trailing newline).
    pub fn assert_error(&self, status: u16, error: &str, description: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let want = format!(
            "{}\n",
            json!({"description": description, "error": error, "status_code": status})
        );
        assert_eq!(self.text(), want);
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = client
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .expect("request failed");
    let (parts, body) = res.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    request("GET", url, headers, Bytes::new()).await
}

pub async fn post_json(url: &str, body: &str) -> Resp {
    request(
        "POST",
        url,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Sends raw bytes and reads until the server closes (or 5 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
