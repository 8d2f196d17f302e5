//! `cef`: ArcSight Common Event Format.
//!
//! `CEF:0|Vendor|Product|Version|EventClassID|Name|Severity|Extension`.
//! Header fields escape `\` and `|`; extension values escape `\`, `=`, CR
//! (`\r`) and LF (`\n`), per the CEF specification. Other control characters
//! can not be escaped in CEF and become spaces. Keys: `rt` (epoch ms),
//! `externalId` (event id), `act`, `suid`, `suser`, `outcome`, `src`,
//! `requestClientApplication`, and `cs1`–`cs6` with their labels.

use std::fmt::Write as _;

use auditfwd_sink::Event;

use super::EncodeError;
use super::mapping;
use super::ocsf::{detail_ip, detail_user_agent};

/// Escapes a header field: `\` → `\\`, `|` → `\|`; control characters
/// become spaces (the header has no escape for them).
pub fn header(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Escapes an extension value: `\` → `\\`, `=` → `\=`, CR → `\r`,
/// LF → `\n`; other control characters become spaces.
pub fn extension(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// The extension, pair by pair, separated by single spaces.
struct Extension<'a> {
    out: &'a mut String,
    first: bool,
}

impl Extension<'_> {
    fn pair(&mut self, key: &str, value: &str) {
        if !self.first {
            self.out.push(' ');
        }
        self.first = false;
        self.out.push_str(key);
        self.out.push('=');
        extension(self.out, value);
    }
}

/// Encodes one event as a CEF line.
pub fn line(event: &Event) -> String {
    let m = mapping::lookup(&event.action);
    let mut out = String::with_capacity(512);
    out.push_str("CEF:0|");
    mapping::device_header(&mut out, &event.action, header);
    out.push('|');
    header(&mut out, m.name);
    let _ = write!(out, "|{}|", m.severity.cef());
    let mut ext = Extension {
        out: &mut out,
        first: true,
    };
    ext.pair("rt", &event.created_at.timestamp_millis().to_string());
    ext.pair("externalId", &event.id);
    ext.pair("act", &event.action);
    ext.pair("outcome", m.outcome.ecs());
    if let Some(u) = &event.user_id {
        ext.pair("suid", u);
    }
    if let Some(name) = event
        .user
        .as_ref()
        .and_then(|u| u.email.as_ref().or(u.name.as_ref()))
    {
        ext.pair("suser", name);
    }
    if let Some(ip) = detail_ip(event) {
        ext.pair("src", &ip);
    }
    if let Some(ua) = detail_user_agent(event) {
        ext.pair("requestClientApplication", &ua);
    }
    let custom: [(&str, Option<String>); 6] = [
        ("source", Some(event.source.clone())),
        ("entityType", event.entity_type.clone()),
        ("entityId", event.entity_id.clone()),
        (
            "details",
            (!event.details.is_null()).then(|| super::json_text(&event.details)),
        ),
        ("userRole", event.user.as_ref().and_then(|u| u.role.clone())),
        (
            "userEnabled",
            event
                .user
                .as_ref()
                .and_then(|u| u.enabled)
                .map(|b| b.to_string()),
        ),
    ];
    for (i, (label, value)) in custom.iter().enumerate() {
        if let Some(v) = value {
            ext.pair(&format!("cs{}", i + 1), v);
            ext.pair(&format!("cs{}Label", i + 1), label);
        }
    }
    out
}

pub(super) fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    Ok(line(event).into_bytes())
}
