//! Fleet mode: many replicas share the sources through Kafka. Each source
//! belongs to a partition of the coordination topic ([`store::partition_of`]);
//! the consumer group gives each partition to one replica; a replica's
//! cursors live on a compacted state topic ([`store::KafkaStore`]), fenced
//! by epochs so that a replica that lost a source can not move it back.
//!
//! Built so far: the state store and the membership (the group, with a
//! drain before every revocation). Not yet: a `[fleet]` section and the
//! supervisor starting and draining sources as the membership says, state
//! commands against the topic, metrics, the multi-process tests.

pub mod member;
pub mod store;
