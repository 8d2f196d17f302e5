//! The `[[sink]] type = "kafka"` table: [`RawKafkaSinkConfig`] as written,
//! validated without I/O into [`KafkaSinkConfig`], with the topic template
//! parsed once ([`TopicTemplate`]) and the key a [`KeyField`]. Settings
//! that would break the delivery contract are refused unless an explicit
//! `unsafe_allow_*` flag says the operator means it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use auditfwd_sink::config::duration;
use auditfwd_sink::{ConfigProblem, Event, Field};
use serde::Deserialize;

use crate::topic::TopicTemplate;

/// A Kafka sink's table as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSinkConfig {
    /// Bootstrap brokers, `host:port`. Required.
    pub brokers: Vec<String>,
    /// Topic template; `{source}`, `{action}` and `{entity_type}` are
    /// replaced per event (characters Kafka does not allow become `_`).
    /// Default `audit.{source}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The canonical field used as message key: `id` (default), `source`,
    /// `action`, `entity_type`, `entity_id`, `user_id`, `created_at`, or
    /// `none` for no key.
    #[serde(default = "default_key")]
    pub key: String,
    /// Add headers `source`, `action`, `format`, `schema_version` and
    /// `event_id` to every message. Default true.
    #[serde(default = "default_true")]
    pub headers: bool,
    /// `none`, `gzip`, `snappy`, `lz4` (default) or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// How long librdkafka keeps retrying a message before the batch is
    /// failed and retried by auditfwd (`message.timeout.ms`). Default 120s.
    #[serde(default = "default_delivery_timeout", deserialize_with = "duration")]
    pub delivery_timeout: Duration,
    /// How long the start-up health check waits for broker metadata.
    /// Default 10s.
    #[serde(default = "default_healthcheck_timeout", deserialize_with = "duration")]
    pub healthcheck_timeout: Duration,
    /// How long records for a topic that does not exist or that this client
    /// may not write to are held back (the batch is retried and the sink's
    /// health names the topic) before they go to the dead-letter file, so
    /// that one unexpected topic can not stall the sources feeding this sink
    /// for longer. Default 5m.
    #[serde(
        default = "default_missing_topic_timeout",
        deserialize_with = "duration"
    )]
    pub missing_topic_timeout: Duration,
    /// How many distinct topics a template with `{action}` or
    /// `{entity_type}` may produce to since start; records that would need
    /// one more go to the dead-letter file. Bounds what API data can do to
    /// the cluster (topics auto-created by hostile actions). Default 100.
    #[serde(default = "default_max_topics")]
    pub max_topics: usize,
    /// librdkafka properties passed through verbatim (SASL, SSL, batching),
    /// e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, toml_value::Scalar>,
    /// Permit `acks` other than `all`: a broker failure can then lose
    /// acknowledged events. Default false.
    #[serde(default)]
    pub unsafe_allow_weak_acks: bool,
    /// Permit `enable.idempotence = false`: producer retries can then
    /// duplicate or reorder events. Default false.
    #[serde(default)]
    pub unsafe_allow_non_idempotent: bool,
}

/// A validated Kafka sink config (see [`RawKafkaSinkConfig`] for each
/// key).
#[derive(Clone)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port`, at least one.
    pub brokers: Vec<String>,
    /// Where each event goes.
    pub topic: TopicTemplate,
    /// The message key.
    pub key: KeyField,
    /// Whether messages carry the auditfwd headers.
    pub headers: bool,
    /// The producer's compression codec.
    pub compression: Compression,
    /// librdkafka's `message.timeout.ms`.
    pub delivery_timeout: Duration,
    /// How long metadata lookups wait.
    pub healthcheck_timeout: Duration,
    /// How long records of an unusable topic are held back.
    pub missing_topic_timeout: Duration,
    /// Most distinct topics a template with `{action}` or `{entity_type}`
    /// produces to.
    pub max_topics: NonZeroUsize,
    /// librdkafka properties passed through, checked against the contract.
    pub librdkafka: BTreeMap<String, toml_value::Scalar>,
}

/// What keys each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    /// A canonical field of the event (absent values: no key).
    Field(Field),
    /// No key (`key = "none"`).
    None,
}

impl KeyField {
    /// Parses `none` or a canonical field name.
    pub fn parse(key: &str) -> Result<Self, String> {
        match key {
            "none" => Ok(KeyField::None),
            _ => Field::parse(key).map(KeyField::Field).ok_or_else(|| {
                format!(
                    "`{key}` is not a canonical field; use one of: {}, none",
                    Field::names()
                )
            }),
        }
    }

    /// The key of `event`'s message, if any.
    pub fn of<'a>(&self, event: &'a Event) -> Option<Cow<'a, str>> {
        match self {
            KeyField::Field(field) => event.field(*field),
            KeyField::None => None,
        }
    }
}

/// A compression codec librdkafka is built with here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `none`.
    None,
    /// `gzip`.
    Gzip,
    /// `snappy`.
    Snappy,
    /// `lz4`, the default.
    Lz4,
    /// `zstd`.
    Zstd,
}

impl Compression {
    /// Every codec, in the order messages list them.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Its name, as `compression` and librdkafka's `compression.type` write it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses a codec name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                format!(
                    "`{name}` is not supported; use one of: {}",
                    Compression::ALL.map(Compression::name).join(", ")
                )
            })
    }
}

/// A scalar TOML value for librdkafka (strings, integers, booleans).
pub mod toml_value {
    use serde::Deserialize;

    /// What librdkafka properties may be written as.
    #[derive(Clone, Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    pub enum Scalar {
        /// `"SASL_SSL"`
        String(String),
        /// `5`
        Integer(i64),
        /// `true`
        Bool(bool),
        /// `0.5`
        Float(f64),
    }

    impl Scalar {
        /// The value as librdkafka expects it.
        pub fn as_property(&self) -> String {
            match self {
                Scalar::String(s) => s.clone(),
                Scalar::Integer(i) => i.to_string(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Float(f) => f.to_string(),
            }
        }
    }
}

fn default_topic() -> String {
    "audit.{source}".into()
}
fn default_key() -> String {
    "id".into()
}
fn default_true() -> bool {
    true
}
fn default_compression() -> String {
    "lz4".into()
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_healthcheck_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_missing_topic_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_topics() -> usize {
    100
}

/// Properties auditfwd sets from its own keys; setting them in the
/// pass-through table would be ambiguous.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("message.timeout.ms", "delivery_timeout"),
    ("delivery.timeout.ms", "delivery_timeout"),
];

impl RawKafkaSinkConfig {
    /// A table for `brokers` with every other setting at its default.
    pub fn new(brokers: &[&str]) -> Self {
        Self {
            brokers: brokers.iter().map(|b| b.to_string()).collect(),
            topic: default_topic(),
            key: default_key(),
            headers: true,
            compression: default_compression(),
            delivery_timeout: default_delivery_timeout(),
            healthcheck_timeout: default_healthcheck_timeout(),
            missing_topic_timeout: default_missing_topic_timeout(),
            max_topics: default_max_topics(),
            librdkafka: BTreeMap::new(),
            unsafe_allow_weak_acks: false,
            unsafe_allow_non_idempotent: false,
        }
    }

    /// The validated config, or every problem in this table, without
    /// touching the network.
    pub fn validate(self) -> Result<KafkaSinkConfig, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        if self.brokers.is_empty() {
            problems.push(ConfigProblem::new(
                "brokers",
                "is empty; list at least one broker as \"host:port\"",
            ));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            let valid = b
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                problems.push(ConfigProblem::new(
                    format!("brokers[{i}]"),
                    format!("`{b}` is not \"host:port\""),
                ));
            }
        }
        let topic = TopicTemplate::parse(&self.topic)
            .map_err(|e| problems.push(ConfigProblem::new("topic", e)));
        let key =
            KeyField::parse(&self.key).map_err(|e| problems.push(ConfigProblem::new("key", e)));
        let compression = Compression::parse(&self.compression)
            .map_err(|e| problems.push(ConfigProblem::new("compression", e)));
        if self.delivery_timeout < Duration::from_secs(1) {
            problems.push(ConfigProblem::new(
                "delivery_timeout",
                "must be at least 1s",
            ));
        }
        if self.missing_topic_timeout < Duration::from_secs(1) {
            problems.push(ConfigProblem::new(
                "missing_topic_timeout",
                "must be at least 1s (a topic that was just created can take a moment to show in metadata)",
            ));
        }
        let max_topics = NonZeroUsize::new(self.max_topics);
        if max_topics.is_none() {
            problems.push(ConfigProblem::new(
                "max_topics",
                "must be at least 1; it caps the distinct topics a template with {action} or {entity_type} produces to",
            ));
        }
        for (key, value) in &self.librdkafka {
            let path = format!("librdkafka.\"{key}\"");
            if let Some((_, ours)) = OWNED.iter().find(|(k, _)| k == key) {
                problems.push(ConfigProblem::new(
                    path.clone(),
                    format!("is set by auditfwd from `{ours}`; set that instead"),
                ));
            }
            let v = value.as_property().to_ascii_lowercase();
            match key.as_str() {
                "acks" | "request.required.acks" if !matches!(v.as_str(), "all" | "-1") && !self.unsafe_allow_weak_acks => {
                    problems.push(ConfigProblem::new(
                        path,
                        format!(
                            "acks = {v} lets the broker acknowledge events it can still lose; auditfwd needs acks = all. Set unsafe_allow_weak_acks = true to accept the risk"
                        ),
                    ))
                }
                "enable.idempotence" if v == "false" && !self.unsafe_allow_non_idempotent => problems.push(ConfigProblem::new(
                    path,
                    "a non-idempotent producer can duplicate or reorder events when it retries. Set unsafe_allow_non_idempotent = true to accept the risk",
                )),
                "delivery.report.only.error" if v == "true" => problems.push(ConfigProblem::new(
                    path,
                    "auditfwd acknowledges a batch only from successful delivery reports; this setting hides them",
                )),
                _ => {}
            }
        }
        match (topic, key, compression, max_topics) {
            (Ok(topic), Ok(key), Ok(compression), Some(max_topics)) if problems.is_empty() => {
                Ok(KafkaSinkConfig {
                    brokers: self.brokers,
                    topic,
                    key,
                    headers: self.headers,
                    compression,
                    delivery_timeout: self.delivery_timeout,
                    healthcheck_timeout: self.healthcheck_timeout,
                    missing_topic_timeout: self.missing_topic_timeout,
                    max_topics,
                    librdkafka: self.librdkafka,
                })
            }
            _ => Err(problems),
        }
    }
}

impl KafkaSinkConfig {
    /// The librdkafka producer properties, auditfwd's first, then the
    /// pass-through table.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut props: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.brokers.join(",")),
            ("client.id".into(), "auditfwd".into()),
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            ("compression.type".into(), self.compression.name().into()),
            (
                "message.timeout.ms".into(),
                self.delivery_timeout.as_millis().to_string(),
            ),
            // auditfwd hands over whole batches and waits for them; lingering
            // would only add latency to every batch (measured: 3x slower at 5ms).
            ("linger.ms".into(), "0".into()),
        ];
        for (k, v) in &self.librdkafka {
            props.push((k.clone(), v.as_property()));
        }
        props
    }
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret(key: &str) -> bool {
    auditfwd_sink::config::is_secret_property(key)
}

/// The pass-through table with secret values as `***`, for `Debug`.
fn redacted(librdkafka: &BTreeMap<String, toml_value::Scalar>) -> BTreeMap<&str, String> {
    librdkafka
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if is_secret(k) {
                    "***".to_string()
                } else {
                    v.as_property()
                },
            )
        })
        .collect()
}

impl fmt::Debug for RawKafkaSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawKafkaSinkConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("headers", &self.headers)
            .field("compression", &self.compression)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("healthcheck_timeout", &self.healthcheck_timeout)
            .field("missing_topic_timeout", &self.missing_topic_timeout)
            .field("max_topics", &self.max_topics)
            .field("librdkafka", &redacted(&self.librdkafka))
            .field("unsafe_allow_weak_acks", &self.unsafe_allow_weak_acks)
            .field(
                "unsafe_allow_non_idempotent",
                &self.unsafe_allow_non_idempotent,
            )
            .finish()
    }
}

impl fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSinkConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic.as_str())
            .field("key", &self.key)
            .field("headers", &self.headers)
            .field("compression", &self.compression)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("healthcheck_timeout", &self.healthcheck_timeout)
            .field("missing_topic_timeout", &self.missing_topic_timeout)
            .field("max_topics", &self.max_topics)
            .field("librdkafka", &redacted(&self.librdkafka))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use auditfwd_sink::testing::problem_keys;

    use super::*;

    fn parse(text: &str) -> RawKafkaSinkConfig {
        toml::from_str(text).unwrap()
    }

    /// The problems `validate` finds in `text`.
    fn problems(text: &str) -> Vec<ConfigProblem> {
        parse(text).validate().unwrap_err()
    }

    #[test]
    fn defaults_are_safe() {
        let c = parse("brokers = [\"k1:9092\", \"k2:9092\"]")
            .validate()
            .unwrap();
        assert_eq!(c.key, KeyField::Field(Field::Id));
        assert_eq!(c.topic.as_str(), "audit.{source}");
        let props = c.properties();
        for (k, v) in [
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("bootstrap.servers", "k1:9092,k2:9092"),
            ("compression.type", "lz4"),
        ] {
            assert!(props.contains(&(k.to_string(), v.to_string())), "{props:?}");
        }
    }

    #[test]
    fn contract_breaking_settings_need_an_explicit_flag() {
        let text = "brokers = [\"k:9092\"]\n[librdkafka]\nacks = 1\n\"enable.idempotence\" = false\n\"delivery.report.only.error\" = true\n\"bootstrap.servers\" = \"x:1\"\n";
        assert_eq!(
            problem_keys(&problems(text)),
            [
                "librdkafka.\"acks\"",
                "librdkafka.\"bootstrap.servers\"",
                "librdkafka.\"delivery.report.only.error\"",
                "librdkafka.\"enable.idempotence\""
            ]
        );
        let allowed =
            format!("unsafe_allow_weak_acks = true\nunsafe_allow_non_idempotent = true\n{text}");
        assert_eq!(
            problem_keys(&problems(&allowed)),
            [
                "librdkafka.\"bootstrap.servers\"",
                "librdkafka.\"delivery.report.only.error\""
            ]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let found = parse(
            "brokers = [\"nohost\"]\ntopic = \"audit.{tenant}\"\nkey = \"email\"\ncompression = \"brotli\"",
        )
        .validate()
        .unwrap_err();
        assert_eq!(
            problem_keys(&found),
            ["brokers[0]", "topic", "key", "compression"]
        );
        assert_eq!(
            found[2].message,
            "`email` is not a canonical field; use one of: id, source, action, entity_type, entity_id, user_id, created_at, none"
        );
        assert_eq!(
            found[3].message,
            "`brotli` is not supported; use one of: none, gzip, snappy, lz4, zstd"
        );
    }

    #[test]
    fn keys_name_a_field_or_none() {
        let event = &auditfwd_sink::testing::sample_events("acme", 1)[0];
        assert_eq!(KeyField::parse("none").unwrap().of(event), None);
        assert_eq!(
            KeyField::parse("user_id").unwrap().of(event).as_deref(),
            Some("usr-0")
        );
        assert_eq!(
            KeyField::parse("created_at").unwrap().of(event).as_deref(),
            Some("2026-02-02T02:40:00.000Z")
        );
    }

    #[test]
    fn topic_bounds_have_safe_defaults_and_are_checked_together() {
        let c = parse("brokers = [\"k:9092\"]").validate().unwrap();
        assert_eq!(c.missing_topic_timeout, Duration::from_secs(300));
        assert_eq!(c.max_topics.get(), 100);
        assert_eq!(
            problem_keys(&problems(
                "brokers = [\"k:9092\"]\nmissing_topic_timeout = \"500ms\"\nmax_topics = 0\ndelivery_timeout = \"0s\""
            )),
            ["delivery_timeout", "missing_topic_timeout", "max_topics"]
        );
        let bad = toml::from_str::<RawKafkaSinkConfig>(
            "brokers = [\"k:9092\"]\nmissing_topic_timeout = \"soon\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("`soon` is not a duration (")
                && bad.contains("write it like \"500ms\", \"30s\" or \"10m\""),
            "{bad}"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let raw = parse(
            "brokers = [\"k:9092\"]\n[librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"sasl.username\" = \"svc\"",
        );
        let debug = format!("{raw:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("svc"),
            "{debug}"
        );
        let debug = format!("{:?}", raw.validate().unwrap());
        assert!(
            !debug.contains("hunter2") && debug.contains("svc"),
            "{debug}"
        );
    }
}
