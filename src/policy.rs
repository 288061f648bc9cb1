//! ② Policy: what a route demands of a request beyond routing.
//!
//! `public` routes demand nothing; `required` routes demand a verified token and, optionally,
//! claim requirements (`require = { roles = ["admin"] }`). A failed requirement is a 403.

use serde_json::Value;

use crate::auth::Claims;
use crate::config::{AuthMode, Requirement};

/// A route's policy, built once per configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub auth: AuthMode,
    pub require: Vec<Requirement>,
}

/// The requirement that failed (for the log; the client only learns it is forbidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim `{claim}` does not satisfy the route")]
pub struct Forbidden {
    pub claim: String,
}

impl Policy {
    /// Claims the requirements read (the verifier keeps just these).
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.require.iter().map(|r| r.claim.as_str())
    }

    /// Checks every requirement against verified claims.
    pub fn authorize(&self, claims: &Claims) -> Result<(), Forbidden> {
        for req in &self.require {
            let held = claims.get(&req.claim);
            let has = |want: &str| held.is_some_and(|v| holds(&req.claim, v, want));
            let ok = if req.all {
                req.values.iter().all(|v| has(v))
            } else {
                req.values.iter().any(|v| has(v))
            };
            if !ok {
                return Err(Forbidden {
                    claim: req.claim.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Whether a claim value contains `want`: equal string, member of a string array, or for
/// OAuth scopes (`scope`, `scp`) a word of a space-separated string.
fn holds(claim: &str, value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) if claim == "scope" || claim == "scp" => s.split(' ').any(|w| w == want),
        Value::String(s) => s == want,
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(want)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserId;
    use serde_json::json;
    use std::sync::Arc;

    fn claims(extra: &[(&str, Value)]) -> Claims {
        Claims {
            identity: UserId::Int(1),
            exp: 0.0,
            iat: None,
            extra: extra
                .iter()
                .map(|(k, v)| (Arc::from(*k), v.clone()))
                .collect(),
        }
    }

    fn policy(claim: &str, values: &[&str], all: bool) -> Policy {
        Policy {
            auth: AuthMode::Required,
            require: vec![Requirement {
                claim: claim.into(),
                values: values.iter().map(|s| s.to_string()).collect(),
                all,
            }],
        }
    }

    #[test]
    fn any_and_all() {
        let c = claims(&[
            ("roles", json!(["editor", "viewer"])),
            ("scope", json!("read write")),
            ("tier", json!("gold")),
        ]);
        assert!(policy("roles", &["admin", "editor"], false)
            .authorize(&c)
            .is_ok());
        assert!(policy("roles", &["admin"], false).authorize(&c).is_err());
        assert!(policy("roles", &["editor", "viewer"], true)
            .authorize(&c)
            .is_ok());
        assert!(policy("roles", &["editor", "admin"], true)
            .authorize(&c)
            .is_err());
        assert!(policy("scope", &["write"], false).authorize(&c).is_ok());
        assert!(policy("scope", &["read", "delete"], true)
            .authorize(&c)
            .is_err());
        assert!(policy("tier", &["gold"], false).authorize(&c).is_ok());
        // A string claim that is not a scope is compared whole.
        assert!(policy("tier", &["go"], false).authorize(&c).is_err());
        // Missing claim, or a claim of another type: forbidden.
        assert!(policy("groups", &["x"], false).authorize(&c).is_err());
        let odd = claims(&[("roles", json!({"admin": true}))]);
        assert!(policy("roles", &["admin"], false).authorize(&odd).is_err());
    }
}
