#![allow(clippy::unwrap_used)]

//! Integration tests: one binary, real sockets on 127.0.0.1:0, real upstream servers, the
//! gateway in this process (a few cases also run a one-shot tool: the CLI, curl, the
//! Prometheus parser). Suites built around long-running processes or external toolchains are
//! the `process` binary (`tests/process/main.rs`), so `cargo test --test it` stays fast.
//!
//! Modules:
//! - `admin`: health, readiness, Prometheus metrics, config fingerprints.
//! - `browser`: browser mode: the form login, cookie sessions, what the upstream never
//!   sees, CSRF, cookie attributes, renewal, logout, `/auth` unchanged.
//! - `compat`: every row of the Flask-JWT error table, check order and leeway.
//! - `login`: `POST /auth` success, failures, methods, content types, limits.
//! - `forwarding`: the seed flow through a real upstream, identity spoofing, hop-by-hop,
//!   `X-Forwarded-*`, 404/400/502/504.
//! - `streaming`: large bodies cross the gateway without being buffered.
//! - `rfc6750`: the Bearer error style.
//! - `config`: bad configs name the key; the shipped `gateway.toml` stays valid; the CLI.
//! - `routing`: host/path/method matching, path normalization, rewriting, 403, claim
//!   headers, request ids.
//! - `pools`: balancing, passive and active health, retries, 503.
//! - `protocols`: h2c, h2 upstreams, upgrades, trailers, `Expect: 100-continue`.
//! - `limits`: header timeout, header size, connection limit.
//! - `parking`: idle HTTP/1.1 connections parked without buffers, and served again.
//! - `tls`: TLS listeners: ALPN, SNI, client certificates, HSTS, redirects, reload.
//! - `upstream_tls`: https upstreams: CA, names, mTLS, h2 by ALPN.
//! - `issuers`: IdP tokens via a JWKS server that rotates keys, goes down, comes back.
//! - `keys`: every algorithm, kid selection, alg confusion, the JWKS, issued claims.
//! - `token_cache`: the verified-token cache against `exp` and keyring changes.
//! - `token_cli`: `gateway keygen` and `gateway token mint | verify | inspect`.
//! - `keys_config`: keyring, issuer and JWKS config problems name their key.
//! - `login_limits`: failed-login limits per account, address and pair; lockout backoff;
//!   the flood cap; `trusted_proxies` and `X-Forwarded-For`.
//! - `store_redis`: the limits shared through a real Redis by several instances; Redis
//!   killed, hung and restarted; fail_open / fail_closed; the Redis password; rediss://.
//! - `remote_login`: `[login.remote]` against a real user service: good, refused, slow,
//!   down, malformed.
//! - `users_file`: bcrypt users, per-user claims, users re-read on reload.
//! - `forward_auth`: the decision endpoints with Traefik- and Envoy-shaped requests, the
//!   same decisions as proxy mode, trust, cache lifetimes, `[forward_auth]` problems (real
//!   nginx and Caddy in front: `tests/process`).
//! - `oidc`: OIDC login against a real `oidc-provider` (Node): the code flow with PKCE to
//!   the upstream's `X-Identity`, tampered, expired, foreign and replayed callbacks (one
//!   instance, and two sharing Redis), domain and group rules, two providers, logout.
//! - `refresh`: refresh tokens, logout and revocation on one instance (memory store).
//! - `revocation`: revocation and refresh families across three instances sharing a real
//!   Redis; Redis killed (fail_open / fail_closed) and back; `gateway revoke`.

mod support;

mod admin;
mod browser;
mod compat;
mod config;
mod forward_auth;
mod forwarding;
mod issuers;
mod keys;
mod keys_config;
mod limits;
mod login;
mod login_limits;
mod oidc;
mod parking;
mod pools;
mod protocols;
mod refresh;
mod remote_login;
mod revocation;
mod rfc6750;
mod routing;
mod store_redis;
mod streaming;
mod tls;
mod token_cache;
mod token_cli;
mod upstream_tls;
mod users_file;
