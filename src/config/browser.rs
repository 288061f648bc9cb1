//! `[browser]` and the routes' `browser = true`: cookie sessions, CSRF, the login page.

use std::time::Duration;

use super::file::BrowserFile;
use super::report::{resolve, Report};
use super::{Env, LoginConfig, RefreshConfig, RevocationConfig, RouteConfig, Secret, SecretOrigin};

/// When session cookies are `Secure` (and carry the `__Host-` / `__Secure-` prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    /// On TLS listeners only: a plain-HTTP listener gets unprefixed names, since browsers
    /// refuse `Secure` cookies (and so every prefixed name) from `http://` origins.
    Auto,
    /// On every listener: TLS is ended by a proxy in front, browsers see `https://`.
    Always,
}

/// The validated browser-mode settings; present when a route has `browser = true`.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    /// `GET` here serves the login page.
    pub login_page: String,
    /// The logout button posts here (with `[refresh]`, under the refresh path, so the
    /// refresh cookie comes along and its family can be revoked).
    pub logout_path: String,
    /// The login page template's source (`None`: the built-in page).
    pub template: Option<String>,
    pub secure_cookies: SecureCookies,
    /// A browser navigation whose session token expires within this is renewed first.
    pub renew_before: Duration,
    /// The key of the CSRF tokens (`None`: derived from the keyring).
    pub csrf_secret: Option<Secret>,
    /// The header a page's scripts echo the CSRF token in (removed on browser routes).
    pub csrf_header: http::HeaderName,
}

/// The header a page's scripts echo the CSRF token in, unless `[browser] csrf_header`
/// names another. Not `X-CSRF-Token`: Rails, Laravel and others read that one for their
/// own tokens, and removing it would break their checks.
pub const DEFAULT_CSRF_HEADER: &str = "x-gateway-csrf";

/// A CSRF secret shorter than this is refused (as a signing secret would be).
const MIN_CSRF_SECRET: usize = 32;

fn path(r: &mut Report, key: &str, value: Option<&String>, default: &str) -> String {
    let p = value.cloned().unwrap_or_else(|| default.into());
    if !p.starts_with('/') || p.starts_with("//") || p.contains(['?', '#', '\\', '%']) {
        r.problem(
            key,
            format!("`{p}` must be a plain absolute path"),
            format!("use \"{default}\""),
        );
    }
    p
}

/// Whether `path` is `prefix` or below it, segment-wise (cookie `Path` matching).
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// The endpoints browser mode builds on (and whose paths its own must not take).
pub(super) struct Endpoints<'a> {
    pub login: Option<&'a LoginConfig>,
    pub refresh: Option<&'a RefreshConfig>,
    pub revocation: Option<&'a RevocationConfig>,
}

/// Checks `[browser]` (or its defaults, when only routes ask for browser mode).
pub(super) fn browser(
    r: &mut Report,
    f: Option<&BrowserFile>,
    base: &std::path::Path,
    env: Env<'_>,
    routes: &[RouteConfig],
    endpoints: Endpoints<'_>,
) -> Option<BrowserConfig> {
    let Endpoints {
        login,
        refresh,
        revocation,
    } = endpoints;
    let wanted = routes.iter().any(|r| r.browser);
    for route in routes.iter().filter(|r| r.browser) {
        if route.auth != super::AuthMode::Required {
            r.problem(
                format!("{}.browser", route.at),
                "browser mode on a public route",
                "browser mode reads the session cookie of required routes: set auth = \"required\" or remove browser",
            );
        }
    }
    let f = match (f, wanted) {
        (_, true) => f,
        (Some(_), false) => {
            r.warning(
                "browser",
                "no route has browser = true: the [browser] table is unused",
                "add browser = true to the routes that browsers navigate to",
            );
            return None;
        }
        (None, false) => return None,
    };
    let empty = BrowserFile::default();
    let f = f.unwrap_or(&empty);
    if login.is_none() {
        r.problem(
            "browser",
            "browser mode needs a login endpoint: the login form posts to [login] path",
            "add a [login] table",
        );
    }
    let login_page = path(
        r,
        "browser.login_page",
        f.login_page.as_ref(),
        "/auth/login",
    );
    let default_logout = match refresh {
        Some(rc) => format!("{}/logout", rc.path.trim_end_matches('/')),
        None => "/auth/signout".to_string(),
    };
    let logout_path = path(
        r,
        "browser.logout_path",
        f.logout_path.as_ref(),
        &default_logout,
    );
    if let Some(rc) = refresh {
        if !under(&logout_path, &rc.path) || logout_path == rc.path {
            r.problem(
                "browser.logout_path",
                format!("`{logout_path}` is not below refresh.path `{}`", rc.path),
                format!(
                    "the refresh cookie is sent only below refresh.path; use \"{default_logout}\""
                ),
            );
        }
    }
    let mut taken: Vec<(&str, &str)> = Vec::new();
    if let Some(l) = login {
        taken.push(("login.path", &l.path));
    }
    if let Some(rc) = refresh {
        taken.push(("refresh.path", &rc.path));
    }
    if let Some(v) = revocation {
        taken.push(("revocation.logout_path", &v.logout_path));
    }
    for (key, p) in [
        ("browser.login_page", &login_page),
        ("browser.logout_path", &logout_path),
    ] {
        if let Some((other, _)) = taken.iter().find(|(_, q)| q == p) {
            r.problem(
                key,
                format!("`{p}` is already {other}"),
                "give each endpoint its own path",
            );
        }
        taken.push((key, p));
    }
    let template = f.template.as_ref().and_then(|t| {
        let file = resolve(base, t);
        match std::fs::read_to_string(&file) {
            Ok(source) => {
                if let Err(e) = minijinja::Environment::new().template_from_str(&source) {
                    r.problem(
                        "browser.template",
                        format!("`{}` is not a valid template: {e}", file.display()),
                        "start from the built-in page (src/browser/login.html)",
                    );
                }
                Some(source)
            }
            Err(e) => {
                r.problem(
                    "browser.template",
                    format!("cannot read `{}`: {e}", file.display()),
                    "give the path of an HTML template, relative to the config file",
                );
                None
            }
        }
    });
    let secure_cookies = match f.secure_cookies.as_deref().unwrap_or("auto") {
        "auto" => SecureCookies::Auto,
        "always" => SecureCookies::Always,
        other => {
            r.problem(
                "browser.secure_cookies",
                format!("unknown value `{other}`"),
                "use \"auto\" (Secure on TLS listeners) or \"always\" (TLS ended in front)",
            );
            SecureCookies::Auto
        }
    };
    let renew_before = r.duration(
        "browser.renew_before",
        f.renew_before.as_ref(),
        Duration::from_secs(60),
    );
    let default_header = http::HeaderName::from_static(DEFAULT_CSRF_HEADER);
    let csrf_header = match f.csrf_header.as_deref().map(http::HeaderName::try_from) {
        None => default_header,
        Some(Ok(h)) if !reserved_header(&h) => h,
        Some(Ok(h)) => {
            r.problem(
                "browser.csrf_header",
                format!("`{h}` is a header the gateway or HTTP itself owns"),
                "leave it out for X-Gateway-CSRF, or pick a name of your own",
            );
            default_header
        }
        Some(Err(_)) => {
            r.problem(
                "browser.csrf_header",
                "not a header name",
                "leave it out for X-Gateway-CSRF, or use letters, digits and '-'",
            );
            default_header
        }
    };
    Some(BrowserConfig {
        csrf_header,
        login_page,
        logout_path,
        template,
        secure_cookies,
        renew_before,
        csrf_secret: csrf_secret(r, f, base, env),
    })
}

/// Headers the CSRF header may not be: removing it upstream would break the request.
fn reserved_header(h: &http::HeaderName) -> bool {
    use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST};
    [
        AUTHORIZATION,
        CONNECTION,
        CONTENT_LENGTH,
        CONTENT_TYPE,
        COOKIE,
        HOST,
    ]
    .contains(h)
        || h.as_str().starts_with("x-forwarded-")
}

/// `csrf_secret_env` or `csrf_secret_file`: never echoed, at least 32 bytes.
fn csrf_secret(
    r: &mut Report,
    f: &BrowserFile,
    base: &std::path::Path,
    env: Env<'_>,
) -> Option<Secret> {
    let (key, secret) = match (&f.csrf_secret_env, &f.csrf_secret_file) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            r.problem(
                "browser.csrf_secret_env",
                "both csrf_secret_env and csrf_secret_file are set",
                "keep one of them",
            );
            return None;
        }
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => (
                "browser.csrf_secret_env",
                Secret {
                    bytes: v.into_bytes(),
                    origin: SecretOrigin::Env(var.clone()),
                },
            ),
            _ => {
                r.problem(
                    "browser.csrf_secret_env",
                    format!("environment variable `{var}` is not set or empty"),
                    "export it (e.g. openssl rand -base64 48), or leave it out to derive the key from the signing key",
                );
                return None;
            }
        },
        (None, Some(path)) => {
            let full = resolve(base, path);
            match std::fs::read(&full) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    (
                        "browser.csrf_secret_file",
                        Secret {
                            bytes,
                            origin: SecretOrigin::File(full.display().to_string()),
                        },
                    )
                }
                Err(e) => {
                    r.problem(
                        "browser.csrf_secret_file",
                        format!("cannot read {}: {e}", full.display()),
                        "create it with a random secret of at least 32 bytes",
                    );
                    return None;
                }
            }
        }
    };
    if secret.bytes.len() < MIN_CSRF_SECRET {
        r.problem(
            key,
            format!(
                "the secret is {} bytes, under {MIN_CSRF_SECRET}",
                secret.bytes.len()
            ),
            "make one with openssl rand -base64 48",
        );
        return None;
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn cookie_path_matching() {
        assert!(under("/auth/refresh/logout", "/auth/refresh"));
        assert!(under("/auth/refresh", "/auth/refresh"));
        assert!(!under("/auth/refreshx", "/auth/refresh"));
        assert!(under("/a/b", "/a/"));
    }
}
