//! Weak HMAC secrets: well-known ones (a shipped list) and obviously low-entropy ones.
//!
//! Length alone is not strength: `my_very_long_and_safe_secret_key` is 32 bytes, appears in
//! public JWT-secret wordlists, and a cracking tool finds it at once from one token. The
//! estimate here is deliberately rough (it can only say "weak", never "strong"): a secret
//! made by `openssl rand -base64 48` always passes it.

/// The shipped list of well-known secrets (see the file's header for its source).
const WELL_KNOWN: &str = include_str!("weak_secrets.txt");

/// Estimated entropy under which a secret is refused. Random 32-character hex (128 real
/// bits) estimates at about 110 bits; a 32-byte secret of four symbols at 64.
pub const MIN_ESTIMATED_BITS: f64 = 80.0;

/// The hint every weak-secret problem carries.
pub const HINT: &str = "generate one with `openssl rand -base64 48` (or \
    `head -c 48 /dev/urandom | base64`), or set allow_weak_secret = true to accept it anyway";

/// Why `secret` is weak, or `None` when no rule here objects to it. Never quotes the secret.
pub fn weakness(secret: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(secret);
    let trimmed = text.trim();
    if WELL_KNOWN
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|known| known.eq_ignore_ascii_case(trimmed))
    {
        return Some("the secret is on a public list of well-known secrets".into());
    }
    if let Some(period) = repeats(secret) {
        return Some(format!(
            "the secret is a {period}-byte pattern repeated; its strength is that of the pattern"
        ));
    }
    // A secret under the minimum length is judged by the length rule (and accepted only
    // with allow_short_secret): its estimate is low by construction.
    let bits = estimated_bits(secret);
    if secret.len() >= super::report::MIN_SECRET_BYTES && bits < MIN_ESTIMATED_BITS {
        return Some(format!(
            "the secret has an estimated {bits:.0} bits of entropy; \
             at least {MIN_ESTIMATED_BITS:.0} are required"
        ));
    }
    None
}

/// Shannon entropy of the byte distribution times the length: an upper bound on what a
/// guesser faces when the bytes are independent, and a low number for `aaaa...abab`.
pub fn estimated_bits(secret: &[u8]) -> f64 {
    if secret.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in secret {
        counts[b as usize] += 1;
    }
    let n = secret.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

/// The shortest period when the whole secret is one shorter pattern repeated (at least
/// twice); `secretsecretsecret...` has period 6.
fn repeats(secret: &[u8]) -> Option<usize> {
    (1..=secret.len() / 2).find(|&p| secret.iter().skip(p).zip(secret).all(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_repeated_and_low_entropy_secrets_are_weak() {
        for weak in [
            "my_very_long_and_safe_secret_key",
            "YOUR-256-BIT-SECRET",
            "changeme",
            "secretsecretsecretsecretsecretse",
            "abababababababababababababababab",
            "aaaabbbbccccddddaaaabbbbccccdddd",
            "aaaabbbbccccddddaaaabbbbccccddddabcd",
        ] {
            assert!(weakness(weak.as_bytes()).is_some(), "{weak}");
        }
        for strong in [
            "integration-test-secret-0123456789abcdef",
            "6f1c0e7d9a2b4c8e5f3a1d7b9c0e2f4a",
            "q3Zr8+Kp1Lw0Xv7nM2bYt5Hs9Ud4Gf6Je1Ai0Oc3Rk8=",
        ] {
            assert_eq!(weakness(strong.as_bytes()), None, "{strong}");
        }
    }

    #[test]
    fn the_list_is_not_empty_and_has_no_blank_entries() {
        let entries: Vec<&str> = WELL_KNOWN.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(entries.len() > 100);
        assert!(entries.iter().all(|e| !e.trim().is_empty()));
    }
}
