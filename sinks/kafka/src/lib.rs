//! The Kafka sink: an idempotent rdkafka producer with `acks=all`.
//!
//! A batch is acknowledged only when **every** message's delivery report
//! succeeded. A message the cluster refuses for its content (too large)
//! is reported as rejected and goes to the dead-letter file; anything else
//! (brokers down, leader changes, timeouts) fails the batch, and the
//! pipeline retries it. Messages of a failed batch that did arrive are
//! remembered and not produced again when the same batch comes back, so a
//! partial failure does not duplicate them.
//!
//! Each distinct topic is checked against broker metadata once: a topic
//! that does not exist (and is not auto-created) is reported as an operator
//! error instead of surfacing as message timeouts.
#![deny(missing_docs)]

mod config;
mod topic;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auditfwd_sink::{Delivered, Record, Rejected, SCHEMA_VERSION, Sink, SinkError};
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

pub use config::{COMPRESSIONS, KafkaSinkConfig, is_secret, toml_value};
pub use topic::TopicTemplate;

/// Keeps librdkafka's recent errors (which name the broker and the cause,
/// e.g. "Connect to ipv4#127.0.0.1:9092 failed: Connection refused") for
/// error messages, and routes its logs to tracing.
#[derive(Clone, Default)]
struct Context {
    recent_errors: Arc<Mutex<Vec<String>>>,
}

/// How many distinct recent librdkafka errors are kept.
const RECENT_ERRORS: usize = 3;

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        let mut recent = self.recent_errors.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|r| r != reason);
        recent.push(reason.to_string());
        if recent.len() > RECENT_ERRORS {
            recent.remove(0);
        }
    }
}

/// Produces records to Kafka.
pub struct KafkaSink {
    name: String,
    config: KafkaSinkConfig,
    producer: FutureProducer<Context>,
    context: Context,
    topic: TopicTemplate,
    sources: Vec<String>,
    /// Topics whose metadata showed they exist.
    known_topics: HashSet<String>,
    /// `(source, id)` of messages of the current batch that the cluster
    /// acknowledged in an attempt that failed as a whole.
    landed: HashSet<(String, String)>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

/// Delivery errors that concern one message's content: it will never be
/// accepted, so it goes to the dead-letter file.
fn refuses_content(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
    )
}

/// Delivery errors an operator must fix (credentials, ACLs).
fn needs_operator(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

fn code_of(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

impl KafkaSink {
    /// Builds the producer (no connection yet). `sources` are the sources
    /// feeding this sink, used to name topics in the health check.
    pub fn new(
        name: impl Into<String>,
        config: KafkaSinkConfig,
        sources: Vec<String>,
    ) -> Result<Self, SinkError> {
        let name = name.into();
        let topic = TopicTemplate::parse(&config.topic)
            .map_err(|e| SinkError::permanent(format!("kafka sink `{name}`: topic {e}")))?;
        let mut client = ClientConfig::new();
        for (key, value) in config.properties() {
            client.set(key, value);
        }
        let context = Context::default();
        let producer: FutureProducer<Context> = client.create_with_context(context.clone()).map_err(|e| {
            SinkError::permanent(format!(
                "kafka sink `{name}`: librdkafka refused the configuration ({e}); check the [sink.librdkafka] table"
            ))
        })?;
        Ok(Self {
            name,
            config,
            producer,
            context,
            topic,
            sources,
            known_topics: HashSet::new(),
            landed: HashSet::new(),
        })
    }

    fn last_broker_error(&self) -> String {
        let recent = self
            .context
            .recent_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if recent.is_empty() {
            String::new()
        } else {
            format!("; librdkafka reports: {}", recent.join("; "))
        }
    }

    /// Fetches metadata (for `topic`, or the cluster) off the async workers.
    async fn metadata(
        &self,
        topic: Option<String>,
        timeout: Duration,
    ) -> Result<Option<usize>, KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(topic.as_deref(), timeout)?;
            Ok(match topic {
                None => Some(metadata.brokers().len()),
                Some(t) => metadata
                    .topics()
                    .iter()
                    .find(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty())
                    .map(|m| m.partitions().len()),
            })
        })
        .await
        .expect("metadata task does not panic")
    }

    fn unreachable(&self, error: &KafkaError) -> SinkError {
        SinkError::transient(format!(
            "kafka sink `{}`: cannot get metadata from brokers {} ({error}{}); check `brokers`, the network, and the [sink.librdkafka] security settings",
            self.name,
            self.config.brokers.join(", "),
            self.last_broker_error()
        ))
    }

    fn missing_topic(&self, topic: &str) -> SinkError {
        SinkError::permanent(format!(
            "kafka sink `{}`: topic `{topic}` does not exist on brokers {} and was not created automatically; create it (e.g. `kafka-topics --create --topic {topic}`) or change `topic`",
            self.name,
            self.config.brokers.join(", ")
        ))
    }

    /// Makes sure `topic` exists before producing to it.
    async fn ensure_topic(&mut self, topic: &str) -> Result<(), SinkError> {
        if self.known_topics.contains(topic) {
            return Ok(());
        }
        match self
            .metadata(Some(topic.to_string()), self.config.healthcheck_timeout)
            .await
        {
            Ok(Some(_)) => {
                self.known_topics.insert(topic.to_string());
                Ok(())
            }
            Ok(None) => Err(self.missing_topic(topic)),
            Err(e) => Err(self.unreachable(&e)),
        }
    }

    fn headers(&self, record: &Record) -> OwnedHeaders {
        let e = &record.event;
        OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "source",
                value: Some(e.source.as_bytes()),
            })
            .insert(Header {
                key: "action",
                value: Some(e.action.as_bytes()),
            })
            .insert(Header {
                key: "format",
                value: Some(record.format.as_bytes()),
            })
            .insert(Header {
                key: "schema_version",
                value: Some(SCHEMA_VERSION.as_bytes()),
            })
            .insert(Header {
                key: "event_id",
                value: Some(e.id.as_bytes()),
            })
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn healthcheck(&mut self) -> Result<(), SinkError> {
        let brokers = match self.metadata(None, self.config.healthcheck_timeout).await {
            Ok(n) => n.unwrap_or(0),
            Err(e) => return Err(self.unreachable(&e)),
        };
        tracing::info!(sink = %self.name, brokers, "kafka cluster reachable");
        if self.topic.per_source_only() {
            for source in self.sources.clone() {
                let topic = self.topic.render_with(&source, "", None);
                self.ensure_topic(&topic).await?;
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        let topics: Vec<String> = batch.iter().map(|r| self.topic.render(&r.event)).collect();
        for topic in topics.iter().collect::<HashSet<_>>() {
            self.ensure_topic(topic).await?;
        }
        // Forget what landed in an earlier attempt of a different batch.
        let keys: HashSet<(String, String)> = batch
            .iter()
            .map(|r| (r.event.source.clone(), r.event.id.clone()))
            .collect();
        self.landed.retain(|k| keys.contains(k));

        let mut pending = Vec::with_capacity(batch.len());
        let mut delivered = Delivered::default();
        let mut failures: Vec<KafkaError> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let event = &record.event;
            if self
                .landed
                .contains(&(event.source.clone(), event.id.clone()))
            {
                continue;
            }
            let key = (self.config.key != "none")
                .then(|| event.field(&self.config.key))
                .flatten();
            let mut message = FutureRecord::to(&topics[index]).payload(&record.payload[..]);
            if let Some(key) = &key {
                message = message.key(key.as_bytes());
            }
            if self.config.headers {
                message = message.headers(self.headers(record));
            }
            loop {
                match self.producer.send_result(message) {
                    Ok(future) => {
                        pending.push((index, future));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: let deliveries drain.
                        message = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => {
                        match code_of(&error) {
                            Some(code) if refuses_content(code) => {
                                delivered.rejected.push(Rejected {
                                    index,
                                    reason: format!("kafka refused the message: {error}"),
                                })
                            }
                            _ => failures.push(error),
                        }
                        break;
                    }
                }
            }
        }
        for (index, future) in pending {
            match future.await {
                Ok(Ok(_)) => {
                    let e = &batch[index].event;
                    self.landed.insert((e.source.clone(), e.id.clone()));
                }
                Ok(Err((error, _))) => match code_of(&error) {
                    Some(code) if refuses_content(code) => delivered.rejected.push(Rejected {
                        index,
                        reason: format!("kafka refused the message: {error}"),
                    }),
                    _ => failures.push(error),
                },
                Err(_) => failures.push(KafkaError::Canceled),
            }
        }
        if failures.is_empty() {
            self.landed.clear();
            delivered.rejected.sort_by_key(|r| r.index);
            return Ok(delivered);
        }
        let first = &failures[0];
        let message = format!(
            "kafka sink `{}`: {} of {} messages not acknowledged by brokers {} ({first}{})",
            self.name,
            failures.len(),
            batch.len(),
            self.config.brokers.join(", "),
            self.last_broker_error()
        );
        Err(match code_of(first) {
            Some(code) if needs_operator(code) => SinkError::permanent(format!(
                "{message}; check the credentials and ACLs in [sink.librdkafka]"
            )),
            _ => SinkError::transient(message),
        })
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        let timeout = self.config.delivery_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .expect("flush task does not panic")
            .map_err(|e| {
                SinkError::transient(format!("kafka sink `{}`: flush failed: {e}", self.name))
            })
    }
}
