//! TOML text → a file struct, with every shape problem (unknown key, wrong type) named by
//! its full key path in one run.
//!
//! serde stops at the first error, and the file structs deny unknown keys; so this
//! deserializes from the parsed TOML tree, and after each error removes the key it names
//! (found through `serde_path_to_error`) and tries again. Three typos give three problems
//! from one `gateway check`, each with a "did you mean" hint when a known key is close.

use serde::de::DeserializeOwned;
use serde_path_to_error::{Path, Segment};
use toml::{Table, Value};

use super::Problem;

/// Upper bound on removals: a file has far fewer keys than this.
const MAX_PROBLEMS: usize = 500;

/// Parses `text` into `T`. On success returns the value and the problems of every key that
/// had to be removed first (the caller adds them to its own list, so the config is still
/// refused); `None` when the text is not TOML at all or could not be shaped into `T`.
pub fn parse<T: DeserializeOwned>(text: &str, prefix: &str) -> (Option<T>, Vec<Problem>) {
    let mut table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return (None, vec![super::toml_problem(&e, text)]),
    };
    let mut problems = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize(Value::Table(table.clone())) {
            Ok(value) => return (Some(value), problems),
            Err(e) => e,
        };
        let key = key_path(prefix, error.path());
        let message = error.inner().message().trim().to_string();
        problems.push(match unknown_key(&message) {
            Some((name, known)) => Problem {
                key,
                message: format!("unknown key `{name}`"),
                hint: hint(name, &known),
            },
            None => Problem {
                key,
                message,
                hint: "see the config reference in README.md for this key's type".into(),
            },
        });
        if !remove(&mut table, error.path()) {
            break;
        }
    }
    (None, problems)
}

/// `routes[2].auht`, with `prefix` (a file name, or `""`) in front.
fn key_path(prefix: &str, path: &Path) -> String {
    let mut out = prefix.to_string();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() {
        "(file)".into()
    } else {
        out
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" → (`x`, [`a`, `b`]).
fn unknown_key(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let known = rest.split('`').skip(1).step_by(2).collect();
    Some((name, known))
}

/// "did you mean `auth`?" when a known key is a likely misspelling of `name`.
fn hint(name: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("did you mean `{k}`?"),
        None if known.is_empty() => "this table takes no keys".into(),
        None => format!("known keys here: {}", known.join(", ")),
    }
}

/// Removes the value at `path`; false when there is nothing there to remove.
fn remove(table: &mut Table, path: &Path) -> bool {
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at: &mut Value = match parents.first() {
        Some(Segment::Map { key }) => match table.get_mut(key) {
            Some(v) => v,
            None => return false,
        },
        Some(_) => return false,
        None => {
            return match last {
                Segment::Map { key } => table.remove(key).is_some(),
                _ => false,
            }
        }
    };
    for seg in parents.iter().skip(1) {
        at = match (seg, at) {
            (Segment::Map { key }, Value::Table(t)) => match t.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (Segment::Map { key }, Value::Table(t)) => t.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::GatewayFile;

    #[test]
    fn every_unknown_key_with_its_path_and_a_hint() {
        let text = "[server]\nbogus_key_xyz = 1\nlisten = \"127.0.0.1:0\"\n\
                    [[routes]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\n\
                    [[routes]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\n\
                    auht = \"public\"\n\
                    [tokens]\nlifetime = 5\n";
        let (file, problems) = parse::<GatewayFile>(text, "");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["routes[1].auht", "server.bogus_key_xyz", "tokens.lifetime"],
            "{problems:?}"
        );
        assert_eq!(problems[0].hint, "did you mean `auth`?");
        assert_eq!(problems[1].message, "unknown key `bogus_key_xyz`");
        assert!(problems[1].hint.starts_with("known keys here: listen"));
        assert!(
            problems[2].message.contains("expected a string"),
            "{problems:?}"
        );
        let file = file.expect("the rest of the file still parses");
        assert_eq!(file.routes.len(), 2);
    }

    #[test]
    fn syntax_errors_keep_their_line() {
        let (file, problems) = parse::<GatewayFile>("[server]\nlisten = \n", "");
        assert!(file.is_none());
        assert_eq!(problems[0].key, "line 2");
    }
}
