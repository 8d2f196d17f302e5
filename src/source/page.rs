//! Parsing one `/api/v1/audit-logs` response.
//!
//! The envelope must be sound (`data` is an array); if it is not, the whole
//! response is unusable and the request is retried. Each event inside is
//! judged on its own: one that has a usable `id` and `created_at` is kept,
//! however odd its other fields; one without is reported as [`Malformed`] and
//! goes to the dead-letter file. Nothing in a page is silently dropped.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// One parsed response.
#[derive(Debug)]
pub struct Page {
    /// The events, in the order the API returned them.
    pub items: Vec<Item>,
    /// `pagination.total`, when present and a non-negative integer.
    pub total: Option<u64>,
    /// `pagination.limit`, when present and a non-negative integer.
    pub limit: Option<u64>,
}

/// One element of `data`.
#[derive(Debug)]
pub enum Item {
    /// An event with a usable id and timestamp.
    Event(RawEvent),
    /// An element that can not be forwarded.
    Malformed(Malformed),
}

/// An event with the two fields the cursor needs, plus the rest untouched.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// The id (integers are accepted and written in decimal).
    pub id: String,
    /// `created_at`, in UTC.
    pub created_at: DateTime<Utc>,
    /// The whole event object.
    pub value: serde_json::Map<String, Value>,
    /// The event's JSON text exactly as received.
    pub raw: Arc<str>,
}

impl RawEvent {
    /// `created_at` in epoch milliseconds, the cursor's unit.
    pub fn created_ms(&self) -> i64 {
        self.created_at.timestamp_millis()
    }
}

/// An element that can not be forwarded, with the reason.
#[derive(Debug, Clone)]
pub struct Malformed {
    /// The id, if one was readable.
    pub id: Option<String>,
    /// `created_at`, if one was readable.
    pub created_at: Option<DateTime<Utc>>,
    /// Why it can not be forwarded.
    pub reason: String,
    /// The element's JSON text as received.
    pub raw: Arc<str>,
}

impl Malformed {
    /// The key that deduplicates this element across passes: its id, or its
    /// whole text when it has none.
    pub fn dedup_key(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("raw:{}", self.raw),
        }
    }
}

/// Why a response body is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Not JSON, or cut short.
    #[error("response body is not valid JSON ({0}); it may have been truncated")]
    NotJson(#[source] serde_json::Error),
    /// JSON without a `data` array.
    #[error("response has no `data` array")]
    NoData,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    pagination: Option<Value>,
}

/// Parses a response body.
pub fn parse(body: &[u8]) -> Result<Page, PageError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(PageError::NotJson)?;
    let data = envelope.data.ok_or(PageError::NoData)?;
    let elements: Vec<&RawValue> =
        serde_json::from_str(data.get()).map_err(|_| PageError::NoData)?;
    let number = |key: &str| {
        envelope
            .pagination
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(Value::as_u64)
    };
    Ok(Page {
        items: elements.into_iter().map(parse_item).collect(),
        total: number("total"),
        limit: number("limit"),
    })
}

fn parse_item(element: &RawValue) -> Item {
    let raw: Arc<str> = Arc::from(element.get());
    let malformed = |id: Option<String>, created_at, reason: String| {
        Item::Malformed(Malformed {
            id,
            created_at,
            reason,
            raw: raw.clone(),
        })
    };
    let value = match serde_json::from_str::<Value>(element.get()) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return malformed(
                None,
                None,
                format!("event is a JSON {}, not an object", kind(&other)),
            );
        }
        Err(e) => return malformed(None, None, format!("event is not valid JSON: {e}")),
    };
    let id = match value.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Some(Value::String(_)) => Err("`id` is empty".to_string()),
        None | Some(Value::Null) => Err("`id` is missing".to_string()),
        Some(other) => Err(format!("`id` is a {}, not a string", kind(other))),
    };
    let created_at = match value.get("created_at") {
        Some(Value::String(s)) => {
            parse_timestamp(s).ok_or_else(|| format!("`created_at` is not an ISO-8601 time: {s:?}"))
        }
        None | Some(Value::Null) => Err("`created_at` is missing".to_string()),
        Some(other) => Err(format!("`created_at` is a {}, not a string", kind(other))),
    };
    match (id, created_at) {
        (Ok(id), Ok(created_at)) => Item::Event(RawEvent {
            id,
            created_at,
            value,
            raw,
        }),
        (Ok(id), Err(reason)) => malformed(Some(id), None, reason),
        (Err(reason), Ok(created_at)) => malformed(None, Some(created_at), reason),
        (Err(a), Err(b)) => malformed(None, None, format!("{a}; {b}")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// RFC 3339 with any offset; a time without offset is taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_events_and_reports_bad_ones() {
        let body = br#"{"data":[
            {"id":"a","action":"USER_LOGIN","created_at":"2026-03-01T10:35:39.817Z","details":{}},
            {"id":7,"created_at":"2026-03-01T10:35:39.817+02:00","action":null},
            {"action":"X","created_at":"2026-03-01T10:35:39Z"},
            {"id":"b","created_at":"yesterday"},
            {"id":{"x":1},"created_at":12},
            "not an object",
            {"id":"c","created_at":"2026-03-01T10:35:39.817123"}
        ],"pagination":{"total":7,"limit":100,"offset":0}}"#;
        let page = parse(body).unwrap();
        assert_eq!(page.total, Some(7));
        assert_eq!(page.limit, Some(100));
        let summary: Vec<String> = page
            .items
            .iter()
            .map(|i| match i {
                Item::Event(e) => format!("ok {} {}", e.id, e.created_ms()),
                Item::Malformed(m) => format!("bad {:?}: {}", m.id, m.reason),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "ok a 1772361339817",
                "ok 7 1772354139817",
                "bad None: `id` is missing",
                "bad Some(\"b\"): `created_at` is not an ISO-8601 time: \"yesterday\"",
                "bad None: `id` is a object, not a string; `created_at` is a number, not a string",
                "bad None: event is a JSON string, not an object",
                "ok c 1772361339817",
            ]
        );
    }

    #[test]
    fn broken_envelopes_are_errors() {
        assert!(matches!(
            parse(br#"{"data":[{"id":"a""#),
            Err(PageError::NotJson(_))
        ));
        assert!(matches!(parse(br#"{"error":"x"}"#), Err(PageError::NoData)));
        assert!(matches!(
            parse(br#"{"data":{"id":"a"}}"#),
            Err(PageError::NoData)
        ));
        assert!(matches!(
            parse(b"<html>502</html>"),
            Err(PageError::NotJson(_))
        ));
    }
}
