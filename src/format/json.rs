//! `json`: the canonical record as one JSON object: `schema_version`, then
//! the fields of [`Event`] in their order, as its `Serialize` writes them
//! (a test holds the two together).

use auditfwd_sink::{Event, SCHEMA_VERSION};

use super::EncodeError;
use super::jsonw::{self, Obj};

pub(super) fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let opt = |o: &mut Obj, key, v: &Option<String>| match v {
        Some(v) => {
            o.str(key, v);
        }
        None => {
            o.raw(key, "null");
        }
    };
    let mut o = Obj::new(out);
    o.str("schema_version", SCHEMA_VERSION)
        .str("source", &event.source)
        .str("id", &event.id)
        .str("action", &event.action);
    opt(&mut o, "entity_type", &event.entity_type);
    opt(&mut o, "entity_id", &event.entity_id);
    opt(&mut o, "user_id", &event.user_id);
    o.value("details", &event.details)
        .millis("created_at", &event.created_at)
        .millis("received_at", &event.received_at);
    if event.id_reused {
        o.bool("id_reused", true);
    }
    if let Some(user) = &event.user {
        let mut u = o.obj("user");
        u.opt_str("id", user.id.as_deref())
            .opt_str("email", user.email.as_deref())
            .opt_str("name", user.name.as_deref())
            .opt_str("role", user.role.as_deref());
        if let Some(enabled) = user.enabled {
            jsonw::bool(u.key("enabled"), enabled);
        }
    }
    o.end();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::sample_events;
    use serde::Serialize;

    /// The record as serde writes it: what [`encode`] must write.
    #[derive(Serialize)]
    struct Canonical<'a> {
        schema_version: &'static str,
        #[serde(flatten)]
        event: &'a Event,
    }

    fn line(event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        encode(event, &mut out).unwrap();
        out
    }

    #[test]
    fn canonical_fields() {
        let e = &sample_events("acme", 1)[0];
        let v: serde_json::Value = serde_json::from_slice(&line(e)).unwrap();
        assert_eq!(v["schema_version"], "1");
        assert_eq!(v["source"], "acme");
        assert_eq!(v["id"], "evt-0");
        assert_eq!(v["action"], "USER_LOGIN");
        assert_eq!(v["created_at"], "2026-02-02T02:40:00.000Z");
        assert!(v.get("user").is_none());
        assert!(v.get("raw").is_none());
    }

    /// A field added to [`Event`] or [`auditfwd_sink::UserInfo`] fails this
    /// until the writer has it too.
    #[test]
    fn writes_what_serialize_writes() {
        for event in super::super::golden::events() {
            let mut want = Vec::new();
            super::super::write_line_safe_json(
                &mut want,
                &Canonical {
                    schema_version: SCHEMA_VERSION,
                    event: &event,
                },
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(line(&event)).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }
}
