//! What browser mode reads off a request head: is it a navigation, is it same-origin,
//! which CSRF token does it echo, and where may it return to after the login.

use http::header::{ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderName, Method, Uri};

/// The form field carrying the CSRF token (the login and logout forms, an app's forms).
/// Ours alone: `csrf_token` is Flask-WTF's field, and an app's own token there must not
/// be read as ours.
pub const CSRF_FIELD: &str = "gateway_csrf";
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// The query parameter (and form field) carrying the return URL.
pub const RETURN_TO: &str = "return_to";

/// Where a login returns to when no acceptable return URL was given.
pub const HOME: &str = "/";

/// Longest return URL kept; longer ones are replaced by [`HOME`].
const MAX_RETURN: usize = 2048;

/// Whether the method changes state (RFC 9110 §9.2.1: not safe), so a cookie-carried
/// session needs proof of intent.
pub fn unsafe_method(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// A top-level page load by a browser: `GET`/`HEAD` asking for HTML, and not a script's
/// `fetch` (whose `Sec-Fetch-Mode` is not `navigate`). Only these are redirected to the
/// login page; everything else keeps getting the JSON 401.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    if let Some(mode) = headers.get(SEC_FETCH_MODE) {
        if mode.as_bytes() != b"navigate" {
            return false;
        }
    }
    accepts_html(headers)
}

/// Whether a request looks sent by a browser: it carries `Origin` or a `Sec-Fetch-*`
/// header (browsers set them; API clients rarely do), or asks for HTML. An API client's
/// form-encoded post to the login path keeps the API's JSON answers.
pub fn from_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(ORIGIN)
        || headers.contains_key(SEC_FETCH_MODE)
        || headers.contains_key(SEC_FETCH_SITE)
        || accepts_html(headers)
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mime = item.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("text/html")
        })
}

/// Why a request did not come from our own pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` said `cross-site` or `same-site` (a sibling subdomain).
    FetchSite,
    /// `Origin` names another origin, or is `null`.
    Origin,
}

/// Checks `Sec-Fetch-Site` and `Origin` when the browser sends them: the request must
/// come from a page of this very origin (`secure`: https). A request with neither header
/// (an older browser, a script outside a browser) passes here and is left to the token.
pub fn same_origin(
    headers: &HeaderMap,
    secure: bool,
    authority: Option<&str>,
) -> Result<(), CrossSite> {
    let site = headers.get(SEC_FETCH_SITE).map(|v| v.as_bytes());
    if let Some(site) = site {
        // `none` is the user's own action (a bookmark, the address bar).
        if !matches!(site, b"same-origin" | b"none") {
            return Err(CrossSite::FetchSite);
        }
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    // Browsers send `Origin: null` for some of a page's own requests (after a redirect,
    // from a privacy-sensitive context); `Sec-Fetch-Site`, which the page cannot set, is
    // the better witness there.
    if origin.as_bytes() == b"null" && site == Some(b"same-origin") {
        return Ok(());
    }
    let origin = origin.to_str().map_err(|_| CrossSite::Origin)?;
    // An origin is exactly `scheme://host[:port]`: compared whole with ours.
    let is = |scheme: &str| {
        authority.is_some_and(|a| {
            let (s, rest) = origin.split_at(origin.find("://").unwrap_or(0));
            s.eq_ignore_ascii_case(scheme)
                && rest.get(3..).is_some_and(|r| r.eq_ignore_ascii_case(a))
        })
    };
    if is("https") || (!secure && is("http")) {
        Ok(())
    } else {
        Err(CrossSite::Origin)
    }
}

/// The request's own authority: its `Host`, or HTTP/2's `:authority`.
pub fn authority<'r>(headers: &'r HeaderMap, uri: &'r Uri) -> Option<&'r str> {
    headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// Whether the body is an HTML form's (`application/x-www-form-urlencoded`).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A return URL we may redirect to: a path on this site (`/…`), printable ASCII, no
/// backslash, not `//…` (another host to a browser), short. Anything else is `None`.
pub fn safe_return(candidate: &str) -> Option<&str> {
    let ok = candidate.len() <= MAX_RETURN
        && candidate.starts_with('/')
        && !candidate.starts_with("//")
        && candidate
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(candidate)
}

/// The return URL of a query string (`return_to=`), or [`HOME`] when there is none or it
/// is not [`safe_return`].
pub fn return_to(query: Option<&str>) -> String {
    query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == RETURN_TO)
                .map(|(_, v)| v.into_owned())
        })
        .filter(|v| safe_return(v).is_some())
        .unwrap_or_else(|| HOME.to_string())
}

/// `path?return_to=<url>` (the URL encoded as a query value).
pub fn with_return(path: &str, url: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(RETURN_TO, url)
        .finish();
    format!("{path}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn return_urls_stay_on_the_site() {
        for ok in ["/", "/app", "/app/x?y=1&z=%2F", "/a#frag"] {
            assert_eq!(safe_return(ok), Some(ok), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "https://evil.example/",
            "evil.example",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
            "/a\tb",
            "/a b",
            "",
            "/caf\u{e9}",
        ] {
            assert_eq!(safe_return(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return(&format!("/{}", "a".repeat(3000))), None);
        assert_eq!(return_to(Some("return_to=%2F%2Fevil.example")), "/");
        assert_eq!(return_to(Some("return_to=%2Fapp%3Fx%3D1")), "/app?x=1");
        assert_eq!(return_to(None), "/");
        let url = with_return("/auth/login", "/app?x=1&y=2");
        assert_eq!(url, "/auth/login?return_to=%2Fapp%3Fx%3D1%26y%3D2");
        assert_eq!(
            return_to(url.split_once('?').map(|(_, q)| q)),
            "/app?x=1&y=2"
        );
    }

    #[test]
    fn navigations_are_page_loads_asking_for_html() {
        let html = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";
        assert!(is_navigation(&Method::GET, &h(&[("accept", html)])));
        assert!(is_navigation(
            &Method::GET,
            &h(&[("accept", html), ("sec-fetch-mode", "navigate")])
        ));
        assert!(!is_navigation(
            &Method::GET,
            &h(&[("accept", html), ("sec-fetch-mode", "cors")])
        ));
        assert!(!is_navigation(&Method::POST, &h(&[("accept", html)])));
        assert!(!is_navigation(
            &Method::GET,
            &h(&[("accept", "application/json")])
        ));
        assert!(!is_navigation(&Method::GET, &h(&[])));
    }

    #[test]
    fn same_origin_checks() {
        let host = Some("app.example:8443");
        assert!(same_origin(&h(&[]), true, host).is_ok());
        assert!(same_origin(&h(&[("origin", "https://app.example:8443")]), true, host).is_ok());
        assert!(same_origin(&h(&[("origin", "https://APP.example:8443")]), true, host).is_ok());
        for bad in [
            "https://evil.example",
            "http://app.example:8443",
            "null",
            "https://app.example:8443.evil.example",
            "https://app.example:8443/x",
        ] {
            assert_eq!(
                same_origin(&h(&[("origin", bad)]), true, host),
                Err(CrossSite::Origin),
                "{bad}"
            );
        }
        assert!(same_origin(&h(&[("origin", "http://app.example:8443")]), false, host).is_ok());
        assert_eq!(
            same_origin(&h(&[("sec-fetch-site", "cross-site")]), true, host),
            Err(CrossSite::FetchSite)
        );
        assert_eq!(
            same_origin(&h(&[("sec-fetch-site", "same-site")]), true, host),
            Err(CrossSite::FetchSite)
        );
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")]), true, host).is_ok());
        assert!(same_origin(
            &h(&[("sec-fetch-site", "same-origin"), ("origin", "null")]),
            true,
            host
        )
        .is_ok());
        for site in ["none", "cross-site", "same-site"] {
            assert!(
                same_origin(
                    &h(&[("sec-fetch-site", site), ("origin", "null")]),
                    true,
                    host
                )
                .is_err(),
                "{site}"
            );
        }
        assert_eq!(
            same_origin(&h(&[("origin", "https://app.example:8443")]), true, None),
            Err(CrossSite::Origin)
        );
    }
}
