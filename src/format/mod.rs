//! Output encodings. Every sink picks one; the core encodes, sinks move
//! bytes. Each encoder returns one line (no line breaks) per event.

pub mod cef;
pub mod ecs;
mod json;
pub mod leef;
pub mod mapping;
pub mod ocsf;
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
    /// OCSF 1.8.0.
    Ocsf,
    /// Elastic Common Schema 9.x.
    Ecs,
    /// ArcSight CEF.
    Cef,
    /// QRadar LEEF 2.0 with this attribute delimiter.
    Leef {
        /// Attribute delimiter (default `^`).
        delimiter: char,
    },
}

/// Format names, for error messages.
pub const FORMATS: &[&str] = &["json", "raw", "ocsf", "ecs", "cef", "leef"];

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
            "ocsf" => Ok(Format::Ocsf),
            "ecs" => Ok(Format::Ecs),
            "cef" => Ok(Format::Cef),
            "leef" => Ok(Format::Leef {
                delimiter: leef::DEFAULT_DELIMITER,
            }),
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
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
            Format::Leef { .. } => "leef",
        }
    }

    /// Encodes one event as one line.
    pub fn encode(&self, event: &Event) -> Result<Bytes, EncodeError> {
        match self {
            Format::Json => json::encode(event),
            Format::Raw => raw::encode(event),
            Format::Ocsf => ocsf::encode(event),
            Format::Ecs => ecs::encode(event),
            Format::Cef => cef::encode(event),
            Format::Leef { delimiter } => leef::encode(event, *delimiter),
        }
        .map(Bytes::from)
    }
}

/// Compact JSON with every control character escaped, DEL and C1
/// included (serde_json leaves those raw), so that line formats can carry
/// it without altering it.
pub fn json_text(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if !text.chars().any(char::is_control) {
        return text;
    }
    // Raw control characters can only occur inside JSON strings, where a
    // \u escape means the same character.
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The severity of an event, from the action mapping table.
pub fn severity(event: &Event) -> Severity {
    mapping::lookup(&event.action).severity
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
            "unknown format `xml`; available: json, raw, ocsf, ecs, cef, leef"
        );
    }
}
