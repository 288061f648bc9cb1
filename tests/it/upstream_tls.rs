//! HTTPS upstreams: verification against a configured CA, SNI/name checks, mTLS, h2 by ALPN.

use http::Version;

use crate::support::pki::Pki;
use crate::support::*;

fn https_pool(up: &Upstream, tls: &str, extra: &str) -> String {
    format!(
        "[upstreams.secure]\nservers = [\"https://{}\"]\n{extra}\n[upstreams.secure.tls]\n{tls}",
        up.addr
    )
}

/// A gateway routing `/s` (public) to `up` over https, with `tls` lines for the pool's
/// `[upstreams.secure.tls]` and `extra` lines for the pool itself.
async fn secure(up: &Upstream, tls: &str, extra: &str) -> Gateway {
    gateway()
        .route("/s", "secure", "public")
        .raw(&https_pool(up, tls, extra))
        .start()
        .await
}

#[tokio::test]
async fn verified_against_the_configured_ca() {
    let ca = Pki::new("test upstream CA");
    let up = Upstream::tls(ca.leaf(&["127.0.0.1"]).server_config(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca(dir.path(), "ca.pem");
    let gw = secure(&up, &format!("ca_file = \"{}\"", ca_file.display()), "").await;
    let r = get(&gw.url("/s"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().version, Version::HTTP_11);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let ours = Pki::new("our CA");
    let theirs = Pki::new("someone else's CA");
    let up = Upstream::tls(theirs.leaf(&["127.0.0.1"]).server_config(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ours.write_ca(dir.path(), "ca.pem");
    let gw = secure(&up, &format!("ca_file = \"{}\"", ca_file.display()), "").await;
    get(&gw.url("/s"), &[]).await.assert_error(
        502,
        "Bad Gateway",
        "The upstream service could not be reached",
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn the_name_is_verified_and_can_be_set() {
    let ca = Pki::new("CA");
    let up = Upstream::tls(ca.leaf(&["backend.internal"]).server_config(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca(dir.path(), "ca.pem");
    let tls = format!("ca_file = \"{}\"", ca_file.display());
    let gw = secure(&up, &tls, "").await;
    assert_eq!(
        get(&gw.url("/s"), &[]).await.status,
        502,
        "a certificate for another name was accepted"
    );
    let gw = secure(
        &up,
        &format!("{tls}\nserver_name = \"backend.internal\""),
        "",
    )
    .await;
    assert_eq!(get(&gw.url("/s"), &[]).await.status, 200);
}

#[tokio::test]
async fn client_certificates_for_mtls_backends() {
    let server_ca = Pki::new("server CA");
    let client_ca = Pki::new("client CA");
    let up = Upstream::tls(
        server_ca
            .leaf(&["127.0.0.1"])
            .server_config(Some(&client_ca)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = server_ca.write_ca(dir.path(), "ca.pem");
    let tls = format!("ca_file = \"{}\"", ca_file.display());
    let without = secure(&up, &tls, "").await;
    assert_eq!(get(&without.url("/s"), &[]).await.status, 502);
    let (cert, key) = client_ca.leaf(&["gateway"]).write(dir.path(), "client");
    let with_cert = format!(
        "{tls}\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        cert.display(),
        key.display()
    );
    let gw = secure(&up, &with_cert, "").await;
    assert_eq!(get(&gw.url("/s"), &[]).await.status, 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn() {
    let ca = Pki::new("CA");
    let up = Upstream::tls(ca.leaf(&["127.0.0.1"]).server_config(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca(dir.path(), "ca.pem");
    let gw = secure(
        &up,
        &format!("ca_file = \"{}\"", ca_file.display()),
        "protocol = \"h2\"",
    )
    .await;
    assert_eq!(get(&gw.url("/s"), &[]).await.status, 200);
    assert_eq!(up.last().version, Version::HTTP_2);
}
