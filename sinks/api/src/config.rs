//! Configuration vocabulary shared by the core and every sink: the one
//! problem type ([`ConfigProblem`]) and the value parsers every config
//! struct uses (durations as humantime strings, sizes in bytes or
//! `"32MiB"`), so that a duration is written and refused the same way in
//! every table; and which pass-through client properties hold secrets.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// One problem in the configuration, found without I/O: where it is (the
/// file and the key path) and what to do about it.
///
/// A sink reports keys relative to its own table (`path`); the core
/// prefixes them with the sink's path (`sink[1].`) and, for tenant files,
/// sets `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The tenant file it is in; `None`: the main configuration file.
    pub file: Option<PathBuf>,
    /// The offending key, e.g. `path` in a sink, `source[0].page_size` once
    /// placed.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with `key`, in the main file.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem, found in the tenant file `file`.
    pub fn in_file(self, file: &Path) -> Self {
        Self {
            file: Some(file.to_path_buf()),
            ..self
        }
    }

    /// The same problem with its key placed under `path` (`path.key`).
    pub fn under(self, path: &str) -> Self {
        Self {
            key: format!("{path}.{}", self.key),
            ..self
        }
    }

    /// The file it is in: `file`, or `main` for the main file.
    pub fn file_or<'a>(&'a self, main: &'a Path) -> &'a Path {
        self.file.as_deref().unwrap_or(main)
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The longest duration any setting accepts (and the furthest back a
/// source's `start_at = "… ago"` reaches): ten years. Longer values are
/// mistakes, and would overflow time arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// Parses a humantime duration (`"500ms"`, `"30s"`, `"1h 30m"`) no longer
/// than [`MAX_DURATION`]; the error quotes the value and shows the form.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write it like \"500ms\", \"30s\" or \"10m\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "`{s}` is longer than ten years; use a shorter duration"
        ));
    }
    Ok(d)
}

/// Deserializes a duration written as a humantime string, for
/// `#[serde(deserialize_with = "duration")]` (see [`parse_duration`]).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Deserializes a size in bytes: an integer, or a string such as
/// `"32MiB"`, `"512KiB"`, `"2GB"` (see [`parse_size`]).
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(s) => parse_size(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a size; write bytes as a number, or like \"32MiB\", \"512KiB\""
            ))
        }),
    }
}

/// `"32MiB"` and friends in bytes (`B`, `KB`/`kB`, `KiB`, `MB`, `MiB`,
/// `GB`, `GiB`); `None` for anything else or an overflow.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Words in client property names (librdkafka's, passed through by the
/// Kafka sink and by `[fleet]`) whose values are secrets.
const SECRET_WORDS: &[&str] = &[
    "password",
    "secret",
    "oauthbearer.config",
    "key.pem",
    "token",
    "sasl.jaas",
];

/// Whether a pass-through client property holds a secret (never printed).
pub fn is_secret_property(key: &str) -> bool {
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999GiB"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(" 1h 30m"), Ok(Duration::from_secs(5400)));
        let bad = parse_duration("soon").unwrap_err();
        assert!(
            bad.starts_with("`soon` is not a duration (")
                && bad.ends_with("write it like \"500ms\", \"30s\" or \"10m\""),
            "{bad}"
        );
        assert!(
            parse_duration("11y")
                .unwrap_err()
                .contains("longer than ten years")
        );
    }

    #[test]
    fn problems_are_placed() {
        let p = ConfigProblem::new("path", "is empty")
            .under("sink[1] (\"files\")")
            .in_file(Path::new("t.toml"));
        assert_eq!(p.to_string(), "sink[1] (\"files\").path: is empty");
        assert_eq!(p.file_or(Path::new("main.toml")), Path::new("t.toml"));
    }
}
