//! The path check and the route matcher on any path. Never a panic; an accepted path has
//! no empty, dot or backslash segment in any spelling the check knows; a path a lenient
//! backend reads under a required prefix always takes a required route.
#![no_main]

use gateway::routing::{check_path, RouteTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let table = RouteTable::new([
        ("/".to_string(), false),
        ("/api".to_string(), true),
        ("/public".to_string(), false),
        ("/api/open".to_string(), false),
        ("/admin/keys".to_string(), true),
    ]);
    let exact = table.find(path);
    let strict = table.find_strict(path, |r| *r);
    // Strict matching only ever adds protection.
    if exact == Some(&true) {
        assert_eq!(strict, Some(&true));
    }
    if check_path(path).is_err() {
        return;
    }
    assert!(path.starts_with('/'));
    assert!(!path.contains("//") && !path.contains('\\'), "{path:?}");
    let lower = path.to_ascii_lowercase();
    for bad in ["%2e", "%2f", "%5c", "%00", "%25", "%c0", "%c1"] {
        assert!(!lower.contains(bad), "{path:?}");
    }
    for seg in path[1..].split('/') {
        let bare = seg.split(';').next().unwrap_or(seg);
        assert!(bare != "." && bare != "..", "{path:?}");
    }
    // `/API;x/...` and friends: the lenient reading of a required prefix is required.
    let lenient: Vec<String> = path[1..]
        .split('/')
        .map(|s| s.split(';').next().unwrap_or("").to_ascii_lowercase())
        .collect();
    if table.find(&format!("/{}", lenient.join("/"))) == Some(&true) {
        assert_eq!(strict, Some(&true), "{path:?}");
    }
});
