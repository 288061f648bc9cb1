//! The Authorization-header parser: any bytes, as one or two header values, with the
//! Flask-JWT and the Bearer prefix. It must never panic, and a token it returns must be a
//! single non-empty word that followed the prefix.
#![no_main]

use gateway::auth::bearer::extract;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A 0xff byte splits the input into two header values.
    let mut headers = HeaderMap::new();
    for part in data.split(|b| *b == 0xff) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(AUTHORIZATION, v);
        }
    }
    for prefix in ["JWT", "Bearer"] {
        if let Ok(token) = extract(&headers, &AUTHORIZATION, prefix) {
            assert!(!token.is_empty());
            assert!(!token.bytes().any(|b| b.is_ascii_whitespace()), "{token:?}");
            assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
            let value = headers[AUTHORIZATION]
                .to_str()
                .expect("extract accepted non-ASCII");
            let mut words = value.split_ascii_whitespace();
            assert!(words.next().is_some_and(|w| w.eq_ignore_ascii_case(prefix)));
            assert_eq!(words.next(), Some(token));
            assert_eq!(words.next(), None);
        }
    }
});
