//! The forwarder with a Kafka sink against a real Kafka-protocol broker
//! (tansu), read back with a real rdkafka consumer: every event arrives once
//! with its key, headers and topic (README, "The delivery guarantee"), a
//! frozen broker holds the source, a missing topic is named and then
//! dead-lettered after its bound (README, "`[[sink]]`: one output"). The
//! sink's own promises are tested beside it, in sinks/kafka/tests.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::cursor::store;
use auditfwd::telemetry::{Metrics, Status};
use auditfwd_sim::{SimConfig, Verdict};
use auditfwd_testkit::{Tansu, consume_everything, free_port, wait_for};

use crate::support::binary::auditfwd;
use crate::support::*;

/// A forwarder config whose only effective sink is Kafka.
fn kafka_config(sim: &auditfwd_sim::Simulator, dir: &std::path::Path, kafka: &str) -> String {
    kafka_config_paged(sim, dir, kafka, Setup::new(dir).page_size)
}

/// [`kafka_config`] with `page_size` events per page (and batch).
fn kafka_config_paged(
    sim: &auditfwd_sim::Simulator,
    dir: &std::path::Path,
    kafka: &str,
    page_size: u32,
) -> String {
    let extra = format!(
        "actions = [\"NO_SUCH_ACTION\"]\n\n[[sink]]\nname = \"kafka\"\ntype = \"kafka\"\n{kafka}\n"
    );
    config_text(
        sim,
        dir,
        &Setup {
            extra: &extra,
            page_size,
            ..Setup::new(dir)
        },
    )
}

/// A forwarder of `sim` into `dir` delivering to the Kafka sink [`kafka_config`]
/// configures with `kafka`.
fn kafka_forwarder(sim: &auditfwd_sim::Simulator, dir: &std::path::Path, kafka: &str) -> Forwarder {
    Forwarder::start(App::new(parse_config(&kafka_config(sim, dir, kafka))))
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
    let brokers = format!("brokers = [\"{}\"]", broker.brokers());
    let fwd = kafka_forwarder(&sim, dir.path(), &brokers);
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
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
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
    let brokers = format!("brokers = [\"{}\"]", broker.brokers());
    let fwd = kafka_forwarder(&sim, dir.path(), &brokers);
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
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_follow_the_template_and_a_missing_topic_is_named() {
    let broker = Tansu::start();
    // Every entity type of the tenant but `tenant` (SETTINGS_CHANGED).
    let present = ["user", "api_key", "candidate", "export"];
    for t in present {
        broker.create_topic(&format!("audit.tenant.{t}"), 1);
    }
    let sim = tenant(SimConfig::quiet(800)).await;
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
    let fwd = kafka_forwarder(&sim, dir.path(), &kafka);

    // The batch with a SETTINGS_CHANGED event can not be delivered: the sink
    // says which topic is missing, and the source waits (for at most
    // `missing_topic_timeout`, 5 minutes by default).
    let failed = wait_for(Duration::from_secs(20), || {
        matches!(fwd.health.snapshot().get("sink:kafka"), Some(Status::Degraded(m)) if m.contains("topic `audit.tenant.tenant` does not exist"))
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
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_address_fails_auditfwd_check_clearly() {
    // The sink's own health check on such an address: sinks/kafka/tests.
    // Here through `auditfwd check`, as an operator runs it.
    let port = free_port();
    let sim = tenant(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditfwd.toml");
    let kafka = format!("brokers = [\"127.0.0.1:{port}\"]\nhealthcheck_timeout = \"2s\"");
    std::fs::write(&path, kafka_config(&sim, dir.path(), &kafka)).unwrap();
    let out = auditfwd(&["check", "-c", path.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("sink kafka (kafka): FAILED: kafka sink `kafka`: cannot get metadata from brokers 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("source tenant: ok"), "{stdout}");
}

/// Every action the simulated tenant sends.
const SIM_ACTIONS: &[&str] = &[
    "USER_LOGIN",
    "USER_LOGOUT",
    "USER_LOGIN_FAILED",
    "USER_CREATED",
    "USER_UPDATED",
    "USER_DELETED",
    "ROLE_CHANGED",
    "API_KEY_CREATED",
    "API_KEY_REVOKED",
    "CANDIDATE_CREATED",
    "CANDIDATE_UPDATED",
    "CANDIDATE_VIEWED",
    "CANDIDATE_DELETED",
    "EXPORT_DOWNLOADED",
    "SETTINGS_CHANGED",
];

/// The dead letters the Kafka sink caused, as written so far.
fn kafka_dead_letters(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("dead letters are JSON"))
        .filter(|l| l["sink"] == "kafka")
        .collect()
}

fn dead_letter_time(line: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(line["at"].as_str().expect("dead letters carry `at`"))
        .unwrap()
        .to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_holds_its_records_for_the_bound_then_dead_letters_them() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    const MISSING: &str = "SETTINGS_CHANGED";
    let broker = Tansu::start();
    // tansu creates no topic by itself (not on metadata requests, not on
    // produce): the topic of one action stays missing.
    for action in SIM_ACTIONS.iter().filter(|a| **a != MISSING) {
        broker.create_topic(&format!("audit.{action}"), 1);
    }
    let sim = tenant(SimConfig::quiet(600)).await;
    let truth = sim.truth();
    for e in &truth {
        assert!(SIM_ACTIONS.contains(&e.action.as_deref().unwrap()), "{e:?}");
    }
    let held: BTreeSet<&str> = truth
        .iter()
        .filter(|e| e.action.as_deref() == Some(MISSING))
        .map(|e| e.id.as_deref().unwrap())
        .collect();
    assert!(
        held.len() >= 3,
        "too few {MISSING} events to test: {held:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let kafka = format!(
        "brokers = [\"{}\"]\ntopic = \"audit.{{action}}\"\nmissing_topic_timeout = \"{}\"",
        broker.brokers(),
        humantime::format_duration(TIMEOUT)
    );
    // Pages of 50: the held events are spread over several batches.
    let fwd = Forwarder::start(App::new(parse_config(&kafka_config_paged(
        &sim,
        dir.path(),
        &kafka,
        50,
    ))));

    // While the records wait, health is degraded and names the topic.
    let named = wait_for(Duration::from_secs(20), || {
        matches!(fwd.health.snapshot().get("sink:kafka"), Some(Status::Degraded(m))
            if m.contains("topic `audit.SETTINGS_CHANGED` does not exist")
                && m.contains("then go to the dead-letter file"))
    })
    .await;
    let degraded_at = chrono::Utc::now();
    assert!(named, "{:?}", fwd.health.snapshot());
    let dead_letter_file = dir.path().join("state/dead-letter/tenant.jsonl");
    assert!(
        kafka_dead_letters(&dead_letter_file).is_empty(),
        "dead-lettered before the wait was over"
    );

    // Then everything is acknowledged, the held records as dead letters.
    let expected = deliverable(&truth).len() as u64;
    assert!(
        wait_for(TIMEOUT + Duration::from_secs(30), || delivered(
            &fwd.metrics
        ) >= expected)
        .await,
        "stalled: {} of {expected} delivered; health {:?}",
        delivered(&fwd.metrics),
        fwd.health.snapshot()
    );
    assert!(fwd.is_running(), "the forwarder stopped");
    assert!(
        wait_for(Duration::from_secs(5), || fwd
            .health
            .snapshot()
            .get("sink:kafka")
            == Some(&Status::Ok))
        .await,
        "{:?}",
        fwd.health.snapshot()
    );
    fwd.stop().await.unwrap();

    // The held records are in the dead-letter file, once each, with the
    // topic and the fix, written after the bound and all at once: a later
    // batch with the same missing topic did not wait again.
    let dead = kafka_dead_letters(&dead_letter_file);
    let dead_ids: Vec<&str> = dead.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(
        dead_ids.iter().copied().collect::<BTreeSet<_>>(),
        held,
        "{dead:#?}"
    );
    assert_eq!(
        dead_ids.len(),
        held.len(),
        "dead-lettered twice: {dead_ids:?}"
    );
    for line in &dead {
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.contains("gave up after missing_topic_timeout = 5s")
                && reason.contains("topic `audit.SETTINGS_CHANGED` does not exist")
                && reason.contains("create it"),
            "{reason}"
        );
        assert_eq!(line["event"]["action"], MISSING);
        assert_eq!(line["event"]["id"], line["id"]);
    }
    let first = dead.iter().map(dead_letter_time).min().unwrap();
    let last = dead.iter().map(dead_letter_time).max().unwrap();
    assert!(
        first - degraded_at
            >= chrono::Duration::from_std(TIMEOUT).unwrap() - chrono::Duration::seconds(1),
        "dead-lettered {} after the sink reported the wait; expected about {TIMEOUT:?}",
        first - degraded_at
    );
    assert!(
        last - first < chrono::Duration::from_std(TIMEOUT).unwrap(),
        "the sink waited again for a topic it had given up: dead letters from {first} to {last}"
    );

    // Every other event arrived once, in the topic of its action.
    let topics: Vec<String> = SIM_ACTIONS
        .iter()
        .filter(|a| **a != MISSING)
        .map(|a| format!("audit.{a}"))
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let messages = consume_everything(&broker.brokers(), &names).await;
    for m in &messages {
        assert_eq!(
            m.topic,
            format!("audit.{}", m.payload["action"].as_str().unwrap())
        );
    }
    let others: Vec<_> = truth
        .iter()
        .filter(|e| e.action.as_deref() != Some(MISSING))
        .cloned()
        .collect();
    let lines: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    Verdict::of(&others, &id_counts(&lines)).assert_exact();
}
