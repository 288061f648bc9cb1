//! Real nginx and Caddy processes on loopback, started from the shipped examples in
//! `deploy/forward-auth/` with their addresses swapped for the test's, stopped (by PID) on
//! drop.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example file `name` of `deploy/forward-auth/`, its gateway (127.0.0.1:9191),
/// application (127.0.0.1:3000) and listening port (8080) replaced.
pub fn example(name: &str, gateway: SocketAddr, app: SocketAddr, port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/forward-auth")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("127.0.0.1:9191") && text.contains("127.0.0.1:3000"),
        "{name} no longer names the addresses the tests replace"
    );
    text.replace("127.0.0.1:9191", &gateway.to_string())
        .replace("127.0.0.1:3000", &app.to_string())
        .replace(":8080", &format!(":{port}"))
}

/// A loopback port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A world-traversable temporary folder: nginx workers run as `nobody` when the tests run
/// as root, and must reach the cache inside.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A child process stopped (by its PID: SIGTERM, then SIGKILL after 10 s) and reaped on
/// drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The proxy's error log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls (20 s at most) until the proxy accepts connections.
    async fn ready(mut self, what: &str) -> Proxy {
        let addr = self.addr();
        let waiting = format!(
            "{what} to listen on {addr} (its log: {})",
            self.log.display()
        );
        super::eventually_within(Duration::from_secs(20), &waiting, async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what} exited ({status}):\n{}", self.log());
        }
        self
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers and cache manager,
        // which a killed master would leave running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with `deploy/forward-auth/nginx.conf` (a conf.d file) inside a minimal `http {}`,
/// in front of `app`, asking the gateway's decisions at `gateway`.
pub async fn nginx(gateway: SocketAddr, app: SocketAddr) -> Proxy {
    let dir = open_dir();
    let port = free_port();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let site = example("nginx.conf", gateway, app, port).replace(
        "/var/cache/nginx/gateway-decisions",
        &cache.display().to_string(),
    );
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    nginx_main(dir.path(), &dir.path().join("site.conf"));
    let log = dir.path().join("error.log");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is needed (tests/prepare.sh installs it)");
    Proxy {
        child,
        port,
        log,
        _dir: dir,
    }
    .ready("nginx")
    .await
}

/// Writes `dir/nginx.conf`: a minimal main config whose `http {}` includes `site` (a conf.d
/// file), with every path nginx writes inside `dir`.
fn nginx_main(dir: &Path, site: &Path) {
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    \
             include {};\n}}\n",
            site.display()
        ),
    )
    .unwrap();
}

/// `nginx -t` over the conf.d file `site` as shipped (its cache folder moved to a
/// temporary one, which `-t` creates).
pub fn nginx_check(site: &Path) -> std::process::Output {
    let dir = open_dir();
    let text = std::fs::read_to_string(site).unwrap().replace(
        "/var/cache/nginx/gateway-decisions",
        &dir.path().join("cache").display().to_string(),
    );
    let copy = dir.path().join("site.conf");
    std::fs::write(&copy, text).unwrap();
    nginx_main(dir.path(), &copy);
    Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .output()
        .expect("nginx is needed (tests/prepare.sh installs it)")
}

/// Caddy with `deploy/forward-auth/Caddyfile`, in front of `app`, asking the gateway's
/// decisions at `gateway`.
pub async fn caddy(gateway: SocketAddr, app: SocketAddr) -> Proxy {
    let dir = open_dir();
    let port = free_port();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, example("Caddyfile", gateway, app, port)).unwrap();
    let log = dir.path().join("caddy.log");
    let child = Command::new("caddy")
        .arg("run")
        .arg("--config")
        .arg(&file)
        .args(["--adapter", "caddyfile"])
        // Caddy keeps state under $HOME / XDG folders: keep it in the test's folder.
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("caddy is needed (tests/prepare.sh installs it)");
    Proxy {
        child,
        port,
        log,
        _dir: dir,
    }
    .ready("caddy")
    .await
}

/// Sends `request` (raw bytes, `Connection: close`) and returns the status code and the
/// whole response text, read until the server closes (5 s at most).
pub async fn raw_status(addr: SocketAddr, request: &str) -> (u16, String) {
    let text = super::raw(addr, request.as_bytes()).await;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}
