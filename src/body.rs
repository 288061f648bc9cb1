//! The one body type the gateway hands to hyper, in both directions.
//!
//! Upstream bodies stream through boxed as they are; our own small JSON answers are `Full`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// Any error a body may end with; hyper and the body limit both produce these.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body, boxed once so every response has the same type.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The client's request body failed while it streamed upstream (bad chunked framing, a
/// connection cut mid-body). Wrapping it tells the proxy that the fault is the client's,
/// so the upstream is not blamed for it.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyError(#[source] pub hyper::Error);
