//! The forwarder with a syslog sink against a real rsyslogd, for UDP, TCP
//! with octet-counting and LF framing, TLS, RFC 5424 and RFC 3164: what
//! rsyslog parsed (msgid, app-name, structured data, msg) must be what was
//! sent, once per event, hostile events included; a receiver that is down
//! holds the source and loses nothing (README, "The delivery guarantee").
//! The sink's own promises (mutual TLS, a restarted receiver) are tested
//! beside it, in sinks/syslog/tests.

use std::collections::HashMap;
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::telemetry::{Metrics, Status};
use auditfwd_sim::{SimConfig, Simulator, Verdict};
use auditfwd_sink_syslog::encode::{TRUNCATION_MARKER, header_field};
use auditfwd_sink_syslog::testing::visible;
use auditfwd_testkit::{Rsyslog, free_port, wait_for};
use serde_json::Value;

use crate::support::*;

/// A forwarder config whose only effective sink is syslog.
fn syslog_config(sim: &Simulator, dir: &std::path::Path, syslog: &str) -> String {
    let extra = format!(
        "actions = [\"NO_SUCH_ACTION\"]\n\n[[sink]]\nname = \"siem\"\ntype = \"syslog\"\n{syslog}\n"
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

/// Parses RFC 5424 structured data as rsyslog passes it through:
/// `[id k="v" ...]`, with `\"`, `\\`, `\]` escapes.
fn sd_params(sd: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let inner = sd
        .strip_prefix("[auditfwd@32473")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("unexpected SD {sd}"));
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "quoted value in {sd}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.peek() {
                    Some('"' | '\\' | ']') => value.push(chars.next().unwrap()),
                    _ => value.push('\\'),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated value in {sd}"),
            }
        }
        params.insert(name, value);
    }
    params
}

async fn forward_through(
    transport: &str,
    extra: &str,
    seed: u64,
) -> (Vec<Value>, Vec<auditfwd_sim::TruthEvent>, tempfile::TempDir) {
    let rsyslog = Rsyslog::start();
    let port = match transport {
        "udp" => rsyslog.udp,
        "tls" => rsyslog.tls,
        _ => rsyslog.tcp,
    };
    let sim = tenant(SimConfig {
        backlog: 400,
        insert_rate: 20.0,
        ..adversarial(seed)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tls = if transport == "tls" {
        format!(
            "[sink.tls]\nca_file = \"{}\"\nserver_name = \"localhost\"\n",
            rsyslog.certs.ca.display()
        )
    } else {
        String::new()
    };
    let syslog =
        format!("address = \"127.0.0.1:{port}\"\ntransport = \"{transport}\"\n{extra}\n{tls}");
    let fwd = Forwarder::start(App::new(parse_config(&syslog_config(
        &sim,
        dir.path(),
        &syslog,
    ))));
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.freeze();
    let truth = sim.truth();
    let expected = deliverable(&truth).len();
    let delivered = |m: &Metrics| {
        m.events_delivered
            .get_or_create(&Metrics::source("tenant"))
            .get() as usize
    };
    assert!(
        wait_for(Duration::from_secs(30), || delivered(&fwd.metrics)
            >= expected)
        .await,
        "{} of {expected} delivered; rsyslog: {}",
        delivered(&fwd.metrics),
        rsyslog.log()
    );
    fwd.stop().await.unwrap();
    // rsyslog writes asynchronously; wait for the file to settle.
    let mut received = rsyslog.received();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rsyslog.received();
        if now.len() == received.len() && now.len() >= expected {
            break;
        }
        received = now;
    }
    (rsyslog.received(), truth, dir)
}

/// Checks what rsyslog parsed against the truth: one record per event, the
/// id in the structured data, fields as sent. Returns records by id.
fn check_rfc5424(received: &[Value], truth: &[auditfwd_sim::TruthEvent]) -> HashMap<String, Value> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in received {
        assert_eq!(r["version"], "1", "{r}");
        assert_eq!(r["app_name"], "auditfwd", "{r}");
        let pri: u32 = r["pri"].as_str().unwrap().parse().unwrap();
        assert_eq!(pri / 8, 4, "facility auth: {r}");
        assert!(
            (2..=6).contains(&(pri % 8)),
            "severity from the mapping: {r}"
        );
        let sd = sd_params(r["structured_data"].as_str().unwrap());
        assert_eq!(sd["source"], "tenant");
        let id = sd["id"].clone();
        *counts.entry(id.clone()).or_default() += 1;
        by_id.insert(id, r.clone());
    }
    // Ids are written visibly escaped; map the truth the same way. An id
    // the tenant served in several versions arrives once per version.
    let mut wanted: HashMap<String, usize> = HashMap::new();
    for id in deliverable(truth) {
        *wanted.entry(visible(id)).or_default() += 1;
    }
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|(id, n)| counts.get(*id).copied().unwrap_or(0) < **n)
        .map(|(id, _)| id)
        .collect();
    assert!(missing.is_empty(), "missing at the receiver: {missing:?}");
    let dups: Vec<_> = counts
        .iter()
        .filter(|(id, n)| wanted.get(*id).is_none_or(|w| *n > w))
        .collect();
    assert!(
        dups.is_empty(),
        "duplicated or forged at the receiver: {dups:?}"
    );
    assert_eq!(
        received.len(),
        wanted.values().sum::<usize>(),
        "exactly one record per event, hostile ones included"
    );
    by_id
}

/// The record's msg is the JSON payload of that event, and msgid is its
/// action cut to 32 printable characters.
fn check_payload(id: &str, record: &Value) {
    let msg = record["msg"].as_str().unwrap();
    let payload: Value = serde_json::from_str(msg)
        .unwrap_or_else(|e| panic!("msg of {id} is not the JSON payload ({e}): {msg}"));
    assert_eq!(visible(payload["id"].as_str().unwrap()), id);
    let action = payload["action"].as_str().unwrap();
    assert_eq!(record["msgid"].as_str().unwrap(), header_field(action, 32));
    let created_at = payload["created_at"].as_str().unwrap();
    let year: i32 = created_at[..4].parse().unwrap();
    if (1970..2100).contains(&year) {
        assert_eq!(record["timestamp"].as_str().unwrap(), created_at);
    } else {
        // A bogus time leaves the header's TIMESTAMP nil (receivers refuse
        // such years); rsyslog then records when it received the message.
        let received = record["timestamp"].as_str().unwrap();
        assert!(
            received.starts_with(&chrono::Utc::now().format("%Y-").to_string()),
            "{id}: header time {received} for created_at {created_at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_octet_counting_delivers_every_event_once_with_fields_intact() {
    let (received, truth, _dir) = forward_through("tcp", "framing = \"octet-counting\"", 41).await;
    for (id, record) in check_rfc5424(&received, &truth) {
        check_payload(&id, &record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lf_framing_delivers_every_event_once_with_fields_intact() {
    let (received, truth, _dir) = forward_through("tcp", "framing = \"lf\"", 42).await;
    for (id, record) in check_rfc5424(&received, &truth) {
        check_payload(&id, &record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_delivers_every_event_once_with_fields_intact() {
    let (received, truth, _dir) = forward_through("tls", "", 43).await;
    for (id, record) in check_rfc5424(&received, &truth) {
        check_payload(&id, &record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_delivers_every_event_once_and_cuts_oversized_ones_with_a_marker() {
    let (received, truth, dir) = forward_through("udp", "max_datagram = 4096", 44).await;
    let mut cut = Vec::new();
    for (id, record) in check_rfc5424(&received, &truth) {
        let msg = record["msg"].as_str().unwrap();
        if msg.ends_with(TRUNCATION_MARKER) {
            cut.push(id);
        } else {
            check_payload(&id, &record);
        }
    }
    assert!(
        !cut.is_empty(),
        "the tenant's ~10 KB hostile events exceed 4096 bytes"
    );
    // Every cut record is kept whole in the dead-letter file.
    let dead = std::fs::read_to_string(dir.path().join("state/dead-letter/tenant.jsonl")).unwrap();
    for id in &cut {
        let whole = dead
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| {
                l["id"].as_str().map(visible).as_deref() == Some(id.as_str())
                    && l["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("delivered truncated")
            });
        assert!(
            whole.is_some(),
            "{id} was cut but is not in the dead-letter file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_is_accepted() {
    let (received, truth, _dir) =
        forward_through("tcp", "protocol = \"rfc3164\"\nframing = \"lf\"", 45).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &received {
        assert_eq!(r["programname"], "auditfwd", "{r}");
        let payload: Value =
            serde_json::from_str(r["msg"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {r}"));
        *counts
            .entry(payload["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    Verdict::of(&truth, &counts).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_stops_the_poller_and_loses_nothing() {
    let port = free_port();
    let sim = tenant(SimConfig::quiet(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let syslog = format!("address = \"127.0.0.1:{port}\"\nconnect_timeout = \"500ms\"");
    let fwd = Forwarder::start(App::new(parse_config(&syslog_config(
        &sim,
        dir.path(),
        &syslog,
    ))));
    let degraded = wait_for(Duration::from_secs(10), || {
        matches!(fwd.health.snapshot().get("sink:siem"), Some(Status::Degraded(m)) if m.contains("Connection refused"))
    })
    .await;
    assert!(degraded, "{:?}", fwd.health.snapshot());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = sim.stats().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        sim.stats().requests <= requests + 2,
        "the poller kept fetching while the receiver was down"
    );

    let rsyslog = Rsyslog::start_with_tcp_port(port);
    let truth = sim.truth();
    let expected = deliverable(&truth).len();
    assert!(
        wait_for(Duration::from_secs(20), || rsyslog.received().len()
            >= expected)
        .await
    );
    fwd.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts: HashMap<String, usize> = rsyslog
        .received()
        .iter()
        .map(|r| {
            (
                sd_params(r["structured_data"].as_str().unwrap())["id"].clone(),
                1,
            )
        })
        .fold(HashMap::new(), |mut m, (id, n)| {
            *m.entry(id).or_default() += n;
            m
        });
    Verdict::of(&truth, &counts).assert_exact();
}
