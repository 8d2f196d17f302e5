//! `ecs`: Elastic Common Schema 9.x.
//!
//! Categorization (`event.kind`, `event.category`, `event.type`,
//! `event.outcome`) uses only ECS's allowed values, from the mapping table.
//! The acting user is `user.*`; for actions on a user account, that account
//! is `user.target.*`. Fields without an ECS home (entity type and id, the
//! API's `details`, the source name) live under the custom `auditfwd.*`
//! namespace, as ECS recommends for custom data.

use auditfwd_sink::{Event, format_millis};
use serde_json::{Map, Value, json};

use super::EncodeError;
use super::mapping;
use super::ocsf::{detail_ip, detail_user_agent};

/// The ECS version written to `ecs.version`.
pub const ECS_VERSION: &str = "9.3.0";

fn insert(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

fn text(s: &Option<String>) -> Option<Value> {
    s.as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| Value::String(s.clone()))
}

/// Builds the ECS document.
pub fn document(event: &Event) -> Value {
    let m = mapping::lookup(&event.action);
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(format_millis(&event.created_at)));
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    doc.insert(
        "event".into(),
        json!({
            "kind": "event",
            "category": m.ecs_category,
            "type": m.ecs_type,
            "action": event.action,
            "outcome": m.outcome.ecs(),
            "id": event.id,
            "dataset": "peoplelens.audit",
            "provider": event.source,
            "severity": m.severity.ocsf_id(),
            "created": format_millis(&event.received_at),
        }),
    );
    let mut user = Map::new();
    insert(&mut user, "id", text(&event.user_id));
    if let Some(info) = &event.user {
        insert(&mut user, "email", text(&info.email));
        insert(&mut user, "full_name", text(&info.name));
        insert(
            &mut user,
            "name",
            text(&info.name).or_else(|| text(&info.email)),
        );
        if let Some(role) = text(&info.role) {
            user.insert("roles".into(), json!([role]));
        }
    }
    if m.targets_user
        && let Some(target) = text(&event.entity_id)
    {
        user.insert("target".into(), json!({ "id": target }));
    }
    if !user.is_empty() {
        doc.insert("user".into(), Value::Object(user));
    }
    let related: Vec<&str> = [
        event.user_id.as_deref(),
        m.targets_user
            .then_some(event.entity_id.as_deref())
            .flatten(),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect();
    if !related.is_empty() {
        let mut users: Vec<&str> = related;
        users.dedup();
        doc.insert("related".into(), json!({ "user": users }));
    }
    if let Some(ip) = detail_ip(event) {
        doc.insert("source".into(), json!({ "ip": ip }));
    }
    if let Some(ua) = detail_user_agent(event) {
        doc.insert("user_agent".into(), json!({ "original": ua }));
    }
    doc.insert(
        "observer".into(),
        json!({ "vendor": mapping::VENDOR, "product": mapping::PRODUCT }),
    );
    doc.insert(
        "agent".into(),
        json!({ "type": "auditfwd", "version": env!("CARGO_PKG_VERSION") }),
    );
    let mut custom = Map::new();
    custom.insert("source".into(), json!(event.source));
    insert(&mut custom, "entity_type", text(&event.entity_type));
    insert(&mut custom, "entity_id", text(&event.entity_id));
    if !event.details.is_null() {
        custom.insert("details".into(), event.details.clone());
    }
    if let Some(enabled) = event.user.as_ref().and_then(|u| u.enabled) {
        custom.insert("user_enabled".into(), json!(enabled));
    }
    doc.insert("auditfwd".into(), Value::Object(custom));
    Value::Object(doc)
}

pub(super) fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(&document(event)).map_err(|e| EncodeError::Invalid {
        format: "ecs",
        reason: e.to_string(),
    })
}
