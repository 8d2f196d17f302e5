//! Kafka sink throughput against a bare rdkafka producer loop, on a real
//! broker (tansu on loopback), with the same encoded records, keys, headers
//! and producer settings.
//!
//! ```sh
//! cargo bench -p auditfwd-sink-kafka --bench kafka_throughput   # 50 000 records
//! RECORDS=200000 cargo bench -p auditfwd-sink-kafka --bench kafka_throughput
//! ```
//!
//! Modes (each in its own process, so peak RSS is its own):
//! - `bare-all`: send every record, then await every delivery report (the
//!   upper bound: nothing waits for acknowledgements until the end);
//! - `bare-batch`: the same loop, awaiting each batch of 100 before the next
//!   (the acknowledgement granularity auditfwd needs for its cursor);
//! - `sink`: the sink as the pipeline drives it: batches of 100 through
//!   `Sink::submit`, up to 4 of them (the default `max_batches_in_flight`;
//!   `IN_FLIGHT` overrides) awaiting their delivery reports at once,
//!   acknowledged in order;
//! - `sink-1`: `KafkaSink::deliver`, one batch at a time (what the sink did
//!   before it pipelined batches; `max_batches_in_flight = 1`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditfwd_sink::testing::{hostile_events, sample_events};
use auditfwd_sink::{Record, Sink};
use auditfwd_sink_kafka::{KafkaSink, KafkaSinkConfig, RawKafkaSinkConfig};
use auditfwd_testkit::{Tansu, json_record, run_mode, timed};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const BATCH: usize = 100;

const MODES: [&str; 4] = ["bare-all", "bare-batch", "sink", "sink-1"];

/// Records `start..start + len`, generated on demand so that the process
/// holds one batch at a time (peak RSS is the producer's, not the input's).
fn records(start: usize, len: usize) -> Vec<Record> {
    let template = sample_events("bench", 2);
    let mut events: Vec<_> = (start..start + len)
        .map(|i| auditfwd_sink::Event {
            id: format!("evt-{i}"),
            entity_id: Some(format!("ent-{i}")),
            ..template[i % 2].clone()
        })
        .collect();
    for (i, e) in events.iter_mut().enumerate() {
        // Every 50th event has hostile strings, as real traffic can.
        if (start + i).is_multiple_of(50) {
            let h = &hostile_events("bench")[(start + i) / 50 % 7];
            e.action = h.action.clone();
            e.details = h.details.clone();
        }
    }
    events.into_iter().map(json_record).collect()
}

fn config(brokers: &str, topic: &str) -> KafkaSinkConfig {
    let mut c = RawKafkaSinkConfig::new(&[brokers]);
    c.topic = topic.into();
    if let Ok(linger) = std::env::var("LINGER_MS") {
        c.librdkafka.insert(
            "linger.ms".into(),
            auditfwd_sink_kafka::toml_value::Scalar::String(linger),
        );
    }
    c.validate().expect("a valid bench config")
}

async fn bare(brokers: &str, topic: &str, n: usize, batch: usize) {
    let mut client = ClientConfig::new();
    for (k, v) in config(brokers, topic).properties() {
        client.set(k, v);
    }
    let producer: FutureProducer = client.create().unwrap();
    let mut pending = Vec::new();
    for start in (0..n).step_by(BATCH) {
        for r in &records(start, BATCH.min(n - start)) {
            let e = &r.event;
            let headers = OwnedHeaders::new_with_capacity(5)
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
                    value: Some(r.format.as_bytes()),
                })
                .insert(Header {
                    key: "schema_version",
                    value: Some(b"1".as_slice()),
                })
                .insert(Header {
                    key: "event_id",
                    value: Some(e.id.as_bytes()),
                });
            let mut message = FutureRecord::to(topic)
                .payload(&r.payload[..])
                .key(e.id.as_bytes())
                .headers(headers);
            loop {
                match producer.send_result(message) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err((_, back)) => {
                        message = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
        if pending.len() >= batch || start + BATCH >= n {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
}

async fn sink(brokers: &str, topic: &str, n: usize, in_flight: usize) {
    let mut sink = KafkaSink::new("bench", config(brokers, topic), vec![]).unwrap();
    let mut pending = VecDeque::new();
    for start in (0..n).step_by(BATCH) {
        let batch = records(start, BATCH.min(n - start));
        if in_flight <= 1 {
            let delivered = sink.deliver(&batch).await.unwrap();
            assert!(delivered.rejected.is_empty());
            continue;
        }
        if pending.len() >= in_flight {
            let oldest: auditfwd_sink::Pending = pending.pop_front().unwrap();
            assert!(oldest.await.unwrap().rejected.is_empty());
        }
        pending.push_back(sink.submit(Arc::from(batch)).await);
    }
    for oldest in pending {
        assert!(oldest.await.unwrap().rejected.is_empty());
    }
}

/// Batches in flight of the `sink` mode.
fn in_flight() -> usize {
    std::env::var("IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// Child process: run one mode, print how long it took (see [`timed`]).
fn child(mode: &str, brokers: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = format!("bench.{mode}");
    rt.block_on(async {
        // Warm-up: connections and metadata.
        match mode {
            "sink" => sink(brokers, &topic, 1000, in_flight()).await,
            "sink-1" => sink(brokers, &topic, 1000, 1).await,
            _ => bare(brokers, &topic, 1000, BATCH).await,
        }
        let started = Instant::now();
        match mode {
            "bare-all" => bare(brokers, &topic, n, usize::MAX).await,
            "bare-batch" => bare(brokers, &topic, n, BATCH).await,
            "sink" => sink(brokers, &topic, n, in_flight()).await,
            "sink-1" => sink(brokers, &topic, n, 1).await,
            other => panic!("unknown mode {other}"),
        }
        timed(started);
    });
}

fn main() {
    if let (Ok(mode), Ok(brokers), Ok(n)) = (
        std::env::var("BENCH_MODE"),
        std::env::var("BENCH_BROKERS"),
        std::env::var("BENCH_N"),
    ) {
        child(&mode, &brokers, n.parse().unwrap());
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches`
    }
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let broker = Tansu::start();
    for mode in MODES {
        broker.create_topic(&format!("bench.{mode}"), 3);
    }
    let payload_bytes: usize = (0..n)
        .step_by(BATCH)
        .flat_map(|s| records(s, BATCH.min(n - s)))
        .map(|r| r.payload.len())
        .sum();
    println!(
        "kafka_throughput: {n} records, {:.0} bytes average payload, batches of {BATCH}, {} in flight (sink), linger.ms {}, tansu on loopback",
        payload_bytes as f64 / n as f64,
        in_flight(),
        std::env::var("LINGER_MS").unwrap_or_else(|_| "default".into())
    );
    let mut results = Vec::new();
    for mode in MODES {
        let (secs, rss) = run_mode(
            mode,
            &[
                ("BENCH_BROKERS", broker.brokers()),
                ("BENCH_N", n.to_string()),
            ],
        );
        let rate = n as f64 / secs;
        println!(
            "  {mode:<11} {rate:>10.0} records/s  {:>7.1} MB/s  peak RSS {:>6.1} MiB",
            payload_bytes as f64 / secs / 1e6,
            rss as f64 / 1024.0
        );
        results.push((mode, rate));
    }
    let (sink, one) = (results[2].1, results[3].1);
    println!("  ratio sink / bare-all   = {:.2}", sink / results[0].1);
    println!("  ratio sink / bare-batch = {:.2}", sink / results[1].1);
    println!("  ratio sink-1 / bare-all = {:.2}", one / results[0].1);
}
