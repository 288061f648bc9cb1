//! TLS listeners: HTTP/1.1 and HTTP/2 by ALPN through the pipeline, SNI, client
//! certificates, versions, HSTS, redirects, handshake timeout, certificate reload, expiry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::pki::{Leaf, Pki};
use crate::support::*;

/// A client config trusting `ca`, optionally presenting `client`, offering `alpn` over the
/// given protocol versions.
fn client_config(
    ca: &Pki,
    client: Option<&Leaf>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => {
            let (certs, key) = leaf.chain();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS 1.3 and 1.2, as ordinary clients offer.
fn modern(ca: &Pki, client: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config(ca, client, alpn, rustls::DEFAULT_VERSIONS)
}

async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One request over an established TLS stream, by the protocol ALPN chose.
async fn send(
    stream: TlsStream<TcpStream>,
    path: &str,
    headers: &[(&str, &str)],
) -> (Version, StatusCode, http::HeaderMap, Bytes) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut req = Request::get(format!("https://localhost{path}"));
    if !h2 {
        // hyper's connection-level client adds no Host; HTTP/2 carries :authority instead.
        req = req.header("host", "localhost");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let res = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let (parts, body) = res.into_parts();
    (
        parts.version,
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

struct Tls {
    ca: Pki,
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Tls {
        Tls {
            ca: Pki::new("listener CA"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a leaf for `names` as `name.crt` / `name.key` and returns the TOML pair.
    fn cert(&self, name: &str, names: &[&str]) -> (Leaf, String) {
        let leaf = self.ca.leaf(names);
        let (c, k) = leaf.write(self.dir.path(), name);
        let toml = format!("cert = \"{}\"\nkey = \"{}\"", c.display(), k.display());
        (leaf, toml)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A TLS listener on 127.0.0.1:0 with `cert` (its `cert` and `key` lines), then the
/// `extra` lines (more `[listeners.tls]` keys, or further tables).
fn tls_listener(cert: &str, extra: &str) -> String {
    format!("[[listeners]]\naddr = \"127.0.0.1:0\"\n[listeners.tls]\n{cert}\n{extra}")
}

#[tokio::test]
async fn h1_and_h2_over_tls_reach_an_authenticated_route() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/api", &up.url(), "required")
        .raw(&tls_listener(&cert, ""))
        .start()
        .await;
    let auth = jwt_header(&token());
    for (alpn, version) in [
        (&b"h2"[..], Version::HTTP_2),
        (&b"http/1.1"[..], Version::HTTP_11),
    ] {
        let s = connect(gw.addr, "localhost", modern(&t.ca, None, &[alpn]))
            .await
            .unwrap();
        let (v, status, _, body) = send(
            s,
            "/api/x",
            &[("authorization", &auth), ("x-identity", "forged")],
        )
        .await;
        assert_eq!(
            (v, status, &body[..]),
            (version, StatusCode::OK, &b"ok"[..])
        );
        let seen = up.last();
        assert_eq!(seen.headers["x-identity"], "1");
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
    }
    let s = connect(gw.addr, "localhost", modern(&t.ca, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(send(s, "/api/x", &[]).await.1, StatusCode::UNAUTHORIZED);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn curl_speaks_http2_to_the_gateway() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/api", &up.url(), "required")
        .raw(&tls_listener(&cert, ""))
        .start()
        .await;
    let ca = t.ca.write_ca(t.dir.path(), "ca.pem");
    let port = gw.addr.port();
    let url = format!("https://localhost:{port}/api/x");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let auth = format!("Authorization: {}", jwt_header(&token()));
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-H",
            &auth,
            "-w",
            "\n%{http_version} %{http_code}",
            &url,
        ])
        .output()
        .await
        .expect("curl is needed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "ok\n2 200");
    assert_eq!(up.last().headers["x-identity"], "1");
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let t = Tls::new();
    let (default, default_toml) = t.cert("default", &["default.test"]);
    let (a, _) = t.cert("a", &["a.test"]);
    let (wild, _) = t.cert("wild", &["*.b.test"]);
    let listener = |unknown: &str| {
        format!(
            "[[listeners]]\naddr = \"127.0.0.1:0\"\n[listeners.tls]\n{default_toml}\n\
             unknown_names = \"{unknown}\"\n\
             certificates = [{{ names = [\"a.test\"], cert = \"{}\", key = \"{}\" }}, {{ names = \
             [\"*.b.test\"], cert = \"{}\", key = \"{}\" }}]",
            t.path("a.crt"),
            t.path("a.key"),
            t.path("wild.crt"),
            t.path("wild.key")
        )
    };
    let gw = gateway()
        .respond_identity("/p")
        .raw(&listener("default"))
        .start()
        .await;
    let cfg = modern(&t.ca, None, &[b"http/1.1"]);
    for (name, want) in [
        ("a.test", &a),
        ("x.b.test", &wild),
        ("default.test", &default),
    ] {
        let s = connect(gw.addr, name, cfg.clone()).await.unwrap();
        assert_eq!(peer_cert(&s), want.der(), "{name}");
    }
    // An unknown name gets the default, which the client rejects for the wrong name.
    assert!(connect(gw.addr, "other.test", cfg.clone()).await.is_err());
    // Two labels under the wildcard are not covered by it.
    assert!(connect(gw.addr, "y.x.b.test", cfg.clone()).await.is_err());

    let strict = gateway()
        .respond_identity("/p")
        .raw(&listener("reject"))
        .start()
        .await;
    let s = connect(strict.addr, "a.test", cfg.clone()).await.unwrap();
    assert_eq!(peer_cert(&s), a.der());
    let err = connect(strict.addr, "other.test", cfg).await.unwrap_err();
    assert!(
        !err.to_string().contains("UnknownIssuer"),
        "the handshake should fail on the server side: {err}"
    );
}

#[tokio::test]
async fn client_certificates_are_required_and_forwarded() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let clients = Pki::new("client CA");
    let ca = clients.write_ca(t.dir.path(), "clients.pem");
    let up = Upstream::start().await;
    let gw = gateway()
        .route("/api", &up.url(), "public")
        .raw(&tls_listener(
            &cert,
            &format!(
                "client_ca = \"{}\"\nclient_auth = \"require\"\n\
                 client_subject_header = \"X-Client-Subject\"",
                ca.display()
            ),
        ))
        .start()
        .await;
    let good = clients.leaf(&["client-1"]);
    let s = connect(
        gw.addr,
        "localhost",
        modern(&t.ca, Some(&good), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (_, status, _, _) = send(
        s,
        "/api",
        &[
            ("x-client-subject", "CN=admin"),
            ("X_Client_Subject", "CN=admin"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = up.last();
    assert_eq!(
        seen.headers
            .get_all("x-client-subject")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>(),
        ["CN=client-1"]
    );
    assert!(!seen.headers.contains_key("x_client_subject"));

    let stranger = Pki::new("someone else").leaf(&["client-2"]);
    let expired = clients.leaf_valid(
        &["client-3"],
        time::Duration::days(-30),
        time::Duration::days(-1),
    );
    for (what, leaf) in [
        ("no certificate", None),
        ("another CA", Some(&stranger)),
        ("expired", Some(&expired)),
    ] {
        // TLS 1.3 reports a refused client certificate after the handshake: the first
        // request fails instead.
        let refused = match connect(gw.addr, "localhost", modern(&t.ca, leaf, &[b"http/1.1"])).await
        {
            Err(_) => true,
            Ok(mut s) => {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n").await;
                let mut buf = Vec::new();
                matches!(
                    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await,
                    Ok(Err(_)) | Ok(Ok(0))
                )
            }
        };
        assert!(refused, "{what} was accepted");
    }
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn tls13_only_and_hsts() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let gw = gateway()
        .respond_identity("/p")
        .raw(&tls_listener(
            &cert,
            "min_version = \"1.3\"\nhsts = \"max-age=63072000; includeSubDomains\"",
        ))
        .start()
        .await;
    assert!(
        connect(
            gw.addr,
            "localhost",
            client_config(&t.ca, None, &[b"http/1.1"], &[&rustls::version::TLS12])
        )
        .await
        .is_err(),
        "TLS 1.2 was accepted"
    );
    let s = connect(
        gw.addr,
        "localhost",
        client_config(&t.ca, None, &[b"http/1.1"], &[&rustls::version::TLS13]),
    )
    .await
    .unwrap();
    let (_, status, headers, _) = send(s, "/p", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
}

#[tokio::test]
async fn a_plain_listener_redirects_to_https() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let gw = gateway()
        .respond_identity("/p")
        .raw(&tls_listener(
            &cert,
            "[[listeners]]\naddr = \"127.0.0.1:0\"\nredirect_https_port = 8443",
        ))
        .start()
        .await;
    let plain = gw.addrs[1];
    let r = get(
        &format!("http://{plain}/a/b?c=1"),
        &[("host", "shop.test:80")],
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://shop.test:8443/a/b?c=1"));
    // The plain listener forwards nothing and answers nothing else.
    assert_eq!(
        get(&format!("http://{plain}/p"), &[("host", "shop.test")])
            .await
            .status,
        301
    );
}

#[tokio::test]
async fn a_silent_client_is_cut_off_by_the_handshake_timeout() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let gw = gateway()
        .respond_identity("/p")
        .raw(&tls_listener(&cert, "handshake_timeout = \"200ms\""))
        .start()
        .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the silent connection was kept open");
    // Others still get served.
    let s = connect(gw.addr, "localhost", modern(&t.ca, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(send(s, "/p", &[]).await.1, 401);
}

#[tokio::test]
async fn reload_swaps_certificates_and_keeps_established_connections() {
    let t = Tls::new();
    let first = t.ca.leaf(&["localhost"]);
    first.write(t.dir.path(), "live");
    std::fs::write(t.dir.path().join("secret"), SECRET).unwrap();
    let path = t.dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "[server]\nreload_poll = \"0s\"\n[tokens]\nsecret_file = \"secret\"\n[[routes]]\n\
         path = \"/p\"\nrespond = \"identity\"\nauth = \"required\"\n\
         [[listeners]]\naddr = \"127.0.0.1:0\"\n[listeners.tls]\ncert = \"live.crt\"\n\
         key = \"live.key\"\n",
    )
    .unwrap();
    let loaded = gateway::load::load(&path).unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = gateway::start_file(&path, &loaded, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let addr = started.addr;
    let reloader = started.reloader.clone().unwrap();
    tokio::spawn(started.serving);

    let cfg = modern(&t.ca, None, &[b"http/1.1"]);
    let old = connect(addr, "localhost", cfg.clone()).await.unwrap();
    assert_eq!(peer_cert(&old), first.der());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old))
        .await
        .unwrap();
    tokio::spawn(conn);
    let ask = |sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        sender.send_request(
            Request::get("/p")
                .header("host", "localhost")
                .body(Empty::new())
                .unwrap(),
        )
    };
    assert_eq!(ask(&mut sender).await.unwrap().status(), 401);

    let second = t.ca.leaf(&["localhost"]);
    second.write(t.dir.path(), "live");
    reloader.reload().unwrap();
    let s = connect(addr, "localhost", cfg.clone()).await.unwrap();
    assert_eq!(peer_cert(&s), second.der());
    // The connection made before the reload keeps working.
    assert_eq!(ask(&mut sender).await.unwrap().status(), 401);

    // A broken certificate is refused and the current one keeps serving.
    std::fs::write(t.dir.path().join("live.crt"), "not a certificate").unwrap();
    let err = reloader.reload().unwrap_err();
    assert!(err.to_string().contains("live.crt"), "{err}");
    let s = connect(addr, "localhost", cfg).await.unwrap();
    assert_eq!(peer_cert(&s), second.der());
}

#[test]
fn check_warns_about_expiring_certificates() {
    let t = Tls::new();
    let soon = t.ca.leaf_valid(
        &["localhost"],
        time::Duration::days(-10),
        time::Duration::days(3),
    );
    soon.write(t.dir.path(), "soon");
    std::fs::write(t.dir.path().join("secret"), SECRET).unwrap();
    let text = "[tokens]\nsecret_file = \"secret\"\n[[listeners]]\naddr = \"127.0.0.1:0\"\n\
                [listeners.tls]\ncert = \"soon.crt\"\nkey = \"soon.key\"\n";
    let loaded = gateway::load::from_str(text, t.dir.path()).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.starts_with("listeners[0].tls")
            && (w.contains("expires in 2 day(s)") || w.contains("expires in 3 day(s)"))),
        "{w:?}"
    );
    // A key that does not belong to the certificate is a problem with the key path.
    let other = t.ca.leaf(&["localhost"]);
    other.write(t.dir.path(), "other");
    let mismatched = text.replace("key = \"soon.key\"", "key = \"other.key\"");
    let err = gateway::load::from_str(&mismatched, t.dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("listeners[0].tls") && err.contains("soon.crt"),
        "{err}"
    );
}

/// A client still in its TLS handshake does not hold up a drain (its handshake timeout is
/// 60 s here).
#[tokio::test]
async fn a_drain_does_not_wait_for_a_handshake() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let gw = crate::parking::parking("60s")
        .server("shutdown_grace = \"30s\"")
        .respond_identity("/p")
        .raw(&tls_listener(&cert, "handshake_timeout = \"60s\""))
        .start()
        .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    crate::parking::wait_open(&gw, 1).await;
    let drained = tokio::time::timeout(Duration::from_secs(5), gw.stop())
        .await
        .expect("the drain waited for a TLS handshake");
    assert_eq!(drained, gateway::server::Drained::Clean);
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the silent connection was kept open");
}

/// An idle HTTP/1.1 connection over TLS is parked like a plain one (the TLS session stays),
/// and serves its next request.
#[tokio::test]
async fn an_idle_tls_connection_parks_and_serves_again() {
    let t = Tls::new();
    let (_, cert) = t.cert("server", &["localhost"]);
    let up = Upstream::start().await;
    let gw = crate::parking::parking("10s")
        .route("/api", &up.url(), "required")
        .raw(&tls_listener(&cert, ""))
        .start()
        .await;
    let s = connect(gw.addr, "localhost", modern(&t.ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = || {
        Request::get("/api/x")
            .header("host", "localhost")
            .header("authorization", jwt_header(&token()))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let r = sender.send_request(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.into_body().collect().await.unwrap();
    crate::parking::wait_parked(&gw, 1).await;
    sender.ready().await.unwrap();
    let r = sender.send_request(get()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
    assert_eq!(up.requests().len(), 2);
}
