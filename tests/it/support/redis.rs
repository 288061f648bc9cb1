//! A real `redis-server` for one test: on a free loopback port, no persistence, stopped by
//! PID on drop. `tests/prepare.sh` installs it when missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Whether the process is stopped with SIGSTOP (resumed before it is killed).
    paused: bool,
    /// `--tls-*` arguments: the port then speaks TLS only.
    tls: Vec<String>,
}

/// A port nothing listens on right now (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            paused: false,
            tls: Vec::new(),
        };
        r.spawn();
        r
    }

    /// A server that speaks only TLS, with `cert`/`key` (PEM files); clients need no
    /// certificate.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            paused: false,
            tls: Vec::new(),
        };
        r.tls = vec![
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            "--tls-ca-cert-file".into(),
            ca.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        r.spawn();
        r
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let (plain, tls) = if self.tls.is_empty() {
            (self.port, 0)
        } else {
            (0, self.port)
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(plain.to_string())
            .arg("--tls-port")
            .arg(tls.to_string())
            .args(&self.tls)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed (tests/prepare.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // A TLS port is ready once it accepts connections.
        let ready = |r: &Redis| {
            if r.tls.is_empty() {
                r.ping()
            } else {
                TcpStream::connect(("127.0.0.1", r.port)).is_ok()
            }
        };
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One `PING` over a fresh connection.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Runs one command (space-separated words) and returns the raw reply.
    pub fn command(&self, words: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let parts: Vec<&str> = words.split(' ').collect();
        let mut req = format!("*{}\r\n", parts.len());
        for p in parts {
            req.push_str(&format!("${}\r\n{p}\r\n", p.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// SIGKILL, as a crash would; the port stays ours for [`Redis::restart`].
    pub fn kill(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a fresh (empty) server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing.
    pub fn pause(&mut self) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args(["-STOP", &c.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill -STOP failed");
            self.paused = true;
        }
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&mut self) {
        if let (true, Some(c)) = (self.paused, &self.child) {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            self.paused = false;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
