//! Membership of the fleet: this replica's share of the coordination
//! topic's partitions, from Kafka's consumer-group protocol (cooperative
//! rebalancing), and the handover on every change.
//!
//! A [`Member`] polls a consumer of the coordination topic on a thread of
//! its own and reports every change of its assignment as an [`Ownership`]
//! event. A revocation blocks the rebalance until the receiver says the
//! partitions' sources are drained and checkpointed (or the drain timeout
//! passed): the next owner starts from the state the last one saved, and
//! at most the batches in flight at the handover are sent twice.
//!
//! The group protocol is not trusted for exclusivity: a coordinator may
//! briefly give a partition to two members (tansu does, for about a
//! second). The state store's epochs ([`super::store`]) keep a cursor from
//! moving back whatever the coordinator does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::mpsc;

pub use super::Ownership;

/// Why the membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The consumer could not be created or could not subscribe.
    #[error(
        "fleet: cannot join group `{group}` on topic `{topic}`: {reason}; check [fleet] brokers and that the topic exists"
    )]
    Join {
        /// The group id.
        group: String,
        /// The coordination topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// How to join the fleet.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// librdkafka properties: `bootstrap.servers` and what the cluster
    /// needs (SASL, TLS).
    pub client: Vec<(String, String)>,
    /// The consumer group all replicas share.
    pub group: String,
    /// The coordination topic.
    pub topic: String,
    /// After this long without heartbeats a replica's sources go to the
    /// others.
    pub session_timeout: Duration,
    /// The longest a revocation waits for the sources to drain.
    pub drain_timeout: Duration,
}

struct Context {
    events: mpsc::UnboundedSender<Ownership>,
    drain_timeout: Duration,
}

impl ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "fleet: coordination: {reason}");
    }
}

fn partitions(rebalance: &Rebalance<'_>) -> BTreeSet<i32> {
    match rebalance {
        Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => {
            tpl.elements().iter().map(|e| e.partition()).collect()
        }
        Rebalance::Error(_) => BTreeSet::new(),
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let partitions = partitions(rebalance);
            if partitions.is_empty() {
                return;
            }
            let (drained, done) = std_mpsc::sync_channel(1);
            tracing::info!(
                ?partitions,
                "fleet: partitions revoked; draining their sources"
            );
            if self
                .events
                .send(Ownership::Revoked {
                    partitions,
                    drained,
                })
                .is_ok()
                && done.recv_timeout(self.drain_timeout).is_err()
            {
                tracing::warn!(timeout = ?self.drain_timeout, "fleet: sources did not drain in time; handing over anyway (their batches in flight may be sent twice)");
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => {
                let partitions = partitions(rebalance);
                if !partitions.is_empty() {
                    tracing::info!(?partitions, "fleet: partitions assigned");
                    let _ = self.events.send(Ownership::Assigned(partitions));
                }
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "fleet: rebalance failed; the group retries");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// This replica in the group. Leaves the group (revoking everything it
/// holds, through the same drain) when dropped.
pub struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    /// Joins the group; ownership changes arrive on the returned channel.
    /// Also returns the coordination topic's partition count (sources are
    /// hashed to it).
    pub fn join(
        config: &MemberConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Ownership>, i32), MemberError> {
        let err = |reason: String| MemberError::Join {
            group: config.group.clone(),
            topic: config.topic.clone(),
            reason,
        };
        let (events, receiver) = mpsc::unbounded_channel();
        let mut client = ClientConfig::new();
        for (k, v) in &config.client {
            client.set(k, v);
        }
        if config.client.iter().any(|(k, _)| k == "debug") {
            // librdkafka's debug contexts log at debug level.
            client.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        let session_ms = config.session_timeout.as_millis().max(1000);
        let consumer: BaseConsumer<Context> = client
            .set("group.id", &config.group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 3).to_string())
            // Also the rebalance timeout: how long a rebalance waits for a
            // member that has not rejoined (one frozen, say) before it goes
            // on without it. This thread polls every 100 ms except while a
            // revocation drains, so: the drain, plus a session of margin.
            .set(
                "max.poll.interval.ms",
                (config.drain_timeout.as_millis() + session_ms).to_string(),
            )
            // The topic carries no data; offsets do not matter.
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(Context {
                events,
                drain_timeout: config.drain_timeout,
            })
            .map_err(|e| err(e.to_string()))?;
        let partitions = consumer
            .fetch_metadata(Some(&config.topic), Duration::from_secs(30))
            .map_err(|e| err(e.to_string()))?
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            return Err(err("the coordination topic has no partitions".into()));
        }
        consumer
            .subscribe(&[&config.topic])
            .map_err(|e| err(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fleet-member".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    if let Some(Err(error)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::debug!(%error, "fleet: coordination consumer");
                    }
                }
                // Leaving: the group rebalances at once instead of after
                // the session timeout.
                consumer.unsubscribe();
                for _ in 0..10 {
                    let _ = consumer.poll(Duration::from_millis(50));
                }
            })
            .map_err(|e| err(e.to_string()))?;
        Ok((
            Self {
                stop,
                thread: Some(thread),
            },
            receiver,
            partitions,
        ))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
