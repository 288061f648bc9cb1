//! The request pipeline: the one place that knows the order of the steps.
//!
//! [`Pipeline::build`] turns a [`Config`] into every runtime piece once (route table, keys,
//! verifier, upstream pools, header names), so the per-request path only reads.
//! [`Pipeline::try_handle`] runs ① routing → ② policy → ③ verify → ④ identity → ⑤ forward.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::issue::{Issuer, Login};
use crate::auth::keys::Key;
use crate::auth::users::Users;
use crate::auth::verify::Verifier;
use crate::auth::{bearer, Claims, TokenError};
use crate::body::{full, Body};
use crate::config::{AuthMode, Config, Responder, Target};
use crate::identity::IdentityHeaders;
use crate::proxy::{forward, Upstream};
use crate::rejection::{ErrorContext, Rejection};
use crate::routing::{self, RouteTable};

/// A route with its runtime pieces.
pub struct Route {
    pub path: String,
    pub auth: AuthMode,
    pub target: RouteTarget,
    pub forward_authorization: bool,
    pub max_body: Option<u64>,
}

pub enum RouteTarget {
    Upstream(Box<Upstream>),
    Respond(Responder),
}

/// Everything a request needs, built once per configuration.
pub struct Pipeline {
    routes: RouteTable<Route>,
    login: Option<Login>,
    verifier: Verifier,
    users: Arc<Users>,
    identity: IdentityHeaders,
    token_header: HeaderName,
    prefix: String,
    errors: ErrorContext,
    trust_forwarded: bool,
}

/// What the access log records about one request.
#[derive(Default)]
struct Outcome {
    route: Option<String>,
    identity: Option<String>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Pipeline {
    /// Builds the runtime form of `config`. Fails only on key material the config could not
    /// check by itself.
    pub fn build(config: &Config) -> Result<Pipeline, String> {
        let t = &config.tokens;
        let key = Key::from_config(t).map_err(|e| format!("tokens: cannot build the key: {e}"))?;
        let users = Arc::new(Users::new(
            &config.users,
            config.login.as_ref().map_or(1, |l| l.max_concurrent_hashes),
        ));
        let login = config
            .login
            .clone()
            .map(|l| Login::new(l, Issuer::new(t, &key), users.clone()));
        let mut routes = Vec::new();
        for r in &config.routes {
            let target = match &r.target {
                Target::Upstream(uri) => RouteTarget::Upstream(Box::new(Upstream::new(
                    uri,
                    r.connect_timeout,
                    r.timeout,
                )?)),
                Target::Respond(what) => RouteTarget::Respond(*what),
            };
            routes.push((
                r.path.clone(),
                Route {
                    path: r.path.clone(),
                    auth: r.auth,
                    target,
                    forward_authorization: r.forward_authorization,
                    max_body: r.max_body,
                },
            ));
        }
        Ok(Pipeline {
            routes: RouteTable::new(routes),
            login,
            verifier: Verifier::new(t, key, Vec::new()),
            users,
            identity: IdentityHeaders::default(),
            token_header: t.header.clone(),
            prefix: t.prefix.clone(),
            errors: ErrorContext {
                style: t.errors,
                realm: t.realm.clone(),
                prefix: t.prefix.clone(),
            },
            trust_forwarded: config.server.trust_forwarded,
        })
    }

    /// Answers one request: the upstream's response, or our JSON error. Never panics on input.
    pub async fn handle(&self, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let mut outcome = Outcome::default();
        let result = self.try_handle(req, client, &mut outcome).await;
        let (response, reason) = match result {
            Ok(res) => (res, None),
            Err(rejection) => {
                let reason = rejection.reason();
                if let Rejection::UpstreamUnavailable(why) | Rejection::Internal(why) = &rejection {
                    tracing::warn!(%path, error = %why, "request failed");
                }
                (rejection.into_response(&self.errors), Some(reason))
            }
        };
        // The path is logged without its query string: queries often carry secrets.
        tracing::info!(
            target: "access",
            client = %client,
            method = %method,
            path = %path,
            route = outcome.route.as_deref().unwrap_or("-"),
            status = response.status().as_u16(),
            identity = outcome.identity.as_deref().unwrap_or("-"),
            reason = reason.unwrap_or("-"),
            micros = started.elapsed().as_micros() as u64,
        );
        response
    }

    /// ①..⑤ in order. Each `?` ends the request with the step's rejection.
    async fn try_handle(
        &self,
        mut req: Request<Incoming>,
        client: SocketAddr,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, Rejection> {
        // A request whose site is ambiguous is refused before anything reads it.
        routing::check_host(&req).map_err(Rejection::BadHost)?;

        // The login path is answered before routing: it issues tokens, so it can never be
        // shadowed by (or forwarded to) a route.
        if let Some(login) = &self.login {
            if req.uri().path() == login.path {
                outcome.route = Some(login.path.clone());
                return Ok(login.handle(req, unix_now).await?);
            }
        }

        // ① Routing. Ambiguous paths are refused first, so the path we match is the path
        // the backend will see.
        routing::check_path(req.uri().path()).map_err(Rejection::BadPath)?;
        let route = self
            .routes
            .find_strict(req.uri().path(), |r| r.auth == AuthMode::Required)
            .ok_or(Rejection::NoRoute)?;
        outcome.route = Some(route.path.clone());

        // Hop-by-hop headers go before anything else reads or sets headers: a name listed
        // in `Connection` must only ever remove what the client itself sent.
        forward::strip_hop_by_hop(req.headers_mut());

        // ② Policy and ③ verification. A required route never gets past here without claims.
        let claims = match route.auth {
            AuthMode::Public => None,
            AuthMode::Required => Some(self.authenticate(&req)?),
        };
        if let Some(c) = &claims {
            outcome.identity = Some(c.identity.header_text().into_owned());
        }

        // ④ Identity: strip on every route (public too), then set ours from the claims.
        self.identity.strip(req.headers_mut());
        if let Some(c) = &claims {
            self.identity.set(req.headers_mut(), c)?;
        }
        if !route.forward_authorization {
            req.headers_mut().remove(&self.token_header);
        }

        // ⑤ Forward (or answer with a built-in responder).
        match &route.target {
            RouteTarget::Respond(Responder::Identity) => Ok(identity_response(claims.as_ref())),
            RouteTarget::Upstream(upstream) => {
                forward::set_forwarded(req.headers_mut(), client, "http", self.trust_forwarded);
                if !req.headers().contains_key(HOST) {
                    // HTTP/2 carries the host in the :authority pseudo-header.
                    if let Some(v) = req
                        .uri()
                        .authority()
                        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                    {
                        req.headers_mut().insert(HOST, v);
                    }
                }
                if let Some(max) = route.max_body {
                    // A declared oversize body is refused before anything is sent upstream.
                    let declared = req
                        .headers()
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if declared.is_some_and(|len| len > max) {
                        return Err(Rejection::BodyTooLarge);
                    }
                }
                let req = req.map(|b| limit_body(b, route.max_body));
                let mut res = upstream.send(req).await?;
                forward::strip_hop_by_hop(res.headers_mut());
                Ok(res.map(|b| b.map_err(Into::into).boxed()))
            }
        }
    }

    /// ③ Reads and verifies the token, and checks that its identity is a known user.
    fn authenticate<B>(&self, req: &Request<B>) -> Result<Claims, TokenError> {
        let token = bearer::extract(req.headers(), &self.token_header, &self.prefix)?;
        let claims = self.verifier.verify(token, unix_now())?;
        // With local users, deleting a user cuts off their unexpired tokens at once.
        if !self.users.is_empty() && !self.users.contains(&claims.identity) {
            return Err(TokenError::UnknownUser);
        }
        Ok(claims)
    }
}

/// Boxes the inbound body for the client, counting it against the route's limit while it
/// streams (no buffering).
fn limit_body(body: Incoming, max: Option<u64>) -> Body {
    match max {
        None => body.map_err(Into::into).boxed(),
        Some(max) => Limited::new(body, max as usize).boxed(),
    }
}

fn identity_response(claims: Option<&Claims>) -> Response<Body> {
    let identity = claims.map(|c| c.identity.to_json()).unwrap_or_default();
    let mut body = serde_json::to_vec(&json!({ "identity": identity })).unwrap_or_default();
    body.push(b'\n');
    let mut res = Response::new(full(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
