//! SPEC §2, §5: the Kafka sink against a real Kafka-protocol broker (tansu),
//! read back with a real rdkafka consumer.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::cursor::store;
use auditfwd::simulator::SimConfig;
use auditfwd::telemetry::{Metrics, Status};
use auditfwd_sink::Sink;
use auditfwd_sink::testing::{conformance, records, sample_events};
use auditfwd_sink_kafka::{KafkaSink, KafkaSinkConfig};

use crate::support::services::{self, Consumed, Tansu, consume};
use crate::support::*;

/// A forwarder config whose only effective sink is Kafka.
fn kafka_config(
    sim: &auditfwd::simulator::Simulator,
    dir: &std::path::Path,
    kafka: &str,
) -> String {
    let extra = format!(
        "actions = [\"NO_SUCH_ACTION\"]\n\n[[sink]]\nname = \"kafka\"\ntype = \"kafka\"\n{kafka}\n"
    );
    config_text(
        sim,
        dir,
        &Setup {
            extra: &extra,
            ..Setup::new(dir)
        },
    )
}

/// Reads until no message arrived for two seconds (so duplicates show).
async fn consume_everything(brokers: &str, topics: &[&str]) -> Vec<Consumed> {
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

fn delivered(metrics: &Metrics) -> u64 {
    metrics
        .events_delivered
        .get_or_create(&Metrics::source("tenant"))
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_with_its_key_headers_and_topic() {
    let broker = Tansu::start();
    broker.create_topic("audit.tenant", 3);
    let sim = tenant(SimConfig {
        backlog: 600,
        insert_rate: 25.0,
        ..adversarial(31)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        &sim,
        dir.path(),
        &format!("brokers = [\"{}\"]", broker.brokers()),
    );
    let fwd = Forwarder::start(App::new(parse_config(&config)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    sim.freeze();
    let truth = sim.truth();
    let expected = deliverable(&truth).len() as u64;
    assert!(
        wait_for(Duration::from_secs(30), || delivered(&fwd.metrics)
            >= expected)
        .await
    );
    fwd.stop().await.unwrap();

    let messages = consume_everything(&broker.brokers(), &["audit.tenant"]).await;
    let lines: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    compare(&truth, &id_counts(&lines)).assert_exact();
    let mut partitions = BTreeSet::new();
    for m in &messages {
        let id = m.payload["id"].as_str().unwrap();
        assert_eq!(m.topic, "audit.tenant");
        assert_eq!(m.key.as_deref(), Some(id), "keyed by event id");
        assert_eq!(m.headers["event_id"], id);
        assert_eq!(m.headers["source"], "tenant");
        assert_eq!(m.headers["action"], m.payload["action"].as_str().unwrap());
        assert_eq!(m.headers["format"], "json");
        assert_eq!(m.headers["schema_version"], "1");
        partitions.insert(m.partition);
    }
    assert_eq!(partitions.len(), 3, "keys spread over the partitions");
    assert_dead_letters(&truth, &dir.path().join("state/dead-letter/tenant.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_stops_the_poller_and_loses_nothing() {
    let broker = Tansu::start();
    broker.create_topic("audit.tenant", 2);
    let sim = tenant(SimConfig {
        backlog: 400,
        insert_rate: 30.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        &sim,
        dir.path(),
        &format!("brokers = [\"{}\"]", broker.brokers()),
    );
    let fwd = Forwarder::start(App::new(parse_config(&config)));
    assert!(wait_for(Duration::from_secs(20), || delivered(&fwd.metrics) >= 400).await);

    // Freeze the broker for 30 seconds while events keep arriving.
    broker.freeze();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state_dir = dir.path().join("state");
    let cursor_before = store::peek(&state_dir, "tenant").unwrap().unwrap();
    let requests_before = sim.stats().requests;
    tokio::time::sleep(Duration::from_secs(28)).await;
    let cursor_during = store::peek(&state_dir, "tenant").unwrap().unwrap();
    let requests_during = sim.stats().requests;
    assert_eq!(
        cursor_during.delivered_total, cursor_before.delivered_total,
        "the cursor moved while the broker acknowledged nothing"
    );
    assert_eq!(cursor_during.watermark_ms, cursor_before.watermark_ms);
    assert!(
        requests_during - requests_before <= 3,
        "the poller kept fetching from a source whose sink is stalled: {requests_before} -> {requests_during}"
    );
    broker.thaw();

    sim.freeze();
    let truth = sim.truth();
    let expected = deliverable(&truth).len() as u64;
    assert!(
        wait_for(Duration::from_secs(60), || delivered(&fwd.metrics)
            >= expected)
        .await,
        "did not catch up after the broker came back: {} of {expected}",
        delivered(&fwd.metrics)
    );
    fwd.stop().await.unwrap();
    let messages = consume_everything(&broker.brokers(), &["audit.tenant"]).await;
    let lines: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    compare(&truth, &id_counts(&lines)).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_follow_the_template_and_a_missing_topic_is_named() {
    let broker = Tansu::start();
    // Every entity type of the tenant but `tenant` (SETTINGS_CHANGED).
    let present = ["user", "api_key", "candidate", "export"];
    for t in present {
        broker.create_topic(&format!("audit.tenant.{t}"), 1);
    }
    let sim = tenant(SimConfig {
        backlog: 800,
        insert_rate: 0.0,
        ..SimConfig::default()
    })
    .await;
    let truth = sim.truth();
    assert!(
        truth
            .iter()
            .any(|e| e.action.as_deref() == Some("SETTINGS_CHANGED"))
    );
    let dir = tempfile::tempdir().unwrap();
    let kafka = format!(
        "brokers = [\"{}\"]\ntopic = \"audit.{{source}}.{{entity_type}}\"\nkey = \"entity_id\"",
        broker.brokers()
    );
    let fwd = Forwarder::start(App::new(parse_config(&kafka_config(
        &sim,
        dir.path(),
        &kafka,
    ))));

    // The batch with a SETTINGS_CHANGED event can not be delivered: the sink
    // says which topic is missing, and the source waits.
    let failed = wait_for(Duration::from_secs(20), || {
        matches!(fwd.health.snapshot().get("sink:kafka"), Some(Status::Failed(m)) if m.contains("topic `audit.tenant.tenant` does not exist"))
    })
    .await;
    assert!(failed, "{:?}", fwd.health.snapshot());
    assert!((delivered(&fwd.metrics) as usize) < truth.len());
    broker.create_topic("audit.tenant.tenant", 1);
    let expected = deliverable(&truth).len() as u64;
    assert!(
        wait_for(Duration::from_secs(30), || delivered(&fwd.metrics)
            >= expected)
        .await
    );
    assert_eq!(fwd.health.snapshot().get("sink:kafka"), Some(&Status::Ok));
    fwd.stop().await.unwrap();

    let topics: Vec<String> = present
        .iter()
        .chain(["tenant"].iter())
        .map(|t| format!("audit.tenant.{t}"))
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let messages = consume_everything(&broker.brokers(), &names).await;
    let mut per_topic: HashMap<&str, usize> = HashMap::new();
    for m in &messages {
        let entity_type = m.payload["entity_type"].as_str().unwrap();
        assert_eq!(m.topic, format!("audit.tenant.{entity_type}"));
        assert_eq!(m.key.as_deref(), m.payload["entity_id"].as_str());
        *per_topic.entry(entity_type).or_default() += 1;
    }
    assert_eq!(per_topic.len(), 5, "{per_topic:?}");
    let lines: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    compare(&truth, &id_counts(&lines)).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_address_fails_the_health_check_clearly() {
    let port = services::free_port();
    let mut config = KafkaSinkConfig::new(&[&format!("127.0.0.1:{port}")]);
    config.healthcheck_timeout = Duration::from_secs(2);
    let mut sink = KafkaSink::new("kafka", config, vec!["tenant".into()]).unwrap();
    let error = sink.healthcheck().await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("brokers 127.0.0.1:{port}")),
        "{error}"
    );
    assert!(
        error.contains("Connection refused"),
        "names the cause: {error}"
    );
    assert!(
        error.contains("check `brokers`"),
        "says what to do: {error}"
    );

    // The same through `auditfwd check`, as an operator runs it.
    let sim = tenant(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditfwd.toml");
    let kafka = format!("brokers = [\"127.0.0.1:{port}\"]\nhealthcheck_timeout = \"2s\"");
    std::fs::write(&path, kafka_config(&sim, dir.path(), &kafka)).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditfwd"))
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("sink kafka (kafka): FAILED: kafka sink `kafka`: cannot get metadata from brokers 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("source tenant: ok"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_contract_holds_and_oversized_records_are_rejected_not_lost() {
    let broker = Tansu::start();
    broker.create_topic("audit.conformance", 1);
    broker.create_topic("audit.acme", 1);
    let mut config = KafkaSinkConfig::new(&[&broker.brokers()]);
    config.librdkafka.insert(
        "message.max.bytes".into(),
        auditfwd_sink_kafka::toml_value::Scalar::Integer(4096),
    );
    let mut sink =
        KafkaSink::new("kafka", config, vec!["conformance".into(), "acme".into()]).unwrap();
    sink.healthcheck().await.unwrap();
    conformance(&mut sink, Duration::from_secs(30)).await;

    let mut batch = records(sample_events("acme", 3));
    batch[1].payload = bytes::Bytes::from(vec![b'x'; 10_000]);
    let result = sink.deliver(&batch).await.unwrap();
    assert_eq!(result.rejected.len(), 1);
    assert_eq!(result.rejected[0].index, 1);
    assert!(
        result.rejected[0].reason.contains("MessageSizeTooLarge"),
        "{:?}",
        result.rejected
    );
    let got = consume(
        &broker.brokers(),
        &["audit.acme"],
        3,
        Duration::from_secs(10),
    )
    .await;
    let ids: BTreeSet<String> = got
        .iter()
        .map(|m| m.payload["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["evt-0".to_string(), "evt-2".to_string()])
    );
}
