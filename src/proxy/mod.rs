//! ⑤ Forwarding: header rules for the next hop, upstream pools and their clients, and
//! protocol upgrades (WebSocket) after authentication.

pub mod client;
pub mod conns;
pub mod forward;
pub mod pool;
pub mod upgrade;

pub use pool::{Outbound, Pool};
