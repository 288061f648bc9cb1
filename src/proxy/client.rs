//! The pooled keep-alive client for one upstream origin.

use std::error::Error as _;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::rejection::Rejection;

/// An upstream origin (`http://host:port` plus an optional base path) and its connection pool.
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    /// Prepended to every forwarded path; empty or `/base` (no trailing slash).
    base_path: String,
    timeout: Duration,
}

impl Upstream {
    /// `origin` is validated by the config (http scheme, authority present).
    pub fn new(
        origin: &Uri,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Upstream, String> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Upstream {
            client,
            scheme: origin.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: origin
                .authority()
                .cloned()
                .ok_or_else(|| format!("{origin} has no host"))?,
            base_path: origin.path().trim_end_matches('/').to_string(),
            timeout,
        })
    }

    /// Sends `req` (its URI holding the client's path and query) to this origin. Waits at
    /// most the route timeout for the response head; the body then streams.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>, Rejection> {
        let pq = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let target = if self.base_path.is_empty() {
            pq.to_string()
        } else {
            format!("{}{pq}", self.base_path)
        };
        *req.uri_mut() = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|e| Rejection::Internal(e.to_string()))?;
        // The inbound request may be HTTP/2; the upstream leg speaks HTTP/1.1.
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Rejection::UpstreamTimeout),
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) if e.is_connect() && timed_out(&e) => Err(Rejection::UpstreamTimeout),
            // The route's body limit tripped while the body streamed.
            Ok(Err(e)) if caused_by::<http_body_util::LengthLimitError>(&e) => {
                Err(Rejection::BodyTooLarge)
            }
            Ok(Err(e)) => Err(Rejection::UpstreamUnavailable(describe(&e))),
        }
    }
}

/// Walks the error's source chain for a `T`.
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    find::<T>(e).is_some()
}

fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    find::<std::io::Error>(e).is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}
