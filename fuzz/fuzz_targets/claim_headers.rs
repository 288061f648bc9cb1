//! The claim-to-header encoder on any JSON claim value. Never a panic; when the request is
//! not refused, the header holds exactly the documented encoding, and a refusal happens only
//! for values HTTP cannot carry (controls) or over the 8 KiB cap.
#![no_main]

use std::sync::Arc;

use gateway::auth::Claims;
use gateway::config::{ArrayEncoding, UserId};
use gateway::identity::{IdentityHeaders, MAX_CLAIM_HEADER_BYTES};
use http::{HeaderMap, HeaderName};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, json)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let arrays = if mode & 1 == 0 { ArrayEncoding::Comma } else { ArrayEncoding::Json };
    let name = HeaderName::from_static("x-claim");
    let ids = IdentityHeaders::new([&name].into_iter(), arrays);
    let claims = Claims { identity: UserId::Int(1), exp: 0.0, extra: vec![(Arc::from("c"), value.clone())] };
    let mut headers = HeaderMap::new();
    headers.insert("x_claim", "spoofed".parse().unwrap());
    ids.strip(&mut headers);
    assert!(headers.is_empty());
    let expected: Option<String> = match &value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if arrays == ArrayEncoding::Comma => Some(
            items.iter().map(|i| match i { Value::String(s) => s.clone(), other => other.to_string() }).collect::<Vec<_>>().join(","),
        ),
        other => Some(other.to_string()),
    };
    match ids.set(&mut headers, &claims, &[(name.clone(), Arc::from("c"))]) {
        Ok(()) => match expected {
            None => assert!(!headers.contains_key(&name)),
            Some(text) => assert_eq!(headers[&name].as_bytes(), text.as_bytes()),
        },
        Err(_) => {
            let text = expected.expect("null never refuses");
            assert!(text.len() > MAX_CLAIM_HEADER_BYTES || text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f), "{text:?} refused");
        }
    }
});
