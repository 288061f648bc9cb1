//! Path normalization and the route matcher on any path. Never a panic; a normalized path
//! has no empty, dot or backslash segment in any spelling the check knows; its raw form
//! routes like it; a path a lenient backend reads under a required prefix always takes a
//! required route.
#![no_main]

use gateway::config::PathMatch;
use gateway::routing::{Matcher, RouteTable};
use http::Method;
use libfuzzer_sys::fuzz_target;

fn m(path: &str) -> Matcher {
    Matcher { host: None, path: path.to_string(), path_match: PathMatch::Prefix, methods: None }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let table = RouteTable::new([(m("/"), false), (m("/api"), true), (m("/public"), false), (m("/api/open"), false), (m("/admin/keys"), true)]);
    let Ok(path) = table.normalize(None, raw) else {
        return;
    };
    let path = path.as_ref();
    assert!(path.starts_with('/'));
    assert!(!path.contains("//") && !path.contains('\\'), "{raw:?} -> {path:?}");
    let lower = path.to_ascii_lowercase();
    for bad in ["%2e", "%2f", "%5c", "%00", "%c0", "%c1"] {
        assert!(!lower.contains(bad), "{raw:?} -> {path:?}");
    }
    for seg in path[1..].split('/') {
        let bare = seg.split(';').next().unwrap_or(seg);
        assert!(bare != "." && bare != "..", "{raw:?} -> {path:?}");
    }
    let exact = table.find(None, path, &Method::GET);
    let strict = table.find_strict(None, path, &Method::GET, |r| *r);
    // Strict matching only ever adds protection.
    if exact == Ok(&true) {
        assert_eq!(strict, Ok(&true));
    }
    // `/API;x/...` and friends: the lenient reading of a required prefix is required.
    let lenient: Vec<String> = path[1..].split('/').map(|s| s.split(';').next().unwrap_or("").to_ascii_lowercase()).collect();
    if table.find(None, &format!("/{}", lenient.join("/")), &Method::GET) == Ok(&true) {
        assert_eq!(strict, Ok(&true), "{raw:?} -> {path:?}");
    }
});
