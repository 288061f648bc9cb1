//! ⑤ Forwarding: header rewriting for the next hop, and the pooled upstream client.

pub mod client;
pub mod forward;

pub use client::Upstream;
