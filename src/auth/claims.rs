//! The claims of our tokens: written by `/auth`, read back by the verifier.
//!
//! Reading decodes straight from JSON into typed slots with a serde visitor: a claim that
//! appears twice is an error (it must never win silently), and claims we do not use are
//! skipped without being materialized.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::config::UserId;

/// What the gateway knows about a caller once their token is verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The identity claim, with the JSON type it had in the token.
    pub identity: UserId,
    /// Expiry as Unix seconds (fractions allowed by RFC 7519 NumericDate).
    pub exp: f64,
    /// Issue time as Unix seconds, when the token has one (user cut-offs compare it).
    pub iat: Option<f64>,
    /// The other claims the configuration uses (route requirements, claim headers); only
    /// those are kept, so an unused huge claim costs nothing but skipping. Shared, so a
    /// verified-token cache hit copies none of them.
    pub extra: Arc<[(Arc<str>, Value)]>,
}

impl Claims {
    /// A claim kept in [`Claims::extra`], by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.extra
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }
}

impl UserId {
    /// The JSON value of this id, as it appears in tokens and responses.
    pub fn to_json(&self) -> Value {
        match self {
            UserId::Int(i) => Value::from(*i),
            UserId::Str(s) => Value::from(s.as_str()),
        }
    }

    /// The header form: integers in decimal, strings as they are.
    pub fn header_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            UserId::Int(i) => i.to_string().into(),
            UserId::Str(s) => s.as_str().into(),
        }
    }
}

/// The claims `/auth` writes, in Flask-JWT's order: `exp`, `iat`, `nbf`, identity, then the
/// optional `iss`, `aud`, `sub`, `jti` and extra claims when configured (compat adds none).
pub struct IssuedClaims<'a> {
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub identity_claim: &'a str,
    pub identity: &'a UserId,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub jti: Option<&'a str>,
    /// Claims from the user record or the operator CLI; never a registered claim.
    pub extra: &'a [(String, Value)],
}

impl Serialize for IssuedClaims<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("exp", &self.exp)?;
        m.serialize_entry("iat", &self.iat)?;
        m.serialize_entry("nbf", &self.nbf)?;
        match self.identity {
            UserId::Int(i) => m.serialize_entry(self.identity_claim, i)?,
            UserId::Str(v) => m.serialize_entry(self.identity_claim, v)?,
        }
        if let Some(iss) = self.issuer {
            m.serialize_entry("iss", iss)?;
        }
        if let Some(aud) = self.audience {
            m.serialize_entry("aud", aud)?;
        }
        if let Some(sub) = self.subject {
            m.serialize_entry("sub", sub)?;
        }
        if let Some(jti) = self.jti {
            m.serialize_entry("jti", jti)?;
        }
        for (k, v) in self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A time claim as found in the payload, before any judgement.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TimeClaim {
    /// Absent, or `null` (Flask-JWT treats both as missing).
    #[default]
    Missing,
    /// A JSON number (integer or not).
    Number(f64),
    /// Present but not a number (a string, a boolean, an object...).
    NotANumber,
}

/// The payload's claims in typed slots; produced by [`PayloadSeed`].
#[derive(Debug, Default)]
pub struct RawClaims {
    pub exp: TimeClaim,
    pub iat: TimeClaim,
    pub nbf: TimeClaim,
    /// `None` when absent; the raw value otherwise (its type is judged by the verifier).
    pub identity: Option<Value>,
    pub aud: Option<Value>,
    pub iss: Option<Value>,
    /// The wanted extra claims that were present.
    pub extra: Vec<(Arc<str>, Value)>,
}

/// Error text the payload visitor uses when the payload is JSON but not an object.
pub const NOT_AN_OBJECT: &str = "must be a json object";

/// Decodes a payload into [`RawClaims`], reading the identity from the configured claim name.
pub struct PayloadSeed<'a> {
    pub identity_claim: &'a str,
    /// Further claims to keep (see [`Claims::extra`]).
    pub wanted: &'a [Arc<str>],
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = RawClaims;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawClaims, D::Error> {
        d.deserialize_any(self)
    }
}

fn time_claim<'de, A: MapAccess<'de>>(map: &mut A) -> Result<TimeClaim, A::Error> {
    Ok(match map.next_value::<Value>()? {
        Value::Null => TimeClaim::Missing,
        Value::Number(n) => n.as_f64().map_or(TimeClaim::NotANumber, TimeClaim::Number),
        _ => TimeClaim::NotANumber,
    })
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = RawClaims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NOT_AN_OBJECT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawClaims, A::Error> {
        let mut out = RawClaims::default();
        let mut seen = [false; 6];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                k if k == self.identity_claim => 3,
                "exp" => 0,
                "iat" => 1,
                "nbf" => 2,
                "aud" => 4,
                "iss" => 5,
                k => {
                    match self.wanted.iter().find(|w| &***w == k) {
                        Some(name) if out.extra.iter().any(|(n, _)| n == name) => {
                            return Err(de::Error::custom(format_args!("duplicate claim `{k}`")));
                        }
                        Some(name) => out.extra.push((name.clone(), map.next_value()?)),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(de::Error::custom(format_args!("duplicate claim `{key}`")));
            }
            match slot {
                0 => out.exp = time_claim(&mut map)?,
                1 => out.iat = time_claim(&mut map)?,
                2 => out.nbf = time_claim(&mut map)?,
                3 => out.identity = Some(map.next_value()?),
                4 => out.aud = Some(map.next_value()?),
                _ => out.iss = Some(map.next_value()?),
            }
        }
        Ok(out)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawClaims, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawClaims, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawClaims, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawClaims, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawClaims, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawClaims, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<RawClaims, A::Error> {
        Err(de::Error::custom(NOT_AN_OBJECT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RawClaims, serde_json::Error> {
        let mut d = serde_json::Deserializer::from_str(json);
        PayloadSeed {
            identity_claim: "identity",
            wanted: &[Arc::from("roles")],
        }
        .deserialize(&mut d)
    }

    #[test]
    fn duplicate_claims_are_refused() {
        let e = parse(r#"{"exp":1,"identity":1,"identity":2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate claim `identity`"), "{e}");
        assert!(parse(r#"{"exp":1,"exp":2}"#).is_err());
        assert!(parse(r#"{"roles":["a"],"roles":["admin"]}"#).is_err());
        let c = parse(r#"{"roles":["admin"],"other":1}"#).unwrap();
        assert_eq!(
            c.extra,
            vec![(Arc::from("roles"), serde_json::json!(["admin"]))]
        );
    }

    #[test]
    fn time_claims_keep_their_kind() {
        let c = parse(r#"{"exp":1.5,"iat":"1","nbf":null,"other":{"deep":[1]}}"#).unwrap();
        assert_eq!(c.exp, TimeClaim::Number(1.5));
        assert_eq!(c.iat, TimeClaim::NotANumber);
        assert_eq!(c.nbf, TimeClaim::Missing);
        assert!(c.identity.is_none());
    }

    #[test]
    fn non_objects_are_named() {
        for json in ["[1]", "1", "\"x\"", "null", "true"] {
            let e = parse(json).unwrap_err();
            assert!(e.to_string().starts_with(NOT_AN_OBJECT), "{json}: {e}");
        }
    }

    #[test]
    fn issued_claims_keep_flask_jwt_order() {
        let id = UserId::Int(1);
        let c = IssuedClaims {
            exp: 3,
            iat: 1,
            nbf: 2,
            identity_claim: "identity",
            identity: &id,
            issuer: None,
            audience: None,
            subject: None,
            jti: None,
            extra: &[],
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"exp":3,"iat":1,"nbf":2,"identity":1}"#
        );
        let extra = [("roles".to_string(), serde_json::json!(["admin"]))];
        let c = IssuedClaims {
            issuer: Some("gw"),
            subject: Some("1"),
            jti: Some("j"),
            extra: &extra,
            ..c
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            concat!(
                r#"{"exp":3,"iat":1,"nbf":2,"identity":1,"#,
                r#""iss":"gw","sub":"1","jti":"j","roles":["admin"]}"#
            )
        );
    }
}
