#![allow(clippy::unwrap_used)]

//! Process-level tests: suites that start the built `gateway` binary as a server, HAProxy,
//! nginx, or Python toolchains, all on 127.0.0.1. Slower than the in-process suites, so a
//! binary of its own: `cargo test --test it` skips it, `cargo test` runs it. The tools come
//! from `tests/prepare.sh`.
//!
//! Modules:
//! - `backends`: the example backends (Flask, FastAPI, Express, Django) as real upstreams
//!   behind a gateway process: the seed walkthrough, spoofed identity headers, requests
//!   around the gateway, Flask-JWT's tokens through the switch.
//! - `browser`: headless Chromium driven by Selenium through the login form, a reload,
//!   the sign-out button and return URLs off the site.
//! - `cluster`: three gateway processes behind HAProxy with an nginx backend: shared tokens,
//!   rolling restart under load, readiness taking an instance out and back, shared login
//!   limits, and logout / refresh reuse / revocations reaching all three processes.
//! - `deploy`: the deploy files: Kubernetes schemas and invariants, compose, systemd,
//!   HAProxy/nginx configs, the dashboard.
//! - `forward_auth`: real nginx and Caddy in front of a recording upstream, the gateway as
//!   their auth service, from the shipped `deploy/forward-auth/` examples; those examples
//!   validated by `nginx -t`, `caddy validate` and a YAML parse.
//! - `interop`: PyJWT decodes our tokens and signs tokens we accept; PyJWKClient verifies
//!   our RS256/ES256/EdDSA tokens through our published JWKS.
//! - `lifecycle`: reload on file change and SIGHUP, broken reloads, SIGTERM drain, the access
//!   log of a real process.
//! - `rotation`: the README's rotation runbook across two real `gateway` processes.

#[path = "../it/support/mod.rs"]
mod support;

mod backends;
mod browser;
mod cluster;
mod deploy;
mod forward_auth;
mod interop;
mod lifecycle;
mod rotation;
