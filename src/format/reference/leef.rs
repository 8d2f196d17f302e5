//! `leef`: IBM QRadar Log Event Extended Format 2.0.
//!
//! `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|key=value<d>key=value`.
//! LEEF has no escape sequences, so values are cleaned instead: the
//! attribute delimiter (default `^`), CR, LF and other control characters
//! become spaces (or `_` when the delimiter is a space), and header fields
//! lose `|`. A delimiter that is not printable is written in the header as
//! hex (`x09` for a tab), as LEEF 2.0 allows.

use std::fmt::Write as _;

use auditfwd_sink::Event;

use super::mapping;
use super::ocsf::{detail_ip, detail_user_agent};
use super::{EncodeError, escape_into};

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
fn delimiter_spec(out: &mut String, d: char) {
    if d.is_ascii_graphic() {
        out.push(d);
    } else {
        let _ = write!(out, "x{:02X}", d as u32);
    }
}

/// Writes a value with the delimiter, line breaks and control characters
/// replaced.
pub fn value(out: &mut String, v: &str, delimiter: char) {
    let replacement = if delimiter == ' ' { '_' } else { ' ' };
    if delimiter.is_ascii() {
        let d = delimiter as u8;
        escape_into(out, v, |b| b == d, |out, _| out.push(replacement));
    } else {
        for c in v.chars() {
            out.push(if c == delimiter || c.is_control() {
                replacement
            } else {
                c
            });
        }
    }
}

fn header(out: &mut String, v: &str) {
    escape_into(out, v, |b| b == b'|', |out, _| out.push('_'));
}

/// Encodes one event as a LEEF 2.0 line.
pub fn line(event: &Event, delimiter: char) -> String {
    let mut out = String::with_capacity(512);
    write(event, delimiter, &mut out);
    out
}

/// Appends the LEEF 2.0 line of `event` to `out`.
pub fn write(event: &Event, delimiter: char, out: &mut String) {
    let m = mapping::lookup(&event.action);
    out.push_str("LEEF:2.0|");
    mapping::device_header(out, &event.action, header);
    out.push('|');
    delimiter_spec(out, delimiter);
    out.push('|');
    let mut first = true;
    let mut attr = |out: &mut String, key: &str, v: &str| {
        if !first {
            out.push(delimiter);
        }
        first = false;
        out.push_str(key);
        out.push('=');
        value(out, v, delimiter);
    };
    // ISO 8601 and a Java date pattern without spaces, so that a space
    // delimiter can not cut them.
    attr(
        out,
        "devTime",
        &auditfwd_sink::format_millis(&event.created_at),
    );
    attr(out, "devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSX");
    attr(out, "cat", m.class.name);
    attr(out, "sev", itoa::Buffer::new().format(m.severity.cef()));
    attr(out, "externalId", &event.id);
    attr(out, "action", &event.action);
    attr(out, "outcome", m.outcome.ecs());
    attr(out, "source", &event.source);
    if let Some(u) = &event.user_id {
        attr(out, "userId", u);
    }
    let user = event.user.as_ref();
    let name = user.and_then(|u| u.email.as_ref().or(u.name.as_ref()));
    if let Some(n) = name.or(event.user_id.as_ref()) {
        attr(out, "usrName", n);
    }
    if let Some(role) = user.and_then(|u| u.role.as_ref()) {
        attr(out, "role", role);
    }
    if let Some(ip) = detail_ip(event) {
        attr(out, "src", ip);
    }
    if let Some(ua) = detail_user_agent(event) {
        attr(out, "userAgent", ua);
    }
    if let Some(t) = &event.entity_type {
        attr(out, "entityType", t);
    }
    if let Some(id) = &event.entity_id {
        attr(out, "entityId", id);
    }
    if !event.details.is_null() {
        attr(out, "details", &super::json_text(&event.details));
    }
}

pub(super) fn encode(event: &Event, delimiter: char) -> Result<Vec<u8>, EncodeError> {
    Ok(line(event, delimiter).into_bytes())
}
