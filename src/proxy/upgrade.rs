//! Protocol upgrades (WebSocket and other `Upgrade` requests), after authentication.
//!
//! The upgrade request is forwarded like any other; when the upstream answers 101, both
//! connections are taken over from hyper and bytes are copied both ways until either side
//! closes.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The `Upgrade` value of a request that asks to switch protocols, if any. `h2c` is never
/// passed on: an HTTP/2 upgrade is between the client and us, not the upstream.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let value = headers.get(UPGRADE)?;
    let is_h2c = value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c")));
    (wants && !is_h2c).then(|| value.clone())
}

/// Puts the upgrade headers back after hop-by-hop stripping.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// When the upstream switched protocols, joins the two upgraded connections in a task and
/// returns the 101 for the client; any other answer is returned as it is.
pub fn splice(
    client: OnUpgrade,
    mut upstream: Response<hyper::body::Incoming>,
) -> Response<hyper::body::Incoming> {
    let protocol = upstream.headers().get(UPGRADE).cloned();
    super::forward::strip_hop_by_hop(upstream.headers_mut());
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return upstream;
    }
    let server_side = hyper::upgrade::on(&mut upstream);
    tokio::spawn(async move {
        match tokio::try_join!(client, server_side) {
            Ok((c, s)) => {
                let mut c = TokioIo::new(c);
                let mut s = TokioIo::new(s);
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut s).await {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    if let Some(p) = protocol {
        restore(upstream.headers_mut(), p);
    }
    upstream
}
