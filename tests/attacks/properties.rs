//! Property tests (proptest) of the pure functions the guarantees rest on:
//! - the path check never accepts a `.`/`..` segment, raw, percent-encoded (any case,
//!   double-encoded, overlong) or with `;params`;
//! - a spelling of a required prefix that a lenient backend reads as that prefix always
//!   takes the required route;
//! - after strip-then-set, the identity header on the upstream request is exactly the
//!   claim, once, whatever the client sent;
//! - hop-by-hop stripping never leaves a header the client named in `Connection`;
//! - end to end, a required route forwards only for the exact valid token, never for an
//!   edit of it.

use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use gateway::auth::Claims;
use gateway::config::PathMatch;
use gateway::config::UserId;
use gateway::identity::IdentityHeaders;
use gateway::proxy::forward::strip_hop_by_hop;
use gateway::routing::{normalize, Matcher, RouteTable};
use http::Method;

/// Percent-decodes `s` once; malformed escapes stay as they are.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// What a lenient backend could make of a segment: decoded up to three times, `;params`
/// dropped, overlong `.` read as `.`.
fn lenient_views(segment: &str) -> Vec<String> {
    let mut views = vec![segment.to_string()];
    let mut cur = segment.to_string();
    for _ in 0..3 {
        let bytes = decode(&cur);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        views.push(text.clone());
        cur = text;
    }
    let mut out = Vec::new();
    for v in views {
        let v = v.replace("\u{fffd}\u{fffd}", ".");
        out.push(v.split(';').next().unwrap_or("").to_string());
        out.push(v);
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just(".%2e".to_string()),
        Just("%252e%252e".to_string()),
        Just("%c0%ae%c0%ae".to_string()),
        Just("..;x".to_string()),
        Just(".;".to_string()),
        Just("api".to_string()),
        Just("API".to_string()),
        Just("api;p=1".to_string()),
        Just("%61pi".to_string()),
        "[a-z.;%0-9A-F_~-]{0,7}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn forwarded_paths_have_no_dot_segments(p in path()) {
        // What normalization accepts is what is forwarded: no empty or dot segment in any
        // reading a lenient backend might apply.
        if let Ok(n) = normalize(&p) {
            prop_assert!(!n.contains("//"));
            for seg in n[1..].split('/') {
                for view in lenient_views(seg) {
                    prop_assert!(view != "." && view != "..", "{p:?} forwarded as {n:?}, segment \
                                                               {seg:?} reads as {view:?}");
                }
            }
        }
    }

    #[test]
    fn lenient_spellings_of_a_required_prefix_are_required(p in path()) {
        // required /api and /admin/keys, public elsewhere (including a catch-all).
        let m = |path: &str| Matcher {
            host: None,
            path: path.to_string(),
            path_match: PathMatch::Prefix,
            methods: None,
        };
        let table = RouteTable::new([
            (m("/"), false),
            (m("/api"), true),
            (m("/public"), false),
            (m("/admin/keys"), true),
            (m("/admin"), false),
        ]);
        if let Ok(p) = table.normalize(None, &p) {
            let lenient: Vec<String> = p[1..]
                .split('/')
                .map(|s| s.split(';').next().unwrap_or("").to_ascii_lowercase())
                .collect();
            let lenient = format!("/{}", lenient.join("/"));
            if table.find(None, &lenient, &Method::GET) == Ok(&true) {
                prop_assert_eq!(table.find_strict(None, &p, &Method::GET, |r| *r), Ok(&true), "{} \
                    read as {}", p, lenient);
            }
        }
    }
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-identity".to_string()),
        Just("X-Identity".to_string()),
        Just("X_IDENTITY".to_string()),
        Just("x_identity".to_string()),
        Just("x-identity-extra".to_string()),
        Just("authorization".to_string()),
        Just("connection".to_string()),
        Just("host".to_string()),
        Just("te".to_string()),
        Just("upgrade".to_string()),
        Just("keep-alive".to_string()),
        "[a-zA-Z_-]{1,10}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((header_name(), "[ -~]{0,12}"), 0..12)
}

fn build(list: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

fn is_identity_name(name: &str) -> bool {
    name.replace('_', "-") == "x-identity"
}

/// The other headers, as a sorted list (removal reorders a `HeaderMap`).
fn non_identity(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = h
        .iter()
        .filter(|(k, _)| !is_identity_name(k.as_str()))
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    v.sort();
    v
}

fn identity() -> impl Strategy<Value = UserId> {
    prop_oneof![
        any::<i64>().prop_map(UserId::Int),
        "\\PC{0,12}".prop_map(UserId::Str),
        "[ -~\t\r\n\u{0}\u{7f}\u{e9}]{0,12}".prop_map(UserId::Str),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn identity_on_the_upstream_request_is_exactly_the_claim(list in headers(), id in identity()) {
        let ids = IdentityHeaders::default();
        let mut h = build(&list);
        let others = non_identity(&h);
        ids.strip(&mut h);
        let claims = Claims { identity: id.clone(), exp: 0.0, iat: None, extra: Vec::new().into() };
        let set = ids.set(&mut h, &claims, &[]);
        let found: Vec<(&HeaderName, &HeaderValue)> =
            h.iter().filter(|(k, _)| is_identity_name(k.as_str())).collect();
        match set {
            Ok(()) => {
                prop_assert_eq!(found.len(), 1);
                prop_assert_eq!(found[0].0.as_str(), "x-identity");
                let want = claims.identity.header_text();
                prop_assert_eq!(found[0].1.as_bytes(), want.as_bytes());
                // What HTTP carries intact: no surrounding whitespace, no controls.
                let v = found[0].1.as_bytes();
                prop_assert!(v.first().is_none_or(|b| *b != b' ' && *b != b'\t'));
                prop_assert!(v.last().is_none_or(|b| *b != b' ' && *b != b'\t'));
            }
            Err(_) => prop_assert!(found.is_empty()),
        }
        // Nothing else was touched.
        prop_assert_eq!(non_identity(&h), others);
    }

    #[test]
    fn hop_by_hop_stripping_leaves_no_connection_listed_header(
        list in headers(),
        listed in prop::collection::vec(header_name(), 0..5),
        sep in prop_oneof![Just(","), Just(", "), Just(" ,  ")],
    ) {
        let mut h = build(&list);
        if let Ok(v) = HeaderValue::from_str(&listed.join(sep)) {
            h.append(CONNECTION, v);
        }
        let named: Vec<HeaderName> = h
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        let host_before = h.get_all(HOST).iter().count();
        strip_hop_by_hop(&mut h);
        for n in &named {
            if n != HOST {
                prop_assert!(!h.contains_key(n), "{} survived", n);
            }
        }
        for fixed in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            prop_assert!(!h.contains_key(fixed), "{} survived", fixed);
        }
        prop_assert_eq!(h.get_all(HOST).iter().count(), host_before);
    }
}

/// An edit of a token: replace, insert or delete one character of the base64url alphabet.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let ch = prop::sample::select(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
            .chars()
            .collect::<Vec<_>>(),
    );
    let edit = prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    for e in edits {
        match *e {
            Edit::Replace(i, c) => {
                let i = i % chars.len();
                chars[i] = c;
            }
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) => {
                if chars.len() > 1 {
                    chars.remove(i % chars.len());
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// End to end through a real gateway: a required route forwards a request only for the
/// exact valid token; every edit of it (outside whitespace) is a 401 and forwards nothing.
#[test]
fn required_route_forwards_only_the_exact_valid_token() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(crate::harness::target());
    let valid = crate::support::token();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(&edits(), |e| {
            let edited = apply(&valid, &e);
            let before = t.forwarded();
            let r = rt.block_on(t.with_token(&edited));
            if edited == valid {
                prop_assert_eq!(r.status.as_u16(), 200);
                prop_assert_eq!(t.forwarded(), before + 1);
            } else {
                prop_assert_eq!(r.status.as_u16(), 401, "{} forwarded", edited);
                prop_assert_eq!(t.forwarded(), before);
            }
            Ok(())
        })
        .unwrap();
}
