//! Extracting the token from the configured header (`Authorization: JWT <token>` by default).
//!
//! Flask-JWT splits the header value on any whitespace and compares the first word with the
//! prefix case-insensitively; we do the same, so its clients work unchanged.

use http::{HeaderMap, HeaderName};

use super::TokenError;

/// Reads the token from `headers[name]`, expecting `<prefix> <token>`.
pub fn extract<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    prefix: &str,
) -> Result<&'h str, TokenError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Err(TokenError::Missing);
    };
    if values.next().is_some() {
        // Two headers would let a front proxy and the gateway disagree on which one counts.
        return Err(TokenError::ContainsSpaces);
    }
    // A header value holds no control byte but tab, so `is_ascii` is exactly what
    // `to_str` checks, and space and tab are the only whitespace it can hold. Both
    // scans below are word-at-a-time (`is_ascii`) or SIMD (`memchr2`): a token is
    // hundreds of bytes, and a byte-by-byte split was the costliest step of reading it.
    let bytes = value.as_bytes();
    if !bytes.is_ascii() {
        return Err(TokenError::NotAscii);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| TokenError::NotAscii)?;
    let blank = |c: char| c == ' ' || c == '\t';
    let next_blank = |s: &str| memchr::memchr2(b' ', b'\t', s.as_bytes());
    let text = text.trim_start_matches(blank);
    if text.is_empty() {
        return Err(TokenError::Missing);
    }
    let (scheme, rest) = text.split_at(next_blank(text).unwrap_or(text.len()));
    if !scheme.eq_ignore_ascii_case(prefix) {
        return Err(TokenError::UnsupportedScheme);
    }
    let rest = rest.trim_start_matches(blank);
    if rest.is_empty() {
        return Err(TokenError::TokenMissing);
    }
    let (token, after) = rest.split_at(next_blank(rest).unwrap_or(rest.len()));
    if !after.trim_start_matches(blank).is_empty() {
        return Err(TokenError::ContainsSpaces);
    }
    Ok(token)
}

/// Whether `Connection` lists `name` (the token header), in any case or `_` spelling: the
/// hop-by-hop rules would remove the token before it could be read.
pub fn listed_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|listed| {
            let listed = listed.trim().to_ascii_lowercase();
            crate::steering::same_spelling(&listed, name.as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn run(values: &[&str]) -> Result<String, TokenError> {
        let h = with(values);
        extract(&h, &AUTHORIZATION, "JWT").map(str::to_string)
    }

    #[test]
    fn shapes() {
        assert_eq!(run(&[]), Err(TokenError::Missing));
        assert_eq!(run(&[""]), Err(TokenError::Missing));
        assert_eq!(run(&["   "]), Err(TokenError::Missing));
        assert_eq!(run(&["Bearer x"]), Err(TokenError::UnsupportedScheme));
        assert_eq!(run(&["a.b.c"]), Err(TokenError::UnsupportedScheme));
        assert_eq!(run(&["JWT"]), Err(TokenError::TokenMissing));
        assert_eq!(run(&["JWT "]), Err(TokenError::TokenMissing));
        assert_eq!(run(&["JWT a b"]), Err(TokenError::ContainsSpaces));
        assert_eq!(run(&["JWT a", "JWT a"]), Err(TokenError::ContainsSpaces));
        assert_eq!(run(&["jwt  a.b.c "]), Ok("a.b.c".into()));
        assert_eq!(run(&["JWT\ta.b.c"]), Ok("a.b.c".into()));
        assert_eq!(run(&[" \t JWT \t a.b.c\t \t"]), Ok("a.b.c".into()));
        assert_eq!(run(&["JWT a.b.c \t x"]), Err(TokenError::ContainsSpaces));
        assert_eq!(run(&["JWT a\tb"]), Err(TokenError::ContainsSpaces));
        assert_eq!(run(&["\t"]), Err(TokenError::Missing));
        assert_eq!(run(&["JWTx a.b.c"]), Err(TokenError::UnsupportedScheme));
        assert_eq!(run(&["JW a.b.c"]), Err(TokenError::UnsupportedScheme));
    }

    #[test]
    fn a_value_that_is_not_ascii_is_refused_as_such() {
        for bytes in [&b"JWT a.\xffb.c"[..], b"\xc3\xa9 a.b.c", b"JWT a.b.c \x80"] {
            let mut h = HeaderMap::new();
            h.append(AUTHORIZATION, HeaderValue::from_bytes(bytes).unwrap());
            assert_eq!(
                extract(&h, &AUTHORIZATION, "JWT"),
                Err(TokenError::NotAscii),
                "{bytes:?}"
            );
        }
    }
}
