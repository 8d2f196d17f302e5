//! `ocsf`: OCSF 1.8.0, one class per action from the mapping table.
//!
//! Every required attribute of the class is present, nothing is `null`, and
//! nothing sits outside the schema except under `unmapped` (the API's
//! `details`, and any value that does not fit its OCSF type, such as an
//! `ip` that is not an IP address). The tests validate every mapped action,
//! hostile events included, against the official 1.8.0 JSON schema.

use auditfwd_sink::Event;
use serde_json::Value;

use std::sync::OnceLock;

use super::jsonw::{self, Obj};
use super::mapping::{self, Mapping, OcsfClass};

/// The OCSF schema version written to `metadata.version`.
pub const OCSF_VERSION: &str = "1.8.0";

/// OCSF's `email_t` pattern:
/// `^[a-zA-Z0-9!#$%&'*+-/=?^_\`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$`.
pub fn is_ocsf_email(s: &str) -> bool {
    // Every character allowed is ASCII, so bytes will do.
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+,-./=?^_`{|}~".contains(&c));
    let Some((first, rest)) = domain.split_once('.') else {
        return false;
    };
    let label_ok = !first.is_empty()
        && first
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-');
    let rest_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    local_ok && label_ok && rest_ok
}

/// The detail `ip`, if it is an IP address.
pub fn detail_ip(event: &Event) -> Option<&str> {
    let ip = event.details.get("ip")?.as_str()?;
    ip.parse::<std::net::IpAddr>().ok().map(|_| ip)
}

/// The detail `user_agent`, if it is a non-empty string.
pub fn detail_user_agent(event: &Event) -> Option<&str> {
    event
        .details
        .get("user_agent")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A non-empty optional string.
fn text(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// What is known of the acting user, as an OCSF `user`.
struct User<'a> {
    uid: Option<&'a str>,
    email_addr: Option<&'a str>,
    name: Option<&'a str>,
    group: Option<&'a str>,
}

impl User<'_> {
    fn is_empty(&self) -> bool {
        self.uid.is_none()
            && self.email_addr.is_none()
            && self.name.is_none()
            && self.group.is_none()
    }

    /// OCSF identifies a user by uid, name or account; without one of them
    /// the object is invalid.
    fn is_identified(&self) -> bool {
        self.uid.is_some() || self.name.is_some()
    }

    fn write(&self, mut o: Obj) {
        o.opt_str("uid", self.uid)
            .opt_str("email_addr", self.email_addr)
            .opt_str("full_name", self.name)
            .opt_str("name", self.name);
        if let Some(group) = self.group {
            o.obj_in_array("groups").str("name", group);
        }
    }
}

/// `{"name": "Unknown"}`: the class requires a user and the API gave none.
fn unknown_user(mut o: Obj) {
    o.str("name", "Unknown");
}

/// Classes with `src_endpoint` and `http_request` (all but Base Event).
fn has_endpoints(class: OcsfClass) -> bool {
    class.uid != 0
}

/// Classes with `actor` (the IAM ones; Web Resources Activity and Base
/// Event have none, so the acting user goes to `unmapped.actor`).
fn has_actor(class: OcsfClass) -> bool {
    class.category_uid == 3
}

/// The entity an action is about: a `uid`, or a `name` when there is none.
fn entity(event: &Event, mut o: Obj) {
    let uid = text(&event.entity_id);
    o.opt_str("uid", uid)
        .opt_str("type", text(&event.entity_type));
    if uid.is_none() {
        o.str("name", text(&event.entity_type).unwrap_or("unknown"));
    }
}

/// The user an account action is about: its uid, or `Unknown`.
fn target_user(event: &Event, mut o: Obj) {
    match text(&event.entity_id) {
        Some(uid) => o.str("uid", uid),
        None => o.str("name", "Unknown"),
    };
}

/// What a record starts with, for one mapping: written once, copied into
/// every record.
struct Fragments {
    /// `{"class_uid":…` up to and including `"time":`.
    head: Vec<u8>,
    /// From `,"message":` into `metadata`, up to and including `"uid":`.
    metadata: Vec<u8>,
}

impl Fragments {
    fn new(m: &Mapping) -> Self {
        let mut head = Vec::new();
        let mut r = Obj::new(&mut head);
        r.int("class_uid", m.class.uid)
            .str("class_name", m.class.name)
            .int("category_uid", m.class.category_uid)
            .str("category_name", m.class.category_name)
            .int("activity_id", m.activity_id)
            .str("activity_name", m.activity_name)
            .int(
                "type_uid",
                u64::from(m.class.uid) * 100 + u64::from(m.activity_id),
            )
            .str_parts("type_name", &[m.class.name, ": ", m.activity_name])
            .int("severity_id", m.severity.ocsf_id())
            .str("severity", m.severity.name())
            .int("status_id", m.outcome.ocsf_status_id())
            .str("status", m.outcome.ocsf_status())
            .key("time");
        r.leave_open();
        let mut metadata = Vec::new();
        let mut r = Obj::resume(&mut metadata);
        r.str("message", m.name);
        let mut meta = r.obj("metadata");
        meta.str("version", OCSF_VERSION);
        meta.obj("product")
            .str("name", mapping::PRODUCT)
            .str("vendor_name", mapping::VENDOR)
            .str("version", mapping::PRODUCT_VERSION);
        meta.key("uid");
        meta.leave_open();
        r.leave_open();
        Fragments { head, metadata }
    }

    /// The fragments of [`mapping::ALL`]`[index]`.
    fn of(index: usize) -> &'static Fragments {
        static ALL: OnceLock<Vec<Fragments>> = OnceLock::new();
        &ALL.get_or_init(|| mapping::ALL.iter().map(Fragments::new).collect())[index]
    }
}

/// Writes the OCSF record of `event` into `out` (one JSON object).
pub fn write(event: &Event, out: &mut Vec<u8>) {
    let index = mapping::index(&event.action);
    let m = &mapping::ALL[index];
    let time = event.created_at.timestamp_millis();
    let info = event.user.as_ref();
    let email = info.and_then(|u| text(&u.email));
    let email_ok = email.is_some_and(is_ocsf_email);
    let user = User {
        uid: text(&event.user_id),
        email_addr: email.filter(|_| email_ok),
        name: info.and_then(|u| text(&u.name)),
        group: info.and_then(|u| text(&u.role)),
    };
    let fragments = Fragments::of(index);
    out.extend_from_slice(&fragments.head);
    jsonw::int(out, time);
    out.extend_from_slice(&fragments.metadata);
    jsonw::string(out, &event.id);
    Obj::resume(out)
        .str("event_code", &event.action)
        .raw("log_name", r#""audit-logs""#)
        .raw("log_provider", r#""auditfwd""#)
        .str("tenant_uid", &event.source)
        .millis("original_time", &event.created_at)
        .int("logged_time", time)
        .int("processed_time", event.received_at.timestamp_millis());
    let mut r = Obj::resume(out);
    let identified = user.is_identified();
    if identified && has_actor(m.class) {
        user.write(r.obj("actor").obj("user"));
    }
    let base = match m.class.uid {
        3002 => {
            if identified {
                user.write(r.obj("user"));
            } else {
                unknown_user(r.obj("user"));
            }
            r.obj("service").str("name", mapping::PRODUCT);
            false
        }
        3001 => {
            if m.targets_user {
                target_user(event, r.obj("user"));
            } else {
                unknown_user(r.obj("user"));
            }
            false
        }
        3005 => {
            target_user(event, r.obj("user"));
            let privilege = ["new_role", "role"]
                .iter()
                .find_map(|k| event.details.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown");
            r.strs("privileges", &[privilege]);
            false
        }
        3004 => {
            entity(event, r.obj("entity"));
            false
        }
        6001 => {
            entity(event, r.obj_in_array("web_resources"));
            false
        }
        _ => true,
    };
    if has_endpoints(m.class) {
        if let Some(ip) = detail_ip(event) {
            r.obj("src_endpoint").str("ip", ip);
        }
        if let Some(ua) = detail_user_agent(event) {
            r.obj("http_request").str("user_agent", ua);
        }
    }
    // What has no OCSF attribute.
    let user_email = email.filter(|_| !email_ok);
    let actor_user = !identified && !user.is_empty();
    let unmapped_actor = identified && !has_actor(m.class);
    let enabled = info.and_then(|u| u.enabled);
    if user_email.is_some()
        || actor_user
        || unmapped_actor
        || base
        || !event.details.is_null()
        || enabled.is_some()
    {
        let mut u = r.obj("unmapped");
        u.opt_str("user_email", user_email);
        if actor_user {
            user.write(u.obj("actor_user"));
        }
        if unmapped_actor {
            user.write(u.obj("actor").obj("user"));
        }
        if base {
            u.str("action", &event.action)
                .opt_str("entity_type", event.entity_type.as_deref())
                .opt_str("entity_id", event.entity_id.as_deref());
        }
        if !event.details.is_null() {
            u.value("details", &event.details);
        }
        if let Some(enabled) = enabled {
            u.bool("user_enabled", enabled);
        }
        u.end();
    }
    r.end();
}

/// The OCSF record as a JSON value (for tests and tools).
pub fn record(event: &Event) -> Value {
    let mut out = Vec::new();
    write(event, &mut out);
    serde_json::from_slice(&out).expect("an OCSF record is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_pattern_matches_ocsf() {
        for ok in [
            "a@b.c",
            "first.last+tag@example.co.uk",
            "x!#$%&'*+,-./=?^_`{|}~@d-1.e",
        ] {
            assert!(is_ocsf_email(ok), "{ok}");
        }
        for bad in ["", "a@b", "@b.c", "a b@c.d", "a@b_c.d", "ü@b.c", "a@b.c\n"] {
            assert!(!is_ocsf_email(bad), "{bad:?}");
        }
    }
}
