//! `cef`: ArcSight Common Event Format.
//!
//! `CEF:0|Vendor|Product|Version|EventClassID|Name|Severity|Extension`.
//! Header fields escape `\` and `|`; extension values escape `\`, `=`, CR
//! (`\r`) and LF (`\n`), per the CEF specification. Other control characters
//! can not be escaped in CEF and become spaces. Keys: `rt` (epoch ms),
//! `externalId` (event id), `act`, `suid`, `suser`, `outcome`, `src`,
//! `requestClientApplication`, and `cs1`–`cs6` with their labels.

use std::sync::OnceLock;

use auditfwd_sink::Event;
use serde_json::Value;

use super::ocsf::{detail_ip, detail_user_agent};
use super::{escape_into, escape_tail, jsonw, mapping};

/// Escapes a header field: `\` → `\\`, `|` → `\|`; control characters
/// become spaces (the header has no escape for them).
pub fn header(out: &mut Vec<u8>, value: &str) {
    escape_into(out, value, special::<HEADER>, escape::<HEADER>);
}

/// Escapes an extension value: `\` → `\\`, `=` → `\=`, CR → `\r`,
/// LF → `\n`; other control characters become spaces.
#[inline]
pub fn extension(out: &mut Vec<u8>, value: &str) {
    escape_into(out, value, special::<EXTENSION>, escape::<EXTENSION>);
}

/// What separates header fields, escaped in them.
const HEADER: u8 = b'|';
/// What separates an extension key from its value, escaped in values.
const EXTENSION: u8 = b'=';

/// Whether `b` takes a backslash where `SEP` separates: itself or `\`.
fn special<const SEP: u8>(b: u8) -> bool {
    b == b'\\' || b == SEP
}

/// The escape of `c` where `SEP` separates: `\` and `SEP` take a
/// backslash, CR and LF become `\r` and `\n` in the extension (the header
/// has no escape for them), other control characters become spaces.
fn escape<const SEP: u8>(out: &mut Vec<u8>, c: char) {
    match c {
        '\\' => out.extend_from_slice(b"\\\\"),
        _ if c == SEP as char => out.extend_from_slice(&[b'\\', SEP]),
        '\n' if SEP == EXTENSION => out.extend_from_slice(b"\\n"),
        '\r' if SEP == EXTENSION => out.extend_from_slice(b"\\r"),
        _ => out.push(b' '),
    }
}

/// The extension, pair by pair, separated by single spaces. Keys are
/// literals of this module.
struct Extension<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Extension<'_> {
    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    #[inline(always)]
    fn pair(&mut self, key: &'static str, value: &str) {
        self.key(key);
        extension(self.out, value);
    }

    /// A pair whose value is `value` as line-safe JSON, escaped in place.
    fn json(&mut self, key: &'static str, value: &Value) {
        self.key(key);
        let start = self.out.len();
        jsonw::value(self.out, value);
        escape_tail(self.out, start, special::<EXTENSION>, escape::<EXTENSION>);
    }
}

/// The value of a custom string.
enum Custom<'a> {
    Text(&'a str),
    Json(&'a Value),
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

/// The header of one mapping, from `CEF:0|` to the `|` before the
/// extension, with the event class id left out: it is the event's action.
struct Header {
    /// `CEF:0|Vendor|Product|Version|`.
    device: Vec<u8>,
    /// `|Name|Severity|`.
    rest: Vec<u8>,
}

impl Header {
    fn of(index: usize) -> &'static Header {
        static ALL: OnceLock<Vec<Header>> = OnceLock::new();
        &ALL.get_or_init(|| {
            mapping::ALL
                .iter()
                .map(|m| {
                    let mut device = b"CEF:0|".to_vec();
                    mapping::device_header(&mut device, "", header);
                    let mut rest = vec![b'|'];
                    header(&mut rest, m.name);
                    rest.push(b'|');
                    rest.extend_from_slice(itoa::Buffer::new().format(m.severity.cef()).as_bytes());
                    rest.push(b'|');
                    Header { device, rest }
                })
                .collect()
        })[index]
    }
}

/// Appends the CEF line of `event` to `out`.
pub fn write<'a>(event: &'a Event, out: &mut Vec<u8>) {
    let index = mapping::index(&event.action);
    let m = &mapping::ALL[index];
    let head = Header::of(index);
    out.extend_from_slice(&head.device);
    header(out, &event.action);
    out.extend_from_slice(&head.rest);
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
    let text = |v: Option<&'a str>| v.map(Custom::Text);
    let custom = [
        ("source", Some(Custom::Text(&event.source))),
        ("entityType", text(event.entity_type.as_deref())),
        ("entityId", text(event.entity_id.as_deref())),
        (
            "details",
            (!event.details.is_null()).then_some(Custom::Json(&event.details)),
        ),
        ("userRole", text(user.and_then(|u| u.role.as_deref()))),
        (
            "userEnabled",
            text(
                user.and_then(|u| u.enabled)
                    .map(|b| if b { "true" } else { "false" }),
            ),
        ),
    ];
    for ((label, value), (key, label_key)) in custom.into_iter().zip(CUSTOM) {
        match value {
            Some(Custom::Text(v)) => ext.pair(key, v),
            Some(Custom::Json(v)) => ext.json(key, v),
            None => continue,
        }
        ext.pair(label_key, label);
    }
}
