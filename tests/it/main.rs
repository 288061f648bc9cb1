#![allow(clippy::unwrap_used)]

//! Integration tests: one binary, real sockets on 127.0.0.1:0, real upstream servers.
//!
//! Modules:
//! - `compat`: every row of the Flask-JWT error table, check order and leeway.
//! - `login`: `POST /auth` success, failures, methods, content types, limits.
//! - `forwarding`: the seed flow through a real upstream, identity spoofing, hop-by-hop,
//!   `X-Forwarded-*`, 404/400/502/504.
//! - `streaming`: large bodies cross the gateway without being buffered.
//! - `rfc6750`: the Bearer error style.
//! - `config`: bad configs name the key; the shipped `gateway.toml` stays valid; the CLI.
//! - `interop`: PyJWT decodes our tokens and signs tokens we accept.
//! - `routing`: host/path/method matching, path normalization, rewriting, 403, claim
//!   headers, request ids.
//! - `pools`: balancing, passive and active health, retries, 503.
//! - `protocols`: h2c, h2 upstreams, upgrades, trailers, `Expect: 100-continue`.
//! - `limits`: header timeout, header size, connection limit.
//! - `lifecycle`: reload on file change and SIGHUP, broken reloads, SIGTERM drain.
//! - `upstream_tls`: https upstreams: CA, names, mTLS, h2 by ALPN.
//! - `cluster`: three gateway processes behind HAProxy (`deploy/local-cluster.sh`): shared
//!   tokens, a rolling restart under load, readiness taking an instance out.
//! - `deploy`: the files in `deploy/`, checked offline (schemas, invariants, real loader).

mod support;

mod cluster;
mod compat;
mod config;
mod deploy;
mod forwarding;
mod interop;
mod lifecycle;
mod limits;
mod login;
mod pools;
mod protocols;
mod rfc6750;
mod routing;
mod streaming;
mod upstream_tls;
