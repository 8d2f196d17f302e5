//! The Kafka sink: an idempotent rdkafka producer with `acks=all`.
//!
//! A batch is acknowledged only when **every** message's delivery report
//! succeeded. A message the cluster refuses for its content (too large)
//! is reported as rejected and goes to the dead-letter file; anything else
//! (brokers down, leader changes, timeouts) fails the batch, and the
//! pipeline retries it. Messages of a failed batch that did arrive are
//! remembered (by source, id and payload: that very message is in the
//! cluster) and not produced again when the same batch comes back, so a
//! partial failure does not duplicate them.
//!
//! Batches are pipelined ([`Sink::submit`]): all records of a batch are
//! handed to the producer at once, and the batch resolves when their
//! delivery reports are in, so the next batch is produced while the reports
//! of the last are pending. A batch that needs more than that (a topic to
//! wait for, or records over `max_topics`) is delivered in place, before
//! the next one is taken.
//!
//! Each distinct topic is checked against broker metadata before the first
//! message is produced to it. Records for a topic that does not exist or
//! that this client may not write to are held back (the batch fails with an
//! error naming the topic, so the pipeline retries it and reports the sink
//! degraded) for at most `missing_topic_timeout`, then rejected with the
//! reason: one unexpected topic delays the sources feeding this sink by at
//! most that bound, and nothing is lost (the rules are in `topics.rs`). A
//! template with `{action}` or `{entity_type}` reaches at most `max_topics`
//! distinct topics; records beyond are rejected.
#![deny(missing_docs, unreachable_pub)]

mod config;
mod topic;
mod topics;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditfwd_sink::{
    ConfigProblem, Delivered, Pending, Record, Rejected, SCHEMA_VERSION, Sink, SinkContext,
    SinkError, SinkFactory,
};
use bytes::Bytes;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

pub use config::{
    Compression, KafkaSinkConfig, KeyField, RawKafkaSinkConfig, is_secret, toml_value,
};
pub use topic::{MAX_TOPIC_LEN, TopicTemplate};
use topics::{Topics, Verdict};

/// The Kafka sink's type, `type = "kafka"`, for the host's registry.
pub struct KafkaSinkFactory;

impl SinkFactory for KafkaSinkFactory {
    const TYPE: &'static str = "kafka";
    type Raw = RawKafkaSinkConfig;
    type Config = KafkaSinkConfig;

    fn validate(raw: RawKafkaSinkConfig) -> Result<KafkaSinkConfig, Vec<ConfigProblem>> {
        raw.validate()
    }

    fn build(config: &KafkaSinkConfig, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let sink = KafkaSink::new(context.name(), config.clone(), context.sources().to_vec())?;
        Ok(Box::new(sink))
    }
}

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
    sources: Vec<String>,
    /// Which topics exist, which are missing since when, and the cap.
    topics: Topics,
    /// Messages the cluster acknowledged in an attempt whose batch failed
    /// as a whole (shared with the pending batches, which add theirs).
    landed: Arc<Mutex<HashSet<Landed>>>,
}

/// A message that is in the cluster: its source, event id and payload.
type Landed = (String, String, Bytes);

fn landed_key(record: &Record) -> Landed {
    (
        record.event.source.clone(),
        record.event.id.clone(),
        record.payload.clone(),
    )
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

/// What the error of a batch whose messages were not all acknowledged
/// names.
struct Failed {
    name: String,
    brokers: String,
    context: Context,
}

impl Failed {
    fn error(&self, failures: &[KafkaError], batch_len: usize) -> SinkError {
        let first = &failures[0];
        let recent = self
            .context
            .recent_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let recent = if recent.is_empty() {
            String::new()
        } else {
            format!("; librdkafka reports: {}", recent.join("; "))
        };
        let message = format!(
            "kafka sink `{}`: {} of {batch_len} messages not acknowledged by brokers {} ({first}{recent})",
            self.name,
            failures.len(),
            self.brokers,
        );
        match code_of(first) {
            Some(code) if needs_operator(code) => SinkError::permanent(format!(
                "{message}; check the credentials and ACLs in [sink.librdkafka]"
            )),
            _ => SinkError::transient(message),
        }
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

/// What broker metadata says.
enum TopicMeta {
    /// The cluster, with this many brokers.
    Brokers(usize),
    /// The topic exists and has partitions.
    Exists,
    /// The topic can not be written, and why.
    Absent(RDKafkaErrorCode),
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
        let cap = (!config.topic.per_source_only()).then_some(config.max_topics.get());
        let topics = Topics::new(cap, config.missing_topic_timeout);
        Ok(Self {
            name,
            config,
            producer,
            context,
            sources,
            topics,
            landed: Arc::default(),
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
    ) -> Result<TopicMeta, KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(topic.as_deref(), timeout)?;
            Ok(match topic {
                None => TopicMeta::Brokers(metadata.brokers().len()),
                Some(t) => match metadata.topics().iter().find(|m| m.name() == t) {
                    None => TopicMeta::Absent(RDKafkaErrorCode::UnknownTopicOrPartition),
                    Some(m) => match m.error() {
                        Some(error) => TopicMeta::Absent(error.into()),
                        None if m.partitions().is_empty() => {
                            TopicMeta::Absent(RDKafkaErrorCode::UnknownTopicOrPartition)
                        }
                        None => TopicMeta::Exists,
                    },
                },
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

    /// What is wrong with `topic` and how to fix it.
    fn topic_problem(&self, topic: &str, code: RDKafkaErrorCode) -> String {
        let brokers = self.config.brokers.join(", ");
        match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => format!(
                "topic `{topic}` does not exist on brokers {brokers} and was not created automatically; create it (e.g. `kafka-topics --create --topic {topic}`) or change `topic`"
            ),
            RDKafkaErrorCode::TopicAuthorizationFailed => format!(
                "topic `{topic}` on brokers {brokers} is not authorised for this client ({code}); allow it Describe and Write on the topic in the cluster's ACLs, or change `topic`"
            ),
            _ => format!(
                "topic `{topic}` on brokers {brokers} can not be written ({code}); create it or change `topic`"
            ),
        }
    }

    /// Looks `topic` up for the start-up health check (which does not start
    /// the wait: only deliveries do).
    async fn check_topic(&mut self, topic: &str) -> Result<(), SinkError> {
        match self
            .metadata(Some(topic.to_string()), self.config.healthcheck_timeout)
            .await
        {
            Ok(TopicMeta::Exists) => {
                self.topics.exists(topic);
                Ok(())
            }
            Ok(TopicMeta::Absent(code)) => Err(SinkError::permanent(format!(
                "kafka sink `{}`: {}",
                self.name,
                self.topic_problem(topic, code)
            ))),
            Ok(TopicMeta::Brokers(_)) => unreachable!("asked for a topic"),
            Err(e) => Err(self.unreachable(&e)),
        }
    }

    /// Looks up every topic of a batch the bookkeeping wants looked up;
    /// returns the ones over the cap.
    async fn look_up(&mut self, topics: &[String]) -> Result<HashSet<String>, SinkError> {
        let mut over_cap = HashSet::new();
        let mut seen = HashSet::new();
        for topic in topics {
            if !seen.insert(topic.as_str()) {
                continue;
            }
            if !self.topics.admits(topic) {
                over_cap.insert(topic.clone());
                continue;
            }
            if !self.topics.needs_lookup(topic, Instant::now()) {
                continue;
            }
            match self
                .metadata(Some(topic.clone()), self.config.healthcheck_timeout)
                .await
            {
                Ok(TopicMeta::Exists) => self.topics.exists(topic),
                Ok(TopicMeta::Absent(code)) => self.topics.absent(topic, code, Instant::now()),
                Ok(TopicMeta::Brokers(_)) => unreachable!("asked for a topic"),
                Err(e) => return Err(self.unreachable(&e)),
            }
        }
        Ok(over_cap)
    }

    /// The error that makes the pipeline retry a batch whose records for
    /// unusable topics still wait: it names each topic and says when its
    /// records go to the dead-letter file.
    fn waiting(&self, waiting: &[(String, Instant, RDKafkaErrorCode, usize)]) -> SinkError {
        let now = Instant::now();
        let timeout = humantime::format_duration(self.config.missing_topic_timeout);
        let topics: Vec<String> = waiting
            .iter()
            .map(|(topic, until, code, count)| {
                let left = Duration::from_secs(until.saturating_duration_since(now).as_secs());
                format!(
                    "{}; its {count} record(s) wait {} more, then go to the dead-letter file (missing_topic_timeout = {timeout})",
                    self.topic_problem(topic, *code),
                    humantime::format_duration(left)
                )
            })
            .collect();
        let next = waiting
            .iter()
            .map(|(_, until, _, _)| until.saturating_duration_since(now))
            .min()
            .unwrap_or_default()
            .min(topics::RECHECK_WAITING);
        SinkError::transient(format!("kafka sink `{}`: {}", self.name, topics.join("; ")))
            .with_retry_after(next)
    }

    /// Why a record of an unusable topic is rejected after the wait.
    fn given_up(&self, topic: &str, code: RDKafkaErrorCode) -> String {
        format!(
            "kafka sink `{}`: gave up after missing_topic_timeout = {}: {}",
            self.name,
            humantime::format_duration(self.config.missing_topic_timeout),
            self.topic_problem(topic, code)
        )
    }

    /// Why a record beyond `max_topics` is rejected.
    fn over_cap(&self, topic: &str) -> String {
        format!(
            "kafka sink `{}`: topic `{topic}` would be one more than max_topics = {} distinct topics from the template `{}`; raise `max_topics` if these topics are expected, or use a template with fewer distinct values",
            self.name,
            self.config.max_topics,
            self.config.topic.as_str()
        )
    }

    /// Hands one record to the producer, waiting while its queue is full.
    async fn produce(&self, record: &Record, topic: &str) -> Result<DeliveryFuture, KafkaError> {
        let key = self.config.key.of(&record.event);
        let mut message = FutureRecord::to(topic).payload(&record.payload[..]);
        if let Some(key) = &key {
            message = message.key(key.as_bytes());
        }
        if self.config.headers {
            message = message.headers(self.headers(record));
        }
        loop {
            match self.producer.send_result(message) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: let deliveries drain.
                    message = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Remembers the messages of a failing batch that arrived.
    fn remember(&self, batch: &[Record], arrived: &[usize]) {
        if !arrived.is_empty() {
            let mut landed = self.landed.lock().unwrap_or_else(|p| p.into_inner());
            landed.extend(arrived.iter().map(|&i| landed_key(&batch[i])));
        }
    }

    /// Produces every record of `batch` now and returns what awaits their
    /// delivery reports, unless the batch needs [`Sink::deliver`]'s care:
    /// a topic that is not known to be usable, a record over `max_topics`,
    /// or messages of a failed attempt to skip.
    async fn start(&mut self, batch: &Arc<[Record]>) -> Option<Pending> {
        let topics: Vec<String> = batch
            .iter()
            .map(|r| self.config.topic.render(&r.event))
            .collect();
        match self.look_up(&topics).await {
            Ok(over_cap) if over_cap.is_empty() => {}
            Ok(_) => return None,
            Err(error) => return Some(Box::pin(std::future::ready(Err(error)))),
        }
        let now = Instant::now();
        if !topics
            .iter()
            .all(|t| matches!(self.topics.verdict(t, now), Verdict::Ready))
        {
            return None;
        }
        {
            let landed = self.landed.lock().unwrap_or_else(|p| p.into_inner());
            if !landed.is_empty() && batch.iter().any(|r| landed.contains(&landed_key(r))) {
                return None;
            }
        }
        let mut pending = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        let mut failures = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            match self.produce(record, &topics[index]).await {
                Ok(future) => pending.push((index, future)),
                Err(error) => match code_of(&error) {
                    Some(code) if refuses_content(code) => rejected.push(Rejected {
                        index,
                        reason: format!("kafka refused the message: {error}"),
                    }),
                    // A topic refused while producing fails the batch: its
                    // retry goes through `deliver`, which waits for it.
                    _ => failures.push(error),
                },
            }
        }
        let batch = Arc::clone(batch);
        let landed = Arc::clone(&self.landed);
        let failed = Failed {
            name: self.name.clone(),
            brokers: self.config.brokers.join(", "),
            context: self.context.clone(),
        };
        Some(Box::pin(async move {
            let mut arrived = Vec::with_capacity(pending.len());
            for (index, future) in pending {
                match future.await {
                    Ok(Ok(_)) => arrived.push(index),
                    Ok(Err((error, _))) => match code_of(&error) {
                        Some(code) if refuses_content(code) => rejected.push(Rejected {
                            index,
                            reason: format!("kafka refused the message: {error}"),
                        }),
                        _ => failures.push(error),
                    },
                    Err(_) => failures.push(KafkaError::Canceled),
                }
            }
            if failures.is_empty() {
                rejected.sort_by_key(|r| r.index);
                return Ok(Delivered {
                    rejected,
                    ..Delivered::default()
                });
            }
            landed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(arrived.iter().map(|&i| landed_key(&batch[i])));
            Err(failed.error(&failures, batch.len()))
        }))
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
            Ok(TopicMeta::Brokers(n)) => n,
            Ok(_) => 0,
            Err(e) => return Err(self.unreachable(&e)),
        };
        tracing::info!(sink = %self.name, brokers, "kafka cluster reachable");
        if self.config.topic.per_source_only() {
            for source in self.sources.clone() {
                let topic = self.config.topic.render_with(&source, "", None);
                self.check_topic(&topic).await?;
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        let topics: Vec<String> = batch
            .iter()
            .map(|r| self.config.topic.render(&r.event))
            .collect();
        let over_cap = self.look_up(&topics).await?;
        // What arrived in an earlier attempt of this batch is not sent again.
        let skip: Vec<bool> = {
            let landed = self.landed.lock().unwrap_or_else(|p| p.into_inner());
            if landed.is_empty() {
                Vec::new()
            } else {
                batch
                    .iter()
                    .map(|r| landed.contains(&landed_key(r)))
                    .collect()
            }
        };
        let retrying = !skip.is_empty();
        let mut arrived = Vec::new();

        let mut pending = Vec::with_capacity(batch.len());
        let mut delivered = Delivered::default();
        let mut failures: Vec<KafkaError> = Vec::new();
        // Records held back because their topic is unusable, by index.
        let mut held: Vec<usize> = Vec::new();
        // Records whose topic the broker refused while producing.
        let mut refused: Vec<(usize, RDKafkaErrorCode)> = Vec::new();
        let now = Instant::now();
        for (index, record) in batch.iter().enumerate() {
            if skip.get(index).copied().unwrap_or(false) {
                continue;
            }
            let topic = &topics[index];
            let verdict = if over_cap.contains(topic) {
                Verdict::OverCap
            } else {
                self.topics.verdict(topic, now)
            };
            match verdict {
                Verdict::Ready => {}
                Verdict::Wait { .. } => {
                    held.push(index);
                    continue;
                }
                Verdict::GiveUp(code) => {
                    delivered.rejected.push(Rejected {
                        index,
                        reason: self.given_up(topic, code),
                    });
                    continue;
                }
                Verdict::OverCap => {
                    delivered.rejected.push(Rejected {
                        index,
                        reason: self.over_cap(topic),
                    });
                    continue;
                }
            }
            match self.produce(record, topic).await {
                Ok(future) => pending.push((index, future)),
                Err(error) => match code_of(&error) {
                    Some(code) if refuses_content(code) => delivered.rejected.push(Rejected {
                        index,
                        reason: format!("kafka refused the message: {error}"),
                    }),
                    Some(code) if topics::is_topic_problem(code) => refused.push((index, code)),
                    _ => failures.push(error),
                },
            }
        }
        for (index, future) in pending {
            match future.await {
                Ok(Ok(_)) => arrived.push(index),
                Ok(Err((error, _))) => match code_of(&error) {
                    Some(code) if refuses_content(code) => delivered.rejected.push(Rejected {
                        index,
                        reason: format!("kafka refused the message: {error}"),
                    }),
                    Some(code) if topics::is_topic_problem(code) => refused.push((index, code)),
                    _ => failures.push(error),
                },
                Err(_) => failures.push(KafkaError::Canceled),
            }
        }
        // A topic that metadata showed but the broker refused (deleted since,
        // or Describe allowed but Write not): its records wait like those of
        // a missing topic.
        let now = Instant::now();
        for &(index, code) in &refused {
            self.topics.absent(&topics[index], code, now);
        }
        held.extend(refused.into_iter().map(|(index, _)| index));
        held.sort_unstable();
        // Records still waiting, per topic: (topic, deadline, why, count).
        let mut waiting: Vec<(String, Instant, RDKafkaErrorCode, usize)> = Vec::new();
        for index in held {
            let topic = &topics[index];
            match self.topics.verdict(topic, now) {
                Verdict::Wait { until, code } => match waiting.iter_mut().find(|w| &w.0 == topic) {
                    Some(w) => w.3 += 1,
                    None => waiting.push((topic.clone(), until, code, 1)),
                },
                // The bound passed while this attempt ran.
                Verdict::GiveUp(code) => delivered.rejected.push(Rejected {
                    index,
                    reason: self.given_up(topic, code),
                }),
                Verdict::Ready | Verdict::OverCap => {
                    unreachable!("held records are of absent topics")
                }
            }
        }
        if !failures.is_empty() {
            self.remember(batch, &arrived);
            let failed = Failed {
                name: self.name.clone(),
                brokers: self.config.brokers.join(", "),
                context: self.context.clone(),
            };
            return Err(failed.error(&failures, batch.len()));
        }
        if !waiting.is_empty() {
            self.remember(batch, &arrived);
            return Err(self.waiting(&waiting));
        }
        if retrying {
            let mut landed = self.landed.lock().unwrap_or_else(|p| p.into_inner());
            for record in batch {
                landed.remove(&landed_key(record));
            }
        }
        delivered.rejected.sort_by_key(|r| r.index);
        Ok(delivered)
    }

    async fn submit(&mut self, batch: Arc<[Record]>) -> Pending {
        match self.start(&batch).await {
            Some(pending) => pending,
            None => {
                let result = self.deliver(&batch).await;
                Box::pin(std::future::ready(result))
            }
        }
    }

    /// Waits (up to `delivery_timeout`) for the producer's queue to drain.
    async fn close(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        let timeout = self.config.delivery_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .expect("flush task does not panic")
            .map_err(|e| {
                SinkError::transient(format!(
                    "kafka sink `{}`: the producer's queue did not drain: {e}",
                    self.name
                ))
            })
    }
}
