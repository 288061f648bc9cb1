//! The front channel: what the start path reads and writes (the return URL, the redirect
//! URI, the authorization URL with PKCE) and what the callback's query holds.

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::request::Parts;

use super::discovery::Discovered;
use super::flow_cookie::Flow;
use super::OidcError;
use crate::browser::request;
use crate::config::{OAuth2Config, OidcConfig};

/// 256 random bits, base64url: a state, a nonce or a PKCE verifier (RFC 7636 §4.1 asks
/// 43 to 128 characters; this is 43).
pub fn random() -> String {
    let mut buf = [0u8; 32];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// The `return_to` of the start path's query (the name the login page uses too), or `/`. Only a path on this site passes (see
/// [`request::safe_return`]): one leading `/` (`//host` is another host to a browser),
/// visible ASCII only, no backslash.
pub fn return_to(query: Option<&str>) -> Result<String, OidcError> {
    let wanted = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == request::RETURN_TO)
            .map(|(_, v)| v.into_owned())
    });
    let Some(rd) = wanted else {
        return Ok("/".into());
    };
    if request::safe_return(&rd).is_some() {
        Ok(rd)
    } else {
        Err(OidcError::BadReturnUrl)
    }
}

/// This request's origin (`https://host:port`), from the connection's scheme and the
/// request's host (already checked to be one unambiguous host).
fn origin(parts: &Parts, secure: bool) -> Result<String, OidcError> {
    let host = request::authority(&parts.headers, &parts.uri).ok_or(OidcError::NoHost)?;
    let authority: http::uri::Authority = host.parse().map_err(|_| OidcError::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(OidcError::NoHost);
    }
    let scheme = if secure { "https" } else { "http" };
    Ok(format!("{scheme}://{authority}"))
}

/// The redirect URI of the provider whose callback path is `callback_path`:
/// `[oauth2] public_origin`, or this request's origin, + that path. The provider accepts
/// only the URIs registered for the client, so a forged `Host` gets no further than the
/// provider's refusal.
pub fn redirect_uri(
    cfg: &OAuth2Config,
    callback_path: &str,
    parts: &Parts,
    secure: bool,
) -> Result<String, OidcError> {
    match &cfg.public_origin {
        Some(o) => Ok(format!("{o}{callback_path}")),
        None => Ok(format!("{}{callback_path}", origin(parts, secure)?)),
    }
}

/// Where the provider sends the browser after its logout.
pub fn post_logout_url(
    cfg: &OAuth2Config,
    parts: &Parts,
    secure: bool,
) -> Result<String, OidcError> {
    match &cfg.post_logout_url {
        Some(u) => Ok(u.clone()),
        None => Ok(format!("{}/", origin(parts, secure)?)),
    }
}

/// The authorization request (OpenID Connect Core §3.1.2.1, RFC 7636 §4.3).
pub fn authorization_url(cfg: &OidcConfig, d: &Discovered, flow: &Flow) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("redirect_uri", &flow.redirect_uri)
        .append_pair("scope", &cfg.scopes.join(" "))
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &challenge(&flow.verifier))
        .append_pair("code_challenge_method", "S256");
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{}", d.authorization_endpoint, q.finish())
}

/// The callback's query parameters (each taken once: a repeated one counts as absent).
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's error code (`access_denied`...), bounded and printable.
    pub error: Option<String>,
    pub iss: Option<String>,
}

impl Callback {
    pub fn parse(query: Option<&str>) -> Callback {
        let mut c = Callback::default();
        let mut repeated = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*k {
                "code" => &mut c.code,
                "state" => &mut c.state,
                "error" => &mut c.error,
                "iss" => &mut c.iss,
                _ => continue,
            };
            if slot.is_some() {
                repeated.push(k.into_owned());
            }
            *slot = Some(v.into_owned());
        }
        for k in repeated {
            match k.as_str() {
                "code" => c.code = None,
                "state" => c.state = None,
                "iss" => c.iss = Some(String::new()),
                _ => {}
            }
        }
        c.error = c
            .error
            .map(|e| e.chars().filter(char::is_ascii_graphic).take(64).collect());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn only_local_paths_are_return_urls() {
        for ok in ["/", "/app", "/app?x=1&y=%2F%2F", "/a/b#frag"] {
            assert!(
                return_to(Some(&format!("return_to={}", enc(ok)))).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "",
            "/a\\b",
            "/a b",
            "/a\tb",
            "/\u{e9}",
        ] {
            assert!(
                return_to(Some(&format!("return_to={}", enc(bad)))).is_err(),
                "{bad}"
            );
        }
        assert_eq!(return_to(None).unwrap(), "/");
        assert_eq!(
            return_to(Some("return_to=%2Fapp%3Fx%3D1")).unwrap(),
            "/app?x=1"
        );
        assert!(return_to(Some("return_to=%2F%2Fevil.example")).is_err());
    }

    #[test]
    fn the_s256_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn repeated_callback_parameters_count_as_absent() {
        let c = Callback::parse(Some("code=a&state=s&code=b"));
        assert_eq!(c.code, None);
        assert_eq!(c.state.as_deref(), Some("s"));
        let c = Callback::parse(Some("error=access_denied%0d%0aX&state=s"));
        assert_eq!(c.error.as_deref(), Some("access_deniedX"));
    }
}
