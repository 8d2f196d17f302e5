//! `json`: the canonical record as one JSON object.

use auditfwd_sink::{Event, SCHEMA_VERSION};
use serde::Serialize;

use super::EncodeError;

#[derive(Serialize)]
struct Canonical<'a> {
    schema_version: &'static str,
    #[serde(flatten)]
    event: &'a Event,
}

pub(super) fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(512);
    super::write_line_safe_json(
        &mut out,
        &Canonical {
            schema_version: SCHEMA_VERSION,
            event,
        },
    )
    .map_err(|e| EncodeError::Invalid {
        format: "json",
        reason: e.to_string(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::sample_events;

    #[test]
    fn canonical_fields() {
        let e = &sample_events("acme", 1)[0];
        let v: serde_json::Value = serde_json::from_slice(&encode(e).unwrap()).unwrap();
        assert_eq!(v["schema_version"], "1");
        assert_eq!(v["source"], "acme");
        assert_eq!(v["id"], "evt-0");
        assert_eq!(v["action"], "USER_LOGIN");
        assert_eq!(v["created_at"], "2026-02-02T02:40:00.000Z");
        assert!(v.get("user").is_none());
        assert!(v.get("raw").is_none());
    }
}
