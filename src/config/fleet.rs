//! `[fleet]`: several replicas share the sources through a Kafka consumer
//! group and keep the cursors on a compacted topic (see [`crate::fleet`]).
//! Absent, the forwarder runs alone and keeps its cursors in `[state] dir`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::Problem;
use super::types::duration;

/// `[fleet]` as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    brokers: String,
    #[serde(default = "default_group")]
    group: String,
    #[serde(default = "default_topic")]
    topic: String,
    #[serde(default = "default_state_topic")]
    state_topic: String,
    #[serde(default = "default_partitions")]
    partitions: i32,
    #[serde(default)]
    replication_factor: Option<i32>,
    #[serde(default)]
    replica: Option<String>,
    #[serde(default = "default_session_timeout", deserialize_with = "duration")]
    session_timeout: Duration,
    #[serde(default = "default_drain_timeout", deserialize_with = "duration")]
    drain_timeout: Duration,
    #[serde(default = "default_store_timeout", deserialize_with = "duration")]
    store_timeout: Duration,
    #[serde(default)]
    librdkafka: BTreeMap<String, toml::Value>,
}

fn default_group() -> String {
    "auditfwd".into()
}
fn default_topic() -> String {
    "auditfwd.fleet".into()
}
fn default_state_topic() -> String {
    "auditfwd.state".into()
}
fn default_partitions() -> i32 {
    64
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `[fleet]`, validated.
#[derive(Clone, PartialEq)]
pub struct FleetConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The consumer group every replica joins. Default `auditfwd`.
    pub group: String,
    /// The coordination topic: sources are hashed to its partitions, and
    /// the group gives each partition to one replica. Default
    /// `auditfwd.fleet`.
    pub topic: String,
    /// The compacted topic of cursor states. Default `auditfwd.state`.
    pub state_topic: String,
    /// Partitions of both topics when auditfwd creates them (an existing
    /// topic keeps its own). Default 64: the most replicas that can share
    /// the work.
    pub partitions: i32,
    /// Replication factor when auditfwd creates the topics. Default: the
    /// cluster's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// This replica's id: in the state topic's keys, the `User-Agent` of
    /// its API requests and its logs. Default `{hostname}-{pid}`.
    pub replica: String,
    /// After this long without a heartbeat, a replica's sources go to the
    /// others. Default 10 s.
    pub session_timeout: Duration,
    /// The longest a replica that loses sources waits for them to finish
    /// their batches in flight and checkpoint before it lets go. Default
    /// 30 s.
    pub drain_timeout: Duration,
    /// The longest one read or write of the state topic may take. Default
    /// 30 s.
    pub store_timeout: Duration,
    /// librdkafka properties passed through to every client (SASL, TLS).
    pub librdkafka: BTreeMap<String, String>,
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let librdkafka: BTreeMap<&str, &str> = self
            .librdkafka
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if auditfwd_sink::config::is_secret_property(k) {
                        "***"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("FleetConfig")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("state_topic", &self.state_topic)
            .field("partitions", &self.partitions)
            .field("replica", &self.replica)
            .field("session_timeout", &self.session_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("librdkafka", &librdkafka)
            .finish_non_exhaustive()
    }
}

impl FleetConfig {
    /// The librdkafka properties every fleet client starts from:
    /// `bootstrap.servers`, then the pass-through table.
    pub fn client(&self) -> Vec<(String, String)> {
        let mut props = vec![("bootstrap.servers".to_string(), self.brokers.clone())];
        props.extend(self.librdkafka.clone());
        props
    }
}

/// Properties auditfwd sets itself.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "fleet.brokers"),
    ("metadata.broker.list", "fleet.brokers"),
    ("group.id", "fleet.group"),
    ("session.timeout.ms", "fleet.session_timeout"),
    (
        "partition.assignment.strategy",
        "(cooperative-sticky, always)",
    ),
    ("enable.auto.commit", "(off, always)"),
    ("enable.idempotence", "(on, always)"),
    ("acks", "(all, always)"),
];

/// A topic name Kafka accepts.
fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `{hostname}-{pid}`.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "auditfwd".into());
    format!("{host}-{}", std::process::id())
}

impl RawFleet {
    pub(crate) fn validate(self, problems: &mut Vec<Problem>) -> Option<FleetConfig> {
        let before = problems.len();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem::new(format!("fleet.{key}"), message));
        };
        if self.brokers.trim().is_empty() {
            problem(
                "brokers",
                "is empty; write the Kafka bootstrap servers, e.g. \"kafka-1:9092,kafka-2:9092\""
                    .into(),
            );
        }
        if self.group.trim().is_empty() {
            problem(
                "group",
                "is empty; every replica of one fleet uses the same group id (default \"auditfwd\")"
                    .into(),
            );
        }
        for (key, name) in [("topic", &self.topic), ("state_topic", &self.state_topic)] {
            if !is_topic_name(name) {
                problem(
                    key,
                    format!(
                        "`{name}` is not a Kafka topic name; use letters, digits, `.`, `_` and `-`"
                    ),
                );
            }
        }
        if self.topic == self.state_topic {
            problem(
                "state_topic",
                "is the coordination topic too; give the state its own (compacted) topic".into(),
            );
        }
        if !(1..=10_000).contains(&self.partitions) {
            problem(
                "partitions",
                format!(
                    "{} is out of range; use 1 to 10000 (it bounds how many replicas share the work; default 64)",
                    self.partitions
                ),
            );
        }
        if let Some(rf) = self.replication_factor
            && !(1..=32).contains(&rf)
        {
            problem(
                "replication_factor",
                format!(
                    "{rf} is out of range; use 1 to 32, or leave it out for the cluster's default"
                ),
            );
        }
        let replica = self.replica.unwrap_or_else(default_replica);
        if replica.is_empty()
            || replica.len() > 128
            || !replica
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            problem(
                "replica",
                format!(
                    "`{replica}` is not a replica id; use up to 128 letters, digits, `.`, `_` and `-` (default: hostname-pid)"
                ),
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.session_timeout) {
            problem(
                "session_timeout",
                "is out of range; use 1s to 5m (the broker's group.max.session.timeout.ms may bound it further)".into(),
            );
        }
        if self.drain_timeout < Duration::from_secs(1) {
            problem(
                "drain_timeout",
                "is too short; use at least 1s (a handover waits this long for the batches in flight)".into(),
            );
        }
        if self.store_timeout < Duration::from_secs(1) {
            problem("store_timeout", "is too short; use at least 1s".into());
        }
        let mut librdkafka = BTreeMap::new();
        for (key, value) in self.librdkafka {
            let path = format!("librdkafka.\"{key}\"");
            if let Some((_, by)) = OWNED.iter().find(|(k, _)| *k == key) {
                problem(
                    &path,
                    format!("is set by auditfwd from {by}; remove it here"),
                );
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => {
                    problem(
                        &path,
                        format!(
                            "must be a string, number or boolean, found {}",
                            other.type_str()
                        ),
                    );
                    continue;
                }
            };
            librdkafka.insert(key, text);
        }
        (problems.len() == before).then_some(FleetConfig {
            brokers: self.brokers,
            group: self.group,
            topic: self.topic,
            state_topic: self.state_topic,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            replica,
            session_timeout: self.session_timeout,
            drain_timeout: self.drain_timeout,
            store_timeout: self.store_timeout,
            librdkafka,
        })
    }
}
