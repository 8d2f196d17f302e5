//! Syslog messages and frames: RFC 5424 and RFC 3164 headers, RFC 5424
//! structured data, RFC 6587 framing, RFC 5426 datagram limits.
//!
//! Injection safety: every header field is printable US-ASCII (33-126) by
//! construction; structured-data values escape `"`, `\` and `]` (RFC 5424
//! §6.3.3) and write control characters as visible escapes; the message
//! body is refused if it holds CR, LF or NUL. No event content can therefore
//! end a frame early, start a second record, or change a header field.

use std::fmt::Write as _;

use auditfwd_sink::{Record, format_millis};

use crate::config::{Framing, Protocol, SyslogSinkConfig, Transport};

/// The SD-ID of auditfwd's structured data. 32473 is the private enterprise
/// number RFC 5612 reserves for documentation.
pub const SD_ID: &str = "auditfwd@32473";

/// Appended to a message cut to fit a datagram.
pub const TRUNCATION_MARKER: &str = "...[truncated by auditfwd]";

/// The fixed header fields, validated once.
#[derive(Debug, Clone)]
pub struct Header {
    /// Facility 0-23.
    pub facility: u8,
    /// HOSTNAME.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
    /// PROCID.
    pub procid: String,
}

/// Why a record can not be sent at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(pub String);

/// An encoded message, with where its body starts (for truncation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The whole syslog message (no framing).
    pub bytes: Vec<u8>,
    /// Offset of MSG (the payload) in `bytes`.
    pub body_start: usize,
}

/// `s` as a header field: printable US-ASCII only (others become `_`), at
/// most `max` characters, `-` (the nil value) when empty.
pub fn header_field(s: &str, max: usize) -> String {
    let field: String = s
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// Writes a structured-data PARAM-VALUE: `"`, `\` and `]` escaped with a
/// backslash (RFC 5424 §6.3.3); control characters written as visible
/// escapes (`\n`, `\r`, `\t`, `\0`, `\xHH`), which RFC 5424 reads as a
/// literal backslash followed by the letter.
pub fn sd_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ']' => out.push_str("\\]"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn body(record: &Record) -> Result<&[u8], Unsendable> {
    if record
        .payload
        .iter()
        .any(|b| matches!(b, b'\n' | b'\r' | 0))
    {
        return Err(Unsendable(
            "payload contains CR, LF or NUL; it would forge a second record".into(),
        ));
    }
    Ok(&record.payload)
}

/// The header's TIMESTAMP: the event's `created_at`, or the NILVALUE when
/// that is a bogus time receivers refuse to parse (rsyslog takes a header
/// dated 2100 or later for the message text). The payload keeps it as sent.
fn header_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Datelike;
    if (1970..2100).contains(&t.year()) {
        format_millis(t)
    } else {
        "-".to_string()
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
pub fn rfc5424(header: &Header, record: &Record) -> Result<Message, Unsendable> {
    let e = &record.event;
    let pri = u16::from(header.facility) * 8 + u16::from(record.severity.syslog());
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "<{pri}>1 {} {} {} {} {} [{SD_ID} id=\"",
        header_time(&e.created_at),
        header.hostname,
        header.app_name,
        header.procid,
        header_field(&e.action, 32),
    );
    sd_value(&mut head, &e.id);
    head.push_str("\" source=\"");
    sd_value(&mut head, &e.source);
    head.push('"');
    if let Some(t) = &e.entity_type {
        head.push_str(" entity_type=\"");
        sd_value(&mut head, t);
        head.push('"');
    }
    head.push_str("] ");
    let body = body(record)?;
    let mut bytes = head.into_bytes();
    let body_start = bytes.len();
    bytes.extend_from_slice(body);
    Ok(Message { bytes, body_start })
}

/// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PROCID]: MSG` (timestamp in UTC).
pub fn rfc3164(header: &Header, record: &Record) -> Result<Message, Unsendable> {
    let e = &record.event;
    let pri = u16::from(header.facility) * 8 + u16::from(record.severity.syslog());
    // TAG: alphanumeric, at most 32 characters (RFC 3164 §4.1.3).
    let tag: String = header
        .app_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(32)
        .collect();
    let head = format!(
        "<{pri}>{} {} {}[{}]: ",
        e.created_at.format("%b %e %H:%M:%S"),
        header.hostname,
        if tag.is_empty() { "auditfwd" } else { &tag },
        header.procid,
    );
    let body = body(record)?;
    let mut bytes = head.into_bytes();
    let body_start = bytes.len();
    bytes.extend_from_slice(body);
    Ok(Message { bytes, body_start })
}

/// Cuts `message` to at most `max` bytes for a datagram, at a character
/// boundary of the body, ending with [`TRUNCATION_MARKER`]. Returns whether
/// it was cut; fails if not even the header fits.
pub fn fit_datagram(message: &mut Message, max: usize) -> Result<bool, Unsendable> {
    if message.bytes.len() <= max {
        return Ok(false);
    }
    let room = max.checked_sub(message.body_start + TRUNCATION_MARKER.len()).ok_or_else(|| {
        Unsendable(format!(
            "the syslog header and structured data alone take {} bytes, more than max_datagram = {max}",
            message.body_start
        ))
    })?;
    let body = &message.bytes[message.body_start..];
    let mut cut = room.min(body.len());
    // Step back to a UTF-8 boundary (never split a character).
    while cut > 0 && (body[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    message.bytes.truncate(message.body_start + cut);
    message
        .bytes
        .extend_from_slice(TRUNCATION_MARKER.as_bytes());
    Ok(true)
}

/// The bytes to write for `message` on a stream.
pub fn frame(message: &Message, framing: Framing, out: &mut Vec<u8>) {
    match framing {
        Framing::OctetCounting => {
            out.extend_from_slice(message.bytes.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(&message.bytes);
        }
        Framing::Lf => {
            out.extend_from_slice(&message.bytes);
            out.push(b'\n');
        }
    }
}

/// Encodes `record` per `config`: the message, and whether it was cut.
pub fn encode(
    config: &SyslogSinkConfig,
    header: &Header,
    record: &Record,
) -> Result<(Message, bool), Unsendable> {
    let mut message = match config.protocol {
        Protocol::Rfc5424 => rfc5424(header, record)?,
        Protocol::Rfc3164 => rfc3164(header, record)?,
    };
    let cut = if config.transport == Transport::Udp {
        fit_datagram(&mut message, config.max_datagram)?
    } else {
        false
    };
    Ok((message, cut))
}

#[cfg(test)]
mod tests;
