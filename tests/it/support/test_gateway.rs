//! The gateway under test: a config builder around the seed users and a secret file, and the
//! running in-process gateway it starts.

use std::net::SocketAddr;

use serde_json::json;
use tokio::sync::oneshot;

use super::client::post_json;
use super::tokens::SECRET;

/// The seed users' password.
pub const PASSWORD: &str = "abcxyz";
/// An argon2id hash of [`PASSWORD`] (`gateway hash-password`).
pub const HASH1: &str = concat!(
    "$argon2id$v=19$m=19456,t=2,p=1$wSaoz+WjVyDsS0mngmCCZw$",
    "lmrh+SyHdtpcel/Vv+nEzSbKyrsRTlKEFpoT+qiXaQw",
);
const HASH2: &str = concat!(
    "$argon2id$v=19$m=19456,t=2,p=1$EHZg7TkI/yDxnjGOSQpsjA$",
    "40+bAy3AVg+q4NBXHUe7bqEqyoyKNkNyBIQ90IpAM+4",
);

/// Builds a gateway config around the seed users and a secret file, then starts it.
pub struct GatewayBuilder {
    extra: String,
    login_lines: Vec<String>,
    tokens: Vec<String>,
    server: Vec<String>,
    routes: String,
    login: bool,
    users: bool,
    /// Leave out the second seed user (`alice`, username `user2`).
    no_alice: bool,
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
        no_alice: false,
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

    /// Only the first seed user (id 1, `user1`).
    pub fn without_alice(mut self) -> Self {
        self.no_alice = true;
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
            if !self.no_alice {
                t.push_str(&format!(
                    "[[users]]\nid = \"alice\"\nusername = \"user2\"\npassword_hash = \"{HASH2}\"\n"
                ));
            }
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
