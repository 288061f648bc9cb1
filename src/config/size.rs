//! Byte sizes written as `16KiB`, `64 MiB`, `1GiB` or a plain number of bytes.

/// Parses a size; binary units (`KiB`, `MiB`, `GiB`) and their decimal look-alikes (`KB` …)
/// both mean powers of 1024, as nginx's `k`/`m` do.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn units() {
        assert_eq!(parse("16KiB"), Ok(16384));
        assert_eq!(parse("64 MiB"), Ok(64 << 20));
        assert_eq!(parse("100"), Ok(100));
        assert!(parse("ten").is_err());
        assert!(parse("5 parsecs").is_err());
    }
}
