//! ① Routing: which route answers a request, and the path it is forwarded with.
//!
//! Routes match on host (exact or `*.suffix`), path (whole-segment prefix or exact) and
//! optionally method; the most specific match wins: host exact > wildcard (longer suffix
//! first) > any host, then exact path > longer prefix > shorter prefix, then a method list
//! over none. Ties are refused by the config check.
//!
//! Paths are normalized before matching and forwarding (dot segments resolved, `%2e` decoded,
//! empty segments collapsed). A request whose raw path would route differently from its
//! normalized form is refused, as are backslashes, NUL and encoded slashes: a request is
//! never forwarded under a route it was not matched on.

use std::borrow::Cow;

use http::Method;

use crate::config::{HostMatch, PathMatch};

/// One route's match criteria.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub host: Option<HostMatch>,
    pub path: String,
    pub path_match: PathMatch,
    pub methods: Option<Vec<Method>>,
}

impl Matcher {
    /// Sort key: larger is more specific.
    fn rank(&self) -> (u8, usize, u8, usize, u8) {
        let (host_rank, host_len) = match &self.host {
            Some(HostMatch::Exact(h)) => (2, h.len()),
            Some(HostMatch::Suffix(s)) => (1, s.len()),
            None => (0, 0),
        };
        let exact = u8::from(self.path_match == PathMatch::Exact);
        (
            host_rank,
            host_len,
            exact,
            self.path.len(),
            u8::from(self.methods.is_some()),
        )
    }

    fn host_matches(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(HostMatch::Exact(h)), Some(got)) => h == got,
            (Some(HostMatch::Suffix(s)), Some(got)) => {
                got.len() > s.len() && got.ends_with(s.as_str())
            }
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        match self.path_match {
            PathMatch::Exact => self.path == path,
            PathMatch::Prefix => segment_prefix(&self.path, path),
        }
    }
}

/// Why a request found no route.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// Nothing matches host and path.
    NotFound,
    /// Host and path match, the method does not; the methods that would.
    Method(Vec<Method>),
}

/// A compiled route table; `T` is what a match yields.
pub struct RouteTable<T> {
    /// Most specific first, so the first match wins.
    entries: Vec<(Matcher, T)>,
}

impl<T> RouteTable<T> {
    pub fn new(routes: impl IntoIterator<Item = (Matcher, T)>) -> RouteTable<T> {
        let mut entries: Vec<(Matcher, T)> = routes.into_iter().collect();
        entries.sort_by_key(|(m, _)| std::cmp::Reverse(m.rank()));
        RouteTable { entries }
    }

    /// The most specific route for `host` (lowercase, no port), `path` and `method`.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Result<&T, Miss> {
        let mut allowed = Vec::new();
        for (m, t) in &self.entries {
            if !m.host_matches(host) || !m.path_matches(path) {
                continue;
            }
            match &m.methods {
                None => return Ok(t),
                Some(list) if list.contains(method) => return Ok(t),
                Some(list) => allowed.extend(list.iter().cloned()),
            }
        }
        if allowed.is_empty() {
            Err(Miss::NotFound)
        } else {
            Err(Miss::Method(allowed))
        }
    }

    /// The route `find` would pick ignoring methods (for the raw-vs-normalized check).
    fn first(&self, host: Option<&str>, path: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(m, _)| m.host_matches(host) && m.path_matches(path))
            .map(|(_, t)| t)
    }

    /// Normalizes `raw` and checks that it routes the same as the raw form.
    pub fn normalize<'a>(
        &self,
        host: Option<&str>,
        raw: &'a str,
    ) -> Result<Cow<'a, str>, &'static str> {
        let normalized = normalize(raw)?;
        if normalized != raw {
            let a = self.first(host, raw).map(|t| t as *const T);
            let b = self.first(host, &normalized).map(|t| t as *const T);
            if a != b {
                return Err("The path routes differently once normalized");
            }
        }
        Ok(normalized)
    }
}

fn segment_prefix(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The host a request is for: lowercase, without port; `None` when absent or unusable.
pub fn request_host(host_header: Option<&str>, authority: Option<&str>) -> Option<String> {
    let raw = host_header.or(authority)?;
    let name = match raw.rsplit_once(':') {
        // `[::1]:8080` and `host:8080`; a bare IPv6 literal keeps its brackets.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => raw,
    };
    Some(name.trim_end_matches('.').to_ascii_lowercase())
}

/// Resolves dot segments (also `%2e`-encoded), collapses empty segments, keeps a trailing
/// slash. Refuses what a backend could read as another path: `\`, encoded `/` `\` NUL, and
/// double-encoded dots or slashes.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if !raw.starts_with('/') {
        return Err("The request target must be an absolute path");
    }
    let bytes = raw.as_bytes();
    let mut needs_work = raw.contains("//") || raw.contains("/.");
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err("The path contains a backslash"),
            0..=0x1f | 0x7f => return Err("The path contains a control character"),
            b'%' => {
                let code = bytes.get(i + 1..i + 3).map(|c| c.to_ascii_lowercase());
                match code.as_deref() {
                    Some(b"2f") => return Err("The path contains an encoded slash"),
                    Some(b"5c") => return Err("The path contains an encoded backslash"),
                    Some(b"00") => return Err("The path contains an encoded NUL"),
                    Some(b"2e") => needs_work = true,
                    Some(b"25") => {
                        let inner = bytes.get(i + 3..i + 5).map(|c| c.to_ascii_lowercase());
                        if matches!(inner.as_deref(), Some(b"2e" | b"2f" | b"5c" | b"00")) {
                            return Err("The path contains a double-encoded dot, slash or NUL");
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !needs_work {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    let segments: Vec<&str> = raw[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let decoded = decode_dots(seg);
        match decoded.as_ref() {
            "" => trailing_slash = i == last,
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            _ => {
                out.push(decoded);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || path.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// `%2e` → `.` inside one segment; other escapes stay as they are.
fn decode_dots(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    let lower_free = seg.replace("%2e", ".").replace("%2E", ".");
    Cow::Owned(lower_free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(
        host: Option<HostMatch>,
        path: &str,
        kind: PathMatch,
        methods: Option<Vec<Method>>,
    ) -> Matcher {
        Matcher {
            host,
            path: path.into(),
            path_match: kind,
            methods,
        }
    }

    #[test]
    fn most_specific_wins() {
        let t = RouteTable::new([
            (m(None, "/", PathMatch::Prefix, None), "root"),
            (m(None, "/api", PathMatch::Prefix, None), "api"),
            (m(None, "/api/admin", PathMatch::Prefix, None), "admin"),
            (m(None, "/api/health", PathMatch::Exact, None), "health"),
            (
                m(
                    None,
                    "/api/items",
                    PathMatch::Prefix,
                    Some(vec![Method::POST]),
                ),
                "items-post",
            ),
            (
                m(
                    Some(HostMatch::Suffix(".example.com".into())),
                    "/",
                    PathMatch::Prefix,
                    None,
                ),
                "wild",
            ),
            (
                m(
                    Some(HostMatch::Exact("api.example.com".into())),
                    "/",
                    PathMatch::Prefix,
                    None,
                ),
                "exact-host",
            ),
        ]);
        let get = |h: Option<&str>, p: &str| *t.find(h, p, &Method::GET).unwrap();
        assert_eq!(get(None, "/api"), "api");
        assert_eq!(get(None, "/apiary"), "root");
        assert_eq!(get(None, "/api/admin/x"), "admin");
        assert_eq!(get(None, "/api/administrator"), "api");
        assert_eq!(get(None, "/api/health"), "health");
        assert_eq!(get(None, "/api/health/x"), "api");
        assert_eq!(get(None, "/api/items"), "api");
        assert_eq!(
            *t.find(None, "/api/items", &Method::POST).unwrap(),
            "items-post"
        );
        assert_eq!(get(Some("api.example.com"), "/api"), "exact-host");
        assert_eq!(get(Some("www.example.com"), "/api"), "wild");
        assert_eq!(get(Some("example.com"), "/api"), "api");
    }

    #[test]
    fn method_miss_lists_allowed_methods() {
        let t = RouteTable::new([(
            m(
                None,
                "/a",
                PathMatch::Prefix,
                Some(vec![Method::GET, Method::HEAD]),
            ),
            1,
        )]);
        assert_eq!(
            t.find(None, "/a", &Method::POST),
            Err(Miss::Method(vec![Method::GET, Method::HEAD]))
        );
        assert_eq!(t.find(None, "/b", &Method::GET), Err(Miss::NotFound));
    }

    #[test]
    fn normalization() {
        let n = |p| normalize(p).map(|c| c.into_owned());
        assert_eq!(n("/a/./b"), Ok("/a/b".into()));
        assert_eq!(n("/a/b/../c"), Ok("/a/c".into()));
        assert_eq!(n("/a/%2e%2e/c"), Ok("/c".into()));
        assert_eq!(n("/a/%2E/c/"), Ok("/a/c/".into()));
        assert_eq!(n("//a//b"), Ok("/a/b".into()));
        assert_eq!(n("/../../x"), Ok("/x".into()));
        assert_eq!(n("/a/.."), Ok("/".into()));
        assert_eq!(n("/a/..b/c"), Ok("/a/..b/c".into()));
        assert_eq!(n("/%41"), Ok("/%41".into()));
        for bad in [
            "/a%2fb",
            "/a\\b",
            "/a%5Cb",
            "/a%00",
            "/a/%252e%252e/",
            "/a%252F",
            "x",
            "*",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn raw_and_normalized_must_route_alike() {
        let t = RouteTable::new([
            (m(None, "/public", PathMatch::Prefix, None), "public"),
            (m(None, "/admin", PathMatch::Prefix, None), "admin"),
        ]);
        assert!(t.normalize(None, "/public/../admin").is_err());
        assert!(t.normalize(None, "/public/%2e%2e/admin").is_err());
        assert!(t.normalize(None, "//admin").is_err());
        assert_eq!(t.normalize(None, "/public/./x").unwrap(), "/public/x");
        assert_eq!(t.normalize(None, "/public//x").unwrap(), "/public/x");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            request_host(Some("API.Example.com:8080"), None).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            request_host(None, Some("x.test")).as_deref(),
            Some("x.test")
        );
        assert_eq!(
            request_host(Some("[::1]:80"), None).as_deref(),
            Some("[::1]")
        );
        assert_eq!(request_host(None, None), None);
    }
}
