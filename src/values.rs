//! Values every settings section writes the same way: durations as
//! humantime strings (`"30s"`, `"10m"`), sizes in bytes (`"32MiB"`) and
//! secrets that never print. Depends on nothing else in the crate, so that
//! each component can parse its own settings with them (enrichment its
//! `[source.enrich]`) and the HTTP client ([`crate::http`]) can hold the
//! key without knowing the configuration.

use std::fmt;

// Durations and sizes are parsed the way the sinks parse theirs
// (`auditfwd_sink::config`), so every table writes and refuses them alike.
pub use auditfwd_sink::config::MAX_DURATION;
pub(crate) use auditfwd_sink::config::{duration, parse_duration, size};

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
}
