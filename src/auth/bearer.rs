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
    let text = value.to_str().map_err(|_| TokenError::NotAscii)?;
    let mut words = text.split_ascii_whitespace();
    let Some(scheme) = words.next() else {
        return Err(TokenError::Missing);
    };
    if !scheme.eq_ignore_ascii_case(prefix) {
        return Err(TokenError::UnsupportedScheme);
    }
    let Some(token) = words.next() else {
        return Err(TokenError::TokenMissing);
    };
    if words.next().is_some() {
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
    }
}
