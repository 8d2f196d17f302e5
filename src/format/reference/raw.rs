//! `raw`: the API's event exactly as received, wrapped with the source name:
//! `{"source":"acme","event":{...}}`.

use auditfwd_sink::Event;
use serde::Serialize;
use serde_json::value::RawValue;

use super::EncodeError;

#[derive(Serialize)]
struct Wrapped<'a> {
    source: &'a str,
    event: &'a RawValue,
}

pub(super) fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    // Line breaks inside JSON strings are always escaped, so a literal CR or
    // LF can only be whitespace between tokens (a pretty-printed API);
    // turning it into a space keeps the event byte-for-byte equal as JSON
    // while keeping it on one line.
    let mut text: std::borrow::Cow<'_, str> = if event.raw.contains(['\n', '\r']) {
        event.raw.replace(['\n', '\r'], " ").into()
    } else {
        (&*event.raw).into()
    };
    // DEL, C1 (NEL among them), U+2028 and U+2029 are not JSON whitespace,
    // so they can only sit inside strings, where their escape means the
    // same: escape them, as every JSON output does (Python and JavaScript
    // split lines there).
    if text.bytes().any(super::may_split_lines) {
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
    let invalid = |reason: String| EncodeError::Invalid {
        format: "raw",
        reason,
    };
    let raw: Box<RawValue> = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("the received event is not JSON: {e}")))?;
    serde_json::to_vec(&Wrapped {
        source: &event.source,
        event: &raw,
    })
    .map_err(|e| invalid(e.to_string()))
}
