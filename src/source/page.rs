//! Parsing one `/api/v1/audit-logs` response.
//!
//! The envelope must be sound (`data` is an array); if it is not, the whole
//! response is unusable and the request is retried. Each event inside is
//! judged on its own: one that has a usable `id` and `created_at` is kept,
//! however odd its other fields; one without is reported as [`Malformed`] and
//! goes to the dead-letter file. Nothing in a page is silently dropped.
//!
//! A body that is not valid UTF-8 is salvaged rather than retried forever:
//! the bad bytes are replaced so the envelope parses, and exactly the
//! elements that held them become [`Malformed`] (their text keeps the bad
//! bytes as `\xHH`); the rest of the page is delivered.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use crate::model::{
    EventKey, Fields, Item, Malformed, ObjectHasher, RawEvent, bytes_hash, object_hash,
};

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
    data: Option<Data<'a>>,
    #[serde(default)]
    pagination: Option<Value>,
}

/// `data`: its elements' text when it is an array, read in the same pass
/// as the envelope.
enum Data<'a> {
    Array(Vec<&'a RawValue>),
    NotArray,
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Data<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data<'a>, A::Error> {
                let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(100).min(1000));
                while let Some(element) = seq.next_element::<&'de RawValue>()? {
                    elements.push(element);
                }
                Ok(Data::Array(elements))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Data::NotArray)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_str<E>(self, _: &str) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// Parses a response body.
pub fn parse(body: &[u8]) -> Result<Page, PageError> {
    match std::str::from_utf8(body) {
        Ok(text) => parse_text(text, &Repairs::default()),
        Err(_) => {
            let (text, repairs) = Repairs::repair(body);
            parse_text(&text, &repairs)
        }
    }
}

fn parse_text(text: &str, repairs: &Repairs<'_>) -> Result<Page, PageError> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(PageError::NotJson)?;
    let Some(Data::Array(elements)) = envelope.data else {
        return Err(PageError::NoData);
    };
    let number = |key: &str| {
        envelope
            .pagination
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(Value::as_u64)
    };
    let base = text.as_ptr() as usize;
    let mut scratch = Scratch::default();
    let items = elements
        .into_iter()
        .map(|element| {
            let start = element.get().as_ptr() as usize - base;
            let end = start + element.get().len();
            match repairs.original(start, end) {
                None => parse_item(element, &mut scratch),
                Some(original) => repaired_item(element, &original, &mut scratch),
            }
        })
        .collect();
    Ok(Page {
        items,
        total: number("total"),
        limit: number("limit"),
    })
}

/// Where a body that was not UTF-8 was repaired: each replacement's
/// position in the repaired text, and the original bytes.
#[derive(Default)]
struct Repairs<'a> {
    body: &'a [u8],
    /// (position in the repaired text, position in the body, bad bytes).
    at: Vec<(usize, usize, usize)>,
}

impl<'a> Repairs<'a> {
    fn repair(body: &'a [u8]) -> (String, Self) {
        let mut text = String::with_capacity(body.len() + 16);
        let mut at = Vec::new();
        let mut original = 0;
        for chunk in body.utf8_chunks() {
            text.push_str(chunk.valid());
            original += chunk.valid().len();
            if !chunk.invalid().is_empty() {
                at.push((text.len(), original, chunk.invalid().len()));
                text.push(char::REPLACEMENT_CHARACTER);
                original += chunk.invalid().len();
            }
        }
        (text, Self { body, at })
    }

    /// The original bytes of the repaired span `start..end`, rendered with
    /// each bad byte as `\xHH`, if the span holds a repair.
    fn original(&self, start: usize, end: usize) -> Option<String> {
        let first = self.at.partition_point(|r| r.0 < start);
        if self.at.get(first).is_none_or(|r| r.0 >= end) {
            return None;
        }
        // Each repair turned `bad` bytes into the 3 bytes of U+FFFD.
        let shift = |upto: usize| -> isize {
            self.at[..upto]
                .iter()
                .map(|r| r.2 as isize - 3)
                .sum::<isize>()
        };
        let last = self.at.partition_point(|r| r.0 < end);
        let from = (start as isize + shift(first)) as usize;
        let to = (end as isize + shift(last)) as usize;
        let mut out = String::new();
        for chunk in self.body[from..to].utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
        Some(out)
    }
}

/// An element that held bytes that are not UTF-8: dead-lettered with its
/// original bytes, keyed like the event it was (so a re-read is a repeat).
fn repaired_item<'a>(element: &'a RawValue, original: &str, scratch: &mut Scratch<'a>) -> Item {
    let reason = "event contains bytes that are not UTF-8 (kept as \\xHH in `event`)".to_string();
    let (id, key, created_at) = match parse_item(element, scratch) {
        Item::Event(e) => (Some(e.id), e.key, Some(e.created_at)),
        Item::Malformed(m) => (m.id, m.key, m.created_at),
    };
    Item::Malformed(Malformed {
        id,
        key,
        content: bytes_hash(original.as_bytes()),
        created_at,
        reason,
        raw: Arc::from(original),
    })
}

fn parse_item<'a>(element: &'a RawValue, scratch: &mut Scratch<'a>) -> Item {
    let raw: Arc<str> = Arc::from(element.get());
    match read_event(element.get(), scratch) {
        Some((id, key, created_at, fields, content)) => Item::Event(RawEvent {
            id,
            key,
            content,
            created_at,
            fields,
            raw,
            id_reused: false,
        }),
        None => judge_item(element, raw),
    }
}

/// One object's members, read in one pass: scalars borrowed from the
/// text where they can be, nested values as [`Value`]s.
type Members<'a> = Vec<(Cow<'a, str>, Scalar<'a>)>;

/// Buffers reused from one event of a page to the next (two allocations
/// less per event).
#[derive(Default)]
struct Scratch<'a> {
    members: Members<'a>,
    hash: Vec<u8>,
}

/// Reads an object's members into a reused [`Members`].
struct MembersInto<'v, 'a>(&'v mut Members<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for MembersInto<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct Visit<'v, 'a>(&'v mut Members<'a>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'_, 'a> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(Key(key)) = map.next_key()? {
                    self.0.push((key, map.next_value::<Scalar<'de>>()?));
                }
                Ok(())
            }
        }
        self.0.clear();
        d.deserialize_map(Visit(self.0))
    }
}

/// An object key, borrowed unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// One member's value: a string borrowed from the text unless it holds
/// escapes; an object or array as a [`Value`].
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Nested(Value),
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Scalar<'de>, E> {
                Number::from_f64(n)
                    .map(Scalar::Number)
                    .ok_or_else(|| E::custom("a number JSON can not hold"))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::String(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::String(Cow::Owned(s.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
                Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Scalar::Nested)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
                Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Scalar::Nested)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The fast reading of an event: its members' text, hashed and converted
/// without building a [`Value`] tree (only `details` and nested members
/// become values). `None` for anything it does not judge good, which
/// [`judge_item`] then reads the slow way and explains; the two agree on
/// every event both read (property-tested below).
fn read_event<'a>(
    text: &'a str,
    scratch: &mut Scratch<'a>,
) -> Option<(String, EventKey, DateTime<Utc>, Fields, u64)> {
    let mut de = serde_json::Deserializer::from_str(text);
    MembersInto(&mut scratch.members)
        .deserialize(&mut de)
        .ok()?;
    de.end().ok()?;
    let members = &mut scratch.members;
    // Sorted for the hash. A repeated key is left to the slow reading,
    // which also judges the values that the last of them hides.
    members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if members.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let mut hash = ObjectHasher::in_buffer(std::mem::take(&mut scratch.hash), members.len());
    let mut fields = Fields::default();
    let (mut id, mut created_at) = (None, None);
    for (key, scalar) in members.drain(..) {
        hash.key(&key);
        match &scalar {
            Scalar::Null => hash.value(&Value::Null),
            Scalar::Bool(b) => hash.value(&Value::Bool(*b)),
            Scalar::Number(n) => hash.number(n),
            Scalar::String(s) => hash.string(s),
            Scalar::Nested(value) => hash.value(value),
        }
        let text = || match &scalar {
            Scalar::Null => None,
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Number(n) => Some(n.to_string()),
            Scalar::String(s) => Some(s.to_string()),
            Scalar::Nested(value) => Some(value.to_string()),
        };
        match key.as_ref() {
            "id" => {
                id = Some(match &scalar {
                    Scalar::String(s) if !s.trim().is_empty() => {
                        (s.to_string(), EventKey::string_id(s))
                    }
                    Scalar::Number(n) if n.is_u64() || n.is_i64() => {
                        let text = n.to_string();
                        let key = EventKey::number_id(&text);
                        (text, key)
                    }
                    _ => return None,
                })
            }
            "created_at" => match &scalar {
                Scalar::String(s) => created_at = Some(parse_timestamp(s)?),
                _ => return None,
            },
            "action" => fields.action = text(),
            "entity_type" => fields.entity_type = text(),
            "entity_id" => fields.entity_id = text(),
            "user_id" => fields.user_id = text(),
            "details" => {
                fields.details = match scalar {
                    Scalar::Nested(value) => value,
                    Scalar::Null => Value::Null,
                    Scalar::Bool(b) => Value::Bool(b),
                    Scalar::Number(n) => Value::Number(n),
                    Scalar::String(s) => Value::String(s.into_owned()),
                }
            }
            _ => {}
        }
    }
    let (id, key) = id?;
    let (content, buffer) = hash.finish_keeping_buffer();
    scratch.hash = buffer;
    Some((id, key, created_at?, fields, content))
}

/// The slow reading of an element, through a [`Value`]: says exactly what
/// is wrong with one that [`read_event`] refused.
fn judge_item(element: &RawValue, raw: Arc<str>) -> Item {
    let malformed = |id: Option<(String, EventKey)>, created_at, reason: String| {
        let (id, key) = match id {
            Some((id, key)) => (Some(id), key),
            None => (None, EventKey::raw(raw.as_bytes())),
        };
        Item::Malformed(Malformed {
            id,
            key,
            content: bytes_hash(raw.as_bytes()),
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
        Some(Value::String(s)) if !s.trim().is_empty() => Ok((s.clone(), EventKey::string_id(s))),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
            let text = n.to_string();
            let key = EventKey::number_id(&text);
            Ok((text, key))
        }
        Some(Value::String(_)) => Err("`id` is empty".to_string()),
        None | Some(Value::Null) => Err("`id` is missing".to_string()),
        Some(Value::Number(_)) => Err("`id` is a number that is not an integer".to_string()),
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
        (Ok((id, key)), Ok(created_at)) => {
            let content = object_hash(&value);
            Item::Event(RawEvent {
                id,
                key,
                content,
                created_at,
                fields: fields_of(value),
                raw,
                id_reused: false,
            })
        }
        (Ok(id), Err(reason)) => malformed(Some(id), None, reason),
        (Err(reason), Ok(created_at)) => malformed(None, Some(created_at), reason),
        (Err(a), Err(b)) => malformed(None, None, format!("{a}; {b}")),
    }
}

/// [`Fields`] of an event object read as a [`Value`].
fn fields_of(mut value: serde_json::Map<String, Value>) -> Fields {
    let text = |key: &str| value.get(key).and_then(as_text);
    Fields {
        action: text("action"),
        entity_type: text("entity_type"),
        entity_id: text("entity_id"),
        user_id: text("user_id"),
        details: value.remove("details").unwrap_or(Value::Null),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
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
    use proptest::prelude::*;

    /// An object's members in order, repeated keys kept.
    struct KeyList<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> Deserialize<'de> for KeyList<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> Visitor<'de> for Visit {
                type Value = KeyList<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<KeyList<'de>, A::Error> {
                    let mut members = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        members.push((key, map.next_value::<&'de RawValue>()?));
                    }
                    Ok(KeyList(members))
                }
            }
            d.deserialize_map(Visit)
        }
    }

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
    fn a_byte_that_is_not_utf8_dead_letters_only_its_event() {
        let mut body = br#"{"data":[{"id":"a","created_at":"2026-03-01T10:35:39.817Z"},{"id":"b","created_at":"2026-03-01T10:35:39.818Z","details":{"ua":"x"#.to_vec();
        body.push(0xFF);
        body.extend_from_slice(br#"y"}},{"id":"c","created_at":"2026-03-01T10:35:39.819Z","details":"ok"}],"pagination":{"total":3}}"#);
        let page = parse(&body).unwrap();
        assert_eq!(page.total, Some(3));
        let [Item::Event(a), Item::Malformed(b), Item::Event(c)] = &page.items[..] else {
            panic!("{:?}", page.items);
        };
        assert_eq!((a.id.as_str(), c.id.as_str()), ("a", "c"));
        assert_eq!(b.id.as_deref(), Some("b"));
        assert_eq!(
            b.key,
            EventKey::string_id("b"),
            "keyed like the event it was"
        );
        assert!(b.created_at.is_some());
        assert!(b.reason.contains("not UTF-8"), "{}", b.reason);
        assert!(b.raw.contains(r"x\xFFy"), "original bytes kept: {}", b.raw);
    }

    #[test]
    fn ids_keep_their_json_type() {
        let body = br#"{"data":[{"id":7,"created_at":"2026-03-01T10:35:39.817Z"},{"id":"7","created_at":"2026-03-01T10:35:39.817Z"},{"id":7.5,"created_at":"2026-03-01T10:35:39.817Z"}]}"#;
        let page = parse(body).unwrap();
        let [Item::Event(n), Item::Event(s), Item::Malformed(f)] = &page.items[..] else {
            panic!("{:?}", page.items);
        };
        assert_eq!((n.id.as_str(), s.id.as_str()), ("7", "7"));
        assert_ne!(n.key, s.key);
        assert!(f.reason.contains("not an integer"), "{}", f.reason);
    }

    /// Members an event may hold, as JSON text: the awkward spellings
    /// (escapes, numbers that are not integers or do not fit, nested
    /// values in another key order, empty and odd ids and times).
    fn member() -> impl Strategy<Value = String> {
        let keys = prop::sample::select(vec![
            "id",
            "created_at",
            "action",
            "entity_type",
            "entity_id",
            "user_id",
            "details",
            "extra",
            "\\u0069d",
            "\\u00e9t\\n",
            "",
        ]);
        let values = prop::sample::select(vec![
            r#""a""#,
            r#""  ""#,
            r#""""#,
            r#""line\nbreak \"q\" \u00e9 \ud83d\ude00""#,
            r#""2026-03-01T10:35:39.817Z""#,
            r#""2026-03-01T10:35:39.817\u005a""#,
            r#""2026-03-01T10:35:39.817123""#,
            r#""yesterday""#,
            "7",
            "-7",
            "0",
            "-0",
            "7.5",
            "1e3",
            "1.0",
            "18446744073709551616",
            "1e400",
            "true",
            "false",
            "null",
            r#"{"b":1,"a":[1,"2",{"d":null,"c":true}]}"#,
            r#"{ "a" : [1, "2", {"c":true, "d":null}], "b" : 1 }"#,
            "[]",
            "{}",
        ]);
        (keys, values).prop_map(|(k, v)| format!("\"{k}\" :{v}"))
    }

    proptest::proptest! {
        /// The fast reading and the slow one agree on every element: the
        /// same verdict, id, key, time, fields and content hash, so a
        /// stored hash still matches after the parser changed.
        #[test]
        fn the_fast_reading_agrees_with_the_value_tree(
            members in (
                prop::collection::vec(member(), 0..8),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_flat_map(|(mut members, id, time)| {
                    // Mostly events the slow reading keeps, in any order.
                    if id {
                        members.push(r#""id":"evt-1""#.into());
                    }
                    if time {
                        members.push(r#""created_at":"2026-03-01T10:35:39.817Z""#.into());
                    }
                    Just(members).prop_shuffle()
                }),
        ) {
            let text = format!("{{ {} }}", members.join(" , "));
            let element: Box<RawValue> = serde_json::from_str(&text).unwrap();
            let repeated = {
                // The keys, read without judging the values.
                let map: Vec<(String, &RawValue)> = {
                    let mut de = serde_json::Deserializer::from_str(&text);
                    KeyList::deserialize(&mut de).unwrap().0
                };
                let mut keys: Vec<String> = map.into_iter().map(|(k, _)| k).collect();
                keys.sort();
                keys.windows(2).any(|w| w[0] == w[1])
            };
            // The buffers reused from the events before must not leak into
            // this one: read others first, as a page does (a good one, which
            // leaves its hash bytes, and one the fast reading refuses before
            // it reads on, which leaves its members).
            let mut scratch = Scratch::default();
            read_event(
                r#"{"id":"evt-0","created_at":"2026-01-01T00:00:00Z","zeta":[1,{"q":null}],"action":"X","extra":"y"}"#,
                &mut scratch,
            )
            .expect("a good event");
            assert!(read_event(r#"{"id":"a","id":"b","zeta":1}"#, &mut scratch).is_none());
            let fast = read_event(element.get(), &mut scratch);
            match judge_item(&element, Arc::from(element.get())) {
                Item::Event(slow) => {
                    prop_assert!(fast.is_some() || repeated, "the fast reading refused {text}");
                    if let Some((id, key, created_at, fields, content)) = fast {
                        prop_assert_eq!(id, slow.id);
                        prop_assert_eq!(key, slow.key);
                        prop_assert_eq!(created_at, slow.created_at);
                        prop_assert_eq!(fields, slow.fields);
                        prop_assert_eq!(content, slow.content);
                    }
                }
                Item::Malformed(m) => {
                    prop_assert!(fast.is_none(), "the fast reading kept {text}: {}", m.reason);
                }
            }
        }
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
