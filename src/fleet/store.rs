//! Cursor state on a compacted Kafka topic, for fleet mode: the file
//! store's snapshot-plus-journal carried over to records, fenced by epochs
//! so that a replica that lost a source can not move its cursor back.
//!
//! # Records
//!
//! Every record of a source goes to the state topic's partition
//! [`partition_of`] its name, keyed so that compaction keeps what a load
//! needs and nothing a load must not see:
//!
//! - `{source}/{epoch}/{replica}/snap`: a whole [`CursorState`] (JSON), or
//!   `null` (a tombstone) once a later snapshot or epoch replaced it;
//! - `{source}/{epoch}/{replica}/cp/{seq}`: one [`Checkpoint`], tombstoned
//!   once a snapshot covers it.
//!
//! Keys are unique per write, so compaction never puts an older record in
//! a newer one's place; it only drops what was tombstoned.
//!
//! # Epochs: who owns the cursor
//!
//! A replica that takes a source over ([`StateStore::load`]) reads the
//! partition to its end, takes the chain of the highest `(epoch, replica)`
//! that has a snapshot (its snapshot plus its checkpoints after it, in
//! sequence order), and *claims* it: it writes that state as the snapshot
//! of epoch `highest + 1` under its own replica id, then tombstones the
//! older chains. From then on a load by anyone picks this chain.
//!
//! A replica that was partitioned away and still writes (a zombie) writes
//! under its old epoch: every later load ignores it, so it can not move the
//! cursor back or fork it. What it sent to the sinks meanwhile is sent again
//! by the new owner from the claimed state (duplicates, never a loss: the
//! claimed state is one the zombie had made durable, or an older one). Two
//! replicas claiming at once (a coordinator that briefly assigns a
//! partition twice; tansu does) pick the same epoch number and are told
//! apart by the replica id: the higher one wins for every later load, the
//! other is a zombie from then on.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::cursor::store::{StateStore, StoreError};
use crate::cursor::{Checkpoint, CursorState};

pub use super::partition_of;

/// Who wrote a chain of records: the epoch, then the replica id (the
/// order a load picks the owner by).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// One more than the highest epoch the claimer saw.
    pub epoch: u64,
    /// The claiming replica.
    pub replica: String,
}

/// One record's key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// Part `part` of `parts` of the snapshot at sequence `seq`.
    Snap {
        source: String,
        owner: Owner,
        seq: u64,
        part: u32,
        parts: u32,
    },
    Checkpoint {
        source: String,
        owner: Owner,
        seq: u64,
    },
}

impl Key {
    fn render(&self) -> String {
        match self {
            Key::Snap {
                source,
                owner,
                seq,
                part,
                parts,
            } => format!(
                "{source}/{:020}/{}/snap/{seq:020}/{part}/{parts}",
                owner.epoch, owner.replica
            ),
            Key::Checkpoint { source, owner, seq } => {
                format!(
                    "{source}/{:020}/{}/cp/{seq:020}",
                    owner.epoch, owner.replica
                )
            }
        }
    }

    /// Parses from the right: source names may hold `/`, replica ids not.
    fn parse(text: &str) -> Option<Key> {
        let tokens: Vec<&str> = text.rsplit('/').collect();
        let owner_at = |i: usize| -> Option<(Owner, String)> {
            let replica = tokens.get(i)?.to_string();
            let epoch = tokens.get(i + 1)?.parse().ok()?;
            let source: Vec<&str> = tokens.get(i + 2..)?.iter().rev().copied().collect();
            let source = source.join("/");
            (!source.is_empty()).then_some((Owner { epoch, replica }, source))
        };
        match tokens.as_slice() {
            [parts, part, seq, "snap", ..] => {
                let (owner, source) = owner_at(4)?;
                Some(Key::Snap {
                    source,
                    owner,
                    seq: seq.parse().ok()?,
                    part: part.parse().ok()?,
                    parts: parts.parse().ok()?,
                })
            }
            [seq, "cp", ..] => {
                let (owner, source) = owner_at(2)?;
                Some(Key::Checkpoint {
                    source,
                    owner,
                    seq: seq.parse().ok()?,
                })
            }
            _ => None,
        }
    }

    fn source(&self) -> &str {
        match self {
            Key::Snap { source, .. } | Key::Checkpoint { source, .. } => source,
        }
    }

    fn owner(&self) -> &Owner {
        match self {
            Key::Snap { owner, .. } | Key::Checkpoint { owner, .. } => owner,
        }
    }
}

/// Snapshots are cut in parts of at most this size: Kafka's default
/// largest message is 1 MB, and a cursor holding a day of a busy tenant's
/// ids is larger.
const PART_BYTES: usize = 512 << 10;

/// One write's records not yet acknowledged, and the failures among them.
#[derive(Default)]
struct Pending {
    state: Mutex<(usize, Vec<String>)>,
    done: Condvar,
}

impl Pending {
    fn settle(&self, error: Option<String>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
        if let Some(error) = error {
            state.1.push(error);
        }
        if state.0 == 0 {
            self.done.notify_all();
        }
    }
}

/// Routes each delivery report to the write it belongs to.
struct Reports;

impl ClientContext for Reports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "fleet: state topic: {reason}");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        pending.settle(result.as_ref().err().map(|(e, _)| e.to_string()));
    }
}

/// How to reach the state topic.
#[derive(Debug, Clone)]
pub struct KafkaStoreConfig {
    /// librdkafka properties: `bootstrap.servers` and whatever the cluster
    /// needs (SASL, TLS).
    pub client: HashMap<String, String>,
    /// The compacted state topic.
    pub topic: String,
    /// This replica's id (no `/`).
    pub replica: String,
    /// How long a read or a write may take before the store reports it.
    pub timeout: Duration,
}

/// The state topic as one replica reaches it: one producer (its own
/// threads) shared by the stores of every source the replica owns.
pub struct StateTopic {
    config: KafkaStoreConfig,
    producer: ThreadedProducer<Reports>,
    partitions: i32,
    /// The highest owner of each source seen on the topic so far, kept by
    /// a thread that tails every partition ([`StateTopic::watch`]); `None`
    /// for a topic opened without it (tools, tests of the store).
    claims: Option<Arc<Claims>>,
}

/// The highest owner of each source seen on the state topic.
#[derive(Default)]
struct Claims {
    highest: Mutex<HashMap<String, Owner>>,
    stop: std::sync::atomic::AtomicBool,
}

impl Drop for StateTopic {
    fn drop(&mut self) {
        if let Some(claims) = &self.claims {
            claims
                .stop
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for StateTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTopic")
            .field("topic", &self.config.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl StateTopic {
    /// Connects a producer and reads the topic's partition count.
    pub fn connect(config: KafkaStoreConfig) -> Result<Arc<Self>, StoreError> {
        let err = |action: &'static str| {
            let topic = config.topic.clone();
            move |e: KafkaError| StoreError::Kafka {
                source_name: "*".into(),
                topic,
                action,
                reason: e.to_string(),
            }
        };
        let mut client = ClientConfig::new();
        for (k, v) in &config.client {
            client.set(k, v);
        }
        let producer: ThreadedProducer<Reports> = client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("message.timeout.ms", config.timeout.as_millis().to_string())
            .create_with_context(Reports)
            .map_err(err("connect"))?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&config.topic), config.timeout)
            .map_err(err("read the topic's metadata"))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            return Err(StoreError::Kafka {
                source_name: "*".into(),
                topic: config.topic.clone(),
                action: "find the topic",
                reason:
                    "it has no partitions; create it (compacted) or let `auditfwd run` create it"
                        .into(),
            });
        }
        Ok(Arc::new(Self {
            config,
            producer,
            partitions,
            claims: None,
        }))
    }

    /// [`StateTopic::connect`], plus a thread that tails every partition
    /// and remembers the highest claim of each source: a replica's stores
    /// learn from it, at their next checkpoint, that another replica
    /// claimed their source (see [`KafkaStore`]: they claim it back).
    pub fn watch(config: KafkaStoreConfig) -> Result<Arc<Self>, StoreError> {
        let topic = Self::connect(config)?;
        let mut topic = Arc::into_inner(topic).expect("not shared yet");
        let claims = Arc::new(Claims::default());
        let mut client = ClientConfig::new();
        for (k, v) in &topic.config.client {
            client.set(k, v);
        }
        let fail = |e: KafkaError| StoreError::Kafka {
            source_name: "*".into(),
            topic: topic.config.topic.clone(),
            action: "watch the claims",
            reason: e.to_string(),
        };
        let consumer: BaseConsumer = client
            .set(
                "group.id",
                format!("auditfwd-state-watch-{}", topic.config.replica),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(fail)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..topic.partitions {
            tpl.add_partition_offset(&topic.config.topic, p, Offset::Beginning)
                .map_err(fail)?;
        }
        consumer.assign(&tpl).map_err(fail)?;
        let seen = Arc::clone(&claims);
        std::thread::Builder::new()
            .name("fleet-claims".into())
            .spawn(move || {
                while !seen.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
                        continue;
                    };
                    let Some(key) = message
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(Key::parse)
                    else {
                        continue;
                    };
                    let mut highest = seen.highest.lock().unwrap_or_else(|p| p.into_inner());
                    match highest.get_mut(key.source()) {
                        Some(owner) if *owner >= *key.owner() => {}
                        Some(owner) => *owner = key.owner().clone(),
                        None => {
                            highest.insert(key.source().to_string(), key.owner().clone());
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Kafka {
                source_name: "*".into(),
                topic: topic.config.topic.clone(),
                action: "watch the claims",
                reason: e.to_string(),
            })?;
        topic.claims = Some(claims);
        Ok(Arc::new(topic))
    }

    /// The highest claim of `source` the watch has seen.
    fn highest(&self, source: &str) -> Option<Owner> {
        let claims = self.claims.as_ref()?;
        claims
            .highest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.config.topic
    }
}

/// A source's cursor state on the fleet's state topic (see the module
/// doc). Opened by the replica that was assigned the source.
pub struct KafkaStore {
    source: String,
    topic: Arc<StateTopic>,
    partition: i32,
    /// The chain this store writes: set by `load` (the claim).
    owner: Option<Owner>,
    /// Checkpoints written since the last snapshot (tombstoned by the next).
    journal: Vec<u64>,
    journal_bytes: u64,
    snapshot_bytes: u64,
    /// Keys a snapshot replaces: older chains seen at load (until the
    /// claim), then this chain's previous snapshot.
    stale: Vec<String>,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("source", &self.source)
            .field("topic", &self.topic.config.topic)
            .field("partition", &self.partition)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A snapshot is rewritten once the checkpoints since the last one weigh
/// more than it (and at least this much).
const MIN_COMPACT_BYTES: u64 = 256 << 10;

impl KafkaStore {
    /// Connects to the state topic for `source` with a producer of its
    /// own (tools and tests; a replica shares one, [`KafkaStore::on`]).
    pub fn open(source: &str, config: KafkaStoreConfig) -> Result<Self, StoreError> {
        let topic = StateTopic::connect(config).map_err(|e| match e {
            StoreError::Kafka {
                topic,
                action,
                reason,
                ..
            } => StoreError::Kafka {
                source_name: source.to_string(),
                topic,
                action,
                reason,
            },
            other => other,
        })?;
        Ok(Self::on(source, topic))
    }

    /// The store of `source` on a connected state topic.
    pub fn on(source: &str, topic: Arc<StateTopic>) -> Self {
        Self {
            source: source.to_string(),
            partition: partition_of(source, topic.partitions),
            topic,
            owner: None,
            journal: Vec::new(),
            journal_bytes: 0,
            snapshot_bytes: 0,
            stale: Vec::new(),
        }
    }

    /// The chain this store writes (after `load`).
    pub fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    fn error(&self, action: &'static str, reason: impl ToString) -> StoreError {
        StoreError::Kafka {
            source_name: self.source.clone(),
            topic: self.topic.config.topic.clone(),
            action,
            reason: reason.to_string(),
        }
    }

    /// Every live record of this source's partition, in offset order with
    /// tombstones applied: key → value.
    fn read_partition(&self) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let mut client = ClientConfig::new();
        for (k, v) in &self.topic.config.client {
            client.set(k, v);
        }
        let consumer: BaseConsumer = client
            .set(
                "group.id",
                format!("auditfwd-state-load-{}", self.topic.config.replica),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| self.error("connect", e))?;
        let (low, high) = consumer
            .fetch_watermarks(
                &self.topic.config.topic,
                self.partition,
                self.topic.config.timeout,
            )
            .map_err(|e| self.error("read the partition's offsets", e))?;
        let mut live: HashMap<String, (i64, Vec<u8>)> = HashMap::new();
        if high > low {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic.config.topic, self.partition, Offset::Beginning)
                .map_err(|e| self.error("read the partition", e))?;
            consumer
                .assign(&tpl)
                .map_err(|e| self.error("read the partition", e))?;
            let deadline = std::time::Instant::now() + self.topic.config.timeout;
            loop {
                if std::time::Instant::now() > deadline {
                    return Err(self.error(
                        "read the partition",
                        format!(
                            "did not reach offset {high} within {:?}",
                            self.topic.config.timeout
                        ),
                    ));
                }
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let message = message.map_err(|e| self.error("read the partition", e))?;
                let offset = message.offset();
                if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    match message.payload() {
                        Some(value) => {
                            live.insert(key.to_string(), (offset, value.to_vec()));
                        }
                        None => {
                            live.remove(key);
                        }
                    }
                }
                if offset + 1 >= high {
                    break;
                }
            }
        }
        let mut records: Vec<(i64, Key, Vec<u8>)> = live
            .into_iter()
            .filter_map(|(k, (offset, v))| Some((offset, Key::parse(&k)?, v)))
            .filter(|(_, k, _)| k.source() == self.source)
            .collect();
        records.sort_by_key(|(offset, _, _)| *offset);
        Ok(records.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    /// Sends `records` (`None`: a tombstone) and waits until every one is
    /// acknowledged by the cluster.
    fn write(&self, records: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let pending = Arc::new(Pending::default());
        pending.state.lock().unwrap_or_else(|p| p.into_inner()).0 = records.len();
        for (key, value) in records {
            let mut record =
                BaseRecord::with_opaque_to(&self.topic.config.topic, Arc::clone(&pending))
                    .key(key.as_str())
                    .partition(self.partition);
            if let Some(value) = value {
                record = record.payload(value.as_slice());
            }
            if let Err((e, _)) = self.topic.producer.send(record) {
                pending.settle(Some(e.to_string()));
            }
        }
        let deadline = Instant::now() + self.topic.config.timeout;
        let mut state = pending.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.error(
                    "write",
                    format!("not acknowledged within {:?}", self.topic.config.timeout),
                ));
            }
            state = pending
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(first) = state.1.first() {
            return Err(self.error("write", first));
        }
        Ok(())
    }

    fn owner_or_err(&self) -> Result<Owner, StoreError> {
        self.owner
            .clone()
            .ok_or_else(|| self.error("write", "the store was not loaded (claimed) first"))
    }
}

impl KafkaStore {
    /// The state a load would continue from, without claiming it (for
    /// `auditfwd state show`): `(state, highest epoch seen)`.
    pub fn peek(&mut self) -> Result<(Option<CursorState>, u64), StoreError> {
        self.read_chains()
    }

    /// Claims the source with `state` as its whole history, whatever the
    /// topic holds: `auditfwd state reset|set-since` (every replica
    /// stopped).
    pub fn replace(&mut self, state: &CursorState) -> Result<(), StoreError> {
        let (_, highest) = self.read_chains()?;
        self.owner = Some(Owner {
            epoch: highest + 1,
            replica: self.topic.config.replica.clone(),
        });
        self.snapshot(state)
    }

    /// Reads the partition: the state of the highest chain with a whole
    /// snapshot, and the highest epoch seen. Every key read is remembered
    /// as stale (the next snapshot tombstones them), in place of those
    /// remembered before.
    fn read_chains(&mut self) -> Result<(Option<CursorState>, u64), StoreError> {
        self.stale.clear();
        /// One owner's records: snapshot parts by sequence, checkpoints.
        #[derive(Default)]
        struct Chain {
            snaps: HashMap<u64, Vec<Option<Vec<u8>>>>,
            checkpoints: Vec<(u64, Vec<u8>)>,
        }
        let records = self.read_partition()?;
        let mut chains: HashMap<Owner, Chain> = HashMap::new();
        let mut highest = 0;
        for (key, value) in records {
            highest = highest.max(key.owner().epoch);
            self.stale.push(key.render());
            let chain = chains.entry(key.owner().clone()).or_default();
            match key {
                Key::Snap {
                    seq, part, parts, ..
                } => {
                    let slots = chain
                        .snaps
                        .entry(seq)
                        .or_insert_with(|| vec![None; parts as usize]);
                    if let Some(slot) = slots.get_mut(part as usize) {
                        *slot = Some(value);
                    }
                }
                Key::Checkpoint { seq, .. } => chain.checkpoints.push((seq, value)),
            }
        }
        // The highest owner with a whole snapshot; its newest whole one.
        let mut owners: Vec<&Owner> = chains.keys().collect();
        owners.sort();
        let mut state = None;
        for owner in owners.into_iter().rev() {
            let chain = &chains[owner];
            let Some((_, parts)) = chain
                .snaps
                .iter()
                .filter(|(_, parts)| parts.iter().all(Option::is_some))
                .max_by_key(|(seq, _)| **seq)
            else {
                continue;
            };
            let bytes: Vec<u8> = parts.iter().flatten().flatten().copied().collect();
            let mut loaded: CursorState = serde_json::from_slice(&bytes)
                .map_err(|e| self.error("read the snapshot", format!("{owner:?}: {e}")))?;
            let mut checkpoints = chain.checkpoints.clone();
            checkpoints.sort_by_key(|(seq, _)| *seq);
            for (_, bytes) in checkpoints {
                let checkpoint: Checkpoint = serde_json::from_slice(&bytes)
                    .map_err(|e| self.error("read a checkpoint", format!("{owner:?}: {e}")))?;
                loaded.apply(&checkpoint);
            }
            state = Some(loaded);
            break;
        }
        Ok((state, highest))
    }
}

impl StateStore for KafkaStore {
    /// A later claim by another replica (the group moved the source, or
    /// two replicas held it at once): the one that claimed last runs it.
    fn outclaimed(&self) -> Option<String> {
        let owner = self.owner.as_ref()?;
        let highest = self.topic.highest(&self.source)?;
        (highest > *owner).then(|| {
            format!(
                "replica {} claimed it (epoch {}; this one holds epoch {})",
                highest.replica, highest.epoch, owner.epoch
            )
        })
    }

    fn load(&mut self) -> Result<Option<CursorState>, StoreError> {
        let (state, highest) = self.read_chains()?;
        self.owner = Some(Owner {
            epoch: highest + 1,
            replica: self.topic.config.replica.clone(),
        });
        if let Some(state) = &state {
            // The claim: this chain wins every later load.
            self.snapshot(state)?;
        }
        Ok(state)
    }

    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        self.commit_all(std::slice::from_ref(checkpoint))
    }

    /// One write (one round trip to the cluster) for every checkpoint.
    fn commit_all(&mut self, checkpoints: &[Checkpoint]) -> Result<bool, StoreError> {
        let owner = self.owner_or_err()?;
        let mut records = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            let value = serde_json::to_vec(checkpoint).map_err(|e| self.error("write", e))?;
            let key = Key::Checkpoint {
                source: self.source.clone(),
                owner: owner.clone(),
                seq: checkpoint.seq,
            };
            self.journal_bytes += value.len() as u64;
            records.push((key.render(), Some(value)));
        }
        self.write(&records)?;
        self.journal.extend(checkpoints.iter().map(|c| c.seq));
        Ok(self.journal_bytes > self.snapshot_bytes.max(MIN_COMPACT_BYTES))
    }

    fn snapshot(&mut self, state: &CursorState) -> Result<(), StoreError> {
        let owner = self.owner_or_err()?;
        let journal_owner = owner.clone();
        let value = serde_json::to_vec(state).map_err(|e| self.error("write", e))?;
        let chunks: Vec<&[u8]> = value.chunks(PART_BYTES).collect();
        let parts = chunks.len().max(1) as u32;
        let written: Vec<(String, Option<Vec<u8>>)> = (0..parts)
            .map(|part| {
                let key = Key::Snap {
                    source: self.source.clone(),
                    owner: owner.clone(),
                    seq: state.seq,
                    part,
                    parts,
                };
                let bytes = chunks.get(part as usize).map_or(Vec::new(), |c| c.to_vec());
                (key.render(), Some(bytes))
            })
            .collect();
        self.snapshot_bytes = value.len() as u64;
        // The snapshot first, durable; then what it replaces.
        self.write(&written)?;
        let keep: std::collections::HashSet<&String> = written.iter().map(|(k, _)| k).collect();
        let mut dead: Vec<(String, Option<Vec<u8>>)> = std::mem::take(&mut self.stale)
            .into_iter()
            .filter(|k| !keep.contains(k))
            .map(|k| (k, None))
            .collect();
        dead.extend(self.journal.drain(..).map(|seq| {
            let key = Key::Checkpoint {
                source: self.source.clone(),
                owner: journal_owner.clone(),
                seq,
            };
            (key.render(), None)
        }));
        self.stale = written.into_iter().map(|(k, _)| k).collect();
        self.journal_bytes = 0;
        if !dead.is_empty() {
            self.write(&dead)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order_by_epoch_then_replica() {
        let owner = Owner {
            epoch: 7,
            replica: "r-2".into(),
        };
        for key in [
            Key::Snap {
                source: "acme/eu".into(),
                owner: owner.clone(),
                seq: 9,
                part: 1,
                parts: 3,
            },
            Key::Checkpoint {
                source: "acme".into(),
                owner: owner.clone(),
                seq: 42,
            },
        ] {
            assert_eq!(Key::parse(&key.render()), Some(key));
        }
        assert_eq!(Key::parse("acme/x/r/snap/1/0/1"), None);
        assert_eq!(Key::parse("/00000000000000000001/r/cp/1"), None);
        let a = Owner {
            epoch: 8,
            replica: "a".into(),
        };
        let b = Owner {
            epoch: 8,
            replica: "b".into(),
        };
        assert!(owner < a && a < b);
    }

    #[test]
    fn sources_spread_over_partitions_stably() {
        assert_eq!(partition_of("acme", 64), partition_of("acme", 64));
        let used: std::collections::HashSet<i32> = (0..200)
            .map(|i| partition_of(&format!("t{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
        assert!(used.iter().all(|p| (0..16).contains(p)));
    }
}
