//! The fleet's two topics: the coordination topic (its partitions are what
//! the consumer group hands out; it carries no records) and the compacted
//! state topic. `auditfwd run` creates them when they are missing, so a new
//! fleet needs nothing but a cluster; an existing topic is used as it is
//! (its partition count wins over `fleet.partitions`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::FleetConfig;

/// Why the topics could not be made ready.
#[derive(Debug, thiserror::Error)]
#[error(
    "fleet: cannot create topic `{topic}` on {brokers}: {reason}; create it yourself ({how}) or give this replica the right to"
)]
pub struct TopicError {
    /// The topic.
    pub topic: String,
    /// `fleet.brokers`.
    pub brokers: String,
    /// What the cluster said.
    pub reason: String,
    /// How to create it by hand.
    pub how: &'static str,
}

/// Creates the coordination and state topics if they do not exist yet.
pub async fn ensure(config: &FleetConfig) -> Result<(), TopicError> {
    let mut client = ClientConfig::new();
    for (k, v) in config.client() {
        client.set(k, v);
    }
    let fail = |topic: &str, how: &'static str, reason: String| TopicError {
        topic: topic.to_string(),
        brokers: config.brokers.clone(),
        reason,
        how,
    };
    let admin: AdminClient<DefaultClientContext> = client
        .create()
        .map_err(|e| fail(&config.topic, "", e.to_string()))?;
    let replication = || TopicReplication::Fixed(config.replication_factor.unwrap_or(-1));
    let topics = [
        (
            NewTopic::new(&config.topic, config.partitions, replication()),
            "any settings: it carries no records",
        ),
        (
            NewTopic::new(&config.state_topic, config.partitions, replication())
                .set("cleanup.policy", "compact"),
            "cleanup.policy=compact",
        ),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(topics.iter().map(|(t, _)| t), &options)
        .await
        .map_err(|e| fail(&config.topic, topics[0].1, e.to_string()))?;
    for (result, (_, how)) in results.into_iter().zip(&topics) {
        match result {
            Ok(topic) => {
                tracing::info!(%topic, partitions = config.partitions, "fleet: topic created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(fail(&topic, how, code.to_string())),
        }
    }
    Ok(())
}
