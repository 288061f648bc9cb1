//! Permission checks on files that hold key material.

use std::path::Path;

use super::Problem;

/// A warning when `path` can be read or written by anyone but its owner (Unix mode bits
/// `0o077`); `None` when it cannot, or its mode cannot be read, or off Unix. `key` is the
/// config key that names the file. Every loader of secret or private-key files calls this,
/// so `gateway check` and `gateway run` both report it.
pub fn readable_by_others(key: &str, path: &Path) -> Option<Problem> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| Problem {
            key: key.to_string(),
            message: format!(
                "{} holds key material but is accessible to group or others (mode {mode:03o})",
                path.display()
            ),
            hint: format!("chmod 600 {}", path.display()),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (key, path);
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_owner_only_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"x").unwrap();
        for (mode, warned) in [
            (0o600, false),
            (0o400, false),
            (0o640, true),
            (0o644, true),
            (0o602, true),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let w = readable_by_others("tokens.secret_file", &path);
            assert_eq!(w.is_some(), warned, "{mode:o}");
            if let Some(w) = w {
                assert_eq!(w.key, "tokens.secret_file");
                assert!(w.message.contains(&format!("{mode:03o}")), "{}", w.message);
            }
        }
        assert!(readable_by_others("k", &dir.path().join("missing")).is_none());
    }
}
