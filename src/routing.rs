//! ① Routing: which route answers a path.
//!
//! Routes match on whole path segments: `/api` answers `/api`, `/api/` and `/api/x`, never
//! `/apiary`. The longest matching prefix wins. Paths that could be read differently by the
//! gateway and by a backend (dot segments, encoded slashes, backslashes, NUL) are refused
//! before matching, so a request is never forwarded under a route it was not matched on.

/// A compiled route table; `T` is what a match yields.
pub struct RouteTable<T> {
    /// Sorted longest prefix first, so the first match is the most specific.
    entries: Vec<(String, T)>,
}

impl<T> RouteTable<T> {
    /// Builds the table from `(prefix, value)` pairs; prefixes are normalized (`/api/` → `/api`).
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> RouteTable<T> {
        let mut entries: Vec<(String, T)> = routes
            .into_iter()
            .map(|(p, t)| {
                let trimmed = p.trim_end_matches('/');
                (
                    if trimmed.is_empty() {
                        "/".to_string()
                    } else {
                        trimmed.to_string()
                    },
                    t,
                )
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        RouteTable { entries }
    }

    /// The most specific route for `path` (the path part of the request target, no query).
    pub fn find(&self, path: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(prefix, _)| segment_prefix(prefix, path))
            .map(|(_, t)| t)
    }

    /// Like [`RouteTable::find`], but when a backend could read `path` as belonging to a
    /// route that `is_strict` (segments compared without their `;params` and without ASCII
    /// case, as Tomcat, Spring or IIS do), that route wins over a less strict exact match.
    /// So `/API/x` or `/api;x/y` never slip past a required `/api` through a public `/`.
    pub fn find_strict(&self, path: &str, is_strict: impl Fn(&T) -> bool) -> Option<&T> {
        let exact = self.find(path);
        if exact.is_some_and(&is_strict) {
            return exact;
        }
        let loose = self
            .entries
            .iter()
            .find(|(prefix, _)| loose_segment_prefix(prefix, path))
            .map(|(_, t)| t);
        match loose {
            Some(t) if is_strict(t) => Some(t),
            _ => exact,
        }
    }
}

/// `segment_prefix` as a lenient backend sees it: `;params` dropped, ASCII case ignored.
fn loose_segment_prefix(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let mut segments = path.split('/').skip(1);
    prefix.split('/').skip(1).all(|want| {
        segments.next().is_some_and(|seg| {
            seg.split(';')
                .next()
                .unwrap_or(seg)
                .eq_ignore_ascii_case(want)
        })
    })
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

/// Refuses request paths that backends might resolve to another route than ours.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("The request target must be an absolute path");
    }
    if path.contains('\\') {
        return Err("The path contains a backslash");
    }
    let lower = path.to_ascii_lowercase();
    for (encoded, why) in [
        ("%2f", "The path contains an encoded slash"),
        ("%5c", "The path contains an encoded backslash"),
        ("%00", "The path contains an encoded NUL"),
        ("%2e", "The path contains an encoded dot"),
        ("%25", "The path contains an encoded percent sign"),
    ] {
        if lower.contains(encoded) {
            return Err(why);
        }
    }
    check_escapes(path)?;
    for segment in path[1..].split('/') {
        // Tomcat, Jetty and Spring drop a segment's `;params`: `..;x` is `..` to them.
        let bare = segment.split(';').next().unwrap_or(segment);
        if bare == "." || bare == ".." {
            return Err("The path contains a dot segment");
        }
    }
    if path.contains("//") {
        return Err("The path contains an empty segment");
    }
    Ok(())
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

/// Every escape must be `%` and two hex digits; it must not spell a character that needs
/// no escaping, nor `;` (a decoding backend reads `/%61pi` as `/api`); and the decoded path
/// must be UTF-8 (overlong forms such as `%c0%ae` are how broken decoders read a `.`).
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
        if byte.is_ascii_alphanumeric() || b"-._~;".contains(&byte) {
            return Err("The path contains a needlessly encoded character");
        }
        decoded.push(byte);
        i += 3;
    }
    std::str::from_utf8(&decoded)
        .map(|_| ())
        .map_err(|_| "The path is not UTF-8 once decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_prefixes_and_specificity() {
        let t = RouteTable::new([
            ("/".to_string(), 0),
            ("/api/".to_string(), 1),
            ("/api/admin".to_string(), 2),
        ]);
        assert_eq!(t.find("/api"), Some(&1));
        assert_eq!(t.find("/api/"), Some(&1));
        assert_eq!(t.find("/api/users"), Some(&1));
        assert_eq!(t.find("/apiary"), Some(&0));
        assert_eq!(t.find("/api/admin/x"), Some(&2));
        assert_eq!(t.find("/api/administrator"), Some(&1));
        let only = RouteTable::new([("/api".to_string(), 1)]);
        assert_eq!(only.find("/apiary"), None);
        assert_eq!(only.find("/"), None);
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for bad in [
            "/api/../admin",
            "/api/./x",
            "/api/%2e%2e/admin",
            "/api%2fadmin",
            "//admin",
            "/a\\b",
            "/a%00",
            "/a/%252e%252e/",
            "x",
            "/api/..",
            "/a/..;/b",
            "/a/.;x/b",
            "/%41",
            "/%61pi",
            "/a%3bb",
            "/a/%c0%ae%c0%ae/b",
            "/a/%e0%80%ae",
            "/a/%zz",
            "/a/%+1",
            "/a/%2",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/",
            "/api/",
            "/api/v1.2/x",
            "/a/..b/c",
            "/a%20b",
            "/%C3%A9",
            "/a;b/c",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn lenient_spellings_of_a_strict_prefix_find_it() {
        let t = RouteTable::new([
            ("/".to_string(), false),
            ("/api".to_string(), true),
            ("/Docs".to_string(), false),
        ]);
        let strict = |r: &bool| *r;
        for path in ["/API/x", "/Api", "/api;x/y", "/API;", "/api/x"] {
            assert_eq!(t.find_strict(path, strict), Some(&true), "{path}");
        }
        for path in ["/apiary", "/ap", "/", "/docs/x", "/x/api"] {
            assert_eq!(t.find_strict(path, strict), Some(&false), "{path}");
        }
        let only = RouteTable::new([("/api".to_string(), false)]);
        assert_eq!(only.find_strict("/API", |r: &bool| *r), None);
    }

    #[test]
    fn ambiguous_hosts_are_refused() {
        let req = |target: &str, hosts: &[&str], version| {
            let mut b = http::Request::builder().uri(target).version(version);
            for h in hosts {
                b = b.header(http::header::HOST, *h);
            }
            b.body(()).unwrap()
        };
        use http::Version;
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        for (target, hosts, version) in [
            ("/", &["a", "b"][..], HTTP_11),
            ("/", &["a", "a"][..], HTTP_11),
            ("/", &[][..], HTTP_11),
            ("/", &[""][..], HTTP_11),
            ("/", &["a, b"][..], HTTP_11),
            ("/", &["user@a"][..], HTTP_11),
            ("/", &["a/b"][..], HTTP_11),
            ("http://evil/", &["good"][..], HTTP_11),
        ] {
            assert!(
                check_host(&req(target, hosts, version)).is_err(),
                "{target} {hosts:?}"
            );
        }
        for (target, hosts, version) in [
            ("/", &["gw.example:8080"][..], HTTP_11),
            ("/", &["[::1]:80"][..], HTTP_11),
            ("/", &[][..], HTTP_10),
            ("http://gw/", &[][..], HTTP_2),
            ("http://GW/", &["gw"][..], HTTP_11),
        ] {
            assert!(
                check_host(&req(target, hosts, version)).is_ok(),
                "{target} {hosts:?}"
            );
        }
    }
}
