//! From the API's event to the canonical [`Event`]. Never fails: the id and
//! `created_at` were checked by the page parser, and every other field is
//! taken as leniently as its meaning allows (numbers and booleans become
//! strings, nulls and absences become `None`, objects become compact JSON).

use auditfwd_sink::Event;
use chrono::{DateTime, Utc};

use crate::model::{Fields, RawEvent};

/// The action used when the API sent none.
pub const UNKNOWN_ACTION: &str = "UNKNOWN";

/// Builds the canonical event of `source` from an API event fetched at
/// `received_at`.
pub fn normalize(source: &str, raw: RawEvent, received_at: DateTime<Utc>) -> Event {
    let RawEvent {
        id,
        created_at,
        fields,
        raw,
        id_reused,
        ..
    } = raw;
    let Fields {
        action,
        entity_type,
        entity_id,
        user_id,
        details,
    } = fields;
    Event {
        source: source.to_string(),
        id,
        action: action
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| UNKNOWN_ACTION.to_string()),
        entity_type,
        entity_id,
        user_id,
        details,
        created_at,
        received_at,
        id_reused,
        user: None,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Item;
    use crate::source::page::parse;
    use serde_json::Value;

    fn one(json: &str) -> Event {
        let body = format!("{{\"data\":[{json}]}}");
        match parse(body.as_bytes()).unwrap().items.remove(0) {
            Item::Event(e) => normalize("acme", e, Utc::now()),
            Item::Malformed(m) => panic!("{}", m.reason),
        }
    }

    #[test]
    fn lenient_on_everything_but_id_and_time() {
        let e = one(
            r#"{"id":"a","created_at":"2026-03-01T10:35:39.817Z","action":"USER_LOGIN","entity_type":null,"entity_id":42,"user_id":{"x":1},"details":"str"}"#,
        );
        assert_eq!(e.action, "USER_LOGIN");
        assert_eq!(e.entity_type, None);
        assert_eq!(e.entity_id.as_deref(), Some("42"));
        assert_eq!(e.user_id.as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(e.details, Value::String("str".into()));
        let e = one(r#"{"id":"b","created_at":"2026-03-01T10:35:39.817Z"}"#);
        assert_eq!(e.action, UNKNOWN_ACTION);
        assert_eq!(e.details, Value::Null);
        assert_eq!(
            &*e.raw,
            r#"{"id":"b","created_at":"2026-03-01T10:35:39.817Z"}"#
        );
    }
}
