//! `leef`: IBM QRadar Log Event Extended Format 2.0.
//!
//! `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|key=value<d>key=value`.
//! LEEF has no escape sequences, so values are cleaned instead: the
//! attribute delimiter (default `^`), CR, LF and other control characters
//! become spaces (or `_` when the delimiter is a space), and header fields
//! lose `|`. A delimiter that is not printable is written in the header as
//! hex (`x09` for a tab), as LEEF 2.0 allows.

use std::io::Write as _;
use std::sync::OnceLock;

use auditfwd_sink::Event;

use super::ocsf::{detail_ip, detail_user_agent};
use super::{escape_into, escape_tail, jsonw, mapping, push_char};

/// The default attribute delimiter.
pub const DEFAULT_DELIMITER: char = '^';

/// Parses a configured delimiter: one character, or hex as `x5E` / `0x5E`.
/// `|`, `=` and line breaks can not delimit attributes.
pub fn parse_delimiter(s: &str) -> Result<char, String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix('x'));
    let c = match hex {
        Some(h) if !h.is_empty() && h.len() <= 4 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
            char::from_u32(u32::from_str_radix(h, 16).expect("hex digits"))
                .ok_or("not a character")?
        }
        _ => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => {
                    return Err(format!(
                        "`{s}` is not one character or a hex value like \"x5E\""
                    ));
                }
            }
        }
    };
    if matches!(c, '|' | '=' | '\n' | '\r' | '\0') || c.is_alphanumeric() {
        return Err(format!(
            "{c:?} can not delimit LEEF attributes; use e.g. \"^\" or \"x09\" (tab)"
        ));
    }
    Ok(c)
}

/// Writes the delimiter as the header spells it: itself when printable,
/// else hex.
fn delimiter_spec(out: &mut Vec<u8>, d: char) {
    if d.is_ascii_graphic() {
        out.push(d as u8);
    } else {
        let _ = write!(out, "x{:02X}", d as u32);
    }
}

/// What replaces the delimiter and control characters in values.
fn replacement(delimiter: char) -> u8 {
    if delimiter == ' ' { b'_' } else { b' ' }
}

/// Writes a value with the delimiter, line breaks and control characters
/// replaced.
#[inline]
pub fn value(out: &mut Vec<u8>, v: &str, delimiter: char) {
    let replacement = replacement(delimiter);
    if delimiter.is_ascii() {
        let d = delimiter as u8;
        escape_into(out, v, |b| b == d, |out, _| out.push(replacement));
    } else if !v.contains(delimiter) {
        // Only control characters to replace.
        escape_into(out, v, |_| false, |out, _| out.push(replacement));
    } else {
        for c in v.chars() {
            if c == delimiter || c.is_control() {
                out.push(replacement);
            } else {
                push_char(out, c);
            }
        }
    }
}

/// [`value`] for what `out` holds from `start` on.
fn value_tail(out: &mut Vec<u8>, start: usize, delimiter: char) {
    let replacement = replacement(delimiter);
    if delimiter.is_ascii() {
        let d = delimiter as u8;
        escape_tail(out, start, |b| b == d, |out, _| out.push(replacement));
    } else if std::str::from_utf8(&out[start..])
        .expect("UTF-8 was written")
        .contains(delimiter)
    {
        let tail = String::from_utf8(out.split_off(start)).expect("UTF-8 was written");
        value(out, &tail, delimiter);
    } else {
        escape_tail(out, start, |_| false, |out, _| out.push(replacement));
    }
}

fn header(out: &mut Vec<u8>, v: &str) {
    escape_into(out, v, |b| b == b'|', |out, _| out.push(b'_'));
}

/// `LEEF:2.0|Vendor|Product|Version|`, written once.
fn device() -> &'static [u8] {
    static DEVICE: OnceLock<Vec<u8>> = OnceLock::new();
    DEVICE.get_or_init(|| {
        let mut out = b"LEEF:2.0|".to_vec();
        mapping::device_header(&mut out, "", header);
        out
    })
}

/// The attributes, `key=value` separated by the delimiter. Keys are
/// literals of this module.
struct Attributes<'a> {
    out: &'a mut Vec<u8>,
    delimiter: char,
    first: bool,
}

impl Attributes<'_> {
    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        if !self.first {
            push_char(self.out, self.delimiter);
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    #[inline(always)]
    fn attr(&mut self, key: &'static str, v: &str) {
        self.key(key);
        value(self.out, v, self.delimiter);
    }
}

/// Appends the LEEF 2.0 line of `event` to `out`.
pub fn write(event: &Event, delimiter: char, out: &mut Vec<u8>) {
    let m = mapping::lookup(&event.action);
    out.extend_from_slice(device());
    header(out, &event.action);
    out.push(b'|');
    delimiter_spec(out, delimiter);
    out.push(b'|');
    let mut a = Attributes {
        out,
        delimiter,
        first: true,
    };
    // ISO 8601 and a Java date pattern without spaces, so that a space
    // delimiter can not cut them.
    a.key("devTime");
    let start = a.out.len();
    jsonw::millis(a.out, &event.created_at);
    value_tail(a.out, start, delimiter);
    a.attr("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSX");
    a.attr("cat", m.class.name);
    a.attr("sev", itoa::Buffer::new().format(m.severity.cef()));
    a.attr("externalId", &event.id);
    a.attr("action", &event.action);
    a.attr("outcome", m.outcome.ecs());
    a.attr("source", &event.source);
    if let Some(u) = &event.user_id {
        a.attr("userId", u);
    }
    let user = event.user.as_ref();
    let name = user.and_then(|u| u.email.as_ref().or(u.name.as_ref()));
    if let Some(n) = name.or(event.user_id.as_ref()) {
        a.attr("usrName", n);
    }
    if let Some(role) = user.and_then(|u| u.role.as_ref()) {
        a.attr("role", role);
    }
    if let Some(ip) = detail_ip(event) {
        a.attr("src", ip);
    }
    if let Some(ua) = detail_user_agent(event) {
        a.attr("userAgent", ua);
    }
    if let Some(t) = &event.entity_type {
        a.attr("entityType", t);
    }
    if let Some(id) = &event.entity_id {
        a.attr("entityId", id);
    }
    if !event.details.is_null() {
        a.key("details");
        let start = a.out.len();
        jsonw::value(a.out, &event.details);
        value_tail(a.out, start, delimiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter("^"), Ok('^'));
        assert_eq!(parse_delimiter("x09"), Ok('\t'));
        assert!(
            parse_delimiter("0x7C")
                .unwrap_err()
                .contains("can not delimit")
        );
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("=").is_err());
        for (d, spec) in [('\t', "x09"), ('^', "^")] {
            let mut out = Vec::new();
            delimiter_spec(&mut out, d);
            assert_eq!(out, spec.as_bytes());
        }
    }
}
