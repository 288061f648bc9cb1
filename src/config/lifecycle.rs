//! `[refresh]` and `[revocation]`: the token lifecycle (refresh tokens, logout, revocation).

use std::time::Duration;

use super::file::{RefreshFile, RevocationFile};
use super::report::Report;

/// The validated `[refresh]` table: refresh tokens are on when it is present.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshConfig {
    /// Absolute lifetime of a family (one login): no refresh after it.
    pub lifetime: Duration,
    /// A refresh token unused for this long is dead.
    pub idle: Duration,
    /// After a rotation, the previous token gets the same new pair again for this long.
    pub grace: Duration,
    /// `POST` here with `{"refresh_token": ...}`.
    pub path: String,
}

/// What a required route does once the local revocation set is older than `max_staleness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationFailure {
    /// Keep accepting with the revocations known so far.
    FailOpen,
    /// Refuse required routes with 503 and turn `/readyz` red.
    FailClosed,
}

/// The validated `[revocation]` table: revocation (logout, operator revocations, `jti` on
/// issued tokens) is on when it is present.
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationConfig {
    pub on_store_error: RevocationFailure,
    pub max_staleness: Duration,
    /// How often the whole set is read again from the store.
    pub resync: Duration,
    /// `POST` here with the access token to log out.
    pub logout_path: String,
}

fn path(r: &mut Report, key: &str, value: Option<&String>, default: &str) -> String {
    let p = value.cloned().unwrap_or_else(|| default.into());
    if !p.starts_with('/') || p.contains(['?', '#']) {
        r.problem(
            key,
            format!("`{p}` must be a path starting with /"),
            format!("use \"{default}\""),
        );
    }
    p
}

pub(super) fn refresh(r: &mut Report, f: &RefreshFile) -> RefreshConfig {
    let day = Duration::from_secs(86_400);
    let lifetime = r.duration("refresh.lifetime", f.lifetime.as_ref(), 30 * day);
    let idle = r.duration("refresh.idle", f.idle.as_ref(), 7 * day);
    let grace = r.duration("refresh.grace", f.grace.as_ref(), Duration::from_secs(10));
    if lifetime < Duration::from_secs(1) {
        r.problem(
            "refresh.lifetime",
            "must be at least 1s",
            "leave it out (30d)",
        );
    }
    if idle < Duration::from_secs(1) || idle > lifetime {
        r.problem(
            "refresh.idle",
            "must be between 1s and refresh.lifetime",
            "leave it out (7d)",
        );
    }
    if grace > Duration::from_secs(300) {
        r.problem(
            "refresh.grace",
            "must be at most 5m",
            "a few seconds cover parallel tabs and retries; \"0s\" turns it off",
        );
    }
    RefreshConfig {
        lifetime,
        idle,
        grace,
        path: path(r, "refresh.path", f.path.as_ref(), "/auth/refresh"),
    }
}

pub(super) fn revocation(r: &mut Report, f: &RevocationFile) -> RevocationConfig {
    let on_store_error = match f.on_store_error.as_deref().unwrap_or("fail_open") {
        "fail_open" => RevocationFailure::FailOpen,
        "fail_closed" => RevocationFailure::FailClosed,
        other => {
            r.problem(
                "revocation.on_store_error",
                format!("unknown value `{other}`"),
                "use \"fail_open\" or \"fail_closed\"",
            );
            RevocationFailure::FailOpen
        }
    };
    let max_staleness = r.duration(
        "revocation.max_staleness",
        f.max_staleness.as_ref(),
        Duration::from_secs(5),
    );
    let resync = r.duration(
        "revocation.resync",
        f.resync.as_ref(),
        Duration::from_secs(10),
    );
    if max_staleness < Duration::from_millis(100) {
        r.problem(
            "revocation.max_staleness",
            "must be at least 100ms",
            "leave it out (5s)",
        );
    }
    if resync < Duration::from_millis(100) || resync > Duration::from_secs(3600) {
        r.problem(
            "revocation.resync",
            "must be between 100ms and 1h",
            "leave it out (10s)",
        );
    }
    RevocationConfig {
        on_store_error,
        max_staleness,
        resync,
        logout_path: path(
            r,
            "revocation.logout_path",
            f.logout_path.as_ref(),
            "/auth/logout",
        ),
    }
}
