//! The entries a [`Mirror`](super::mirror::Mirror) holds, grouped by namespace.
//!
//! A key's namespace is its text up to and including the first `:` (`jti:` in
//! `jti:abc`; empty for a key without one). Each namespace has a map of its own, so a
//! reader looks a key up by its two parts and never has to join them first: the
//! per-request revocation check asks for `("jti:", jti)` with the `jti` exactly as the
//! token carries it, and can tell an empty namespace from a miss without building a key.

use std::collections::HashMap;

/// A key's number and when it may be forgotten (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub value: i64,
    pub expires: i64,
}

impl Entry {
    /// The store and wire form: `value expires`.
    pub fn to_text(self) -> String {
        format!("{} {}", self.value, self.expires)
    }

    /// Reads [`Entry::to_text`]'s form.
    pub fn parse(text: &str) -> Option<Entry> {
        let (value, expires) = text.split_once(' ')?;
        Some(Entry {
            value: value.parse().ok()?,
            expires: expires.parse().ok()?,
        })
    }

    /// The larger value and the later expiry of both.
    pub fn max(self, other: Entry) -> Entry {
        Entry {
            value: self.value.max(other.value),
            expires: self.expires.max(other.expires),
        }
    }
}

/// Looked up on every request of a required route, so hashed with foldhash (seeded per
/// process) rather than SipHash: the lookup is most of what the check costs.
type Space = HashMap<String, Entry, foldhash::fast::RandomState>;

/// Every entry, by namespace. Namespaces are few (revocation has two), so they are kept
/// in a short list searched in order.
#[derive(Default)]
pub struct Entries {
    spaces: Vec<(String, Space)>,
    len: usize,
}

/// Splits `key` into its namespace (through the first `:`) and the rest.
pub fn split(key: &str) -> (&str, &str) {
    match key.find(':') {
        Some(i) => key.split_at(i + 1),
        None => ("", key),
    }
}

impl Entries {
    /// Entries held, in every namespace.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn space(&self, namespace: &str) -> Option<&Space> {
        self.spaces
            .iter()
            .find(|(n, _)| n == namespace)
            .map(|(_, s)| s)
    }

    /// The entry at `namespace` + `rest`.
    pub fn get(&self, namespace: &str, rest: &str) -> Option<Entry> {
        self.space(namespace)?.get(rest).copied()
    }

    /// The entry at the whole `key`.
    pub fn get_key(&self, key: &str) -> Option<Entry> {
        let (namespace, rest) = split(key);
        self.get(namespace, rest)
    }

    /// Whether `namespace` holds any entry.
    pub fn holds(&self, namespace: &str) -> bool {
        self.space(namespace).is_some_and(|s| !s.is_empty())
    }

    /// Keeps the larger value and the later expiry at `key`; returns what is held now.
    pub fn merge(&mut self, key: &str, entry: Entry) -> Entry {
        let (namespace, rest) = split(key);
        let at = match self.spaces.iter().position(|(n, _)| n == namespace) {
            Some(at) => at,
            None => {
                self.spaces.push((namespace.to_string(), Space::default()));
                self.spaces.len() - 1
            }
        };
        let space = &mut self.spaces[at].1;
        let before = space.len();
        let held = *space
            .entry(rest.to_string())
            .and_modify(|e| {
                e.value = e.value.max(entry.value);
                e.expires = e.expires.max(entry.expires);
            })
            .or_insert(entry);
        self.len += space.len() - before;
        held
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        for (_, space) in &mut self.spaces {
            space.retain(|_, e| keep(e));
        }
        self.len = self.spaces.iter().map(|(_, s)| s.len()).sum();
    }

    /// Every entry with its whole key.
    pub fn iter(&self) -> impl Iterator<Item = (String, Entry)> + '_ {
        self.spaces
            .iter()
            .flat_map(|(n, s)| s.iter().map(move |(rest, e)| (format!("{n}{rest}"), *e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: i64) -> Entry {
        Entry { value, expires: 10 }
    }

    #[test]
    fn keys_are_found_by_their_parts_and_whole() {
        let mut e = Entries::default();
        e.merge("jti:abc", entry(1));
        e.merge("user:\"a:b\"", entry(2));
        e.merge("plain", entry(3));
        e.merge(":plain", entry(4));
        assert_eq!(e.len(), 4);
        assert_eq!(e.get("jti:", "abc"), Some(entry(1)));
        assert_eq!(e.get_key("user:\"a:b\""), Some(entry(2)));
        assert_eq!(e.get("user:", "\"a:b\""), Some(entry(2)));
        assert_eq!(e.get_key("plain"), Some(entry(3)));
        assert_eq!(e.get_key(":plain"), Some(entry(4)));
        assert_eq!(e.get("jti:", "abd"), None);
        assert!(e.holds("jti:") && !e.holds("other:"));
        let mut keys: Vec<String> = e.iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, [":plain", "jti:abc", "plain", "user:\"a:b\""]);
    }

    #[test]
    fn merging_only_raises_and_retain_recounts() {
        let mut e = Entries::default();
        e.merge("jti:a", entry(5));
        let held = e.merge(
            "jti:a",
            Entry {
                value: 1,
                expires: 20,
            },
        );
        assert_eq!(
            held,
            Entry {
                value: 5,
                expires: 20
            }
        );
        assert_eq!(e.len(), 1);
        e.merge(
            "jti:b",
            Entry {
                value: 1,
                expires: 3,
            },
        );
        e.retain(|x| x.expires > 5);
        assert_eq!(e.len(), 1);
        assert!(e.get("jti:", "b").is_none());
        e.retain(|_| false);
        assert!(!e.holds("jti:"));
    }
}
