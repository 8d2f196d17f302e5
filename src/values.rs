//! Values every settings section writes the same way: durations as
//! humantime strings (`"30s"`, `"10m"`), sizes in bytes (`"32MiB"`) and
//! secrets that never print. Depends on nothing else in the crate, so that
//! each component can parse its own settings with them (enrichment its
//! `[source.enrich]`) and the HTTP client ([`crate::http`]) can hold the
//! key without knowing the configuration.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration any setting accepts (and the furthest back
/// `start_at = "… ago"` reaches): ten years. Longer values are mistakes,
/// and would overflow time arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// Parses a humantime duration no longer than [`MAX_DURATION`].
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// Deserializes `"30s"`, `"10m"`, `"1h 30m"` into a [`Duration`] (at most
/// [`MAX_DURATION`]).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Deserializes a size in bytes: an integer, or a string such as `"32MiB"`,
/// `"512KiB"`, `"2GB"`.
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
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

/// `"32MiB"` and friends in bytes.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
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

/// A secret (API key). Its `Debug` prints `***`; it has no `Display`, so it
/// cannot end up in a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999GiB"), None);
    }
}
