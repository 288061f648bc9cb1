//! What the test binaries share: a real gateway and real upstream servers on 127.0.0.1:0, a
//! small HTTP client, token minting, and polling with a deadline. One file per thing served; a
//! new kind of helper gets its own `support/<thing>.rs` and a line below.
//!
//! The modules are private and their public items re-exported here, so a test needs one
//! `use crate::support::*;` (and no module name shadows a crate such as `gateway` or `http`);
//! `capture` and `pki` are used by path.
//!
//! Modules:
//! - `tokens`: the shared HMAC secret, HS256 minting, the `Authorization` value.
//! - `keypairs`: asymmetric key pairs, signing with them, `[[keys]]` tables.
//! - `upstream`: recording upstream servers and a port where nothing listens.
//! - `test_gateway`: the config builder around the seed users; the running in-process
//!   gateway.
//! - `client`: a one-request HTTP client and a raw-socket exchange.
//! - `poll`: `eventually`, a condition polled until a deadline.
//! - `backends`: the example backends of `examples/backends/`, and the `gateway` binary in
//!   front of them, as child processes.
//! - `capture`: a log sink for binaries that install their own subscriber.
//! - `pki`: throwaway certificate authorities for TLS.
//! - `decider`: the gateway as a forward-auth decider, its tokens, Traefik- and
//!   Envoy-shaped decision requests.
//! - `jar`: a browser's cookie jar, and the login form filled in as a browser does.
//! - `oidc`: a real OpenID Connect provider (`tests/oidc/provider.js` under Node) and a
//!   cookie-keeping client that logs in through its pages.
//! - `proxies`: real nginx and Caddy processes from the `deploy/forward-auth/` examples
//!   (used by path).

// Each binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

pub mod capture;
pub mod pki;
pub mod proxies;
pub mod redis;

mod backends;
mod client;
mod decider;
mod jar;
mod keypairs;
mod oidc;
mod poll;
mod test_gateway;
mod tokens;
mod upstream;

pub use backends::*;
pub use client::*;
pub use decider::*;
pub use jar::*;
pub use keypairs::*;
pub use oidc::*;
pub use poll::*;
pub use test_gateway::*;
pub use tokens::*;
pub use upstream::*;
