//! Reading state written by auditfwd 0.1 (layout 1): string ids, no
//! sequence numbers, covered ranges. [`upgrade`] turns a layout-1 snapshot
//! and its journal into the current layout, keeping the watermark, the
//! scope, the totals and the delivered ids, so an upgrade re-sends nothing
//! it does not have to.
//!
//! Layout 1 kept numeric ids as decimal strings, so the upgraded keys treat
//! every id as a string: an event with a numeric id inside the lookback
//! window may be delivered once more after the upgrade. Its content was not
//! recorded either; [`UNKNOWN_CONTENT`] matches any content, so no event is
//! taken for a reused id.
//!
//! Layout 1 had no sequence numbers: if 0.1 stopped between writing a
//! snapshot and emptying its journal, the journal's checkpoints are already
//! in the snapshot and their counts are added again (`delivered_total` and
//! `dead_lettered_total` may be too high; ids and the watermark are not
//! affected). The current layout skips such checkpoints by sequence.

use std::collections::HashMap;

use serde::Deserialize;

use super::state::{CursorState, Entry, UNKNOWN_CONTENT};
use crate::model::EventKey;

/// The layout this module reads.
pub(crate) const VERSION: u32 = 1;

#[derive(Deserialize)]
struct StateV1 {
    source: String,
    floor_ms: i64,
    watermark_ms: i64,
    seen: Vec<(String, i64)>,
    #[serde(default)]
    delivered_total: u64,
    #[serde(default)]
    dead_lettered_total: u64,
}

#[derive(Deserialize)]
struct CheckpointV1 {
    #[serde(default)]
    acked: Vec<(String, i64)>,
    watermark_ms: i64,
    #[serde(default)]
    delivered: u64,
    #[serde(default)]
    dead_lettered: u64,
}

fn key_of(id: &str) -> EventKey {
    // Layout 1 keyed an element without id by `raw:` and its text.
    match id.strip_prefix("raw:") {
        Some(raw) => EventKey::raw(raw.as_bytes()),
        None => EventKey::string_id(id),
    }
}

/// The current-layout state of a layout-1 snapshot plus its journal.
pub(crate) fn upgrade(snapshot: &[u8], journal: &str, source: &str) -> Result<CursorState, String> {
    let old: StateV1 = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
    if old.source != source {
        return Err(format!(
            "it belongs to source `{}`, not `{source}`",
            old.source
        ));
    }
    let mut seen: HashMap<String, i64> = old.seen.into_iter().collect();
    let mut watermark_ms = old.watermark_ms;
    let (mut delivered, mut dead) = (old.delivered_total, old.dead_lettered_total);
    for line in journal.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let Ok(cp) = serde_json::from_str::<CheckpointV1>(line) else {
            continue;
        };
        seen.extend(cp.acked);
        watermark_ms = watermark_ms.max(cp.watermark_ms);
        delivered += cp.delivered;
        dead += cp.dead_lettered;
    }
    let mut state = CursorState::new(source, chrono::DateTime::UNIX_EPOCH);
    state.floor_ms = old.floor_ms;
    state.watermark_ms = watermark_ms;
    state.delivered_total = delivered;
    state.dead_lettered_total = dead;
    state.seen = seen
        .iter()
        .map(|(id, ms)| {
            (
                key_of(id),
                Entry {
                    ms: *ms,
                    content: UNKNOWN_CONTENT,
                    n: 0,
                },
            )
        })
        .collect();
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_1_state_keeps_its_watermark_ids_and_totals() {
        let snapshot = br#"{"version":1,"source":"acme","floor_ms":1000,"watermark_ms":5000,
            "seen":[["a",4000],["raw:{\"x\":1}",4100]],"delivered_total":7,"dead_lettered_total":1,
            "covered":[[10,20]]}"#;
        let journal = "{\"acked\":[[\"b\",6000]],\"watermark_ms\":6000,\"delivered\":1,\"dead_lettered\":0}\n{\"acked\":[[\"c\"";
        let state = upgrade(snapshot, journal, "acme").unwrap();
        assert_eq!(state.watermark_ms, 6000);
        assert_eq!(state.floor_ms, 1000);
        assert_eq!((state.delivered_total, state.dead_lettered_total), (8, 1));
        assert_eq!(state.seen.len(), 3);
        assert!(state.seen.contains_key(&EventKey::string_id("b")));
        assert!(state.seen.contains_key(&EventKey::raw(br#"{"x":1}"#)));
        assert!(upgrade(snapshot, "", "other").is_err());
    }
}
