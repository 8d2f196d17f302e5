//! `cef`: ArcSight Common Event Format.
//!
//! `CEF:0|Vendor|Product|Version|EventClassID|Name|Severity|Extension`.
//! Header fields escape `\` and `|`; extension values escape `\`, `=`, CR
//! (`\r`) and LF (`\n`), per the CEF specification. Other control characters
//! can not be escaped in CEF and become spaces. Keys: `rt` (epoch ms),
//! `externalId` (event id), `act`, `suid`, `suser`, `outcome`, `src`,
//! `requestClientApplication`, and `cs1`–`cs6` with their labels.

use auditfwd_sink::Event;

use super::mapping;
use super::ocsf::{detail_ip, detail_user_agent};
use super::{EncodeError, escape_into};

/// Escapes a header field: `\` → `\\`, `|` → `\|`; control characters
/// become spaces (the header has no escape for them).
pub fn header(out: &mut String, value: &str) {
    escape_into(
        out,
        value,
        |b| b == b'\\' || b == b'|',
        |out, c| match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            _ => out.push(' '),
        },
    );
}

/// Escapes an extension value: `\` → `\\`, `=` → `\=`, CR → `\r`,
/// LF → `\n`; other control characters become spaces.
pub fn extension(out: &mut String, value: &str) {
    escape_into(
        out,
        value,
        |b| b == b'\\' || b == b'=',
        |out, c| match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(' '),
        },
    );
}

/// The extension, pair by pair, separated by single spaces.
struct Extension<'a> {
    out: &'a mut String,
    first: bool,
}

impl Extension<'_> {
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(' ');
        }
        self.first = false;
        self.out.push_str(key);
        self.out.push('=');
    }

    fn pair(&mut self, key: &str, value: &str) {
        self.key(key);
        extension(self.out, value);
    }
}

/// The custom string keys and their label keys, in order.
const CUSTOM: [(&str, &str); 6] = [
    ("cs1", "cs1Label"),
    ("cs2", "cs2Label"),
    ("cs3", "cs3Label"),
    ("cs4", "cs4Label"),
    ("cs5", "cs5Label"),
    ("cs6", "cs6Label"),
];

/// Encodes one event as a CEF line.
pub fn line(event: &Event) -> String {
    let mut out = String::with_capacity(512);
    write(event, &mut out);
    out
}

/// Appends the CEF line of `event` to `out`.
pub fn write(event: &Event, out: &mut String) {
    let m = mapping::lookup(&event.action);
    out.push_str("CEF:0|");
    mapping::device_header(out, &event.action, header);
    out.push('|');
    header(out, m.name);
    out.push('|');
    out.push_str(itoa::Buffer::new().format(m.severity.cef()));
    out.push('|');
    let mut ext = Extension { out, first: true };
    ext.pair(
        "rt",
        itoa::Buffer::new().format(event.created_at.timestamp_millis()),
    );
    ext.pair("externalId", &event.id);
    ext.pair("act", &event.action);
    ext.pair("outcome", m.outcome.ecs());
    if let Some(u) = &event.user_id {
        ext.pair("suid", u);
    }
    let user = event.user.as_ref();
    if let Some(name) = user.and_then(|u| u.email.as_ref().or(u.name.as_ref())) {
        ext.pair("suser", name);
    }
    if let Some(ip) = detail_ip(event) {
        ext.pair("src", ip);
    }
    if let Some(ua) = detail_user_agent(event) {
        ext.pair("requestClientApplication", ua);
    }
    let details = (!event.details.is_null()).then(|| super::json_text(&event.details));
    let custom = [
        ("source", Some(event.source.as_str())),
        ("entityType", event.entity_type.as_deref()),
        ("entityId", event.entity_id.as_deref()),
        ("details", details.as_deref()),
        ("userRole", user.and_then(|u| u.role.as_deref())),
        (
            "userEnabled",
            user.and_then(|u| u.enabled)
                .map(|b| if b { "true" } else { "false" }),
        ),
    ];
    for ((label, value), (key, label_key)) in custom.into_iter().zip(CUSTOM) {
        if let Some(v) = value {
            ext.pair(key, v);
            ext.pair(label_key, label);
        }
    }
}

pub(super) fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    Ok(line(event).into_bytes())
}
