//! How each proxy describes the original request to its auth service, and what it does with
//! the answer. Each contract below is taken from that proxy's documentation:
//!
//! - **nginx `auth_request`** (<https://nginx.org/en/docs/http/ngx_http_auth_request_module.html>):
//!   a subrequest carrying the client's headers; the original method, host and URI only
//!   arrive in headers the nginx config sets (we read `X-Original-Method`,
//!   `X-Original-Host`, `X-Original-URI`, as in the module's own example). "If the
//!   subrequest returns a 2xx response code, the access is allowed. If it returns 401 or
//!   403, the access is denied with the corresponding error code. Any other response code
//!   returned by the subrequest is considered an error": a refusal is always 401 or 403.
//! - **Traefik `ForwardAuth`** (<https://doc.traefik.io/traefik/middlewares/http/forwardauth/>):
//!   a GET to the configured address with the client's headers and `X-Forwarded-Method`,
//!   `-Proto`, `-Host`, `-Uri`, `-For`; "If the service answers with a 2XX code, access is
//!   granted ... Otherwise, the response from the authentication server is returned", and
//!   `authResponseHeaders` are copied onto the forwarded request.
//! - **Caddy `forward_auth`** (<https://caddyserver.com/docs/caddyfile/directives/forward_auth>):
//!   a GET to `uri` with the client's headers, `X-Forwarded-Method` and `X-Forwarded-Uri`
//!   set by the directive, `X-Forwarded-For/-Proto/-Host` set by `reverse_proxy`; a 2xx
//!   copies `copy_headers` onto the request, any other response goes back to the client.
//! - **Envoy `ext_authz`, HTTP service** ([ext_authz.proto][envoy]): the check request
//!   keeps the original method and `Host`, its path is `path_prefix` followed by the
//!   original path (with the query), and it carries the headers of `allowed_headers`
//!   (`Authorization` always). Only a 200 allows, copying
//!   `allowed_upstream_headers`; on a 200, `x-envoy-auth-headers-to-remove` names request
//!   headers Envoy deletes after copying. A 5xx is an error Envoy turns into 403.
//!
//! [envoy]: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto

use std::str::FromStr;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method, Request};

use crate::config::Contract;

pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub const X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-original-host");
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The original request as the proxy describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// As the client sent it (port and case are dealt with by routing).
    pub host: Option<String>,
    /// The request target's path and query, parsed by `http`.
    pub target: PathAndQuery,
}

/// Why a forward-auth request does not describe an original request (a proxy
/// misconfiguration, or someone else calling): a 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Undescribed {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is sent more than once")]
    Repeated(&'static str),
    #[error("the {0} header is not a method")]
    BadMethod(&'static str),
    #[error("the {0} header is not a request target")]
    BadTarget(&'static str),
}

/// Reads the original request from a forward-auth request of `contract`. `rest` is what
/// follows the contract's endpoint path (Envoy's original path; empty for the others).
pub fn describe<B>(
    contract: Contract,
    req: &Request<B>,
    rest: &str,
) -> Result<Original, Undescribed> {
    let h = req.headers();
    match contract {
        Contract::Nginx => Ok(Original {
            method: method(
                one(h, &X_ORIGINAL_METHOD, "X-Original-Method")?,
                "X-Original-Method",
            )?,
            host: Some(one(h, &X_ORIGINAL_HOST, "X-Original-Host")?.to_string()),
            target: target(one(h, &X_ORIGINAL_URI, "X-Original-URI")?, "X-Original-URI")?,
        }),
        Contract::Traefik | Contract::Caddy => Ok(Original {
            method: method(
                one(h, &X_FORWARDED_METHOD, "X-Forwarded-Method")?,
                "X-Forwarded-Method",
            )?,
            host: Some(one(h, &X_FORWARDED_HOST, "X-Forwarded-Host")?.to_string()),
            target: target(
                one(h, &X_FORWARDED_URI, "X-Forwarded-Uri")?,
                "X-Forwarded-Uri",
            )?,
        }),
        Contract::Envoy => {
            // The check request is the original with our prefix in front of its path.
            let text = match req.uri().query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_string(),
            };
            let host = match h.get(http::header::HOST) {
                Some(v) => Some(
                    v.to_str()
                        .map_err(|_| Undescribed::BadTarget("Host"))?
                        .to_string(),
                ),
                None => req.uri().authority().map(|a| a.to_string()),
            };
            Ok(Original {
                method: req.method().clone(),
                host,
                target: target(&text, "path")?,
            })
        }
    }
}

/// The one value of a describing header. Two values would let the proxy and us disagree on
/// which one counts, so they are refused like an absent one.
fn one<'h>(
    h: &'h HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<&'h str, Undescribed> {
    let mut values = h.get_all(name).iter();
    let first = values.next().ok_or(Undescribed::Missing(label))?;
    if values.next().is_some() {
        return Err(Undescribed::Repeated(label));
    }
    let text = first.to_str().map_err(|_| Undescribed::BadTarget(label))?;
    if text.is_empty() {
        return Err(Undescribed::Missing(label));
    }
    Ok(text)
}

fn method(text: &str, label: &'static str) -> Result<Method, Undescribed> {
    Method::from_bytes(text.as_bytes()).map_err(|_| Undescribed::BadMethod(label))
}

fn target(text: &str, label: &'static str) -> Result<PathAndQuery, Undescribed> {
    PathAndQuery::from_str(text).map_err(|_| Undescribed::BadTarget(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn nginx_reads_the_original_headers() {
        let r = req(
            "/forward-auth/nginx",
            &[
                ("x-original-method", "DELETE"),
                ("x-original-host", "App.Example.com"),
                ("x-original-uri", "/api/items/7?force=1"),
                // Traefik's headers mean nothing to this contract.
                ("x-forwarded-uri", "/public"),
            ],
        );
        let o = describe(Contract::Nginx, &r, "").unwrap();
        assert_eq!(o.method, Method::DELETE);
        assert_eq!(o.host.as_deref(), Some("App.Example.com"));
        assert_eq!(o.target.path(), "/api/items/7");
        assert_eq!(o.target.query(), Some("force=1"));
    }

    #[test]
    fn missing_repeated_or_broken_describers_are_refused() {
        let r = req(
            "/x",
            &[("x-original-method", "GET"), ("x-original-host", "a")],
        );
        assert_eq!(
            describe(Contract::Nginx, &r, ""),
            Err(Undescribed::Missing("X-Original-URI"))
        );
        let mut r = req(
            "/x",
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-host", "a"),
                ("x-forwarded-uri", "/public"),
            ],
        );
        r.headers_mut()
            .append("x-forwarded-uri", "/admin".parse().unwrap());
        assert_eq!(
            describe(Contract::Traefik, &r, ""),
            Err(Undescribed::Repeated("X-Forwarded-Uri"))
        );
        let r = req(
            "/x",
            &[
                ("x-forwarded-method", "G E T"),
                ("x-forwarded-host", "a"),
                ("x-forwarded-uri", "/"),
            ],
        );
        assert_eq!(
            describe(Contract::Caddy, &r, ""),
            Err(Undescribed::BadMethod("X-Forwarded-Method"))
        );
        let r = req(
            "/x",
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-host", "a"),
                ("x-forwarded-uri", "/a b"),
            ],
        );
        assert_eq!(
            describe(Contract::Caddy, &r, ""),
            Err(Undescribed::BadTarget("X-Forwarded-Uri"))
        );
    }

    #[test]
    fn envoy_is_the_check_request_itself() {
        let mut r = req(
            "/forward-auth/envoy/api/items?page=2",
            &[("host", "app.example.com:8443")],
        );
        *r.method_mut() = Method::POST;
        let o = describe(Contract::Envoy, &r, "/api/items").unwrap();
        assert_eq!(o.method, Method::POST);
        assert_eq!(o.host.as_deref(), Some("app.example.com:8443"));
        assert_eq!(o.target.as_str(), "/api/items?page=2");
    }
}
