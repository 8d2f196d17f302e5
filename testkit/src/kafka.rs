//! A Kafka-protocol broker (tansu, in memory) and a real rdkafka consumer
//! to read back what was produced.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{find_binary, free_port};

/// A tansu broker with in-memory storage.
pub struct Tansu {
    child: Child,
    port: u16,
    bin: PathBuf,
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Self {
        let bin = find_binary("tansu", "TANSU_BIN");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let broker = Self { child, port, bin };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "creating topic {name} failed");
    }

    /// SIGSTOP: the broker stops answering, connections stay open.
    pub fn freeze(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its key, as text.
    pub key: Option<String>,
    /// Its headers, values as text.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Its payload, which must be JSON.
    pub payload: serde_json::Value,
}

/// Reads `topics` from the beginning with a real rdkafka consumer until
/// `count` messages arrived or `timeout` passed.
pub async fn consume(
    brokers: &str,
    topics: &[&str],
    count: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};

    let brokers = brokers.to_string();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("test-{}", free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).expect("subscribe");
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < count && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Consumed {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        headers,
                        payload: serde_json::from_slice(m.payload().unwrap_or_default())
                            .expect("payload is JSON"),
                    });
                }
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

/// Reads `topics` from the beginning until no message arrived for two
/// seconds (so duplicates show).
pub async fn consume_everything(brokers: &str, topics: &[&str]) -> Vec<Consumed> {
    let mut all = Vec::new();
    loop {
        let batch = consume(brokers, topics, usize::MAX, Duration::from_secs(3)).await;
        // Each call starts a new consumer group from the earliest offset.
        if batch.len() == all.len() {
            return all;
        }
        all = batch;
    }
}
