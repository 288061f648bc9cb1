//! The login flow's cookie: what the callback needs (state, nonce, PKCE verifier, return
//! URL), sealed with AES-256-GCM so any instance with the same `[oauth2]` key can open it
//! and nobody else can read or change it.
//!
//! The AEAD key is derived from the configured key with HKDF-SHA256, one key per purpose
//! (the flow, the logout hint), and each sealed value binds its purpose as associated data:
//! one kind of cookie never opens as the other. Every seal uses a fresh random 96-bit
//! nonce. The cookie is `HttpOnly`, `SameSite=Lax` (the provider's redirect back is a
//! top-level GET, which Lax lets through) and scoped to the callback path, so no other
//! request carries it.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::browser::cookies::{self, Spec};

/// Sealed values larger than this are neither written nor opened: browsers keep cookies up
/// to 4 KiB (name, value and attributes together).
pub const MAX_COOKIE_VALUE: usize = 3800;

/// What a cookie holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A login in progress (see [`Flow`]).
    Flow,
    /// The provider and ID token a logout hands back to the provider (see [`LogoutHint`]).
    Logout,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Flow => b"gateway oidc flow cookie v1",
            Purpose::Logout => b"gateway oidc logout cookie v1",
        }
    }

    /// The cookie's name: `__Secure-` prefixed on TLS, so a plain-HTTP page of the same
    /// site cannot plant one.
    /// They are in [`cookies::OIDC`], so no upstream receives them.
    pub fn cookie_name(self, secure: bool) -> &'static str {
        let [secure_flow, flow, secure_logout, logout] = cookies::OIDC;
        match (self, secure) {
            (Purpose::Flow, true) => secure_flow,
            (Purpose::Flow, false) => flow,
            (Purpose::Logout, true) => secure_logout,
            (Purpose::Logout, false) => logout,
        }
    }
}

/// A login in progress, from the start path to the callback. Its `Debug` shows only the
/// provider and the return URL: the rest are one login's secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The `[[oidc]] name` it started with.
    pub provider: String,
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier (its S256 challenge went to the provider).
    pub verifier: String,
    /// Where the browser goes after logging in: a relative, same-site path.
    pub return_to: String,
    /// The exact redirect URI the authorization request named (the token request repeats it).
    pub redirect_uri: String,
    /// Unix seconds after which the callback is refused.
    pub expires: i64,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("provider", &self.provider)
            .field("return_to", &self.return_to)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// What RP-initiated logout hands back to the provider. Never printed whole.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutHint {
    pub provider: String,
    pub id_token: String,
    /// The session it belongs to: the sign-out of any other session ignores it.
    pub sid: String,
    /// Where the logout continues (from discovery at login), so an instance that has not
    /// run discovery yet continues it as well.
    pub end_session_endpoint: String,
}

impl std::fmt::Debug for LogoutHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutHint")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Seals and opens the cookies; built once per configuration.
pub struct Sealer {
    flow: LessSafeKey,
    logout: LessSafeKey,
}

impl Sealer {
    /// Derives the per-purpose keys from the configured key material.
    pub fn new(key: &[u8]) -> Result<Sealer, String> {
        Ok(Sealer {
            flow: derive(key, Purpose::Flow)?,
            logout: derive(key, Purpose::Logout)?,
        })
    }

    fn key(&self, purpose: Purpose) -> &LessSafeKey {
        match purpose {
            Purpose::Flow => &self.flow,
            Purpose::Logout => &self.logout,
        }
    }

    /// `value` as JSON, sealed: base64url of nonce ‖ ciphertext ‖ tag.
    pub fn seal<T: Serialize>(&self, purpose: Purpose, value: &T) -> Option<String> {
        let mut buf = serde_json::to_vec(value).ok()?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        self.key(purpose)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.label()),
                &mut buf,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// The value sealed by [`Sealer::seal`] for `purpose`; `None` when it was changed,
    /// sealed with another key or for another purpose, or is not ours at all.
    pub fn open<T: for<'de> Deserialize<'de>>(&self, purpose: Purpose, sealed: &str) -> Option<T> {
        if sealed.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self
            .key(purpose)
            .open_in_place(nonce, Aad::from(purpose.label()), &mut buf)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

fn derive(key: &[u8], purpose: Purpose) -> Result<LessSafeKey, String> {
    let prk = Salt::new(HKDF_SHA256, b"gateway oidc").extract(key);
    let info = [purpose.label()];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| "oauth2: cannot derive the cookie key".to_string())?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// How a cookie of `purpose` is set on the given path: HttpOnly, `SameSite=Lax`, and
/// `Secure` on a secure origin (the session cookies' rules, see [`cookies`]).
pub fn spec(purpose: Purpose, secure: bool, path: &str) -> Spec<'_> {
    Spec {
        name: purpose.cookie_name(secure),
        path,
        http_only: true,
        secure,
    }
}

/// The sealed value of the `purpose` cookie the request carries.
pub fn read(headers: &HeaderMap, purpose: Purpose, secure: bool) -> Option<&str> {
    cookies::find(headers, purpose.cookie_name(secure))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            provider: "corp".into(),
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            return_to: "/app".into(),
            redirect_uri: "http://127.0.0.1/oauth2/corp/callback".into(),
            expires: 10,
        }
    }

    #[test]
    fn sealed_flows_open_only_unchanged_with_the_same_key_and_purpose() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = s.seal(Purpose::Flow, &flow()).unwrap();
        assert_eq!(s.open::<Flow>(Purpose::Flow, &sealed), Some(flow()));
        // Fresh nonces: the same value never seals to the same text.
        assert_ne!(s.seal(Purpose::Flow, &flow()).unwrap(), sealed);
        assert!(s.open::<Flow>(Purpose::Logout, &sealed).is_none());
        assert!(Sealer::new(&[8u8; 32])
            .unwrap()
            .open::<Flow>(Purpose::Flow, &sealed)
            .is_none());
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(raw);
        assert!(s.open::<Flow>(Purpose::Flow, &tampered).is_none());
        assert!(s.open::<Flow>(Purpose::Flow, "").is_none());
        assert!(s.open::<Flow>(Purpose::Flow, "not base64!").is_none());
    }

    #[test]
    fn the_cookie_has_its_attributes() {
        let v = spec(Purpose::Flow, true, "/oauth2/callback")
            .set("abc", std::time::Duration::from_secs(600))
            .unwrap();
        let text = v.to_str().unwrap();
        for part in [
            "__Secure-gateway-oidc-flow=abc",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/oauth2/callback",
            "Max-Age=600",
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            http::HeaderValue::from_static("a=1; gateway-oidc-flow=x"),
        );
        assert_eq!(read(&h, Purpose::Flow, false), Some("x"));
        assert_eq!(read(&h, Purpose::Flow, true), None);
    }
}
