//! Output encodings. Every sink picks one; the core encodes, sinks move
//! bytes. Each encoder returns one line (no line breaks) per event.

mod json;
mod raw;

use auditfwd_sink::{Event, Severity};
use bytes::Bytes;

/// An output encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The canonical record as one JSON object (default).
    Json,
    /// The API's event exactly as received, with the source name.
    Raw,
}

/// Format names, for error messages.
pub const FORMATS: &[&str] = &["json", "raw"];

/// Why an event could not be encoded (it goes to the dead-letter file).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoder rejected a value.
    #[error("cannot encode as {format}: {reason}")]
    Invalid {
        /// Format name.
        format: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl Format {
    /// Parses a format name.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "json" => Ok(Format::Json),
            "raw" => Ok(Format::Raw),
            other => Err(format!(
                "unknown format `{other}`; available: {}",
                FORMATS.join(", ")
            )),
        }
    }

    /// The format's name, as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Raw => "raw",
        }
    }

    /// Encodes one event as one line.
    pub fn encode(&self, event: &Event) -> Result<Bytes, EncodeError> {
        match self {
            Format::Json => json::encode(event),
            Format::Raw => raw::encode(event),
        }
        .map(Bytes::from)
    }
}

/// The severity of an event, from the action mapping table.
pub fn severity(event: &Event) -> Severity {
    let action = event.action.as_str();
    if action.contains("DELETE") || action.contains("FAILED") || action.contains("EXPORT") {
        Severity::Medium
    } else if action.contains("ROLE") || action.contains("API_KEY") || action.contains("PERMISSION")
    {
        Severity::High
    } else if action.contains("CREATE") || action.contains("UPDATE") || action.contains("CHANGE") {
        Severity::Low
    } else {
        Severity::Informational
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::{hostile_events, sample_events};

    #[test]
    fn every_format_encodes_hostile_events_as_one_line() {
        let mut events = hostile_events("acme");
        events.extend(sample_events("acme", 3));
        for name in FORMATS {
            let format = Format::parse(name).unwrap();
            for e in &events {
                let line = format.encode(e).unwrap();
                assert!(
                    !line.contains(&b'\n') && !line.contains(&b'\r'),
                    "{name}: {line:?}"
                );
                std::str::from_utf8(&line).unwrap();
            }
        }
    }

    #[test]
    fn unknown_format_lists_the_known_ones() {
        assert_eq!(
            Format::parse("xml").unwrap_err(),
            "unknown format `xml`; available: json, raw"
        );
    }
}
