//! `ecs`: Elastic Common Schema 9.x.
//!
//! Categorization (`event.kind`, `event.category`, `event.type`,
//! `event.outcome`) uses only ECS's allowed values, from the mapping table.
//! The acting user is `user.*`; for actions on a user account, that account
//! is `user.target.*`. Fields without an ECS home (entity type and id, the
//! API's `details`, the source name) live under the custom `auditfwd.*`
//! namespace, as ECS recommends for custom data.

use std::sync::OnceLock;

use auditfwd_sink::Event;
use serde_json::Value;

use super::jsonw::{self, Obj};
use super::mapping;
use super::ocsf::{detail_ip, detail_user_agent};

/// The ECS version written to `ecs.version`.
pub const ECS_VERSION: &str = "9.3.0";

/// A non-empty optional string.
fn text(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// What follows `@timestamp` for one mapping, up to and including
/// `"action":` in `event`: written once, copied into every document.
fn head(index: usize) -> &'static [u8] {
    static ALL: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &ALL.get_or_init(|| {
        mapping::ALL
            .iter()
            .map(|m| {
                let mut head = Vec::new();
                let mut d = Obj::resume(&mut head);
                d.obj("ecs").str("version", ECS_VERSION);
                let mut e = d.obj("event");
                e.str("kind", "event")
                    .strs("category", m.ecs_category)
                    .strs("type", m.ecs_type)
                    .key("action");
                e.leave_open();
                d.leave_open();
                head
            })
            .collect()
    })[index]
}

/// Writes the ECS document of `event` into `out` (one JSON object).
pub fn write(event: &Event, out: &mut Vec<u8>) {
    let index = mapping::index(&event.action);
    let m = &mapping::ALL[index];
    let info = event.user.as_ref();
    let target = m.targets_user.then(|| text(&event.entity_id)).flatten();
    let mut d = Obj::new(out);
    d.millis("@timestamp", &event.created_at);
    d.leave_open();
    out.extend_from_slice(head(index));
    jsonw::string(out, &event.action);
    Obj::resume(out)
        .str("outcome", m.outcome.ecs())
        .str("id", &event.id)
        .raw("dataset", r#""peoplelens.audit""#)
        .str("provider", &event.source)
        .int("severity", m.severity.ocsf_id())
        .millis("created", &event.received_at);
    let mut d = Obj::resume(out);
    let user_id = text(&event.user_id);
    let email = info.and_then(|u| text(&u.email));
    let full_name = info.and_then(|u| text(&u.name));
    let role = info.and_then(|u| text(&u.role));
    if user_id.is_some()
        || email.is_some()
        || full_name.is_some()
        || role.is_some()
        || target.is_some()
    {
        let mut u = d.obj("user");
        u.opt_str("id", user_id)
            .opt_str("email", email)
            .opt_str("full_name", full_name)
            .opt_str("name", full_name.or(email));
        if let Some(role) = role {
            u.strs("roles", &[role]);
        }
        if let Some(id) = target {
            u.obj("target").str("id", id);
        }
    }
    let mut related: [&str; 2] = [""; 2];
    let mut n = 0;
    for u in [event.user_id.as_deref(), target].into_iter().flatten() {
        if !u.is_empty() && (n == 0 || related[n - 1] != u) {
            related[n] = u;
            n += 1;
        }
    }
    if n > 0 {
        d.obj("related").strs("user", &related[..n]);
    }
    if let Some(ip) = detail_ip(event) {
        d.obj("source").str("ip", ip);
    }
    if let Some(ua) = detail_user_agent(event) {
        d.obj("user_agent").str("original", ua);
    }
    d.obj("observer")
        .str("vendor", mapping::VENDOR)
        .str("product", mapping::PRODUCT);
    d.obj("agent")
        .raw("type", r#""auditfwd""#)
        .str("version", env!("CARGO_PKG_VERSION"));
    let mut custom = d.obj("auditfwd");
    custom
        .str("source", &event.source)
        .opt_str("entity_type", text(&event.entity_type))
        .opt_str("entity_id", text(&event.entity_id));
    if !event.details.is_null() {
        custom.value("details", &event.details);
    }
    if let Some(enabled) = info.and_then(|u| u.enabled) {
        custom.bool("user_enabled", enabled);
    }
    custom.end();
    d.end();
}

/// The ECS document as a JSON value (for tests and tools).
pub fn document(event: &Event) -> Value {
    let mut out = Vec::new();
    write(event, &mut out);
    serde_json::from_slice(&out).expect("an ECS document is JSON")
}
