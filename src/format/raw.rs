//! `raw`: the API's event exactly as received, wrapped with the source name:
//! `{"source":"acme","event":{...}}`.

use std::borrow::Cow;

use auditfwd_sink::Event;
use serde_json::value::RawValue;

use super::EncodeError;

/// Byte classes: CR and LF, and what may start a line splitter.
const BREAK: u8 = 1;
const SPLITTER: u8 = 2;
static CLASS: [u8; 256] = {
    let mut class = [0; 256];
    let mut b = 0;
    while b < 256 {
        if b == b'\n' as usize || b == b'\r' as usize {
            class[b] = BREAK;
        } else if super::may_split_lines(b as u8) {
            class[b] = SPLITTER;
        }
        b += 1;
    }
    class
};

pub(super) fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    // One pass tells whether anything below has work to do.
    let found = event
        .raw
        .bytes()
        .fold(0, |found, b| found | CLASS[usize::from(b)]);
    let (breaks, splitters) = (found & BREAK != 0, found & SPLITTER != 0);
    // Line breaks inside JSON strings are always escaped, so a literal CR or
    // LF can only be whitespace between tokens (a pretty-printed API);
    // turning it into a space keeps the event byte-for-byte equal as JSON
    // while keeping it on one line.
    let mut text: Cow<'_, str> = if breaks {
        event.raw.replace(['\n', '\r'], " ").into()
    } else {
        (&*event.raw).into()
    };
    // DEL, C1 (NEL among them), U+2028 and U+2029 are not JSON whitespace,
    // so they can only sit inside strings, where their escape means the
    // same: escape them, as every JSON output does (Python and JavaScript
    // split lines there).
    if splitters {
        let mut safe = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if super::splits_lines(c) && !c.is_ascii_whitespace() {
                safe.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                safe.push(c);
            }
        }
        text = safe.into();
    }
    let raw: &RawValue = serde_json::from_str(&text).map_err(|e| EncodeError::Invalid {
        format: "raw",
        reason: format!("the received event is not JSON: {e}"),
    })?;
    // Source names are config names (letters, digits, `_`, `-`, `.`);
    // serde_json's plain escaping, as ever.
    out.extend_from_slice(br#"{"source":"#);
    serde_json::to_writer(&mut *out, event.source.as_str()).expect("a string serializes");
    out.extend_from_slice(br#","event":"#);
    out.extend_from_slice(raw.get().as_bytes());
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::sample_events;
    use std::sync::Arc;

    #[test]
    fn keeps_the_event_text_and_flattens_whitespace_newlines() {
        let mut e = sample_events("acme", 1).remove(0);
        e.raw = Arc::from("{\n  \"id\": \"a\",\n  \"n\": 1.50,\n  \"s\": \"x\\ny\"\n}");
        let mut line = Vec::new();
        encode(&e, &mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert_eq!(
            line,
            "{\"source\":\"acme\",\"event\":{   \"id\": \"a\",   \"n\": 1.50,   \"s\": \"x\\ny\" }}"
        );
    }
}
