//! The API's audit events as the source parses them and the cursor judges
//! them: an [`Item`] is either a [`RawEvent`] (a usable id and time) or a
//! [`Malformed`] element (to the dead-letter file). Both carry an
//! [`EventKey`], the fixed-size identity the cursor deduplicates on, and a
//! content hash, so that an id reused with new content is told apart from a
//! repeat.
//!
//! This module depends on nothing else in the crate: the parser (`source`)
//! produces these types and the cursor consumes them, neither reaching into
//! the other.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64, xxh3_128};

/// The identity of an event for deduplication: a 128-bit hash of its id
/// *with the id's JSON type* (the number `7` and the string `"7"` are
/// different events), or of the whole element when it has no usable id.
/// Fixed size, so a hostile 3 MB id costs 16 bytes of state, and already
/// uniformly distributed, so maps keyed by it need no further hashing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(pub u128);

impl EventKey {
    /// The key of a string id.
    pub fn string_id(id: &str) -> Self {
        Self::tagged(b's', id.as_bytes())
    }

    /// The key of a numeric id (its decimal text as the API sent it).
    pub fn number_id(id: &str) -> Self {
        Self::tagged(b'n', id.as_bytes())
    }

    /// The key of an element without a usable id: its bytes.
    pub fn raw(bytes: &[u8]) -> Self {
        Self::tagged(b'r', bytes)
    }

    /// The key of one version of this id: an id that came back with other
    /// content is remembered per version.
    pub fn version(self, content: u64) -> Self {
        let mut bytes = [0u8; 24];
        bytes[..16].copy_from_slice(&self.0.to_le_bytes());
        bytes[16..].copy_from_slice(&content.to_le_bytes());
        Self::tagged(b'v', &bytes)
    }

    fn tagged(tag: u8, bytes: &[u8]) -> Self {
        let mut h = Xxh3Default::new();
        h.update(&[tag]);
        h.update(bytes);
        Self(h.digest128())
    }
}

impl fmt::Debug for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for EventKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        u128::from_str_radix(&text, 16)
            .map(EventKey)
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not an event key")))
    }
}

/// A [`Hasher`] for maps keyed by [`EventKey`]: the key is a hash already.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for types other than EventKey; fold them in.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

/// A `HashMap` keyed by [`EventKey`].
pub type KeyMap<V> = std::collections::HashMap<EventKey, V, BuildHasherDefault<KeyHasher>>;

/// A `HashSet` of [`EventKey`]s.
pub type KeySet = std::collections::HashSet<EventKey, BuildHasherDefault<KeyHasher>>;

/// A 64-bit hash of an event's content, independent of the order of object
/// keys (an API may serialize its maps in any order) and of insignificant
/// whitespace, so that two reads of the same event agree.
pub fn content_hash(value: &Value) -> u64 {
    let mut h = Xxh3Default::new();
    feed(&mut h, value);
    h.digest()
}

/// Where [`feed`] writes: the streaming hasher, or a buffer hashed in one
/// go (the same hash: XXH3 of the same bytes).
trait Update {
    fn update(&mut self, bytes: &[u8]);
}

impl Update for Xxh3Default {
    fn update(&mut self, bytes: &[u8]) {
        Xxh3Default::update(self, bytes)
    }
}

impl Update for Vec<u8> {
    fn update(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes)
    }
}

fn feed(h: &mut impl Update, value: &Value) {
    match value {
        Value::Null => h.update(b"z"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"n");
            h.update(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"a");
            h.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item);
            }
        }
        Value::Object(map) => feed_object(h, map),
    }
}

fn feed_object(h: &mut impl Update, map: &serde_json::Map<String, Value>) {
    // Sorted explicitly: serde_json keeps insertion order when any crate in
    // the build enables its `preserve_order` feature.
    h.update(b"o");
    h.update(&(map.len() as u64).to_le_bytes());
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, item) in entries {
        h.update(&(key.len() as u64).to_le_bytes());
        h.update(key.as_bytes());
        feed(h, item);
    }
}

/// [`content_hash`] of an event object, without wrapping it in a [`Value`].
pub fn object_hash(map: &serde_json::Map<String, Value>) -> u64 {
    let mut h = Xxh3Default::new();
    feed_object(&mut h, map);
    h.digest()
}

/// [`content_hash`] of an object fed member by member, for a parser that
/// does not build a [`Value`]: the same bytes [`object_hash`] hashes, so
/// both agree (the hashes are persisted in the cursor's state). The bytes
/// are gathered and hashed at once, which is faster than feeding the
/// streaming hasher many small pieces.
pub struct ObjectHasher(Vec<u8>);

impl ObjectHasher {
    /// Starts an object of `len` distinct keys; feed them in sorted order.
    pub fn new(len: usize) -> Self {
        Self::in_buffer(Vec::with_capacity(512), len)
    }

    /// [`ObjectHasher::new`], gathering into `buffer` (emptied first): a
    /// parser hashing many objects reuses one
    /// ([`ObjectHasher::finish_keeping_buffer`]).
    pub fn in_buffer(mut buffer: Vec<u8>, len: usize) -> Self {
        buffer.clear();
        buffer.update(b"o");
        buffer.update(&(len as u64).to_le_bytes());
        Self(buffer)
    }

    /// The next key (keys in sorted order, each followed by its value).
    pub fn key(&mut self, key: &str) {
        self.0.update(&(key.len() as u64).to_le_bytes());
        self.0.update(key.as_bytes());
    }

    /// A string value.
    pub fn string(&mut self, s: &str) {
        self.0.update(b"s");
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }

    /// A number value.
    pub fn number(&mut self, n: &serde_json::Number) {
        self.0.update(b"n");
        self.0.update(n.to_string().as_bytes());
    }

    /// Any other value.
    pub fn value(&mut self, value: &Value) {
        feed(&mut self.0, value);
    }

    /// The hash.
    pub fn finish(self) -> u64 {
        xxh3_64(&self.0)
    }

    /// The hash, and the buffer for the next object.
    pub fn finish_keeping_buffer(self) -> (u64, Vec<u8>) {
        (xxh3_64(&self.0), self.0)
    }
}

/// The content hash of an element that is not an event object: its bytes.
pub fn bytes_hash(bytes: &[u8]) -> u64 {
    xxh3_128(bytes) as u64
}

/// One element of a page's `data`.
#[derive(Debug)]
pub enum Item {
    /// An event with a usable id and timestamp.
    Event(RawEvent),
    /// An element that can not be forwarded.
    Malformed(Malformed),
}

impl Item {
    /// The deduplication key.
    pub fn key(&self) -> EventKey {
        match self {
            Item::Event(e) => e.key,
            Item::Malformed(m) => m.key,
        }
    }

    /// The content hash.
    pub fn content(&self) -> u64 {
        match self {
            Item::Event(e) => e.content,
            Item::Malformed(m) => m.content,
        }
    }

    /// `created_at` in epoch milliseconds, when readable.
    pub fn created_ms(&self) -> Option<i64> {
        match self {
            Item::Event(e) => Some(e.created_ms()),
            Item::Malformed(m) => m.created_at.map(|t| t.timestamp_millis()),
        }
    }
}

/// An event with the two fields the cursor needs, plus the rest untouched.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// The id (a numeric id is written in decimal; its key keeps the type).
    pub id: String,
    /// Deduplication key (the id with its JSON type).
    pub key: EventKey,
    /// Hash of the whole event, to tell a reused id from a repeat.
    pub content: u64,
    /// `created_at`, in UTC.
    pub created_at: DateTime<Utc>,
    /// The other fields the canonical event is built from.
    pub fields: Fields,
    /// The event's JSON text exactly as received.
    pub raw: Arc<str>,
    /// Set by the cursor: this id was delivered before with other content.
    pub id_reused: bool,
}

/// The fields of an event besides its id and time, read leniently: a
/// number or boolean becomes its text, an object or array its compact JSON,
/// `null` or absence `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    /// `action`.
    pub action: Option<String>,
    /// `entity_type`.
    pub entity_type: Option<String>,
    /// `entity_id`.
    pub entity_id: Option<String>,
    /// `user_id`.
    pub user_id: Option<String>,
    /// `details`, any JSON value (`Null` when absent).
    pub details: Value,
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
    /// Deduplication key: the id's, or the element's bytes'.
    pub key: EventKey,
    /// Hash of the element.
    pub content: u64,
    /// `created_at`, if one was readable.
    pub created_at: Option<DateTime<Utc>>,
    /// Why it can not be forwarded.
    pub reason: String,
    /// The element's text as received (bytes that are not UTF-8 written as
    /// `\xHH`, which valid JSON can not contain).
    pub raw: Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_id_type() {
        assert_ne!(EventKey::string_id("7"), EventKey::number_id("7"));
        assert_eq!(EventKey::string_id("7"), EventKey::string_id("7"));
        assert_ne!(EventKey::raw(b"7"), EventKey::string_id("7"));
        let k = EventKey::string_id("abc");
        let text = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<EventKey>(&text).unwrap(), k);
    }

    /// The hashes are persisted in the cursor's state: a change to them
    /// would make every event of the lookback window look reused after an
    /// upgrade. Both ways of computing one stay pinned to these values.
    #[test]
    fn content_hashes_are_stable_across_versions() {
        let text = r#"{"id":"a","created_at":"2026-03-01T10:35:39.817Z","n":7,"details":{"ip":"198.51.100.7","x":[true,null]}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let Value::Object(map) = &value else {
            unreachable!()
        };
        let pinned = 0x3521_2352_a686_cc5b;
        assert_eq!(content_hash(&value), pinned, "{:#x}", content_hash(&value));
        assert_eq!(object_hash(map), pinned);
        let mut h = ObjectHasher::new(map.len());
        for (key, item) in map {
            h.key(key);
            match item {
                Value::String(s) => h.string(s),
                Value::Number(n) => h.number(n),
                other => h.value(other),
            }
        }
        assert_eq!(h.finish(), pinned);
        assert_eq!(
            EventKey::string_id("a"),
            EventKey(0x1703_bbee_d501_0d09_ee81_f659_8ff0_6fdd),
            "{:x}",
            EventKey::string_id("a").0
        );
    }

    #[test]
    fn content_hash_ignores_key_order_but_not_values() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":[1,"2"]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "b" : {"x":[1,"2"]}, "a":1 }"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":1,"b":{"x":[1,2]}}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
        let s1: Value = serde_json::from_str(r#"{"a":"bc","d":""}"#).unwrap();
        let s2: Value = serde_json::from_str(r#"{"a":"b","d":"c"}"#).unwrap();
        assert_ne!(content_hash(&s1), content_hash(&s2));
    }
}
