//! Token format attacks: every token here is refused with 401, the Flask-JWT body shape, and
//! nothing reaches the upstream.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
use serde_json::json;

use crate::harness::*;
use crate::support::*;

/// Public keys an attacker can read (from a JWKS or a certificate) and try as an HMAC secret.
/// When the keyring accepts RS/ES keys these become the gateway's own public keys.
pub const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAn1QjYW+cu42+LRh2w+RF
IOXlxIkvHZZ+VF+dwPUZim37dVgaa0jPiYIbHD54hTXaDcq3wWDgAGpycyaa44tv
oKN9jG2xnxTz8zgOA5f1CmKWv76zQfxvoQacF7VV9OHt05Tkk3LP0Ye94JQ4Fa6y
/1pKfynjZsTl/fICL9z0FPwSGYULCb9tHIdGSTftumejMUitisSjgQHbQM6HpB5Z
kaGqZiYOrqVpYlmwwQTQtLbj9+8aZkv7GTPKlGteIvBvVgsS4Mog0OEe8bcwOi9B
T1rfEjynrtUFntesASlO1ki7iLM31ChEmwlrcjJojoUXMRSLizARBPhVfZ7CroPM
IwIDAQAB
-----END PUBLIC KEY-----
";
pub const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYG84cWQt+DukslOsHGS4MMgmrXty
I7GucDR3BRt4yBJlf/G9qotgoaIyFnnynIyVCMxKq3LpwfCFPMDal/SA0A==
-----END PUBLIC KEY-----
";
pub const RSA_PUBLIC_JWK: &str = concat!(
    r#"{"kty":"RSA","#,
    r#""e":"AQAB","#,
    r#""n":"n1QjYW-cu42-LRh2w-RFIOXlxIkvHZZ-VF-dwPUZim37dVgaa0jPiYIbHD54hTXaDcq3wWDgAGpycyaa4"#,
    r#"4tvoKN9jG2xnxTz8zgOA5f1CmKWv76zQfxvoQacF7VV9OHt05Tkk3LP0Ye94JQ4Fa6y_1pKfynjZsTl_fICL9z"#,
    r#"0FPwSGYULCb9tHIdGSTftumejMUitisSjgQHbQM6HpB5ZkaGqZiYOrqVpYlmwwQTQtLbj9-8aZkv7GTPKlGteI"#,
    r#"vBvVgsS4Mog0OEe8bcwOi9BT1rfEjynrtUFntesASlO1ki7iLM31ChEmwlrcjJojoUXMRSLizARBPhVfZ7CroP"#,
    r#"MIw"}"#,
);
pub const EC_PUBLIC_JWK: &str = concat!(
    r#"{"kty":"EC","#,
    r#""crv":"P-256","#,
    r#""x":"YG84cWQt-DukslOsHGS4MMgmrXtyI7GucDR3BRt4yBI","#,
    r#""y":"ZX_xvaqLYKGiMhZ58pyMlQjMSqty6cHwhTzA2pf0gNA"}"#,
);

const ALG_NOT_ALLOWED: &str = "The specified alg value is not allowed";
const BAD_SIGNATURE: &str = "Signature verification failed";

fn payload() -> String {
    claims(json!(1)).to_string()
}

/// `header.payload.signature` with raw JSON parts and a raw signature.
fn assemble(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(signature)
    )
}

/// The DER bytes inside a PEM block.
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

#[tokio::test]
async fn alg_none_in_every_spelling_is_refused() {
    let t = target().await;
    let p = payload();
    let mut cases = 0;
    for alg in ["none", "None", "NONE", "nOnE", "none ", ""] {
        let header = json!({"typ": "JWT", "alg": alg}).to_string();
        // Unsigned, and "signed" with our real signature over the same input.
        let unsigned = assemble(&header, &p, b"");
        t.refuses_token(
            &format!("alg {alg:?}, no signature"),
            &unsigned,
            Some(ALG_NOT_ALLOWED),
        )
        .await;
        let signed = sign_with(HS256, &header, &p, SECRET);
        t.refuses_token(
            &format!("alg {alg:?}, HS256 MAC"),
            &signed,
            Some(ALG_NOT_ALLOWED),
        )
        .await;
        cases += 2;
    }
    for header in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"alg":256}"#,
    ] {
        let token = sign_with(HS256, header, &p, SECRET);
        t.refuses_token(header, &token, Some(ALG_NOT_ALLOWED)).await;
        cases += 1;
    }
    assert_eq!(cases, 16);
    t.still_serves("after alg none").await;
}

#[tokio::test]
async fn other_algorithms_and_case_games_are_refused_before_the_signature() {
    let t = target().await;
    let p = payload();
    for (alg, key_alg) in [("HS384", HS384), ("HS512", HS512)] {
        let header = json!({"typ": "JWT", "alg": alg}).to_string();
        // Correctly MAC'd with our own secret: only the pinned algorithm may pass.
        let token = sign_with(key_alg, &header, &p, SECRET);
        t.refuses_token(alg, &token, Some(ALG_NOT_ALLOWED)).await;
    }
    for alg in [
        "hs256",
        "Hs256",
        "HS256 ",
        " HS256",
        "HS256\u{0}",
        "RS256",
        "ES256",
        "PS256",
        "EdDSA",
    ] {
        let header = json!({"typ": "JWT", "alg": alg}).to_string();
        let token = sign_with(HS256, &header, &p, SECRET);
        t.refuses_token(&format!("alg {alg:?}"), &token, Some(ALG_NOT_ALLOWED))
            .await;
    }
    t.still_serves("after alg games").await;
}

#[tokio::test]
async fn hs256_macd_with_a_public_key_is_refused() {
    // The RS256 → HS256 confusion: an attacker MACs with the public key as the HMAC secret.
    // With an HMAC-configured gateway the MAC must simply fail; `keyring.rs` refuses the
    // same confusion against a keyring holding the real public keys.
    let t = target().await;
    let p = payload();
    let keys: [(&str, Vec<u8>); 6] = [
        ("RSA PEM", RSA_PUBLIC_PEM.as_bytes().to_vec()),
        ("EC PEM", EC_PUBLIC_PEM.as_bytes().to_vec()),
        ("RSA DER", der(RSA_PUBLIC_PEM)),
        ("EC DER", der(EC_PUBLIC_PEM)),
        ("RSA JWK", RSA_PUBLIC_JWK.as_bytes().to_vec()),
        ("EC JWK", EC_PUBLIC_JWK.as_bytes().to_vec()),
    ];
    for (name, key) in &keys {
        let hs = sign_with(HS256, r#"{"typ":"JWT","alg":"HS256"}"#, &p, key);
        t.refuses_token(&format!("HS256 with {name}"), &hs, Some(BAD_SIGNATURE))
            .await;
        // Claiming the asymmetric algorithm while MACing is refused on the alg alone.
        let rs = sign_with(HS256, r#"{"typ":"JWT","alg":"RS256"}"#, &p, key);
        t.refuses_token(
            &format!("RS256 header, HMAC with {name}"),
            &rs,
            Some(ALG_NOT_ALLOWED),
        )
        .await;
    }
    t.still_serves("after algorithm confusion").await;
}

#[tokio::test]
async fn tampered_signatures_are_refused() {
    let t = target().await;
    let good = token();
    let (input, sig) = good.rsplit_once('.').unwrap();
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut cases: Vec<(String, String)> = vec![
        ("stripped".into(), format!("{input}.")),
        (
            "truncated to 42 chars".into(),
            format!("{input}.{}", &sig[..42]),
        ),
        (
            "truncated to 16 bytes".into(),
            format!("{input}.{}", b64(&sig_bytes[..16])),
        ),
        ("one byte extra".into(), {
            let mut s = sig_bytes.clone();
            s.push(0);
            format!("{input}.{}", b64(&s))
        }),
        (
            "doubled".into(),
            format!(
                "{input}.{}",
                b64(&[sig_bytes.clone(), sig_bytes.clone()].concat())
            ),
        ),
        ("all zero".into(), format!("{input}.{}", b64(&[0u8; 32]))),
        // ECDSA-shaped signatures: r = s = 0, and r = s = the P-256 order n (out of range).
        (
            "ECDSA zero (64 bytes)".into(),
            format!("{input}.{}", b64(&[0u8; 64])),
        ),
        ("ECDSA r=s=n".into(), {
            let n: [u8; 32] = [
                0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
                0xfc, 0x63, 0x25, 0x51,
            ];
            format!("{input}.{}", b64(&[n, n].concat()))
        }),
    ];
    for bit in [0usize, 7, 100, 255] {
        let mut s = sig_bytes.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        cases.push((format!("bit {bit} flipped"), format!("{input}.{}", b64(&s))));
    }
    // The signature of another valid token (other identity) on this input.
    let other = mint(claims(json!("alice")));
    cases.push((
        "signature of another token".into(),
        format!("{input}.{}", other.rsplit_once('.').unwrap().1),
    ));
    // The payload changed under the original signature.
    let forged = claims(json!("alice")).to_string();
    let header_b64 = input.split_once('.').unwrap().0;
    cases.push((
        "payload swapped".into(),
        format!("{header_b64}.{}.{sig}", b64(forged.as_bytes())),
    ));
    let n = cases.len();
    for (case, token) in cases {
        // Short or long signatures may fail as encoding or as MAC; both are 401 `Invalid token`.
        let r = t.with_token(&token).await;
        assert_refused(&r, 401, &case);
        assert_eq!(r.json()["error"], "Invalid token", "{case}");
        t.assert_nothing_forwarded(&case);
    }
    assert_eq!(n, 14);
    // ECDSA signatures under an ES256 header: refused on the alg (no EC key configured yet).
    let es = assemble(r#"{"typ":"JWT","alg":"ES256"}"#, &payload(), &[0u8; 64]);
    t.refuses_token("ES256 zero signature", &es, Some(ALG_NOT_ALLOWED))
        .await;
    t.still_serves("after tampering").await;
}

#[tokio::test]
async fn non_canonical_base64url_is_refused() {
    let t = target().await;
    let good = token();
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let sig = parts.pop().unwrap();
    let (h, p) = (parts[0].clone(), parts[1].clone());
    // A 32-byte MAC is 43 chars; the last one carries 2 unused bits that must be zero.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = sig.as_bytes()[42];
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    let sloppy_sig = format!("{}{}", &sig[..42], alphabet[idx ^ 1] as char);
    let padded = |s: &str| format!("{s}{}", "=".repeat(((4 - s.len() % 4) % 4).max(1)));
    let cases = [
        (
            "signature with non-zero trailing bits",
            format!("{h}.{p}.{sloppy_sig}"),
        ),
        ("signature padded", format!("{h}.{p}.{}", padded(&sig))),
        ("payload padded", format!("{h}.{}.{sig}", padded(&p))),
        ("header padded", format!("{}.{p}.{sig}", padded(&h))),
        // The standard alphabet's `+` and `/` in place of the URL-safe `-` and `_`.
        ("'+' in the signature", format!("{h}.{p}.+{}", &sig[1..])),
        ("'/' in the signature", format!("{h}.{p}./{}", &sig[1..])),
        ("percent-encoded dot", good.replacen('.', "%2E", 1)),
        ("non-ASCII in the payload", format!("{h}.{p}\u{e9}.{sig}")),
        ("invalid base64 in the header", format!("!!.{p}.{sig}")),
    ];
    for (case, token) in &cases {
        let r = t.with_token(token).await;
        assert_refused(&r, 401, case);
        t.assert_nothing_forwarded(case);
    }
    assert_eq!(cases.len(), 9);
    t.still_serves("after base64 games").await;
}

#[tokio::test]
async fn wrong_segment_counts_are_refused() {
    let t = target().await;
    let good = token();
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases = [
        ("1 segment", h.to_string(), "Not enough segments"),
        ("2 segments", format!("{h}.{p}"), "Not enough segments"),
        (
            "4 segments",
            format!("{h}.{p}.{s}.{s}"),
            "Too many segments",
        ),
        (
            "5 segments (JWE shape)",
            format!("{h}.{p}.{s}.{p}.{s}"),
            "Too many segments",
        ),
        (
            "empty token of dots",
            "..".to_string(),
            "Invalid header string: not JSON",
        ),
    ];
    for (case, token, description) in &cases {
        t.refuses_token(case, token, Some(description)).await;
    }
}

#[tokio::test]
async fn nested_tokens_and_odd_payloads_are_refused() {
    let t = target().await;
    let inner = token();
    let h = r#"{"typ":"JWT","alg":"HS256","cty":"JWT"}"#;
    let cases = [
        (
            "nested JWT as the payload",
            sign_with(HS256, h, &inner, SECRET),
            "Invalid payload string: not JSON",
        ),
        (
            "nested JWT as a JSON string payload",
            sign_with(HS256, h, &json!(inner).to_string(), SECRET),
            "Invalid payload string: must be a json object",
        ),
        (
            "payload is an array",
            sign_raw(&format!("[{}]", payload())),
            "Invalid payload string: must be a json object",
        ),
        (
            "payload with trailing data",
            sign_raw(&format!("{} {{}}", payload())),
            "Invalid payload string: not JSON",
        ),
        (
            "payload with a BOM",
            sign_raw(&format!("\u{feff}{}", payload())),
            "Invalid payload string: not JSON",
        ),
    ];
    for (case, token, description) in &cases {
        t.refuses_token(case, token, Some(description)).await;
    }
}

#[tokio::test]
async fn duplicate_members_are_refused() {
    let t = target().await;
    let p = payload();
    let now = now();
    let headers = [
        r#"{"typ":"JWT","alg":"HS256","alg":"none"}"#,
        r#"{"typ":"JWT","alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
    ];
    for h in headers {
        let token = sign_with(HS256, h, &p, SECRET);
        t.refuses_token(
            h,
            &token,
            Some("Invalid header string: duplicate or malformed member"),
        )
        .await;
    }
    let payloads = [
        format!(
            r#"{{"exp":{},"iat":{now},"nbf":{now},"identity":"alice","identity":1}}"#,
            now + 300
        ),
        format!(
            r#"{{"exp":{},"iat":{now},"nbf":{now},"identity":1,"identity":"alice"}}"#,
            now + 300
        ),
        format!(
            r#"{{"exp":{},"exp":{},"iat":{now},"nbf":{now},"identity":1}}"#,
            now - 3600,
            now + 300
        ),
        format!(
            r#"{{"exp":{},"iat":{now},"nbf":{now},"nbf":{},"identity":1}}"#,
            now + 300,
            now + 9999
        ),
    ];
    for p in &payloads {
        t.refuses_token(
            p,
            &sign_raw(p),
            Some("Invalid payload string: duplicate claim"),
        )
        .await;
    }
    t.still_serves("after duplicates").await;
}

#[tokio::test]
async fn crit_headers_are_refused() {
    let t = target().await;
    let p = payload();
    for h in [
        r#"{"typ":"JWT","alg":"HS256","crit":["exp"],"exp":1}"#,
        r#"{"typ":"JWT","alg":"HS256","crit":["b64"],"b64":false}"#,
        r#"{"typ":"JWT","alg":"HS256","crit":[]}"#,
    ] {
        t.refuses_token(
            h,
            &sign_with(HS256, h, &p, SECRET),
            Some("Unsupported critical header parameter"),
        )
        .await;
    }
}

#[tokio::test]
async fn key_hints_in_the_header_are_never_fetched_nor_trusted() {
    let t = target().await;
    // A server standing where the hints point: it must never be asked for anything.
    let keys = Upstream::start().await;
    let attacker = b"attacker-controlled-secret-0123456789";
    let jwk = json!({"kty": "oct", "k": b64(attacker)});
    let p = payload();
    let headers = [
        json!({"alg": "HS256", "jku": format!("{}/jwks.json", keys.url())}),
        json!({"alg": "HS256", "x5u": format!("{}/cert.pem", keys.url())}),
        json!({"alg": "HS256", "jwk": jwk}),
        json!({"alg": "HS256", "x5c": [STANDARD.encode(der(RSA_PUBLIC_PEM))]}),
        json!({"alg": "HS256", "kid": "../../../../../../../dev/null"}),
        json!({"alg": "HS256", "kid": "/dev/null"}),
        json!({"alg": "HS256", "kid": "' UNION SELECT 'attacker-controlled-secret-0123456789' --"}),
        json!({"alg": "HS256", "kid": format!("{}/key", keys.url())}),
        json!({"alg": "HS256", "kid": "x\u{0}y"}),
    ];
    for h in &headers {
        let token = sign_with(HS256, &h.to_string(), &p, attacker);
        t.refuses_token(&h.to_string(), &token, Some(BAD_SIGNATURE))
            .await;
    }
    // The `/dev/null` trick: an empty HMAC key. HMAC zero-pads short keys to the block
    // size, so the one-byte key 0x00 gives exactly the empty key's MAC.
    let empty_key = sign_with(
        HS256,
        r#"{"alg":"HS256","kid":"../../dev/null"}"#,
        &p,
        b"\0",
    );
    t.refuses_token(
        "kid /dev/null with an empty key",
        &empty_key,
        Some(BAD_SIGNATURE),
    )
    .await;
    assert!(
        keys.requests().is_empty(),
        "a key hint was fetched: {:?}",
        keys.requests()
    );
    t.still_serves("after key hints").await;
}

#[tokio::test]
async fn oversized_tokens_and_headers_are_refused() {
    let t = target().await;
    // A correctly signed token just over the 8 KiB default limit.
    let mut c = claims(json!(1));
    c["pad"] = json!("x".repeat(8192));
    let big = mint(c);
    assert!(big.len() > 8192);
    t.refuses_token(
        "signed token over max_token_bytes",
        &big,
        Some("Token is too large"),
    )
    .await;
    // 3 × 8 KiB of Authorization: under the header limit, read as a too-large token.
    let huge = "A".repeat(8 * 1024);
    t.refuses_token(
        "24 KiB token",
        &format!("{huge}.{huge}.{huge}"),
        Some("Token is too large"),
    )
    .await;
    // 3 × 64 KiB: past hyper's head buffer, which answers a bare 431 itself.
    let huger = "A".repeat(64 * 1024);
    let r = t.with_token(&format!("{huger}.{huger}.{huger}")).await;
    assert_eq!(r.status, 431, "192 KiB token");
    t.assert_nothing_forwarded("192 KiB token");
    // 1 MiB of header: hyper refuses the head itself (431) or drops the connection.
    let line = format!("Authorization: {}", jwt_header(&"A".repeat(1024 * 1024)));
    let req = head(&[
        "GET /api/secret HTTP/1.1",
        "Host: gw",
        &line,
        "Connection: close",
    ]);
    let ex = exchange(t.gw.addr, req.as_bytes(), 1).await;
    assert!(
        ex.statuses() == [431] || (ex.responses.is_empty() && ex.closed),
        "1 MiB header: {ex:?}"
    );
    // Thousands of small headers.
    let many: Vec<String> = (0..5000).map(|i| format!("X-H{i}: v")).collect();
    let mut lines = vec!["GET /api/secret HTTP/1.1".to_string(), "Host: gw".into()];
    lines.extend(many);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let ex = exchange(t.gw.addr, head(&lines).as_bytes(), 1).await;
    assert!(
        ex.statuses() == [431] || (ex.responses.is_empty() && ex.closed),
        "5000 headers: {ex:?}"
    );
    t.assert_nothing_forwarded("oversized");
    t.still_serves("after oversized input").await;
}
