//! The example backends of `examples/backends/` and the `gateway` binary in front of them,
//! each a real child process on 127.0.0.1, killed by its PID (through `Child`) on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpStream;

use super::{closed_port, eventually_within};

/// How long a child process gets to start listening (the machine may be busy compiling).
const STARTUP: Duration = Duration::from_secs(30);

/// What each framework prints when its port is taken, in lower case (Python's errno text,
/// Node's code, Django's own message).
const PORT_TAKEN: [&str; 3] = [
    "address already in use",
    "eaddrinuse",
    "that port is already in use",
];

/// One of the example backends; each reads `PORT` and binds 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Flask,
    /// `flask/check.py`: the seed's `authenticate()` as the `[login.remote]` service.
    FlaskCheck,
    FastApi,
    Express,
    Django,
}

impl Framework {
    /// The folder under `examples/backends/`, the program and its script.
    fn command(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Framework::Flask => ("flask", "python3", "app.py"),
            Framework::FlaskCheck => ("flask", "python3", "check.py"),
            Framework::FastApi => ("fastapi", "python3", "app.py"),
            Framework::Express => ("express", "node", "server.js"),
            Framework::Django => ("django", "python3", "app.py"),
        }
    }
}

/// The repository's `examples/backends/` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/backends")
}

/// A running example backend.
pub struct Backend {
    pub addr: SocketAddr,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Backend {
    /// Starts `framework`'s example on a free loopback port and waits until it accepts
    /// connections. `tests/prepare.sh` installs what each one needs.
    pub async fn start(framework: Framework) -> Backend {
        // The port is free when chosen, but another test's connection may take it before
        // the backend binds it: then the backend exits saying so, and gets another port.
        for _ in 0..3 {
            let mut backend = Backend::spawn(framework).await;
            let addr = backend.addr;
            let mut exited = None;
            let what = format!("the {framework:?} backend to listen on {addr}");
            eventually_within(STARTUP, &what, async || {
                exited = backend.child.try_wait().unwrap();
                exited.is_some() || TcpStream::connect(addr).await.is_ok()
            })
            .await;
            let Some(status) = exited else {
                return backend;
            };
            let log = backend.log();
            if !PORT_TAKEN.iter().any(|m| log.to_lowercase().contains(m)) {
                panic!("the {framework:?} backend exited ({status}):\n{log}");
            }
        }
        panic!("the {framework:?} backend found its port taken three times");
    }

    async fn spawn(framework: Framework) -> Backend {
        let (dir, program, script) = framework.command();
        let addr = closed_port().await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(program)
            .arg(script)
            .current_dir(examples_dir().join(dir))
            .env("HOST", "127.0.0.1")
            .env("PORT", addr.port().to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} {script} ({e}): run tests/prepare.sh"));
        // Owned by the Backend from here, so a failed start still kills the process.
        Backend { addr, child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the backend printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `gateway run` child process started with a config file and extra environment.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Writes `toml` to a fresh folder (its `listen` must be `127.0.0.1:0`), runs the
    /// binary on it with `env`, and reads the bound address from the "listening" log line.
    pub fn start(toml: &str, env: &[(&str, &str)]) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway binary");
        // The rest of the log is drained by the thread so the child never blocks on a
        // full pipe; lines that are not the address are kept for a failure message.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(match v["addr"].as_str() {
                    Some(addr) if v["message"] == "listening" => Ok(addr.to_string()),
                    _ => Err(line),
                });
            }
        });
        let mut log = Vec::new();
        let deadline = Instant::now() + STARTUP;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(addr)) => break addr.parse().unwrap(),
                Ok(Err(line)) => log.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the gateway did not report its address:\n{}",
                        log.join("\n")
                    );
                }
            }
        };
        GatewayProcess {
            addr,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
