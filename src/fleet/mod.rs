//! Fleet mode: many replicas share the sources through Kafka. Each source
//! belongs to a partition of the coordination topic ([`partition_of`]);
//! the consumer group gives each partition to one replica ([`member`]),
//! whose supervisor runs the sources of the partitions it owns
//! ([`Ownership`]); a replica's cursors live on a compacted state topic
//! ([`store::KafkaStore`]), fenced by epochs so that a replica that lost a
//! source can not move it back. [`topics`] creates both topics.
//!
//! This module (the ownership messages and the hash) builds without Kafka;
//! the clients need the `kafka` feature.

use std::collections::BTreeSet;
use std::sync::mpsc as std_mpsc;

#[cfg(feature = "kafka")]
pub mod admin;
#[cfg(feature = "kafka")]
pub mod member;
#[cfg(feature = "kafka")]
pub mod store;
#[cfg(feature = "kafka")]
pub mod topics;

/// The partition of `partitions` that holds `source`'s records (and, in
/// the coordination topic, decides which replica polls it). Every replica
/// computes the same: a stable hash of the name (xxh3), not Rust's
/// randomized one.
pub fn partition_of(source: &str, partitions: i32) -> i32 {
    let hash = xxhash_rust::xxh3::xxh3_64(source.as_bytes());
    (hash % partitions.max(1) as u64) as i32
}

/// librdkafka's log lines, as this daemon's (target `librdkafka`; set
/// `[fleet.librdkafka] debug = "cgrp"` and `RUST_LOG=librdkafka=debug` to
/// watch the group protocol).
#[cfg(feature = "kafka")]
fn forward_log(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", facility, "fleet: {message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", facility, "fleet: {message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "fleet: {message}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility, "fleet: {message}"),
    }
}

/// A change of this replica's partitions.
#[derive(Debug)]
pub enum Ownership {
    /// These partitions are now this replica's: start their sources.
    Assigned(BTreeSet<i32>),
    /// These partitions are being taken away: drain their sources, then
    /// send on `drained` (the rebalance waits for it, up to the drain
    /// timeout).
    Revoked {
        /// The partitions.
        partitions: BTreeSet<i32>,
        /// Answer when their sources are drained and checkpointed.
        drained: std_mpsc::SyncSender<()>,
    },
}

/// A replica that joined its fleet: what the daemon needs from it.
#[cfg(feature = "kafka")]
pub struct Joined {
    /// The membership; dropping it leaves the group (after the sources
    /// drained).
    pub member: member::Member,
    /// Ownership changes.
    pub events: tokio::sync::mpsc::UnboundedReceiver<Ownership>,
    /// The coordination topic's partition count.
    pub partitions: i32,
    /// The state topic, shared by every source's store.
    pub state: std::sync::Arc<store::StateTopic>,
}

/// Why this replica could not join its fleet.
#[cfg(feature = "kafka")]
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Creating the topics failed.
    #[error(transparent)]
    Topics(#[from] topics::TopicError),
    /// The state topic is unreachable.
    #[error(transparent)]
    State(#[from] crate::cursor::store::StoreError),
    /// Joining the group failed.
    #[error(transparent)]
    Member(#[from] member::MemberError),
}

/// Creates the topics if needed, connects to the state topic and joins the
/// group.
#[cfg(feature = "kafka")]
pub async fn join(config: &crate::config::FleetConfig) -> Result<Joined, FleetError> {
    tracing::info!(brokers = %config.brokers, group = %config.group, replica = %config.replica, "fleet: connecting; creating the topics if they are missing");
    topics::ensure(config).await?;
    let store_config = store::KafkaStoreConfig {
        client: config.client().into_iter().collect(),
        topic: config.state_topic.clone(),
        replica: config.replica.clone(),
        timeout: config.store_timeout,
    };
    let member_config = member::MemberConfig {
        client: config.client(),
        group: config.group.clone(),
        topic: config.topic.clone(),
        session_timeout: config.session_timeout,
        drain_timeout: config.drain_timeout,
    };
    let (state, joined) = tokio::task::spawn_blocking(move || {
        let state = store::StateTopic::watch(store_config)?;
        let joined = member::Member::join(&member_config)?;
        Ok::<_, FleetError>((state, joined))
    })
    .await
    .expect("joining the fleet panicked")?;
    let (member, events, partitions) = joined;
    tracing::info!(
        group = %config.group,
        replica = %config.replica,
        partitions,
        "fleet: joined; waiting for the group to assign partitions"
    );
    Ok(Joined {
        member,
        events,
        partitions,
        state,
    })
}
