//! The Kafka sink keeps several batches in flight (`Sink::submit`): the
//! next batch is handed to the producer while the delivery reports of the
//! last are still pending, and each resolves once its own reports are in.
//! Against a real broker (tansu, installed by `scripts/services.sh`),
//! frozen with SIGSTOP so that no report can come back meanwhile.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditfwd_sink::testing::{records, sample_events};
use auditfwd_sink::{Event, Sink};
use auditfwd_sink_kafka::{KafkaSink, RawKafkaSinkConfig};
use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

/// A tansu broker with in-memory storage on a free loopback port.
struct Tansu {
    child: Child,
    port: u16,
    bin: PathBuf,
}

impl Tansu {
    fn start() -> Self {
        let bin = std::env::var("TANSU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
                let installed = home.join(".cargo/bin/tansu");
                if installed.exists() {
                    installed
                } else {
                    PathBuf::from("tansu")
                }
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu is installed (scripts/services.sh) or TANSU_BIN names it");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, bin }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str) {
        let status = Command::new(&self.bin)
            .args(["topic", "create", name, "--partitions", "1"])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "creating topic {name} failed");
    }

    /// Sends `signal` (`STOP`, `CONT`) to the broker.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The message keys (event ids) in `topic`, with how often each arrived.
fn keys_in(brokers: &str, topic: &str, expected: usize) -> HashMap<String, usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut keys = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Read until the expected count, then a little longer for duplicates.
    let mut quiet_until = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|t| Instant::now() < t) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            *keys.entry(key).or_insert(0) += 1;
        }
        if quiet_until.is_none() && keys.values().sum::<usize>() >= expected {
            quiet_until = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    keys
}

fn events(prefix: &str, n: usize) -> Vec<Event> {
    sample_events("acme", n)
        .into_iter()
        .map(|e| Event {
            id: format!("{prefix}-{}", e.id),
            ..e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_batch_is_produced_while_the_first_awaits_its_reports() {
    let broker = Tansu::start();
    broker.create_topic("audit");
    let mut config = RawKafkaSinkConfig::new(&[&broker.brokers()]);
    config.topic = "audit".into();
    let mut sink = KafkaSink::new("kafka", config.validate().unwrap(), vec![]).unwrap();
    // Connections and the topic's metadata first, while the broker answers.
    let warm = sink.deliver(&records(events("warm", 1))).await.unwrap();
    assert!(warm.rejected.is_empty());

    broker.signal("STOP");
    let first = records(events("first", 100));
    let second = records(events("second", 100));
    let mut pending = Vec::new();
    for batch in [first, second] {
        // Handed to the producer at once, not after its reports: the broker
        // can not answer now.
        let submitted = tokio::time::timeout(Duration::from_secs(5), sink.submit(Arc::from(batch)))
            .await
            .expect("submit returns while the broker is frozen");
        pending.push(submitted);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for batch in &mut pending {
        assert!(
            batch.as_mut().now_or_never().is_none(),
            "acknowledged although the broker can not have answered"
        );
    }

    broker.signal("CONT");
    for batch in pending {
        let delivered = tokio::time::timeout(Duration::from_secs(30), batch)
            .await
            .expect("acknowledged once the broker answers")
            .expect("every report succeeded");
        assert!(delivered.rejected.is_empty());
    }
    sink.close().await.unwrap();

    let keys = keys_in(&broker.brokers(), "audit", 201);
    assert_eq!(keys.len(), 201, "every message arrived");
    assert!(
        keys.values().all(|&n| n == 1),
        "each once: {:?}",
        keys.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
}
