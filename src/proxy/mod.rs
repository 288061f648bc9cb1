//! ⑤ Forwarding: header rules for the next hop, upstream clusters and their clients, and
//! protocol upgrades (WebSocket) after authentication.
//!
//! Names: a [`Cluster`] is one configured upstream (its servers, balancing, health,
//! retries); [`conns::Conns`] is the connection pool of one cluster (idle HTTP/1.1
//! connections per worker and server); [`client`] builds the hyper clients that HTTP/2
//! clusters and upgrades use.

pub mod client;
pub mod cluster;
pub mod conns;
pub mod forward;
pub mod upgrade;

pub use cluster::{Cluster, Outbound, UpstreamError};
