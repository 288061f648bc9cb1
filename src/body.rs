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
