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

use std::cell::RefCell;

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

    /// Appends the line of `event` to `out`. On error `out` is left as it
    /// was.
    pub fn encode_into(&self, event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let encoded = match self {
            Format::Json => json::encode(event, out),
            Format::Raw => raw::encode(event, out),
            Format::Ocsf => {
                ocsf::write(event, out);
                Ok(())
            }
            Format::Ecs => {
                ecs::write(event, out);
                Ok(())
            }
            Format::Cef => {
                cef::write(event, out);
                Ok(())
            }
            Format::Leef { delimiter } => {
                leef::write(event, *delimiter, out);
                Ok(())
            }
        };
        if encoded.is_err() {
            out.truncate(start);
        }
        encoded
    }

    /// Encodes one event as one line (through a buffer kept per thread, so
    /// the line costs one allocation of its own size).
    pub fn encode(&self, event: &Event) -> Result<Bytes, EncodeError> {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            let line = self
                .encode_into(event, scratch)
                .map(|()| Bytes::copy_from_slice(scratch));
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            line
        })
    }

    /// Encodes `events` into one buffer that their lines share: one
    /// allocation for the batch (amortized), none per event. One result per
    /// event, in order.
    pub fn encode_batch<'e>(
        &self,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Vec<Result<Bytes, EncodeError>> {
        let events = events.into_iter();
        let mut buf = Vec::with_capacity(events.size_hint().0 * LINE_GUESS);
        let spans: Vec<_> = events
            .map(|event| {
                let start = buf.len();
                self.encode_into(event, &mut buf).map(|()| start..buf.len())
            })
            .collect();
        // The lines keep the buffer alive: give back what they do not use.
        if buf.capacity() - buf.len() > buf.len() / 4 {
            buf.shrink_to_fit();
        }
        let buf = Bytes::from(buf);
        spans
            .into_iter()
            .map(|span| span.map(|span| buf.slice(span)))
            .collect()
    }
}

/// Capacity of the per-thread encoding buffer kept between events: an event
/// with a huge `details` does not pin its size.
const SCRATCH_KEEP: usize = 64 * 1024;

/// A typical line's size, to size batch buffers.
const LINE_GUESS: usize = 768;

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
pub(crate) const fn may_split_lines(b: u8) -> bool {
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
#[inline]
pub(crate) fn escape_into(
    out: &mut Vec<u8>,
    value: &str,
    special: impl Fn(u8) -> bool,
    escape: impl FnMut(&mut Vec<u8>, char),
) {
    if needs_care(value.as_bytes(), &special) {
        escape_slow(out, value, special, escape);
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// [`escape_into`] for what `out` holds from `start` on (text written there
/// unescaped, such as JSON): left in place when nothing in it needs care.
pub(crate) fn escape_tail(
    out: &mut Vec<u8>,
    start: usize,
    special: impl Fn(u8) -> bool,
    escape: impl FnMut(&mut Vec<u8>, char),
) {
    if needs_care(&out[start..], &special) {
        let tail = String::from_utf8(out.split_off(start)).expect("UTF-8 was written");
        escape_slow(out, &tail, special, escape);
    }
}

/// Whether any byte of `bytes` may need care (see [`escape_into`]).
#[inline]
fn needs_care(bytes: &[u8], special: impl Fn(u8) -> bool) -> bool {
    // Nearly every value is plain: find out with one pass the compiler can
    // vectorize (a fold, not a short-circuiting search).
    bytes.iter().fold(false, |care, &b| {
        care | (b < 0x20) | (b == 0x7f) | (b == 0xc2) | special(b)
    })
}

fn escape_slow(
    out: &mut Vec<u8>,
    value: &str,
    special: impl Fn(u8) -> bool,
    mut escape: impl FnMut(&mut Vec<u8>, char),
) {
    let bytes = value.as_bytes();
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
            out.extend_from_slice(&bytes[start..i]);
            let c = value[i..].chars().next().expect("at a char boundary");
            escape(out, c);
            i += c.len_utf8();
            start = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `c` as UTF-8.
#[inline]
pub(crate) fn push_char(out: &mut Vec<u8>, c: char) {
    if c.is_ascii() {
        out.push(c as u8);
    } else {
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
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
    fn a_batch_encodes_as_its_events_one_by_one() {
        let mut events = golden::events();
        events[3].raw = "not JSON".into();
        for name in FORMATS {
            let format = Format::parse(name).unwrap();
            let batch = format.encode_batch(&events);
            assert_eq!(batch.len(), events.len());
            for (e, line) in events.iter().zip(batch) {
                match (format.encode(e), line) {
                    (Ok(one), Ok(line)) => assert_eq!(one, line, "{name}"),
                    (Err(one), Err(line)) => assert_eq!(one.to_string(), line.to_string()),
                    (one, line) => panic!("{name}: {one:?} alone, {line:?} in a batch"),
                }
            }
        }
    }

    #[test]
    fn a_failed_encoding_leaves_the_buffer_as_it_was() {
        let mut event = sample_events("acme", 1).remove(0);
        event.raw = "{\"id\":".into();
        let mut out = b"kept".to_vec();
        assert!(Format::Raw.encode_into(&event, &mut out).is_err());
        assert_eq!(out, b"kept");
    }

    #[test]
    fn unknown_format_lists_the_known_ones() {
        assert_eq!(
            Format::parse("xml").unwrap_err(),
            "unknown format `xml`; available: json, raw, ocsf, ecs, cef, leef"
        );
    }
}
