//! The login page: one template (the built-in one, or the operator's file), every value
//! HTML-escaped by the template engine, served with headers that keep it out of frames
//! and caches.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, REFERRER_POLICY, X_FRAME_OPTIONS};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use super::ProviderLink;
use crate::body::{full, Body};

/// The built-in page.
pub const BUILT_IN: &str = include_str!("login.html");

const CONTENT_SECURITY_POLICY: HeaderName = HeaderName::from_static("content-security-policy");

/// No script runs on the page; styles are inline in the template (or, in an operator's
/// template, from this site); forms post only to us.
const CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the page shows. Every string is escaped when rendered.
#[derive(Debug, Default)]
pub struct View<'a> {
    pub title: &'a str,
    /// Where the local form posts (the login path); the form is left out when `None`.
    pub action: Option<&'a str>,
    /// The login form's CSRF token.
    pub csrf_token: &'a str,
    pub return_to: &'a str,
    /// A message for the user (never says whether a user exists).
    pub error: Option<&'a str>,
    pub providers: &'a [ProviderLink],
    /// The signed-in identity: the page then offers to continue or sign out.
    pub signed_in: Option<&'a str>,
    pub logout_action: &'a str,
    pub logout_csrf: &'a str,
}

#[derive(Serialize)]
struct Context<'a> {
    title: &'a str,
    local_form: bool,
    action: &'a str,
    csrf_token: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
    providers: Vec<Provider<'a>>,
    signed_in: Option<&'a str>,
    logout_action: &'a str,
    logout_csrf: &'a str,
}

#[derive(Serialize)]
struct Provider<'a> {
    label: &'a str,
    href: &'a str,
}

/// The page renderer. Built once per configuration.
pub struct Page {
    env: Environment<'static>,
}

impl Page {
    /// A renderer for `template` (the built-in page when `None`). The config check has
    /// parsed it already; a template that still fails falls back to the built-in page.
    pub fn new(template: Option<&str>) -> Page {
        let mut env = Environment::new();
        // Every template is HTML, whatever its file is called.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        let source = template.unwrap_or(BUILT_IN).to_string();
        if env.add_template_owned("login.html", source).is_err() {
            tracing::error!(
                "browser: the login page template does not parse; using the built-in page"
            );
            let _ = env.add_template_owned("login.html", BUILT_IN);
        }
        Page { env }
    }

    /// The page as HTML.
    pub fn html(&self, view: &View<'_>) -> Result<String, minijinja::Error> {
        let ctx = Context {
            title: view.title,
            local_form: view.action.is_some(),
            action: view.action.unwrap_or(""),
            csrf_token: view.csrf_token,
            return_to: view.return_to,
            error: view.error,
            providers: view
                .providers
                .iter()
                .map(|p| Provider {
                    label: &p.label,
                    href: &p.href,
                })
                .collect(),
            signed_in: view.signed_in,
            logout_action: view.logout_action,
            logout_csrf: view.logout_csrf,
        };
        self.env
            .get_template("login.html")
            .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
    }

    /// The page as a response with `status`, or a plain 500 when the template fails.
    pub fn response(&self, status: StatusCode, view: &View<'_>) -> Response<Body> {
        let (status, body) = match self.html(view) {
            Ok(html) => (status, html),
            Err(e) => {
                tracing::error!(error = %e, "browser: the login page template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>The sign-in page is unavailable.</p>\n"
                        .to_string(),
                )
            }
        };
        let mut res = Response::new(full(body));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_sections_follow_the_view() {
        let page = Page::new(None);
        let providers = [ProviderLink {
            label: "Corp <SSO>".into(),
            href: "/auth/oidc/corp?x=1&y=\"2\"".into(),
        }];
        let html = page
            .html(&View {
                title: "Sign in",
                action: Some("/auth"),
                csrf_token: "n.s",
                return_to: "/app?a=1&b=\"><script>",
                error: Some("Invalid <b>"),
                providers: &providers,
                ..View::default()
            })
            .unwrap();
        assert!(html.contains(r#"action="&#x2f;auth""#), "{html}");
        assert!(html.contains("&lt;b&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("Corp &lt;SSO&gt;"));
        assert!(html.contains(r#"name="gateway_csrf" value="n.s""#));
        assert!(!html.contains("Sign out"));

        let signed_in = page
            .html(&View {
                title: "Sign in",
                signed_in: Some("alice"),
                logout_action: "/auth/refresh/logout",
                logout_csrf: "sid.sig",
                return_to: "/",
                ..View::default()
            })
            .unwrap();
        assert!(signed_in.contains("Sign out"));
        assert!(signed_in.contains(r#"action="&#x2f;auth&#x2f;refresh&#x2f;logout""#));
        assert!(!signed_in.contains(r#"name="password""#));
    }

    #[test]
    fn an_operator_template_is_used() {
        let page = Page::new(Some("<p>{{ title }} {{ error }}</p>"));
        let html = page
            .html(&View {
                title: "Hi",
                error: Some("<x>"),
                ..View::default()
            })
            .unwrap();
        assert_eq!(html, "<p>Hi &lt;x&gt;</p>");
    }
}
