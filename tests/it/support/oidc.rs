//! A real OpenID Connect provider (`tests/oidc/provider.js`, the `oidc-provider` package
//! under Node) on a free loopback port, and a small cookie-keeping client that walks its
//! login pages the way a browser would (no redirect followed unless asked).

use std::collections::HashMap;
use std::process::Stdio;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::client::Resp;

/// The client secret every test client is registered with.
pub const CLIENT_SECRET: &str = "a-client-secret-for-the-test-provider";

/// The provider's test accounts: login name → claims.
pub fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "groups": ["staff"]},
        "mallory": {"email": "mallory@evil.example", "email_verified": true, "groups": ["staff"]},
        "guest": {"email": "guest@example.com", "email_verified": true, "groups": ["guests"]},
        "unverified": {"email": "eve@example.com", "email_verified": false, "groups": ["staff"]},
        // Named like the test gateway's local users (ids 1 and "alice").
        "1": {"email": "one@example.com", "email_verified": true, "groups": ["staff"]},
    })
}

/// A running provider; stopped when dropped (stdin closes, then the process is killed).
pub struct IdP {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl IdP {
    /// Starts the provider; it serves once [`IdP::register`] has named its clients.
    pub async fn start() -> IdP {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.js");
        let mut child = Command::new("node")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (tests/prepare.sh installs it and the provider's packages)");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let first = read_line(&mut stdout).await;
        let port = first["port"]
            .as_u64()
            .expect("the provider prints its port") as u16;
        IdP {
            port,
            child,
            stdin,
            stdout,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers confidential clients `(client_id, auth_method)` whose redirect URI is
    /// `callback` and post-logout URI `after_logout`, then waits until it serves.
    pub async fn register(&mut self, clients: &[(&str, &str)], callback: &str, after_logout: &str) {
        self.register_with(clients, callback, after_logout, None)
            .await;
    }

    /// Like [`IdP::register`], the token endpoint taking only `methods` (and discovery
    /// saying so).
    pub async fn register_with(
        &mut self,
        clients: &[(&str, &str)],
        callback: &str,
        after_logout: &str,
        methods: Option<&[&str]>,
    ) {
        let clients: Vec<Value> = clients
            .iter()
            .map(|(id, method)| {
                json!({
                    "client_id": id,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [callback],
                    "post_logout_redirect_uris": [after_logout],
                    "token_endpoint_auth_method": method,
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                })
            })
            .collect();
        let mut config = json!({"clients": clients, "accounts": accounts()});
        if let Some(m) = methods {
            config["authMethods"] = json!(m);
        }
        let line = config.to_string() + "\n";
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        let ready = read_line(&mut self.stdout).await;
        assert_eq!(ready["ready"], true, "{ready}");
    }
}

impl Drop for IdP {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.start_kill();
    }
}

async fn read_line(r: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), r.read_line(&mut line))
        .await
        .expect("the provider answers within 20 s")
        .unwrap();
    assert!(read > 0, "the provider exited");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// One cookie a server set.
#[derive(Debug, Clone)]
pub struct StoredCookie {
    pub value: String,
    pub path: String,
    /// The `Set-Cookie` line as received.
    pub raw: String,
}

/// Cookies per origin (`127.0.0.1:port`) and name, sent back on matching paths; each
/// response's Set-Cookie lines are kept for the test to inspect.
#[derive(Default)]
pub struct Browser {
    jar: HashMap<(String, String), StoredCookie>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser::default()
    }

    /// The cookie named `name` set by `origin`.
    pub fn cookie(&self, origin: &str, name: &str) -> Option<&StoredCookie> {
        self.jar.get(&(origin.to_string(), name.to_string()))
    }

    /// Sets (or replaces) a cookie by hand, as an attacker's browser may.
    pub fn plant(&mut self, origin: &str, name: &str, value: &str, path: &str) {
        self.jar.insert(
            (origin.to_string(), name.to_string()),
            StoredCookie {
                value: value.to_string(),
                path: path.to_string(),
                raw: String::new(),
            },
        );
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        self.send("GET", url, &[("accept", "text/html")], Bytes::new())
            .await
    }

    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let uri: http::Uri = url.parse().unwrap();
        let origin = uri.authority().unwrap().to_string();
        let path = uri.path().to_string();
        let cookies: Vec<String> = self
            .jar
            .iter()
            .filter(|((o, _), c)| *o == origin && path_matches(&c.path, &path))
            .map(|((_, n), c)| format!("{n}={}", c.value))
            .collect();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if !cookies.is_empty() {
            b = b.header("cookie", cookies.join("; "));
        }
        let res = client
            .request(b.body(Full::new(body)).unwrap())
            .await
            .expect("request failed");
        let (parts, body) = res.into_parts();
        self.store(&origin, &parts.headers);
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// Posts an HTML form (url-encoded fields).
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            "POST",
            url,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "text/html"),
            ],
            Bytes::from(body),
        )
        .await
    }

    fn store(&mut self, origin: &str, headers: &HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let raw = v.to_str().unwrap().to_string();
            let c = cookie::Cookie::parse(raw.clone()).unwrap();
            let key = (origin.to_string(), c.name().to_string());
            let expired = c.max_age().is_some_and(|a| a.is_zero() || a.is_negative())
                || c.expires_datetime()
                    .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc());
            if expired {
                self.jar.remove(&key);
                continue;
            }
            self.jar.insert(
                key,
                StoredCookie {
                    value: c.value().to_string(),
                    path: c.path().unwrap_or("/").to_string(),
                    raw,
                },
            );
        }
    }
}

/// RFC 6265 §5.1.4 path matching.
fn path_matches(cookie_path: &str, path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path[cookie_path.len()..].starts_with('/')))
}

/// `location` made absolute against `origin` (`http://127.0.0.1:port`).
pub fn absolute(origin: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        location.to_string()
    }
}

/// Walks the provider from its authorization URL, logging in as `account`, up to the
/// redirect back to the gateway; returns that callback URL (not yet visited).
pub async fn log_in_at_provider(
    b: &mut Browser,
    idp: &IdP,
    authorize: &str,
    account: &str,
) -> String {
    let origin = idp.issuer();
    let mut url = authorize.to_string();
    for _ in 0..10 {
        let r = b.get(&url).await;
        if r.status.is_redirection() {
            let next = absolute(&origin, r.header("location").unwrap());
            if !next.starts_with(&origin) {
                return next;
            }
            url = next;
            continue;
        }
        assert_eq!(r.status, 200, "provider page {url}: {}", r.text());
        // The login page's form.
        let page = r.text();
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form on {url}: {page}"));
        let r = b
            .post_form(
                &absolute(&origin, action),
                &[("prompt", "login"), ("login", account), ("password", "any")],
            )
            .await;
        assert!(
            r.status.is_redirection(),
            "login post: {} {}",
            r.status,
            r.text()
        );
        url = absolute(&origin, r.header("location").unwrap());
    }
    panic!("the provider never redirected back");
}
