//! `[[users]]` and `users_file`: the local user store's configuration.

use std::collections::HashSet;
use std::path::Path;

use super::file::{UserFile, UsersFile};
use super::report::{resolve, Report};
use super::{User, UserId};

fn user_id(r: &mut Report, key: &str, v: &Option<toml::Value>) -> Option<UserId> {
    match v {
        Some(toml::Value::Integer(i)) => Some(UserId::Int(*i)),
        Some(toml::Value::String(s)) if !s.is_empty() => Some(UserId::Str(s.clone())),
        Some(_) => {
            r.problem(
                key,
                "must be an integer or a non-empty string",
                "write e.g. id = 1 or id = \"alice\"",
            );
            None
        }
        None => {
            r.problem(
                key,
                "missing",
                "every user needs an id, which becomes the token's identity",
            );
            None
        }
    }
}

pub(super) fn collect_users(r: &mut Report, prefix: &str, list: &[UserFile], out: &mut Vec<User>) {
    for (i, u) in list.iter().enumerate() {
        let at = format!("{prefix}[{i}]");
        let id = user_id(r, &format!("{at}.id"), &u.id);
        let username = match &u.username {
            Some(n) if !n.is_empty() => Some(n.clone()),
            _ => {
                r.problem(
                    format!("{at}.username"),
                    "missing or empty",
                    "add username = \"...\"",
                );
                None
            }
        };
        let hash = match &u.password_hash {
            Some(h) if h.starts_with("$2") => bcrypt_hash(r, &format!("{at}.password_hash"), h),
            Some(h) => match argon2::PasswordHash::new(h) {
                // A hash without salt or output never verifies, and as the first user's it
                // would be the dummy hash: unknown users would be answered without any work.
                Ok(parsed)
                    if parsed.algorithm.as_str() == "argon2id"
                        && parsed.salt.is_some()
                        && parsed.hash.is_some() =>
                {
                    Some(h.clone())
                }
                Ok(parsed) if parsed.algorithm.as_str() == "argon2id" => {
                    r.problem(
                        format!("{at}.password_hash"),
                        "incomplete argon2id hash (no salt or no hash output)",
                        "produce one with `gateway hash-password`",
                    );
                    None
                }
                Ok(parsed) => {
                    r.problem(
                        format!("{at}.password_hash"),
                        format!("algorithm `{}` is not accepted", parsed.algorithm),
                        "hash passwords with `gateway hash-password` (argon2id); \
                         bcrypt ($2b$, $2y$) is accepted too",
                    );
                    None
                }
                Err(_) => {
                    r.problem(
                        format!("{at}.password_hash"),
                        "not a PHC hash string",
                        "produce one with `gateway hash-password`",
                    );
                    None
                }
            },
            None => {
                r.problem(
                    format!("{at}.password_hash"),
                    "missing",
                    "produce one with `gateway hash-password`",
                );
                None
            }
        };
        let claims = u
            .claims
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), serde_json::to_value(v).ok()?)))
            .collect();
        if let (Some(id), Some(username), Some(password_hash)) = (id, username, hash) {
            out.push(User {
                id,
                username,
                password_hash,
                claims,
            });
        }
    }
}

/// A bcrypt hash (`$2b$` or `$2y$`, as htpasswd and Flask-Bcrypt write them), accepted
/// for imports; `gateway hash-password` writes argon2id.
fn bcrypt_hash(r: &mut Report, key: &str, h: &str) -> Option<String> {
    if !(h.starts_with("$2b$") || h.starts_with("$2y$")) {
        r.problem(
            key,
            "only $2b$ and $2y$ bcrypt hashes are accepted",
            "$2a$ and $2x$ hashes may come from buggy implementations: \
             rehash with `gateway hash-password`",
        );
        return None;
    }
    match h.parse::<bcrypt::HashParts>() {
        Ok(parts) if parts.get_cost() >= 10 => Some(h.to_string()),
        Ok(parts) => {
            r.warning(
                key,
                format!("bcrypt cost {} is below 10", parts.get_cost()),
                "rehash with `gateway hash-password` (argon2id) when the user next logs in",
            );
            Some(h.to_string())
        }
        Err(_) => {
            r.problem(
                key,
                "not a valid bcrypt hash",
                "a bcrypt hash is 60 characters: $2b$<cost>$<22 salt><31 hash>",
            );
            None
        }
    }
}

pub(super) fn load_users_file(r: &mut Report, path: &str, base: &Path, out: &mut Vec<User>) {
    let full = resolve(base, path);
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            r.problem(
                "users_file",
                format!("cannot read {}: {e}", full.display()),
                "fix the path (relative paths start at the config file's folder)",
            );
            return;
        }
    };
    let (file, problems) = super::shape::parse::<UsersFile>(&text, &format!("users_file({path})"));
    r.problems.extend(problems);
    if let Some(f) = file {
        collect_users(r, &format!("users_file({path}).users"), &f.users, out);
    }
}

pub(super) fn check_unique_users(r: &mut Report, users: &[User]) {
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for u in users {
        if !names.insert(u.username.as_str()) {
            r.problem(
                "users",
                format!("username `{}` appears twice", u.username),
                "usernames must be unique",
            );
        }
        if !ids.insert(&u.id) {
            r.problem(
                "users",
                format!("user id {:?} appears twice", u.id),
                "ids must be unique: they are the token identity",
            );
        }
    }
}
