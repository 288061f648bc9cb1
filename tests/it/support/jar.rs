//! A browser's cookie jar (what `Set-Cookie` answers set, sent back as `Cookie`), and the
//! login form of browser mode filled in the way a browser submits it.

use std::collections::BTreeMap;

use super::client::{get, request, Resp};
use super::test_gateway::{Gateway, PASSWORD};

/// Cookies by name, with the attributes of the `Set-Cookie` that set each.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    pub cookies: BTreeMap<String, (String, String)>,
}

impl Jar {
    /// Takes every `Set-Cookie` of `r`: a `Max-Age=0` removes the cookie.
    pub fn take(&mut self, r: &Resp) {
        for v in r.headers.get_all("set-cookie") {
            let text = v.to_str().unwrap().to_string();
            let first = text.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            if text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies
                    .insert(name.to_string(), (value.to_string(), text.clone()));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(|(v, _)| v.as_str())
    }

    /// The whole `Set-Cookie` line that set `name`.
    pub fn attributes(&self, name: &str) -> &str {
        &self
            .cookies
            .get(name)
            .unwrap_or_else(|| panic!("no cookie {name} in {:?}", self.cookies))
            .1
    }

    /// The `Cookie` header a browser would send to `path`: the cookies whose `Path`
    /// attribute covers it (RFC 6265 §5.1.4 path-match).
    pub fn header_for(&self, path: &str) -> String {
        self.cookies
            .iter()
            .filter(|(_, (_, line))| {
                let scope = line
                    .split(';')
                    .filter_map(|a| a.trim().strip_prefix("Path="))
                    .next()
                    .unwrap_or("/");
                path == scope
                    || (path.starts_with(scope)
                        && (scope.ends_with('/') || path[scope.len()..].starts_with('/')))
            })
            .map(|(k, (v, _))| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The `Cookie` header with every cookie, whatever its path (the tests pick them).
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, (v, _))| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn without(&self, name: &str) -> Jar {
        let mut j = self.clone();
        j.cookies.remove(name);
        j
    }
}

/// The value of the hidden input `name` in an HTML page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    let len = html[start..].find('"').unwrap();
    // The page escapes what it writes into attributes.
    html[start..start + len]
        .replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Form-encodes `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Opens the login page and posts its form as `username`, returning the answer to the
/// post (its cookies taken into `jar`).
pub async fn form_login(
    gw: &Gateway,
    jar: &mut Jar,
    username: &str,
    password: &str,
    return_to: &str,
) -> Resp {
    let page = get(
        &gw.url("/auth/login"),
        &[("accept", "text/html"), ("cookie", &jar.header())],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    jar.take(&page);
    let html = page.text();
    let body = form(&[
        ("gateway_csrf", &hidden(&html, "gateway_csrf")),
        ("return_to", return_to),
        ("username", username),
        ("password", password),
    ]);
    let r = request(
        "POST",
        &gw.url("/auth"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &jar.header()),
            ("origin", &format!("http://{}", gw.addr)),
            ("sec-fetch-site", "same-origin"),
        ],
        body,
    )
    .await;
    jar.take(&r);
    r
}

/// Logs the seed user `user1` in through the form; returns the jar.
pub async fn browser_session(gw: &Gateway) -> Jar {
    let mut jar = Jar::default();
    let r = form_login(gw, &mut jar, "user1", PASSWORD, "/app").await;
    assert_eq!(r.status, 303, "{}", r.text());
    jar
}
