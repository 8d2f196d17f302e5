//! Value types of the configuration structs: where a source starts. The
//! values every section writes the same way (durations, sizes, secrets)
//! are in [`crate::values`].

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::values::Secret;
pub(crate) use crate::values::{duration, parse_duration, size};

/// Where a source with no saved cursor starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only events created from the first start on.
    Now,
    /// Every event the API still holds (a full backfill).
    Beginning,
    /// Events created at or after this instant.
    Time(DateTime<Utc>),
    /// Events created at most this long before the first start.
    Ago(Duration),
}

impl StartAt {
    /// Parses `now`, `beginning`, an RFC 3339 timestamp or `<duration> ago`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "now" => return Ok(Self::Now),
            "beginning" => return Ok(Self::Beginning),
            _ => {}
        }
        if let Some(d) = s.strip_suffix("ago") {
            return parse_duration(d.trim())
                .map(Self::Ago)
                .map_err(|e| format!("in `{s}`: {e}; or use \"beginning\""));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self::Time(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "`{s}` is not a start point; use \"now\", \"beginning\", an RFC 3339 time such as \"2026-01-01T00:00:00Z\", or \"24h ago\""
                )
            })
    }

    /// The first instant in scope, for a source starting at `now`.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Now => now,
            Self::Beginning => DateTime::UNIX_EPOCH,
            Self::Time(t) => *t,
            Self::Ago(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::UNIX_EPOCH)
                .max(DateTime::UNIX_EPOCH),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_at_forms() {
        assert_eq!(StartAt::parse("now").unwrap(), StartAt::Now);
        assert_eq!(StartAt::parse("beginning").unwrap(), StartAt::Beginning);
        assert_eq!(
            StartAt::parse("24h ago").unwrap(),
            StartAt::Ago(Duration::from_secs(86400))
        );
        let t = StartAt::parse("2026-01-01T00:00:00+01:00").unwrap();
        assert_eq!(
            t.resolve(Utc::now()).to_rfc3339(),
            "2025-12-31T23:00:00+00:00"
        );
        assert!(
            StartAt::parse("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }
}
