//! The encoders as they were before the rewrite for speed (commit 18605e1),
//! frozen: the differential tests below hold the current encoders to the
//! same bytes over many varied events. Test-only.

#![allow(dead_code)]

mod cef;
mod ecs;
mod json;
mod jsonw;
mod leef;
mod ocsf;
mod raw;

use auditfwd_sink::Event;

pub(super) use super::EncodeError;
use super::Format;

/// The action mapping: the table is shared data, the lookup and the header
/// writer are frozen copies.
pub(super) mod mapping {
    use crate::format::mapping::SUFFIXES;
    pub use crate::format::mapping::{
        Mapping, OcsfClass, PRODUCT, PRODUCT_VERSION, TABLE, UNKNOWN, VENDOR,
    };

    pub fn device_header(out: &mut String, action: &str, escape: fn(&mut String, &str)) {
        for (i, field) in [VENDOR, PRODUCT, PRODUCT_VERSION, action]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push('|');
            }
            escape(out, field);
        }
    }

    pub fn lookup(action: &str) -> &'static Mapping {
        if let Some(m) = TABLE.iter().find(|m| m.action == action) {
            return m;
        }
        SUFFIXES
            .iter()
            .find(|(suffix, _)| action.len() > suffix.len() && action.ends_with(suffix))
            .map(|(_, m)| m)
            .unwrap_or(&UNKNOWN)
    }
}

/// The old `Format::encode`.
pub(super) fn encode(format: &Format, event: &Event) -> Result<Vec<u8>, EncodeError> {
    match format {
        Format::Json => json::encode(event),
        Format::Raw => raw::encode(event),
        Format::Ocsf => ocsf::encode(event),
        Format::Ecs => ecs::encode(event),
        Format::Cef => cef::encode(event),
        Format::Leef { delimiter } => leef::encode(event, *delimiter),
    }
}

pub fn json_text(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_line_safe_json(&mut out, value).expect("a JSON value serializes into memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

pub(crate) fn write_line_safe_json<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(out, LineSafe))
}

pub(crate) fn splits_lines(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

pub(crate) fn may_split_lines(b: u8) -> bool {
    b == 0x7f || b == 0xc2 || b == 0xe2
}

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

pub(crate) fn escape_into(
    out: &mut String,
    value: &str,
    special: impl Fn(u8) -> bool,
    mut escape: impl FnMut(&mut String, char),
) {
    let bytes = value.as_bytes();
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
#[cfg(test)]
mod tests;
