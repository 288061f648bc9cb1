//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/config`.
//!
//! It listens on its own address (loopback by default) so metrics and fingerprints never
//! share the public port.

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

use crate::body::{full, Body};
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
                async move { Ok::<_, Infallible>(answer(&state, &req)) }
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
                "endpoints": ["/healthz", "/readyz", "/metrics", "/config"],
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
    for pool in state.pipeline.load().clusters() {
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
