//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/config`, and
//! `POST /revocations` (operator revocation by `{"jti": ...}` or `{"user": ...}`).
//!
//! It listens on its own address (loopback by default) so metrics, fingerprints and the
//! revocation endpoint never share the public port. It has no authentication of its own:
//! whoever reaches it is an operator, so it must stay on a private address.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::lifecycle::{read_json, unix_millis};
use crate::body::{full, Body};
use crate::config::UserId;
use crate::exposition::Format;
use crate::metrics::{Metrics, ServerLabels};
use crate::server::SharedPipeline;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub pipeline: SharedPipeline,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins: readiness fails so load balancers stop sending traffic.
    pub draining: Arc<AtomicBool>,
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An admin answer. Not through `Rejection`'s mapping on purpose: the admin listener is an
/// operator API whose bodies (`{"status": ..., "reasons": [...]}`) probes and dashboards
/// parse, not the Flask-JWT error shape clients of the public listeners get.
fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    let mut res = Response::new(full(text));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// `POST /revocations`: `{"jti": "..."}` or `{"user": 1}` / `{"user": "alice"}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRequest {
    jti: Option<String>,
    user: Option<serde_json::Value>,
}

async fn respond(state: &AdminState, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if req.uri().path() != "/revocations" {
        return answer(state, &req);
    }
    if req.method() != Method::POST {
        let mut res = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"status": "method not allowed"}),
        );
        res.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    let pipeline = state.pipeline.load_full();
    let Some(revocation) = pipeline.revocation() else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"status": "revocation is off", "hint": "add a [revocation] table"}),
        );
    };
    let (parts, body) = req.into_parts();
    let asked: RevocationRequest = match read_json(&parts.headers, body, None).await {
        Ok(a) => a,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({
                    "status": "bad request",
                    "description": e.to_string(),
                    "hint": "send {\"jti\": \"...\"} or {\"user\": ID}",
                }),
            )
        }
    };
    let result = match (&asked.jti, &asked.user) {
        (Some(jti), None) if !jti.is_empty() => revocation
            .revoke_jti_unknown_exp(jti, "operator")
            .await
            .map(|()| json!({"revoked": {"jti": jti}})),
        (None, Some(user)) => match user_id(user) {
            Some(id) => revocation
                .revoke_user(&id, unix_millis(), "operator")
                .await
                .map(|()| json!({"revoked": {"user": user}})),
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "status": "bad request",
                        "description": "user must be an integer or a non-empty string",
                    }),
                )
            }
        },
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({
                    "status": "bad request",
                    "description": "send exactly one of jti (a non-empty string) and user",
                }),
            )
        }
    };
    match result {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => {
            tracing::warn!(error = %e, "admin: the store did not take a revocation");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "store unavailable",
                    "description": "in force on this instance; it reaches the others once the \
                                    store answers again",
                }),
            )
        }
    }
}

/// A user id from JSON: an integer or a non-empty string.
fn user_id(v: &serde_json::Value) -> Option<UserId> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().map(UserId::Int),
        serde_json::Value::String(s) if !s.is_empty() => Some(UserId::Str(s.clone())),
        _ => None,
    }
}

fn answer<B>(state: &AdminState, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"status": "method not allowed"}),
        );
    }
    match req.uri().path() {
        "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
        "/readyz" => {
            let reasons = not_ready(state);
            if reasons.is_empty() {
                json_response(StatusCode::OK, json!({"status": "ready"}))
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "not ready", "reasons": reasons}),
                )
            }
        }
        "/metrics" => {
            let pipeline = state.pipeline.load();
            if let Some(r) = pipeline.revocation() {
                r.update_gauges();
            }
            for pool in pipeline.clusters() {
                for (server, up) in pool.server_states() {
                    state
                        .metrics
                        .upstream_up
                        .get_or_create(&ServerLabels {
                            upstream: pool.name.clone(),
                            server: server.to_string(),
                        })
                        .set(i64::from(up));
                }
            }
            let format = Format::negotiate(
                req.headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let mut res = Response::new(full(format.render(state.metrics.encode())));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            res
        }
        "/config" => {
            let pipeline = state.pipeline.load();
            json_response(
                StatusCode::OK,
                json!({
                    "config_sha256": pipeline.config_sha256(),
                    "keys_sha256": pipeline.keys_sha256(),
                }),
            )
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({
                "status": "not found",
                "endpoints": ["/healthz", "/readyz", "/metrics", "/config", "/revocations"],
            }),
        ),
    }
}

/// Why the instance should not get traffic now; empty when ready.
fn not_ready(state: &AdminState) -> Vec<String> {
    let mut reasons = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        reasons.push("draining".to_string());
    }
    let pipeline = state.pipeline.load();
    if pipeline.revocation().is_some_and(|r| r.refuses()) {
        reasons.push("revocation set is stale (fail_closed)".to_string());
    }
    for pool in pipeline.clusters() {
        if !pool.has_available() {
            reasons.push(format!("upstream {} has no available server", pool.name));
        }
    }
    reasons
}

/// Binds the admin address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("admin.listen: cannot bind {addr}: {e}"))
}
