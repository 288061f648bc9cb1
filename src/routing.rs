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

    /// `path_matches` as a lenient backend sees it: `;params` dropped, ASCII case ignored.
    fn loose_path_matches(&self, path: &str) -> bool {
        if self.path == "/" {
            return self.path_match == PathMatch::Prefix || path == "/";
        }
        let mut segments = path.split('/').skip(1);
        let all = self.path.split('/').skip(1).all(|want| {
            segments.next().is_some_and(|seg| {
                seg.split(';')
                    .next()
                    .unwrap_or(seg)
                    .eq_ignore_ascii_case(want)
            })
        });
        all && (self.path_match == PathMatch::Prefix || segments.next().is_none())
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

    /// Like [`RouteTable::find`], but when a lenient backend could read `path` as belonging
    /// to a route that `is_strict` (segments compared without their `;params` and without
    /// ASCII case, as Tomcat, Spring or IIS do), that route wins over a less strict match.
    /// So `/API/x` or `/api;x/y` never slip past a required `/api` through a public `/`.
    pub fn find_strict(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
        is_strict: impl Fn(&T) -> bool,
    ) -> Result<&T, Miss> {
        let found = self.find(host, path, method);
        if found.as_ref().is_ok_and(|t| is_strict(t)) {
            return found;
        }
        let loose = self
            .entries
            .iter()
            .find(|(m, _)| m.host_matches(host) && m.loose_path_matches(path));
        match loose {
            Some((m, t)) if is_strict(t) => match &m.methods {
                Some(list) if !list.contains(method) => Err(Miss::Method(list.clone())),
                _ => Ok(t),
            },
            _ => found,
        }
    }

    /// The route `find` would pick ignoring methods (for the raw-vs-normalized check).
    fn first(&self, host: Option<&str>, path: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(m, _)| m.host_matches(host) && m.path_matches(path))
            .map(|(_, t)| t)
    }

    /// Normalizes `raw` and checks that it routes the same as the raw form (with escapes
    /// of unreserved characters decoded: `/%7Ea` and `/~a` are the same URI).
    pub fn normalize<'a>(
        &self,
        host: Option<&str>,
        raw: &'a str,
    ) -> Result<Cow<'a, str>, &'static str> {
        let decoded = decode_unreserved(raw)?;
        let normalized = normalize(raw)?;
        if normalized != decoded {
            let a = self.first(host, &decoded).map(|t| t as *const T);
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

/// Decodes escapes of unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`), which
/// mean the same as the characters themselves (§6.2.2.2); old clients send `%7E`. One pass:
/// `%257E` stays as it is (and `%25` followed by an escape of `.` or `/` is refused later).
/// A malformed escape is refused.
pub fn decode_unreserved(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // `%` is ASCII, so the next one is always on a character boundary (and `i`
            // is one: the start, or just after an escape).
            let next = bytes[i..]
                .iter()
                .position(|&b| b == b'%')
                .map_or(bytes.len(), |n| i + n);
            out.push_str(&raw[i..next]);
            i = next;
            continue;
        }
        let byte = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("The path contains a malformed percent escape")?;
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
            changed = true;
        } else {
            out.push_str(&raw[i..i + 3]);
        }
        i += 3;
    }
    Ok(if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw)
    })
}

/// Decodes unreserved escapes ([`decode_unreserved`]), resolves dot segments, collapses
/// empty segments, keeps a trailing slash. Refuses what a backend could read as another
/// path: `\`, encoded `/` `\` NUL, and double-encoded dots or slashes.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    match decode_unreserved(raw)? {
        Cow::Borrowed(raw) => normalize_decoded(raw),
        Cow::Owned(decoded) => Ok(Cow::Owned(normalize_decoded(&decoded)?.into_owned())),
    }
}

fn normalize_decoded(raw: &str) -> Result<Cow<'_, str>, &'static str> {
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
    check_escapes(raw)?;
    if !needs_work {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    let segments: Vec<&str> = raw[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        // Tomcat, Jetty and Spring drop a segment's `;params`: `..;x` is `..` to them.
        let bare = decode_dots(seg.split(';').next().unwrap_or(seg));
        if seg.contains(';') && (bare == "." || bare == "..") {
            return Err("The path contains a dot segment with parameters");
        }
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

/// Every escape must be `%` and two hex digits; `;` must not be escaped (servlet containers
/// split path parameters on it, before or after decoding); and the decoded path must be
/// UTF-8 (overlong forms such as `%c0%ae` are how broken decoders read a `.`). Escapes of
/// unreserved characters were decoded before this runs.
fn check_escapes(path: &str) -> Result<(), &'static str> {
    if !path.contains('%') {
        return Ok(());
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let byte = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("The path contains a malformed percent escape")?;
        if byte == b';' {
            return Err("The path contains an encoded semicolon");
        }
        decoded.push(byte);
        i += 3;
    }
    std::str::from_utf8(&decoded)
        .map(|_| ())
        .map_err(|_| "The path is not UTF-8 once decoded")
}

/// Refuses a request whose host is ambiguous (RFC 9112 §3.2 asks for 400 in each case):
/// more than one `Host`, none on HTTP/1.1, one that is not a plain `host[:port]`, or one
/// that differs from an absolute-form target's authority. Otherwise the gateway and the
/// backend could each pick a different site for the same request.
pub fn check_host<B>(req: &http::Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("The request has more than one Host header");
    }
    let Some(host) = host else {
        return match req.version() {
            http::Version::HTTP_11 => Err("The request has no Host header"),
            // HTTP/1.0 may omit it; HTTP/2 carries it in :authority.
            _ => Ok(()),
        };
    };
    let plain = !host.is_empty()
        && host
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(b));
    if !plain {
        return Err("The Host header is not a valid host");
    }
    match req.uri().authority() {
        Some(a) if !a.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) => {
            Err("The Host header differs from the request target's authority")
        }
        _ => Ok(()),
    }
}

/// Refuses a case variant of a standard method (`get`, `Post`). Methods are case-sensitive
/// (RFC 9110 §9.1) and we route on the exact token, but many frameworks upper-case it: a
/// route table that differs by method could be stepped around. Other extension methods
/// (`PROPFIND`, `purge`) pass.
pub fn check_method(method: &Method) -> Result<(), &'static str> {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let m = method.as_str();
    if STANDARD
        .iter()
        .any(|s| s.eq_ignore_ascii_case(m) && *s != m)
    {
        return Err(
            "The method is a case variant of a standard method; methods are case-sensitive",
        );
    }
    Ok(())
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
        assert_eq!(n("/a%20b"), Ok("/a%20b".into()));
        assert_eq!(n("/%C3%A9/./x"), Ok("/%C3%A9/x".into()));
        assert_eq!(n("/a;b/c"), Ok("/a;b/c".into()));
        // Unreserved escapes mean the characters themselves (RFC 3986 §6.2.2.2).
        assert_eq!(n("/%7Euser/%41%2D%5f"), Ok("/~user/A-_".into()));
        assert_eq!(n("/%61pi/x%2Fy"), Err("The path contains an encoded slash"));
        assert_eq!(
            n("/a/%252e"),
            Err("The path contains a double-encoded dot, slash or NUL")
        );
        assert_eq!(
            n("/a/%25%32%65"),
            Err("The path contains a double-encoded dot, slash or NUL")
        );
        // Regression (found by the routing fuzz target): raw non-ASCII before an escape
        // made the decoder slice inside a character.
        assert_eq!(
            n("/public/%4e%2e\u{476}Cx/a"),
            Ok("/public/N.\u{476}Cx/a".into())
        );
        assert_eq!(n("/\u{e9}%7E\u{e9}"), Ok("/\u{e9}~\u{e9}".into()));
        for bad in [
            "/a/..;/b",
            "/a/.;x/b",
            "/a/%2e%2e;x/b",
            "/a%3bb",
            "/a/%c0%ae%c0%ae/b",
            "/a/%e0%80%ae",
            "/a/%zz",
            "/a/%+1",
            "/a/%2",
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
        // Decoded first, then compared: `/%61dmin` is `/admin`, and routes as it.
        assert_eq!(t.normalize(None, "/%61dmin/x").unwrap(), "/admin/x");
        assert!(t.normalize(None, "/public/%2E%2e/admin").is_err());
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

#[cfg(test)]
mod strict_tests {
    use super::*;

    fn prefix(path: &str) -> Matcher {
        Matcher {
            host: None,
            path: path.into(),
            path_match: PathMatch::Prefix,
            methods: None,
        }
    }

    #[test]
    fn lenient_spellings_of_a_strict_prefix_find_it() {
        let t = RouteTable::new([
            (prefix("/"), false),
            (prefix("/api"), true),
            (prefix("/Docs"), false),
        ]);
        let strict = |r: &bool| *r;
        for path in ["/API/x", "/Api", "/api;x/y", "/API;", "/api/x"] {
            assert_eq!(
                t.find_strict(None, path, &Method::GET, strict),
                Ok(&true),
                "{path}"
            );
        }
        for path in ["/apiary", "/ap", "/", "/docs/x", "/x/api"] {
            assert_eq!(
                t.find_strict(None, path, &Method::GET, strict),
                Ok(&false),
                "{path}"
            );
        }
        let only = RouteTable::new([(prefix("/api"), false)]);
        assert_eq!(
            only.find_strict(None, "/API", &Method::GET, |r: &bool| *r),
            Err(Miss::NotFound)
        );
    }

    #[test]
    fn ambiguous_hosts_are_refused() {
        use http::Version;
        let req = |target: &str, hosts: &[&str], version| {
            let mut b = http::Request::builder().uri(target).version(version);
            for h in hosts {
                b = b.header(http::header::HOST, *h);
            }
            b.body(()).unwrap()
        };
        for (target, hosts, version) in [
            ("/", &["a", "b"][..], Version::HTTP_11),
            ("/", &["a", "a"][..], Version::HTTP_11),
            ("/", &[][..], Version::HTTP_11),
            ("/", &[""][..], Version::HTTP_11),
            ("/", &["a, b"][..], Version::HTTP_11),
            ("/", &["user@a"][..], Version::HTTP_11),
            ("/", &["a/b"][..], Version::HTTP_11),
            ("http://evil/", &["good"][..], Version::HTTP_11),
        ] {
            assert!(
                check_host(&req(target, hosts, version)).is_err(),
                "{target} {hosts:?}"
            );
        }
        for (target, hosts, version) in [
            ("/", &["gw.example:8080"][..], Version::HTTP_11),
            ("/", &["[::1]:80"][..], Version::HTTP_11),
            ("/", &[][..], Version::HTTP_10),
            ("http://gw/", &[][..], Version::HTTP_2),
            ("http://GW/", &["gw"][..], Version::HTTP_11),
        ] {
            assert!(
                check_host(&req(target, hosts, version)).is_ok(),
                "{target} {hosts:?}"
            );
        }
    }
}
