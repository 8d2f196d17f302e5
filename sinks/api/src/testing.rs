//! Test doubles for the sink contract and a conformance check every sink's
//! tests run. Enabled by the `testing` feature.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use tokio::sync::Semaphore;

use serde::de::DeserializeOwned;

use crate::{
    ConfigProblem, Delivered, Event, Pending, RawConfig, Record, Severity, Sink, SinkError,
};

/// Events with hostile strings in every field a sink might put on the wire:
/// newlines, CR, NUL, quotes, `|`, `=`, `]`, a forged syslog header and
/// non-ASCII text.
pub fn hostile_events(source: &str) -> Vec<Event> {
    let nasty = [
        "line1\nline2",
        "cr\rlf\r\n<13>1 2026-01-01T00:00:00Z forged host app - - - injected",
        "nul\0byte",
        "quote\" back\\slash ]bracket",
        "pipe|equals=caret^",
        "ünïcödé ✓ 日本",
        "\u{1b}[31mansi\u{7f}",
    ];
    nasty
        .iter()
        .enumerate()
        .map(|(i, s)| Event {
            source: source.to_string(),
            id: format!("hostile-{i}"),
            action: s.to_string(),
            entity_type: Some(s.to_string()),
            entity_id: Some(s.to_string()),
            user_id: Some(s.to_string()),
            details: serde_json::json!({ "note": s, *s: [s] }),
            created_at: Utc
                .timestamp_millis_opt(1_770_000_000_000 + i as i64)
                .unwrap(),
            received_at: Utc.timestamp_millis_opt(1_770_000_000_500).unwrap(),
            id_reused: false,
            user: None,
            raw: Arc::from(
                serde_json::json!({ "id": format!("hostile-{i}"), "action": s }).to_string(),
            ),
        })
        .collect()
}

/// `n` ordinary events with ids `evt-0..n`.
pub fn sample_events(source: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            source: source.to_string(),
            id: format!("evt-{i}"),
            action: if i % 2 == 0 {
                "USER_LOGIN"
            } else {
                "CANDIDATE_DELETED"
            }
            .to_string(),
            entity_type: Some("user".into()),
            entity_id: Some(format!("ent-{i}")),
            user_id: Some(format!("usr-{}", i % 7)),
            details: serde_json::json!({ "ip": "192.0.2.1" }),
            created_at: Utc
                .timestamp_millis_opt(1_770_000_000_000 + i as i64)
                .unwrap(),
            received_at: Utc.timestamp_millis_opt(1_770_000_100_000).unwrap(),
            id_reused: false,
            user: None,
            raw: Arc::from(format!("{{\"id\":\"evt-{i}\"}}")),
        })
        .collect()
}

/// Wraps events as records whose payload is the whole event as JSON (the
/// canonical serialization, as the `json` format would encode it), with
/// informational severity.
pub fn records(events: Vec<Event>) -> Vec<Record> {
    events
        .into_iter()
        .map(|e| Record {
            payload: Bytes::from(serde_json::to_vec(&e).expect("event serializes")),
            event: Arc::new(e),
            severity: Severity::Informational,
            format: "json",
        })
        .collect()
}

/// The keys of `problems`, in order: what a config test checks after
/// `validate` refused a config.
pub fn problem_keys<'a>(problems: impl IntoIterator<Item = &'a ConfigProblem>) -> Vec<&'a str> {
    problems.into_iter().map(|p| p.key.as_str()).collect()
}

/// A sink table written as JSON, for tests of factories and registries
/// (auditfwd's own tables are TOML, and its loader reports every refused
/// key; this reports serde's first error).
pub struct JsonTable {
    path: String,
    value: serde_json::Value,
}

impl JsonTable {
    /// The table `value` (the sink's own keys), found at `path`.
    pub fn new(path: impl Into<String>, value: serde_json::Value) -> Self {
        Self {
            path: path.into(),
            value,
        }
    }
}

impl RawConfig for JsonTable {
    fn path(&self) -> &str {
        &self.path
    }

    fn deserialize<T: DeserializeOwned>(
        self,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<(T, bool)> {
        match serde_json::from_value(self.value) {
            Ok(value) => Some((value, true)),
            Err(e) => {
                problems.push(ConfigProblem::new(self.path, e.to_string()));
                None
            }
        }
    }
}

/// Records everything delivered to it; clones share the store.
#[derive(Clone, Default)]
pub struct MemorySink {
    name: String,
    store: Arc<Mutex<Vec<Record>>>,
}

impl MemorySink {
    /// A memory sink called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            store: Arc::default(),
        }
    }

    /// Everything acknowledged so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.store.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        self.store.lock().unwrap().extend_from_slice(batch);
        Ok(Delivered::default())
    }
}

/// Fails the first `failures` deliveries with a transient error, then
/// behaves like its inner [`MemorySink`].
pub struct FlakySink {
    inner: MemorySink,
    failures: usize,
}

impl FlakySink {
    /// Fails `failures` times, then stores into `inner`.
    pub fn new(inner: MemorySink, failures: usize) -> Self {
        Self { inner, failures }
    }
}

#[async_trait]
impl Sink for FlakySink {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(SinkError::transient("flaky sink refuses this batch"));
        }
        self.inner.deliver(batch).await
    }
}

/// Blocks every delivery until a permit is released through its gate: a
/// sink that is down or stalled, for backpressure tests.
pub struct GateSink {
    inner: MemorySink,
    gate: Arc<Semaphore>,
}

impl GateSink {
    /// A closed gate in front of `inner`; release batches with
    /// `gate.add_permits(n)`.
    pub fn new(inner: MemorySink) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (
            Self {
                inner,
                gate: gate.clone(),
            },
            gate,
        )
    }
}

/// Waits for a permit of `gate` and uses it up.
async fn pass(gate: &Semaphore) {
    gate.acquire().await.expect("gate never closes").forget();
}

#[async_trait]
impl Sink for GateSink {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        pass(&self.gate).await;
        self.inner.deliver(batch).await
    }
}

/// Takes batches ahead ([`Sink::submit`]): records each as submitted at
/// once, and acknowledges it (storing it into its inner [`MemorySink`], in
/// the background like a remote destination) only when its gate lets one
/// batch through, so a test sees how many
/// batches a source keeps in flight. Submissions listed in `fail_once`
/// (0-based, in submission order) fail once after passing the gate; their
/// retry ([`Sink::deliver`]) waits for a permit of the retry gate.
pub struct HeldSink {
    inner: MemorySink,
    gate: Arc<Semaphore>,
    retry_gate: Arc<Semaphore>,
    submitted: Arc<Mutex<Vec<usize>>>,
    fail_once: Vec<usize>,
    worker: Option<tokio::sync::mpsc::UnboundedSender<Work>>,
}

/// The handles of a [`HeldSink`]: its gates and what was submitted.
#[derive(Clone)]
pub struct HeldSinkHandles {
    /// Lets batches be acknowledged, one per permit.
    pub gate: Arc<Semaphore>,
    /// Lets failed batches be delivered again, one per permit.
    pub retry_gate: Arc<Semaphore>,
    submitted: Arc<Mutex<Vec<usize>>>,
}

impl HeldSinkHandles {
    /// The sizes of the batches submitted so far, in order.
    pub fn submitted(&self) -> Vec<usize> {
        self.submitted.lock().unwrap().clone()
    }
}

impl HeldSink {
    /// Closed gates in front of `inner`.
    pub fn new(inner: MemorySink, fail_once: Vec<usize>) -> (Self, HeldSinkHandles) {
        let handles = HeldSinkHandles {
            gate: Arc::new(Semaphore::new(0)),
            retry_gate: Arc::new(Semaphore::new(0)),
            submitted: Arc::default(),
        };
        (
            Self {
                inner,
                gate: handles.gate.clone(),
                retry_gate: handles.retry_gate.clone(),
                submitted: handles.submitted.clone(),
                fail_once,
                worker: None,
            },
            handles,
        )
    }
}

#[async_trait]
impl Sink for HeldSink {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        pass(&self.retry_gate).await;
        self.inner.deliver(batch).await
    }

    async fn submit(&mut self, batch: Arc<[Record]>) -> Pending {
        let number = {
            let mut submitted = self.submitted.lock().unwrap();
            submitted.push(batch.len());
            submitted.len() - 1
        };
        let fails = self.fail_once.contains(&number);
        // The destination goes on by itself, in submission order, whether
        // or not anyone waits for its answers yet.
        let worker = self.worker.get_or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Work>();
            let (gate, store) = (self.gate.clone(), self.inner.store.clone());
            tokio::spawn(async move {
                while let Some((batch, fails, reply)) = rx.recv().await {
                    pass(&gate).await;
                    let result = if fails {
                        Err(SinkError::transient("held sink fails this batch once"))
                    } else {
                        store.lock().unwrap().extend_from_slice(&batch);
                        Ok(Delivered::default())
                    };
                    let _ = reply.send(result);
                }
            });
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = worker.send((batch, fails, reply));
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(SinkError::transient("held sink stopped")))
        })
    }
}

/// A batch for the [`HeldSink`]'s destination: the records, whether it
/// fails, where its answer goes.
type Work = (
    Arc<[Record]>,
    bool,
    tokio::sync::oneshot::Sender<Result<Delivered, SinkError>>,
);

/// The checks every sink passes, whatever its destination: an empty batch,
/// hostile content and a larger batch are acknowledged without error or
/// panic, within `timeout` each, and so are two batches submitted before
/// either is awaited; `close` and `reopen` succeed afterwards,
/// and the sink delivers again after them.
/// What arrived at the destination is each sink's own test to verify.
pub async fn conformance<S: Sink + ?Sized>(sink: &mut S, timeout: Duration) {
    let hostile = records(hostile_events("conformance"));
    let many = records(sample_events("conformance", 500));
    for (what, batch) in [
        ("empty", &[][..]),
        ("hostile", &hostile[..]),
        ("500 records", &many[..]),
    ] {
        let delivered = tokio::time::timeout(timeout, sink.deliver(batch))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: {what} batch not acknowledged within {timeout:?}",
                    sink.name()
                )
            })
            .unwrap_or_else(|e| panic!("{}: {what} batch failed: {e}", sink.name()));
        assert!(
            delivered.rejected.is_empty(),
            "{}: {what} batch had rejections: {:?}",
            sink.name(),
            delivered.rejected
        );
    }
    // Two batches submitted before either is awaited (as the pipeline
    // does): both are acknowledged, in order.
    let first = sink
        .submit(Arc::from(records(sample_events("conformance", 50))))
        .await;
    let second = sink
        .submit(Arc::from(records(sample_events("conformance", 5))))
        .await;
    for (what, pending) in [("first submitted", first), ("second submitted", second)] {
        let delivered = tokio::time::timeout(timeout, pending)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: {what} batch not acknowledged within {timeout:?}",
                    sink.name()
                )
            })
            .unwrap_or_else(|e| panic!("{}: {what} batch failed: {e}", sink.name()));
        assert!(delivered.rejected.is_empty(), "{}: {what}", sink.name());
    }
    sink.close().await.expect("close after deliveries");
    sink.reopen().await.expect("reopen after close");
    let again = records(sample_events("conformance", 3));
    sink.deliver(&again).await.expect("deliver after reopen");
    sink.close().await.expect("close after reopen");
}
