//! What the pipeline knows about the connection a request came on.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

/// The connection a request came on, as the pipeline sees it. The server makes one per
/// accepted connection (after the TLS handshake) and hands it to every request on it.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// The peer's IP as an `X-Forwarded-For` element.
    pub peer_ip: HeaderValue,
    /// Set when a request with a body was refused: closing then lingers (see the server's
    /// first-bytes reader).
    pub linger_on_close: Arc<AtomicBool>,
    pub tls: bool,
    /// The verified client certificate's subject, as the header the listener sets.
    pub client_subject: Option<(HeaderName, HeaderValue)>,
}

impl Conn {
    /// A connection from `peer`; `client_subject` is set only for a verified certificate.
    pub fn new(
        peer: SocketAddr,
        tls: bool,
        client_subject: Option<(HeaderName, HeaderValue)>,
    ) -> Conn {
        Conn {
            peer,
            peer_ip: crate::proxy::forward::client_ip(peer),
            linger_on_close: Arc::default(),
            tls,
            client_subject,
        }
    }
}
