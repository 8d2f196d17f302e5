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
