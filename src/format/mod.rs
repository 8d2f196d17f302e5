//! Output encodings. Every sink picks one; the core encodes, sinks move
//! bytes. Each encoder returns one line (no line breaks) per event.

pub mod cef;
pub mod ecs;
#[cfg(test)]
mod golden;
mod json;
mod jsonw;
pub mod leef;
pub mod mapping;
pub mod ocsf;
mod raw;
#[cfg(test)]
mod reference;

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

/// Compact JSON that is safe on one line anywhere: besides what JSON
/// requires, DEL, C1 controls (U+0085 NEL among them) and the line and
/// paragraph separators U+2028/U+2029 are written as `\u` escapes
/// (serde_json leaves them raw, and Python's `splitlines` and JavaScript
/// split lines there). Inside JSON strings the escape means the same
/// character, so the value is unchanged.
pub fn json_text(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_json_text(&mut out, value);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`json_text`] appended to `out`.
pub fn write_json_text(out: &mut Vec<u8>, value: &serde_json::Value) {
    write_line_safe_json(out, value).expect("a JSON value serializes into memory");
}

/// Serializes `value` as line-safe JSON (see [`json_text`]).
pub(crate) fn write_line_safe_json<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(out, LineSafe))
}

/// Whether JSON output escapes `c` although JSON does not require it.
pub(crate) fn splits_lines(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Whether a UTF-8 byte may start a character [`splits_lines`] holds for
/// (C0 is escaped by serde_json itself): DEL, the lead byte of C1
/// (U+0080..U+009F) and of U+2028/U+2029.
pub(crate) fn may_split_lines(b: u8) -> bool {
    b == 0x7f || b == 0xc2 || b == 0xe2
}

/// serde_json's compact formatter, with the characters of [`splits_lines`]
/// written as `\u` escapes.
struct LineSafe;

impl serde_json::ser::Formatter for LineSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if !fragment.bytes().any(may_split_lines) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut rest = fragment;
        while let Some(i) = rest.find(splits_lines) {
            writer.write_all(&rest.as_bytes()[..i])?;
            let c = rest[i..].chars().next().expect("found a character");
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Copies `value` to `out`, handing every character that needs care to
/// `escape`: the ASCII bytes `special` flags, and every control character
/// (C0, DEL and C1). Runs of plain text are copied whole, which is what
/// makes the line formats fast.
pub(crate) fn escape_into(
    out: &mut String,
    value: &str,
    special: impl Fn(u8) -> bool,
    mut escape: impl FnMut(&mut String, char),
) {
    let bytes = value.as_bytes();
    // Nearly every value is plain: find out with one pass the compiler can
    // vectorize (a fold, not a short-circuiting search) and copy it whole.
    let care = bytes.iter().fold(false, |care, &b| {
        care | (b < 0x20) | (b == 0x7f) | (b == 0xc2) | special(b)
    });
    if !care {
        out.push_str(value);
        return;
    }
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        let care = if b < 0x80 {
            b < 0x20 || b == 0x7f || special(b)
        } else {
            // C1 controls are U+0080..U+009F: 0xC2 0x80..=0x9F in UTF-8.
            b == 0xc2 && bytes.get(i + 1).is_some_and(|n| *n < 0xa0)
        };
        if care {
            out.push_str(&value[start..i]);
            let c = value[i..].chars().next().expect("at a char boundary");
            escape(out, c);
            i += c.len_utf8();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&value[start..]);
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
    fn json_outputs_escape_line_splitters_and_keep_the_text() {
        let nasty = "a\u{2028}b\u{2029}c\u{85}d\u{7f}e\u{9f}f ✓—";
        let mut event = sample_events("acme", 1).remove(0);
        event.action = format!("X_{nasty}");
        event.entity_type = Some(nasty.to_string());
        event.details = serde_json::json!({ nasty: [nasty], "ip": nasty });
        event.raw = serde_json::json!({ "id": "evt-0", "note": nasty })
            .to_string()
            .into();
        for format in [Format::Json, Format::Raw, Format::Ocsf, Format::Ecs] {
            let line = format.encode(&event).unwrap();
            let text = std::str::from_utf8(&line).unwrap();
            for c in ['\u{2028}', '\u{2029}', '\u{85}', '\u{7f}', '\u{9f}'] {
                assert!(!text.contains(c), "{}: raw {c:?} in {text}", format.name());
            }
            assert_eq!(text.lines().count(), 1);
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let found = value.to_string();
            assert!(
                found.contains(&serde_json::Value::from(nasty).to_string()),
                "{}: the text changed: {text}",
                format.name()
            );
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
