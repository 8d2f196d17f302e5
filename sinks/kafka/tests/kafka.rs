//! The Kafka sink on its own against a real Kafka-protocol broker (tansu,
//! installed by scripts/services.sh), read back with a real rdkafka
//! consumer: the sink contract (`auditfwd_sink::testing::conformance`),
//! records the cluster refuses for their size are rejected and not lost, a
//! wrong broker address fails the health check with the cause and the fix,
//! any action becomes a legal topic name, and templated topics stop at
//! `max_topics`. The forwarder with a Kafka sink end to end is tested in
//! auditfwd's tests/kafka.rs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use auditfwd_sink::Sink;
use auditfwd_sink::testing::{conformance, records, sample_events};
use auditfwd_sink_kafka::{KafkaSink, RawKafkaSinkConfig};
use auditfwd_testkit::{Tansu, consume, consume_everything, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_address_fails_the_health_check_clearly() {
    let port = free_port();
    let mut config = RawKafkaSinkConfig::new(&[&format!("127.0.0.1:{port}")]);
    config.healthcheck_timeout = Duration::from_secs(2);
    let mut sink =
        KafkaSink::new("kafka", config.validate().unwrap(), vec!["tenant".into()]).unwrap();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_contract_holds_and_oversized_records_are_rejected_not_lost() {
    let broker = Tansu::start();
    broker.create_topic("audit.conformance", 1);
    broker.create_topic("audit.acme", 1);
    let mut config = RawKafkaSinkConfig::new(&[&broker.brokers()]);
    config.librdkafka.insert(
        "message.max.bytes".into(),
        auditfwd_sink_kafka::toml_value::Scalar::Integer(4096),
    );
    let mut sink = KafkaSink::new(
        "kafka",
        config.validate().unwrap(),
        vec!["conformance".into(), "acme".into()],
    )
    .unwrap();
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

/// `sample_events` with these actions and ids prefixed by `prefix`.
fn events_with_actions(prefix: &str, actions: &[&str]) -> Vec<auditfwd_sink::Event> {
    let mut events = sample_events("acme", actions.len());
    for (e, action) in events.iter_mut().zip(actions) {
        e.id = format!("{prefix}-{}", e.id);
        e.action = action.to_string();
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_actions_become_legal_topic_names() {
    let broker = Tansu::start();
    let long = "x".repeat(300);
    // (action, template, the topic it must land in), written out by hand.
    let cases: Vec<(&str, &str, String)> = vec![
        ("../x y", "audit.{action}", "audit..._x_y".into()),
        ("ünï ✓ 日本", "audit.{action}", "audit._n______".into()),
        (
            &long,
            "audit.{action}",
            format!("audit.{}", "x".repeat(243)),
        ),
        ("..", "{action}", "unknown".into()),
        (".", "{action}", "unknown".into()),
    ];
    assert_eq!(cases[2].2.len(), 249, "Kafka's longest topic name");
    let topics: BTreeSet<&str> = cases.iter().map(|c| c.2.as_str()).collect();
    for topic in &topics {
        broker.create_topic(topic, 1);
    }
    let mut sent = HashMap::new();
    for template in ["audit.{action}", "{action}"] {
        let mut config = RawKafkaSinkConfig::new(&[&broker.brokers()]);
        config.topic = template.into();
        let mut sink =
            KafkaSink::new("kafka", config.validate().unwrap(), vec!["acme".into()]).unwrap();
        sink.healthcheck().await.unwrap();
        let actions: Vec<&str> = cases
            .iter()
            .filter(|c| c.1 == template)
            .map(|c| c.0)
            .collect();
        let batch = records(events_with_actions(template, &actions));
        let result = tokio::time::timeout(Duration::from_secs(30), sink.deliver(&batch))
            .await
            .expect("delivered in time")
            .unwrap_or_else(|e| panic!("{template}: {e}"));
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        for r in &batch {
            let payload: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            sent.insert(r.event.id.clone(), (r.event.action.clone(), payload));
        }
    }

    let names: Vec<&str> = topics.iter().copied().collect();
    let messages = consume_everything(&broker.brokers(), &names).await;
    assert_eq!(messages.len(), cases.len(), "{messages:#?}");
    for m in &messages {
        let id = m.payload["id"].as_str().unwrap();
        let (action, payload) = &sent[id];
        let case = cases.iter().find(|c| c.0 == action).unwrap();
        assert_eq!(m.topic, case.2, "action {action:?}");
        assert_eq!(&m.payload, payload, "the bytes sent");
        assert_eq!(&m.headers["action"], action, "the action header is intact");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_topics_are_capped_at_max_topics() {
    let broker = Tansu::start();
    let actions = ["A1", "A2", "A3", "A4", "A5", "A6"];
    for a in actions {
        broker.create_topic(&format!("audit.{a}"), 1);
    }
    let mut config = RawKafkaSinkConfig::new(&[&broker.brokers()]);
    config.topic = "audit.{action}".into();
    config.max_topics = 3;
    let mut sink =
        KafkaSink::new("kafka", config.validate().unwrap(), vec!["acme".into()]).unwrap();
    sink.healthcheck().await.unwrap();

    // Five distinct actions, twice: the first three topics are taken.
    let first = records(events_with_actions(
        "one",
        &["A1", "A2", "A3", "A4", "A5", "A1", "A2", "A3", "A4", "A5"],
    ));
    let result = sink.deliver(&first).await.unwrap();
    let rejected: Vec<usize> = result.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [3, 4, 8, 9]);
    for r in &result.rejected {
        let topic = format!("audit.{}", first[r.index].event.action);
        assert!(
            r.reason.contains(&format!(
                "topic `{topic}` would be one more than max_topics = 3"
            )) && r.reason.contains("raise `max_topics`"),
            "{}",
            r.reason
        );
    }
    // Later batches: the counted topics still work, no new one gets in.
    let second = records(events_with_actions("two", &["A6", "A1", "A4", "A3"]));
    let result = sink.deliver(&second).await.unwrap();
    let rejected: Vec<usize> = result.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [0, 2]);

    let names: Vec<String> = actions.iter().map(|a| format!("audit.{a}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let messages = consume_everything(&broker.brokers(), &names).await;
    let mut got: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m.topic.clone(),
                m.payload["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = first
        .iter()
        .chain(&second)
        .filter(|r| ["A1", "A2", "A3"].contains(&r.event.action.as_str()))
        .map(|r| (format!("audit.{}", r.event.action), r.event.id.clone()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    for m in &messages {
        let sent = first
            .iter()
            .chain(&second)
            .find(|r| r.event.id == m.payload["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            m.payload,
            serde_json::from_slice::<serde_json::Value>(&sent.payload).unwrap()
        );
    }
}
