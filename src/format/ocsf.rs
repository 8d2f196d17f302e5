//! `ocsf`: OCSF 1.8.0, one class per action from the mapping table.
//!
//! Every required attribute of the class is present, nothing is `null`, and
//! nothing sits outside the schema except under `unmapped` (the API's
//! `details`, and any value that does not fit its OCSF type, such as an
//! `ip` that is not an IP address). The tests validate every mapped action,
//! hostile events included, against the official 1.8.0 JSON schema.

use auditfwd_sink::Event;
use serde_json::{Map, Value, json};

use super::EncodeError;
use super::mapping::{self, Mapping, OcsfClass};

/// The OCSF schema version written to `metadata.version`.
pub const OCSF_VERSION: &str = "1.8.0";

fn obj(pairs: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
}

fn text(s: &Option<String>) -> Option<Value> {
    s.as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| Value::String(s.clone()))
}

/// OCSF's `email_t` pattern:
/// `^[a-zA-Z0-9!#$%&'*+-/=?^_\`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$`.
pub fn is_ocsf_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+,-./=?^_`{|}~".contains(c));
    let Some((first, rest)) = domain.split_once('.') else {
        return false;
    };
    let label_ok =
        !first.is_empty() && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let rest_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    local_ok && label_ok && rest_ok
}

/// A detail that is an IP address, as a string.
pub fn detail_ip(event: &Event) -> Option<String> {
    let ip = event.details.get("ip")?.as_str()?;
    ip.parse::<std::net::IpAddr>().ok().map(|_| ip.to_string())
}

/// A detail that is a user agent.
pub fn detail_user_agent(event: &Event) -> Option<String> {
    event
        .details
        .get("user_agent")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The acting user as an OCSF `user` object, if any of it is known.
fn actor_user(event: &Event, unmapped: &mut Map<String, Value>) -> Option<Value> {
    let info = event.user.as_ref();
    let email = info.and_then(|u| u.email.clone());
    let email_ok = email.as_deref().is_some_and(is_ocsf_email);
    if let (Some(e), false) = (&email, email_ok) {
        unmapped.insert("user_email".into(), json!(e));
    }
    let user = obj([
        ("uid", text(&event.user_id)),
        ("email_addr", email.filter(|_| email_ok).map(Value::String)),
        ("full_name", info.and_then(|u| text(&u.name))),
        ("name", info.and_then(|u| text(&u.name))),
        (
            "groups",
            info.and_then(|u| text(&u.role))
                .map(|r| json!([{ "name": r }])),
        ),
    ]);
    // OCSF identifies a user by uid, name or account; without one of them
    // the object is invalid, so what is known goes to `unmapped` instead.
    if user.contains_key("uid") || user.contains_key("name") {
        Some(Value::Object(user))
    } else {
        if !user.is_empty() {
            unmapped.insert("actor_user".into(), Value::Object(user));
        }
        None
    }
}

/// `{"name": "Unknown"}`: the class requires a user and the API gave none.
fn unknown_user() -> Value {
    json!({ "name": "Unknown" })
}

fn class_attributes(
    m: &Mapping,
    event: &Event,
    actor: &Option<Value>,
    record: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) {
    let target = || {
        text(&event.entity_id)
            .map(|uid| json!({ "uid": uid }))
            .unwrap_or_else(unknown_user)
    };
    let entity_label = || {
        let mut e = obj([
            ("uid", text(&event.entity_id)),
            ("type", text(&event.entity_type)),
        ]);
        if !e.contains_key("uid") {
            e.insert(
                "name".into(),
                json!(
                    event
                        .entity_type
                        .clone()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "unknown".into())
                ),
            );
        }
        Value::Object(e)
    };
    match m.class.uid {
        3002 => {
            record.insert("user".into(), actor.clone().unwrap_or_else(unknown_user));
            record.insert("service".into(), json!({ "name": mapping::PRODUCT }));
        }
        3001 => {
            record.insert(
                "user".into(),
                if m.targets_user {
                    target()
                } else {
                    unknown_user()
                },
            );
        }
        3005 => {
            record.insert("user".into(), target());
            let privilege = ["new_role", "role"]
                .iter()
                .find_map(|k| event.details.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown");
            record.insert("privileges".into(), json!([privilege]));
        }
        3004 => {
            record.insert("entity".into(), entity_label());
        }
        6001 => {
            record.insert("web_resources".into(), json!([entity_label()]));
        }
        _ => {
            // Base Event: keep what has no OCSF attribute.
            unmapped.insert("action".into(), json!(event.action));
            if let Some(t) = &event.entity_type {
                unmapped.insert("entity_type".into(), json!(t));
            }
            if let Some(id) = &event.entity_id {
                unmapped.insert("entity_id".into(), json!(id));
            }
        }
    }
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

/// Builds the OCSF record.
pub fn record(event: &Event) -> Value {
    let m = mapping::lookup(&event.action);
    let mut unmapped = Map::new();
    let actor_user = actor_user(event, &mut unmapped);
    let time = event.created_at.timestamp_millis();
    let mut record = obj([
        ("class_uid", Some(json!(m.class.uid))),
        ("class_name", Some(json!(m.class.name))),
        ("category_uid", Some(json!(m.class.category_uid))),
        ("category_name", Some(json!(m.class.category_name))),
        ("activity_id", Some(json!(m.activity_id))),
        ("activity_name", Some(json!(m.activity_name))),
        (
            "type_uid",
            Some(json!(
                u64::from(m.class.uid) * 100 + u64::from(m.activity_id)
            )),
        ),
        (
            "type_name",
            Some(json!(format!("{}: {}", m.class.name, m.activity_name))),
        ),
        ("severity_id", Some(json!(m.severity.ocsf_id()))),
        ("severity", Some(json!(m.severity.name()))),
        ("status_id", Some(json!(m.outcome.ocsf_status_id()))),
        ("status", Some(json!(m.outcome.ocsf_status()))),
        ("time", Some(json!(time))),
        ("message", Some(json!(m.name))),
    ]);
    record.insert(
        "metadata".into(),
        Value::Object(obj([
            ("version", Some(json!(OCSF_VERSION))),
            (
                "product",
                Some(json!({ "name": mapping::PRODUCT, "vendor_name": mapping::VENDOR, "version": mapping::PRODUCT_VERSION })),
            ),
            ("uid", Some(json!(event.id))),
            ("event_code", Some(json!(event.action))),
            ("log_name", Some(json!("audit-logs"))),
            ("log_provider", Some(json!("auditfwd"))),
            ("tenant_uid", Some(json!(event.source))),
            ("original_time", Some(json!(auditfwd_sink::format_millis(&event.created_at)))),
            ("logged_time", Some(json!(time))),
            ("processed_time", Some(json!(event.received_at.timestamp_millis()))),
        ])),
    );
    if let Some(user) = &actor_user {
        if has_actor(m.class) {
            record.insert("actor".into(), json!({ "user": user }));
        } else {
            unmapped.insert("actor".into(), json!({ "user": user }));
        }
    }
    class_attributes(m, event, &actor_user, &mut record, &mut unmapped);
    if has_endpoints(m.class) {
        if let Some(ip) = detail_ip(event) {
            record.insert("src_endpoint".into(), json!({ "ip": ip }));
        }
        if let Some(ua) = detail_user_agent(event) {
            record.insert("http_request".into(), json!({ "user_agent": ua }));
        }
    }
    if !event.details.is_null() {
        unmapped.insert("details".into(), event.details.clone());
    }
    if let Some(enabled) = event.user.as_ref().and_then(|u| u.enabled) {
        unmapped.insert("user_enabled".into(), json!(enabled));
    }
    if !unmapped.is_empty() {
        record.insert("unmapped".into(), Value::Object(unmapped));
    }
    Value::Object(record)
}

pub(super) fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(&record(event)).map_err(|e| EncodeError::Invalid {
        format: "ocsf",
        reason: e.to_string(),
    })
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
