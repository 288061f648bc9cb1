//! `[login.limits]` and `[login.remote]`: failed-login limits and the delegated check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use super::file::{LoginLimitsFile, RemoteLoginFile};
use super::report::{resolve, Report};

/// What a login does when the shared store cannot answer within `[store] timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Go on with this instance's own counters until the store is back.
    FailOpen,
    /// Refuse logins with 503 until the store is back.
    FailClosed,
}

/// A threshold of failed logins within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub failures: u32,
    pub window: Duration,
}

/// The validated `[login.limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Per submitted username, whether or not it exists; reaching it locks the account.
    pub account: FailureLimit,
    /// The first lockout; each further lockout doubles it, up to `max_lockout`.
    pub lockout: Duration,
    pub max_lockout: Duration,
    /// Per client address, over all usernames (password spraying).
    pub address: FailureLimit,
    /// Per (client address, username); a successful login clears it.
    pub pair: FailureLimit,
    pub on_store_error: OnStoreError,
}

impl Default for LoginLimits {
    fn default() -> Self {
        let window = Duration::from_secs(15 * 60);
        LoginLimits {
            account: FailureLimit {
                failures: 10,
                window,
            },
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            address: FailureLimit {
                failures: 50,
                window,
            },
            pair: FailureLimit {
                failures: 5,
                window,
            },
            on_store_error: OnStoreError::FailOpen,
        }
    }
}

fn limit(
    r: &mut Report,
    key: &str,
    failures: Option<u32>,
    window: Option<&String>,
    default: FailureLimit,
) -> FailureLimit {
    let failures = failures.unwrap_or(default.failures);
    if failures == 0 {
        r.problem(
            format!("login.limits.{key}_failures"),
            "must be at least 1",
            format!("leave it out ({})", default.failures),
        );
    }
    let at = format!("login.limits.{key}_window");
    let window = r.duration(&at, window, default.window);
    if window.is_zero() {
        r.problem(at, "must be longer than zero", "leave it out (\"15m\")");
    }
    FailureLimit { failures, window }
}

pub(super) fn login_limits(r: &mut Report, f: Option<&LoginLimitsFile>) -> LoginLimits {
    let d = LoginLimits::default();
    let Some(f) = f else {
        return d;
    };
    let account = limit(
        r,
        "account",
        f.account_failures,
        f.account_window.as_ref(),
        d.account,
    );
    let address = limit(
        r,
        "address",
        f.address_failures,
        f.address_window.as_ref(),
        d.address,
    );
    let pair = limit(r, "pair", f.pair_failures, f.pair_window.as_ref(), d.pair);
    let lockout = r.duration("login.limits.lockout", f.lockout.as_ref(), d.lockout);
    let max_lockout = r.duration(
        "login.limits.max_lockout",
        f.max_lockout.as_ref(),
        d.max_lockout,
    );
    if lockout.is_zero() {
        r.problem(
            "login.limits.lockout",
            "must be longer than zero",
            "leave it out (\"1m\")",
        );
    }
    if max_lockout < lockout {
        r.problem(
            "login.limits.max_lockout",
            "shorter than lockout",
            "the lockout doubles up to max_lockout: make it at least lockout",
        );
    }
    let on_store_error = match f.on_store_error.as_deref().unwrap_or("fail_open") {
        "fail_open" => OnStoreError::FailOpen,
        "fail_closed" => OnStoreError::FailClosed,
        other => {
            r.problem(
                "login.limits.on_store_error",
                format!("unknown value `{other}`"),
                "use \"fail_open\" (local counters) or \"fail_closed\" (503)",
            );
            OnStoreError::FailOpen
        }
    };
    LoginLimits {
        account,
        lockout,
        max_lockout,
        address,
        pair,
        on_store_error,
    }
}

/// The validated `[login.remote]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogin {
    pub url: Uri,
    pub timeout: Duration,
    /// The member of the answer that holds the identity (a string or an integer).
    pub identity: String,
    /// Members of the answer copied into the token.
    pub claims: Vec<String>,
    /// Extra trust anchors for an https URL; the system roots otherwise.
    pub ca_file: Option<PathBuf>,
}

pub(super) fn remote(
    r: &mut Report,
    f: &RemoteLoginFile,
    base: &Path,
    identity_claim: &str,
) -> Option<RemoteLogin> {
    let url = match f.url.as_deref().map(str::parse::<Uri>) {
        Some(Ok(u))
            if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() =>
        {
            u
        }
        Some(_) => {
            r.problem(
                "login.remote.url",
                "not an http:// or https:// URL",
                "write e.g. url = \"http://127.0.0.1:7000/check\"",
            );
            return None;
        }
        None => {
            r.problem(
                "login.remote.url",
                "missing",
                "write e.g. url = \"http://127.0.0.1:7000/check\"",
            );
            return None;
        }
    };
    let timeout = r.duration(
        "login.remote.timeout",
        f.timeout.as_ref(),
        Duration::from_secs(2),
    );
    if timeout.is_zero() {
        r.problem(
            "login.remote.timeout",
            "must be longer than zero",
            "leave it out (\"2s\")",
        );
    }
    let identity = f.identity.clone().unwrap_or_else(|| "id".into());
    if identity.is_empty() {
        r.problem(
            "login.remote.identity",
            "empty",
            "name the member of the answer that holds the user's id, e.g. \"id\"",
        );
    }
    let claims = f.claims.clone().unwrap_or_default();
    for (i, c) in claims.iter().enumerate() {
        if super::report::is_gateway_claim(c, identity_claim) {
            r.problem(
                format!("login.remote.claims[{i}]"),
                format!("`{c}` is set by the gateway itself"),
                "list only members of the user service's answer, e.g. \"roles\"",
            );
        }
    }
    Some(RemoteLogin {
        url,
        timeout,
        identity,
        claims,
        ca_file: f.ca_file.as_deref().map(|p| resolve(base, p)),
    })
}
