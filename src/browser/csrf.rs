//! Signed tokens for browser forms: the CSRF token of a session and of the login form.
//!
//! A token is `<nonce>.<HMAC-SHA256(key, label NUL nonce)>` (base64url). The session's
//! nonce is its session id, carried in every access token of the session (`sid`), so a
//! token is bound to one session and survives its renewals; the login form's nonce is
//! random and sits in an HttpOnly cookie. The signature means a cookie written by anyone
//! but us (a sibling subdomain on plain HTTP, say) never passes.

use aws_lc_rs::{hkdf, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What a token is for: a token of one purpose never passes as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Unsafe requests and the logout button of a session.
    Session,
    /// The login form (login CSRF: being logged in as someone else).
    Login,
    /// The marker of a renewal just made (the renewal's loop breaker).
    Renewed,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"session",
            Purpose::Login => b"login",
            Purpose::Renewed => b"renewed",
        }
    }
}

/// The key of the CSRF tokens, and the keys whose tokens are still accepted. Built once
/// per configuration.
pub struct CsrfKey {
    sign: hmac::Key,
    /// Also accepted: the keys derived from the keyring's other keys, so that a key
    /// rotation (a new signing key while the old one still verifies) does not void the
    /// CSRF tokens of open sessions.
    also: Vec<hmac::Key>,
}

fn derived(material: &[u8]) -> Option<hmac::Key> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gateway browser csrf").extract(material);
    // Only an output length over 255 blocks fails; ours is one block.
    prk.expand(&[b"csrf token key"], hmac::HMAC_SHA256)
        .ok()
        .map(hmac::Key::from)
}

impl CsrfKey {
    /// Derived (HKDF-SHA256) from the signing key's material: every instance with the same
    /// keyring accepts every other's tokens, and nothing of the key itself is exposed.
    pub fn derive(material: &[u8]) -> CsrfKey {
        match derived(material) {
            Some(sign) => CsrfKey {
                sign,
                also: Vec::new(),
            },
            None => CsrfKey::random(),
        }
    }

    /// The same key, also accepting tokens of the keys derived from `materials`.
    pub fn accepting<'m>(mut self, materials: impl IntoIterator<Item = &'m [u8]>) -> CsrfKey {
        self.also.extend(materials.into_iter().filter_map(derived));
        self
    }

    /// A random key (tokens then hold on this process only).
    pub fn random() -> CsrfKey {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        CsrfKey {
            sign: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            also: Vec::new(),
        }
    }

    fn tag(&self, purpose: Purpose, nonce: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.sign);
        ctx.update(purpose.label());
        ctx.update(b"\0");
        ctx.update(nonce.as_bytes());
        ctx.sign()
    }

    /// The token for `nonce` (which must not contain `.`).
    pub fn token(&self, purpose: Purpose, nonce: &str) -> String {
        let tag = self.tag(purpose, nonce);
        format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The nonce of a token we signed for `purpose`; `None` for anything else. The
    /// signature is compared in constant time.
    pub fn verify<'t>(&self, purpose: Purpose, token: &'t str) -> Option<&'t str> {
        let (nonce, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut data = purpose.label().to_vec();
        data.push(0);
        data.extend_from_slice(nonce.as_bytes());
        std::iter::once(&self.sign)
            .chain(&self.also)
            .any(|k| hmac::verify(k, &data, &sig).is_ok())
            .then_some(nonce)
    }
}

/// A random nonce: 128 bits, base64url.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_passes_only_for_its_key_purpose_and_nonce() {
        let key = CsrfKey::derive(b"some signing secret of enough length");
        let t = key.token(Purpose::Session, "sid-1");
        assert_eq!(key.verify(Purpose::Session, &t), Some("sid-1"));
        assert_eq!(key.verify(Purpose::Login, &t), None);
        assert_eq!(CsrfKey::random().verify(Purpose::Session, &t), None);
        let (_, sig) = t.split_once('.').unwrap();
        assert_eq!(key.verify(Purpose::Session, &format!("sid-2.{sig}")), None);
        assert_eq!(key.verify(Purpose::Session, "sid-1"), None);
        assert_eq!(key.verify(Purpose::Session, "sid-1.!!"), None);
        // The same material derives the same key (another instance).
        let again = CsrfKey::derive(b"some signing secret of enough length");
        assert_eq!(again.verify(Purpose::Session, &t), Some("sid-1"));
        // After a rotation the old key's tokens still pass, and new ones use the new key.
        let rotated = CsrfKey::derive(b"the new signing key's secret material")
            .accepting([&b"some signing secret of enough length"[..]]);
        assert_eq!(rotated.verify(Purpose::Session, &t), Some("sid-1"));
        assert_eq!(
            key.verify(Purpose::Session, &rotated.token(Purpose::Session, "s")),
            None
        );
    }
}
